"""The report's tables as LaTeX (booktabs), ready to paste into a paper: table.tex beside
report.md. The numbers are the markdown tables' own (``bench.report.summary.table_cells``,
``bench.report.paired.interval_rows``, ``bench.report.summary.training_cost``), printed at the
same precision; every name a user chose (a run, a combination, an outside colorizer, a
metric) goes through ``bench.escape.latex``. The preamble needs ``\\usepackage{booktabs}``.
"""
from __future__ import annotations

import math

import pandas as pd

from bench.escape import latex
from bench.report.paired import interval_rows
from bench.report.summary import CostRow, TableCell, direction, table_cells
from bench.rundir.layout import GRAY, TRUTH
from bench.rundir.read import Run

ARROWS = {"higher": r" $\uparrow$", "lower": r" $\downarrow$"}


def number(value: float, digits: int) -> str:
    """A number as text mode prints it: a true minus sign, ``$\\infty$`` for a perfect PSNR."""
    if math.isinf(value):
        return r"$\infty$" if value > 0 else r"$-\infty$"
    text = f"{value:.{digits}f}"
    if text.startswith("-") and float(text) == 0:  # no side to a difference that rounds to nothing
        text = text[1:]
    return "$-$" + text[1:] if text.startswith("-") else text


def metric_head(metric: str) -> str:
    return latex(metric) + ARROWS.get(direction(metric), "")


def score_cell(c: TableCell) -> str:
    """``format_cell`` in LaTeX: mean $\\pm$ std, the seeds that gave a value, bold if best."""
    if c.seeds == 0 or math.isnan(c.mean):
        return "---"
    text = number(c.mean, c.digits)
    if c.seeds > 1 and math.isfinite(c.std):
        text += r" $\pm$ " + number(c.std, c.digits)
    if c.seeds < c.seeds_total:
        text += f" ({c.seeds}/{c.seeds_total} seeds)"
    return rf"\textbf{{{text}}}" if c.best else text


def interval_cell(c: dict | None) -> str:
    if c is None:
        return "---"
    d = c["digits"]
    text = number(c["mean"], d)
    for key in ("photo", "seed"):
        if c[key] is not None:
            text += (" " if key == "photo" else r"\,$\cdot$\,") + f"[{number(c[key][0], d)}, {number(c[key][1], d)}]"
    return text


def tabular(head: list[str], rows: list[list[str]], caption: str, label: str, rule_before: set[int] = frozenset(),
            align: str | None = None) -> list[str]:
    """A booktabs ``table``: ``head`` and ``rows`` already in LaTeX; a ``\\midrule`` before each
    row index of ``rule_before``."""
    body = []
    for i, row in enumerate(rows):
        if i in rule_before:
            body.append(r"    \midrule")
        body.append("    " + " & ".join(row) + r" \\")
    return [
        r"\begin{table}[t]",
        r"  \centering",
        r"  \small",
        rf"  \caption{{{caption}}}",
        rf"  \label{{{label}}}",
        rf"  \begin{{tabular}}{{{align or 'l' + 'r' * (len(head) - 1)}}}",
        r"    \toprule",
        "    " + " & ".join(head) + r" \\",
        r"    \midrule",
        *body,
        r"    \bottomrule",
        r"  \end{tabular}",
        r"\end{table}",
        "",
    ]


def scores_table(summary: pd.DataFrame) -> list[str]:
    """The report's main table."""
    metrics, rows = table_cells(summary)
    truth = set(summary.loc[summary.combination == TRUTH, "row"])
    gray = set(summary.loc[summary.combination == GRAY, "row"])
    body = [[latex(row) + (r" \emph{(not ranked)}" if marked else ""), *map(score_cell, cells)]
            for row, marked, cells in rows]
    first_reference = next((i for i, (row, _, _) in enumerate(rows) if row in truth), None)
    seeds = int(summary["seeds_total"].max()) if len(summary) else 0
    caption = (
        "Val scores (" + (r"mean $\pm$ sample std over seeds" if seeds > 1 else "one seed") + r"); $\uparrow$ higher "
        r"is better, $\downarrow$ lower is better, no arrow: descriptive (read against the photos' own); bold: the "
        "best ranked row in the column. "
        + (f"{', '.join(sorted(map(latex, gray)))}: the input itself (ab = 0). " if gray else "")
        + (f"{', '.join(sorted(map(latex, truth)))}: the val photos themselves, a reference." if truth else "")
    ).strip()
    return tabular(["Combination", *map(metric_head, metrics)], body, caption, "tab:colorbench-scores",
                   {first_reference} if first_reference else set())


def intervals_table(summary: pd.DataFrame) -> list[str]:
    """The report's table of 95 % intervals of the headline metrics."""
    metrics, rows = interval_rows(summary)
    if not metrics:
        return []
    several = summary["seeds"].max() > 1
    caption = ("95 \\% intervals of each row's mean: over photos (paired bootstrap)"
               + (r"; after $\cdot$, over seeds ($t$)" if several else "") + ".")
    return tabular(["Combination", *map(metric_head, metrics)],
                   [[latex(row), *map(interval_cell, cells)] for row, cells in rows], caption, "tab:colorbench-intervals")


def cost_table(cost: list[CostRow], devices: str) -> list[str]:
    """The report's cost table: each combination's median step time and training per cell."""
    if not cost:
        return []
    rows = [[latex(c.label), f"{c.step * 1000:.0f} ms", _duration(c.whole), f"{c.ratio:.1f}" + r"$\times$"]
            for c in cost]
    caption = (f"Training cost ({latex(devices)}): median wall time of a step after warm-up, a cell's training "
               r"(mean over seeds, scoring not included), and the step time over the cheapest combination's.")
    return tabular(["Combination", "Median step", "Training per cell", r"$\times$ cheapest step"], rows, caption,
                   "tab:colorbench-cost")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "---"
    h, rem = divmod(int(round(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{h}\\,h {m:02d}\\,min" if h else (f"{m}\\,min {s:02d}\\,s" if m else f"{seconds:.1f}\\,s")


def document(runs: list[Run], summary: pd.DataFrame, cost: list[CostRow], devices: str) -> str:
    """table.tex: each of the report's tables as a ``table`` float, with a comment saying where
    the numbers come from."""
    names = ", ".join(latex(r.name) for r in runs)
    lines = [
        f"% Colorbench report on {names}: the tables of report.md, for a paper.",
        r"% Needs \usepackage{booktabs}; paste each table where it goes. Written by `bench report`.",
        "",
        *scores_table(summary),
        *intervals_table(summary),
        *cost_table(cost, devices),
    ]
    return "\n".join(lines)
