"""The val scores along training (each cell's curve.csv): gathered for the report's curve
figure, and read for where a combination was still improving when its training ended."""
from __future__ import annotations

import pandas as pd

from bench.escape import code
from bench.report.summary import direction, model_cells
from bench.rundir.read import Run, read_curve

CURVE_COLUMNS = ["row", "seed", "step", "metric", "value"]


def val_curves(runs: list[Run]) -> pd.DataFrame:
    """Every cell's curve as one tidy frame: row (the table's label), seed, step, metric, value."""
    parts = []
    for row, seed, cell in model_cells(runs):
        frame = read_curve(cell.curve) if cell.curve.is_file() else None  # None: damaged, named in a warning
        if frame is not None and len(frame):
            parts.append(frame.assign(row=row.label, seed=seed)[CURVE_COLUMNS])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CURVE_COLUMNS)


# Still improving: better by more than this share over the last quarter of its steps.
IMPROVING = 0.02


def last_quarter_change(curve: pd.Series) -> tuple[int, float, float] | None:
    """``(step, value then, value at the end)`` of a curve (step -> mean over seeds) from the
    last evaluation at or before three quarters of its steps to its end; None with fewer than
    three evaluations."""
    curve = curve.sort_index()
    if len(curve) < 3:
        return None
    before = curve[curve.index <= 0.75 * curve.index[-1]]
    if before.empty:
        return None
    return int(before.index[-1]), float(before.iloc[-1]), float(curve.iloc[-1])


def still_improving(curves: pd.DataFrame, metrics: list[str]) -> list[str]:
    """Per combination, at most two sentences on its mean curves of the ranked ``metrics``:
    the metric that improved most over its last quarter, if by more than ``IMPROVING`` (more
    steps would have changed its numbers), and the one that ended furthest below its best
    evaluation, if by more than that (its final number is not its best)."""
    sentences = []
    for row, group in curves.groupby("row", sort=False):
        rising = falling = None
        for metric in metrics:
            d = direction(metric)
            values = group[group.metric == metric]
            if d not in ("higher", "lower") or values.empty:
                continue
            sign = 1 if d == "higher" else -1
            curve = values.groupby("step")["value"].mean().sort_index()
            change = last_quarter_change(curve)
            if change is not None and change[1] != 0:
                step, start, end = change
                gain = (end - start) * sign / abs(start)
                if gain > IMPROVING and (rising is None or gain > rising[0]):
                    rising = (gain, metric, step, start, end)
            best_step = (curve * sign).idxmax()
            best, end = float(curve[best_step]), float(curve.iloc[-1])
            loss = (best - end) * sign / abs(best) if best else 0.0
            if len(curve) >= 3 and loss > IMPROVING and (falling is None or loss > falling[0]):
                falling = (loss, metric, int(best_step), best, end)
        if rising is not None and falling is not None and rising[1] == falling[1]:  # up and down: noise
            _, metric, step, start, end = rising
            _, _, best_step, best, _ = falling
            sentences.append(f"{code(row)}'s {metric} was still moving at the end (step {step}: {start:.4g}, best "
                             f"{best:.4g} at step {best_step}, end: {end:.4g}): it had not settled.")
            continue
        if rising is not None:
            gain, metric, step, start, end = rising
            moved = "rose" if end > start else "fell"
            sentences.append(f"{code(row)}'s {metric} {moved} {gain:.0%} over its last quarter of training "
                             f"(step {step}: {start:.4g}, end: {end:.4g}): it had not converged.")
        if falling is not None:
            loss, metric, step, best, end = falling
            sentences.append(f"{code(row)}'s {metric} was best at step {step} ({best:.4g}) and ended {loss:.0%} "
                             f"worse ({end:.4g}).")
    return sentences
