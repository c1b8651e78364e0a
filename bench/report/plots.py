"""How the report's figures are drawn. Each function takes tidy data and writes one PNG
atomically; which figures a report has, and the data each is drawn from, is
``bench.report.figures``.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through
pyplot: no GUI backend, no global figure state, nothing left open between calls. Styles are
applied in a context manager so a report never changes the caller's matplotlib settings.
"""
from __future__ import annotations

import contextlib
import io
import math
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from bench.report.paired import MODELS_ONLY, REAL, difference_matrix
from bench.report.summary import arrow, direction
from bench.rundir.layout import GRAY, TRUTH
from bench.rundir.write import atomic_write_bytes

GRAY_COLOR = "#9a9a9a"


TRUTH_COLOR = "#c4c4c4"


DPI = 110


def make_palette(labels: list[str], gray: str = GRAY) -> dict[str, tuple]:
    """One colour per table row, the same in every figure: the gray baseline is grey,
    ground truth dark, every combination a colour-blind-safe hue in row order."""
    combos = [label for label in labels if label != gray]
    hues = sns.color_palette("colorblind", max(len(combos), 1)) if len(combos) <= 10 else sns.color_palette("husl", len(combos))
    palette = dict(zip(combos, hues))
    palette[gray] = GRAY_COLOR
    palette[TRUTH] = TRUTH_COLOR
    return palette


@contextlib.contextmanager
def _style():
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.95), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seaborn/pandas deprecation chatter is not the reader's concern
        yield


def _save(fig: Figure, path) -> None:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    atomic_write_bytes(path, buf.getvalue())


def _wrap(label: str, width: int = 18) -> str:
    """Line breaks where a reader expects them: before a run name (`` · run``) and before a
    ``[tag]``; words are split only when nothing else fits."""
    lines = []
    for i, part in enumerate(label.split(" · ")):
        prefix = "· " if i else ""
        if len(prefix + part) > width and "[" in part.strip("["):
            head, tail = part.split("[", 1)
            pieces = [head, "[" + tail]
        else:
            pieces = [part]
        for piece in pieces:
            lines += textwrap.wrap(prefix + piece, width, break_on_hyphens=False) or [prefix + piece]
            prefix = ""
    return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    """Long file names keep their start and end, which is where they differ."""
    if len(text) <= width:
        return text
    keep = (width - 1) // 2
    return text[:keep] + "…" + text[-keep:]


def _grid(n: int, ncols: int, w: float, h: float) -> tuple[Figure, list]:
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def metric_title(metric: str) -> str:
    d = direction(metric)
    better = f"{arrow(metric)} {d} is better" if d else "direction unknown"
    return f"{metric}  ({better})"


def bar_figure(
    values: pd.DataFrame, order: list[str], palette: dict, path,
    descriptions: dict[str, str] | None = None, digits: dict[str, int] | None = None,
) -> None:
    """One panel per metric. Bars show each combination's gain over the gray baseline
    (positive = better), so differences of a fraction of a dB are visible; a metric without
    a gray baseline or a known direction shows raw values. Bar = mean over seeds, error bar
    = sample std, dots = seeds (several seeds only). ``digits``: decimals per metric, as
    the table prints them."""
    descriptions, digits = descriptions or {}, digits or {}
    metrics = list(dict.fromkeys(values["metric"]))
    several_seeds = values.groupby(["row", "metric"])["seed"].nunique().max() > 1
    height = 0.42 * len(order) + 1.3
    with _style():
        fig, axes = _grid(len(metrics), 3, 4.8, height)
        for ax, metric in zip(axes, metrics):
            data = values[(values.metric == metric) & values.value.notna()]
            gains = "gain" in data and data["gain"].notna().any()
            x = "gain" if gains else "value"
            rows = [r for r in order if r != GRAY] if gains else order
            data = data[data.row.isin(rows) & data[x].notna()]
            ax.set_title(metric_title(metric), fontsize=10)
            if data.empty:  # e.g. a metric whose weights were missing: said in the caveats
                ax.text(0.5, 0.5, "no values\n(see the report's caveats)", ha="center", va="center",
                        transform=ax.transAxes, color="0.4")
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            sns.barplot(
                data=data, x=x, y="row", hue="row", order=rows, hue_order=rows, palette=palette,
                errorbar="sd" if several_seeds else None, capsize=0.25, err_kws={"linewidth": 1.2},
                legend=False, ax=ax, saturation=0.9,
            )
            if several_seeds:
                sns.stripplot(data=data, x=x, y="row", order=rows, color="black", size=3.5, alpha=0.7, ax=ax, jitter=0.15)
            _label_bars(ax, data, x, rows, signed=gains, digits=digits.get(metric))
            if gains:
                ax.axvline(0, color="0.3", linewidth=1)
                gray = values[(values.metric == metric) & (values.row == GRAY)]["value"].mean()
                ax.set_xlabel(f"gain over gray ({_number(gray)}); positive = better", fontsize=8.5)
            else:
                ax.set_xlabel(descriptions.get(metric, "value"), fontsize=8.5)
            room_right = ax.get_xlim()[1] >= -ax.get_xlim()[0]  # "no value" goes where there is room
            for r in (r for r in rows if r not in set(data.row)):
                ax.annotate("no value", (0, rows.index(r)), xytext=(4 if room_right else -4, 0), textcoords="offset points",
                            ha="left" if room_right else "right", va="center", fontsize=8, color="0.4")
            ax.set_ylabel("")
            ax.set_yticks(range(len(rows)), [_wrap(r, 24) for r in rows], fontsize=9)
        spread = "bars: mean over seeds, ± sample std, dots: seeds" if several_seeds else "one seed: no spread to show"
        fig.suptitle(f"Val scores against the gray baseline (the input itself); {spread}", fontsize=11)
        _save(fig, path)


def _label_bars(ax, data: pd.DataFrame, x: str, rows: list[str], signed: bool, digits: int | None = None) -> None:
    """Each bar's mean written just beyond its furthest seed or error bar, so the number
    never sits on top of them; the axis is widened to make room on both sides of zero."""
    stats = data.groupby("row")[x].agg(["mean", "std", "min", "max"])
    span = np.nanmax(np.abs(stats["mean"].to_numpy())) if len(stats) else 0.0
    if digits is None:
        digits = min(5, max(0, 2 - math.floor(math.log10(span)))) if span > 0 else 2
    lo, hi = 0.0, 0.0
    for r, st in stats.iterrows():
        std = st["std"] if math.isfinite(st["std"]) else 0.0
        right = st["mean"] >= 0
        end = max(st["mean"] + std, st["max"]) if right else min(st["mean"] - std, st["min"])
        lo, hi = min(lo, end), max(hi, end)
        ax.annotate(f"{st['mean']:{'+' if signed else ''}.{digits}f}", (end, rows.index(r)), xytext=(4 if right else -4, 0),
                    textcoords="offset points", ha="left" if right else "right", va="center", fontsize=8)
    width = (hi - lo) or 1.0
    # Room for the labels: about a third of the data range on each side that has bars.
    ax.set_xlim(lo - (0.35 * width if lo < 0 else 0.05 * width), hi + (0.35 * width if hi > 0 else 0.05 * width))


def _number(v: float) -> str:
    if not math.isfinite(v):
        return "n/a"
    digits = max(0, 3 - math.floor(math.log10(abs(v)))) if v else 2
    return f"{v:.{min(digits, 5)}f}"


def smooth(series: pd.Series, steps: int) -> pd.Series:
    """An exponential moving average spanning ~5% of training: enough to read the trend
    through batch noise, short enough to keep each epoch's shape."""
    span = max(1, round(steps / 20))
    return series.ewm(span=span, adjust=True).mean()


def curve_frame(logs: dict[tuple[str, int], pd.DataFrame]) -> pd.DataFrame:
    """Tidy, smoothed training curves from ``{(row, seed): train_log}``: row, seed, step,
    term, value. Each loss term is unweighted, as logged; ``total`` is the weighted sum."""
    parts = []
    for (row, seed), log in logs.items():
        terms = [c for c in log.columns if c not in ("step", "epoch", "seconds") and log[c].notna().any()]
        for term in terms:
            parts.append(pd.DataFrame({
                "row": row, "seed": seed, "step": log["step"], "term": term,
                "value": smooth(log[term].astype(float), len(log)),
            }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["row", "seed", "step", "term", "value"])


def term_order(terms) -> list[str]:
    terms = list(dict.fromkeys(terms))
    tail = [t for t in ("total", "d_loss") if t in terms]
    return [t for t in terms if t not in tail] + tail


TERM_TITLES = {"total": "total (weighted sum, G)", "d_loss": "discriminator loss (D)"}


# Beyond this many passes over the photos (a step-budgeted run on a small set) epoch
# boundaries would hatch the panel: they are left out.
MAX_EPOCH_LINES = 20


def curves_figure(curves: pd.DataFrame, order: list[str], palette: dict, path, epoch_steps: int | None = None) -> None:
    """One panel per loss term, a line per combination (mean over seeds, band = std)."""
    terms = term_order(curves["term"])
    rows = [r for r in order if r in set(curves.row)]
    drawn = False
    with _style():
        fig, axes = _grid(len(terms), 3, 4.4, 3.0)
        for ax, term in zip(axes, terms):
            data = curves[curves.term == term]
            sns.lineplot(
                data=data, x="step", y="value", hue="row", hue_order=[r for r in rows if r in set(data.row)],
                palette=palette, errorbar="sd", ax=ax, linewidth=1.4, legend=False,
            )
            positive = (data["value"] > 0).all()
            if positive and len(data) and data["value"].max() / data["value"].min() > 30:
                ax.set_yscale("log")
            last = int(data["step"].max()) if len(data) else 0
            if epoch_steps and last // epoch_steps <= MAX_EPOCH_LINES:
                drawn = True
                for x in range(epoch_steps, last + 1, epoch_steps):
                    ax.axvline(x, color="0.4", linewidth=0.9, linestyle="--", zorder=1)
            ax.set_title(TERM_TITLES.get(term, f"{term} (unweighted)"), fontsize=10)
            ax.set_xlabel("step")
            ax.set_ylabel("")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if last < 5:  # a few steps: one tick per step, not fractions of one
                ax.set_xticks(range(last + 1))
                ax.set_xlim(-0.5, last + 0.5)
        handles = [
            _line_handle(palette[r]) for r in rows
        ]
        fig.legend(handles, rows, loc="outside lower center", ncols=min(len(rows), 4), frameon=False, fontsize=9)
        fig.suptitle("Training losses per step (exponential moving average"
                     + ("; dashed lines: epoch boundaries)" if drawn else ")"), fontsize=11)
        _save(fig, path)


def val_curves_figure(curves: pd.DataFrame, metrics: list[str], order: list[str], palette: dict, path,
                      gray: dict[str, float] | None = None) -> None:
    """One panel per metric: its val score against training steps, a line per combination
    (mean over seeds, band = their range), gray's value as a dotted line."""
    rows = [r for r in order if r in set(curves.row)]
    gray = gray or {}
    with _style():
        fig, axes = _grid(len(metrics), 3, 4.4, 3.0)
        for ax, metric in zip(axes, metrics):
            data = curves[curves.metric == metric]
            sns.lineplot(
                data=data, x="step", y="value", hue="row", hue_order=[r for r in rows if r in set(data.row)],
                palette=palette, errorbar=("pi", 100), ax=ax, linewidth=1.4, marker="o", markersize=3.5,
                markeredgewidth=0, legend=False,
            )
            if metric in gray and gray[metric] == gray[metric]:  # not NaN
                ax.axhline(gray[metric], color=GRAY_COLOR, linewidth=1.2, linestyle=":", zorder=1)
            ax.set_title(metric_title(metric), fontsize=10)
            ax.set_xlabel("step")
            ax.set_ylabel("")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        handles = [_line_handle(palette[r]) for r in rows] + [_line_handle(GRAY_COLOR, ":")]
        fig.legend(handles, rows + ["gray (the input)"], loc="outside lower center", ncols=min(len(rows) + 1, 5),
                   frameon=False, fontsize=9)
        fig.suptitle("Val scores along training (mean over seeds; band: their range)", fontsize=11)
        _save(fig, path)


def _line_handle(color, linestyle: str = "-"):
    return Line2D([], [], color=color, linewidth=2.5, linestyle=linestyle)


def colorfulness_figure(values: pd.DataFrame, means: dict[str, float], rows: list[str], references: list[str],
                        palette: dict, path, digits: int = 2, formula: str = "") -> None:
    """The distribution of per-image colourfulness of each of ``rows`` (its per-image scores,
    as stored): a violin with its quartiles dotted, and the row's mean, the number of the
    table, marked and written beside it. ``references`` (the photos' own rows) get a dashed
    line at their median."""
    with _style():
        fig = Figure(figsize=(7.5, 0.55 * len(rows) + 1.4), layout="constrained")
        ax = fig.subplots()
        sns.violinplot(
            data=values, x="value", y="row", hue="row", order=rows, hue_order=rows, palette=palette,
            cut=0, inner="quart", density_norm="width", linewidth=0.9, legend=False, ax=ax,
        )
        for reference in references:
            ax.axvline(values.loc[values.row == reference, "value"].median(), color="0.25", linestyle="--", linewidth=1)
        for i, row in enumerate(rows):
            if row in means and math.isfinite(means[row]):
                ax.plot([means[row]], [i], marker="D", markersize=5.5, color="white", markeredgecolor="black",
                        markeredgewidth=1, zorder=6)
                ax.annotate(f"{means[row]:.{digits}f}", (means[row], i), xytext=(0, 7), textcoords="offset points",
                            ha="center", va="bottom", fontsize=8, zorder=7,
                            bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
        ax.set_yticks(range(len(rows)), [_wrap(r, 24) for r in rows])
        ax.set_ylabel("")
        ax.set_xlabel("Hasler–Süsstrunk colourfulness per val image (higher = more vivid)"
                      + (f"; {formula}" if formula else ""))
        ax.set_title("Colourfulness of the predictions against the ground truth (◆ mean, as in the table)", fontsize=11)
        _save(fig, path)


def sample_grid(columns: list[tuple[str, list[np.ndarray]]], row_names: list[str], path, pixels: int = 256) -> None:
    """Images side by side: one column per (title, images), one row per val photo. Each
    cell is ``pixels`` wide at the saved DPI, so photos are shown 1:1, never resampled."""
    ncols, nrows = len(columns), len(row_names)
    cell = max(pixels, 96) / DPI
    pad = 0.06
    fig = Figure(figsize=(ncols * (cell + pad) + 0.45, nrows * (cell + pad) + 0.6))
    left, top = 0.3, 0.55  # inches for row names and column titles
    width, height = fig.get_size_inches()
    for j, (title, images) in enumerate(columns):
        for i, img in enumerate(images):
            x0 = (left + j * (cell + pad)) / width
            y0 = 1 - (top + (i + 1) * (cell + pad) - pad) / height
            ax = fig.add_axes((x0, y0, cell / width, cell / height))
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="none", aspect="auto")
            ax.set_axis_off()
            if i == 0:
                fig.text(x0 + cell / width / 2, 1 - (top - 0.06) / height, _wrap(title, 20 if pixels >= 160 else 12),
                         ha="center", va="bottom", fontsize=9.5)
            if j == 0:
                fig.text(x0 - 0.06 / width, y0 + cell / height / 2, _shorten(Path(row_names[i]).stem, 34),
                         rotation=90, ha="right", va="center", fontsize=7.5)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")  # no tight bbox: keep 1:1 pixels
    atomic_write_bytes(path, buf.getvalue())


DIRECTION_WORDS = {"higher": "higher is better", "lower": "lower is better"}


def _draw_matrix(ax, rows: pd.DataFrame, order: list[str], digits: int, title: str) -> None:
    """One metric's Δ matrix: real differences in colour and starred, "these trained models
    only" pale and hatched, the rest grey."""
    delta, verdicts = difference_matrix(rows, order)
    real, pale = (verdicts == REAL).to_numpy(), (verdicts == MODELS_ONLY).to_numpy()
    span = float(np.nanmax(np.abs(delta.to_numpy()))) if delta.notna().any().any() else 1.0
    ticks = [_wrap(r, 14) for r in order]
    # grey first (everything), then the real differences in colour on top
    sns.heatmap(delta.isna().astype(float) * 0, mask=delta.isna().to_numpy() | real | pale, cmap=ListedColormap(["#ececec"]),
                cbar=False, ax=ax, linewidths=1, linecolor="white", xticklabels=ticks, yticklabels=ticks)
    sns.heatmap(delta, mask=~real, cmap="RdBu", vmin=-span, vmax=span, center=0, ax=ax,
                linewidths=1, linecolor="white", cbar_kws={"shrink": 0.8, "label": "Δ row over column"},
                xticklabels=ticks, yticklabels=ticks)
    if pale.any():
        sns.heatmap(delta, mask=~pale, cmap="RdBu", vmin=-span, vmax=span, center=0, ax=ax, alpha=0.45,
                    linewidths=1, linecolor="white", cbar=False, xticklabels=ticks, yticklabels=ticks)
        for i, j in zip(*np.nonzero(pale)):  # hatched: these trained models only
            ax.add_patch(Rectangle((j, i), 1, 1, fill=False, hatch="///", edgecolor="white", linewidth=0))
    for i, a in enumerate(order):
        for j, b in enumerate(order):
            v = delta.loc[a, b]
            if not math.isfinite(v):
                continue
            strong = verdicts.loc[a, b] == REAL
            dark = strong and abs(v) > 0.6 * span
            boxed = verdicts.loc[a, b] == MODELS_ONLY  # readable over the hatching
            ax.text(j + 0.5, i + 0.5, f"{v:+.{digits}f}" + ("*" if strong else ""), ha="center", va="center",
                    fontsize=8, color="white" if dark else ("0.1" if strong or boxed else "0.45"),
                    fontweight="bold" if strong else "normal", zorder=5,
                    bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.85) if boxed else None)
    ax.set_title(title, fontsize=10)
    ax.grid(False)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8.5)
    ax.tick_params(axis="y", labelrotation=0, labelsize=8.5)


def matrix_figure(panels: list[tuple[str, pd.DataFrame, list[str], int]], path, seeds: int, photos: int) -> None:
    """The paired tests' matrices: one panel per (title, that metric's pairs, row order, decimals)."""
    n = max(len(p[2]) for p in panels)
    with _style():
        fig, axes = _grid(len(panels), 3 if n <= 5 else 2, 0.75 * n + 2.2, 0.62 * n + 1.4)
        for ax, (title, rows, order, digits) in zip(axes, panels):
            _draw_matrix(ax, rows, order, digits, title)
        fig.suptitle("Which differences are real? Δ of row over column, in the metric's direction\n"
                     "* real: p < 0.05 after Holm and 95 % CI excluding 0"
                     + ("; hatched: these trained models only (not shown across seeds)" if seeds > 1 else "")
                     + f"; grey: not told apart ({seeds} seed{'s' if seeds > 1 else ''}, "
                     f"{photos} photos)", fontsize=10.5)
        _save(fig, path)
