"""``bench report`` as a library call: report.md, its figures, summary.csv, table.tex and
pairwise.csv for one run or a comparison of several.

The numbers come from what each run stored (metrics.csv, the per-image scores, the cells'
logs): ``bench.report.summary`` and ``bench.report.paired`` compute, ``bench.report.prose``
words, ``bench.report.figures`` lists and draws the figures (only the sample grid reruns
generators), ``bench.report.latex`` sets the tables for a paper. This module puts them
together into the report folder, all or nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from colorbench_datasets.images import display_name

from bench.escape import cell, code, csv_cell, link_target, spreadsheet_frame
from bench.report import latex, paired, prose
from bench.report.curves import IMPROVING, still_improving
from bench.report.figures import FIGURES, LeftOut, ReportData, ReportSettings
from bench.report.gallery import write_gallery
from bench.report.summary import arrow, markdown_table, summarize, training_cost
from bench.rundir.layout import GRAY, TRUTH, RunFolder
from bench.rundir.read import Run, RunFolderError, load_run, read_tidy_csv, refuse_out_in_photos
from bench.rundir.write import all_or_nothing, atomic_write_text, write_csv
from bench.score.metrics import METRICS
from bench.score.protocol import protocol_lines

__all__ = ["Report", "ReportSettings", "build_report", "check_report_out", "render"]


@dataclass
class Report:
    path: Path
    figures: dict[str, Path]
    caveats: list[str] = field(default_factory=list)


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def _link(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` as a markdown link's destination."""
    return link_target(_rel(path, start))


def protocol_section(runs: list[Run]) -> list[str]:
    """How each number was made (config.json's ``protocol``): papers differ on these."""
    md = ["### How the numbers were made", ""]
    for run in runs:
        if len(runs) > 1:
            md += [f"{code(run.name)}:", ""]
        md += protocol_lines(run.config) + [""]
    return md


def metric_legend(summary: pd.DataFrame) -> str:
    lines = []
    for m in dict.fromkeys(summary.metric):
        info = METRICS.get(m)
        lines.append(f"{code(m)} {arrow(m)} {info.description}" if info else f"{code(m)}: not in this version's metric registry")
    return " · ".join(lines)


def check_report_out(runs: list[Run], out: Path, overwrite: bool = False) -> None:
    """Refuse to write a report over another run's report, or over a report on other runs,
    unless ``overwrite``: ``bench report A --out B``, B being another run, would replace
    B's report.md, summary.csv and figures."""
    out, target = Path(out), RunFolder(out)
    if overwrite or any(os.path.realpath(r.path) == os.path.realpath(out) for r in runs):
        return
    names = ", ".join(r.name for r in runs)
    fix = "choose another --out, or pass --overwrite to replace it"
    if target.config.is_file():
        raise RunFolderError(f"--out {out} is another run's folder: its report.md, summary.csv and figures would be "
                             f"replaced by a report on {names}; {fix}")
    if target.summary.is_file():
        try:
            previous = set(read_tidy_csv(target.summary, usecols=["run"])["run"].astype(str))
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            previous = set()
        if previous != {csv_cell(display_name(r.name)) for r in runs}:  # as summary.csv writes names
            raise RunFolderError(f"--out {out} holds a report on other runs ({', '.join(sorted(previous)) or 'unknown'}), "
                                 f"not on {names}; {fix}")
    elif target.report.is_file():
        raise RunFolderError(f"--out {out} holds a report.md that `bench report` did not write for {names}; {fix}")


def build_report(run_dirs: list[str | Path], out: str | Path | None = None, settings: ReportSettings | None = None,
                 overwrite: bool = False) -> Report:
    """Write report.md, summary.csv, table.tex, pairwise.csv and the figures into ``out``
    (default: the first run). Another run's folder, or a folder with a report on other runs,
    only with ``overwrite``."""
    settings = settings or ReportSettings()
    if not run_dirs:
        raise RunFolderError("no run folder given")
    runs = [load_run(p) for p in run_dirs]
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise RunFolderError(f"run folders must have distinct names to label the rows; got {', '.join(names)}")
    out = Path(out) if out is not None else runs[0].path
    check_report_out(runs, out, overwrite)
    for run in runs:
        refuse_out_in_photos(out, run)
    out.mkdir(parents=True, exist_ok=True)

    analysis = paired.analyse(runs)  # paired tests and intervals from the per-image scores
    summary = paired.paired_gains(paired.with_intervals(summarize(runs), analysis), analysis)
    with all_or_nothing():  # a failure half-way (a full disk) leaves the old report whole
        return _write_report(ReportData(runs, summary, analysis, settings), out)


def draw_figures(data: ReportData, out: Path) -> tuple[dict[str, Path], list[str]]:
    """Every figure of ``FIGURES`` that can be drawn, into ``out``: {key: path}, and the
    notes and reasons for those left out, for the caveats."""
    written, notes = {}, []
    for entry in FIGURES:
        try:
            notes += entry.draw(data, out / entry.file)
        except LeftOut as why:
            notes += [str(why)] if str(why) else []
            continue
        written[entry.key] = out / entry.file
    return written, notes


def _write_report(data: ReportData, out: Path) -> Report:
    """build_report's outputs: summary.csv, pairwise.csv, table.tex, the figures, report.md."""
    target, runs, summary = RunFolder(out), data.runs, data.summary
    write_csv(target.summary, spreadsheet_frame(summary))
    write_csv(target.pairwise, spreadsheet_frame(data.analysis.pairwise))
    cost = training_cost(runs)
    atomic_write_text(target.latex, latex.document(runs, summary, cost, _devices(runs)))
    written, figure_notes = draw_figures(data, out)
    gallery_notes = write_gallery(runs, out, target.gallery_page)
    notes = prose.caveats(runs, summary) + figure_notes
    text = render(data, written, notes, out, cost, gallery_notes)
    atomic_write_text(target.report, text)
    for entry in FIGURES:  # a figure of an earlier report that this one could not draw
        if entry.key not in written:
            (out / entry.file).unlink(missing_ok=True)
    return Report(target.report, written, notes)


def _devices(runs: list[Run]) -> str:
    return "; ".join(sorted({f"{r.config.get('device', '?')}, {r.config.get('precision', '?')}" for r in runs}))


def figure_lines(data: ReportData, written: dict[str, Path], out: Path, where: str) -> list[str]:
    """The markdown of the figures drawn for one section: each linked, with its caption."""
    md = []
    for entry in FIGURES:
        if entry.where == where and entry.key in written:
            md += [f"![{entry.key}]({_link(written[entry.key], out)})", "", f"*{entry.caption_for(data)}*", ""]
    return md


def render(data: ReportData, written: dict[str, Path], notes: list[str], out: Path, cost=None,
           gallery_notes: list[str] | None = None) -> str:
    """report.md: what was run and its caveats, the table and its reading, which
    differences are real, the cost, the figures."""
    runs, summary, analysis = data.runs, data.summary, data.analysis
    title = " vs ".join(code(r.name) for r in runs)
    md = [f"# Colorbench report: {title}", ""]
    for run in runs:
        if len(runs) > 1:
            md += [f"### Run {code(run.name)} ([metrics.csv]({_link(run.folder.metrics, out)}))", ""]
        md += prose.run_header(run) + [""]
    if notes:
        md += ["**Caveats**", ""] + [f"- {n}" for n in notes] + [""]
    improving = still_improving(data.curves, data.curve_metrics) if len(data.curves) else []
    md += results_section(summary, out, analysis, improving)
    md += [f"**Every val photo**, each combination's colour beside the input and the truth, sortable by any "
           f"per-image score or by the paired difference of two combinations: "
           f"[gallery.html]({_link(RunFolder(out).gallery_page, out)}) (opens from the file system; click an "
           "image to enlarge it).", ""] + [f"*{n}.*" for n in (gallery_notes or [])] + ([""] if gallery_notes else [])
    if analysis is not None:
        md += prose.section(analysis, summary, figure_lines(data, written, out, "differences")) + protocol_section(runs)
    md += cost_section(runs, training_cost(runs) if cost is None else cost)
    figures = figure_lines(data, written, out, "figures")
    md += (["## Figures", ""] + figures) if figures else []
    sources = ", ".join("this folder" if r.path.resolve() == out.resolve() else f"{code(_rel(r.path, out))}" for r in runs)
    md += ["---", "", f"Made by `bench report` from {sources}.", ""]
    return "\n".join(md)


def results_section(summary: pd.DataFrame, out: Path, analysis: paired.Analysis | None,
                    improving: list[str]) -> list[str]:
    winners, standing = prose.reading(summary, analysis.pairwise if analysis is not None else None)
    seeds = int(summary["seeds_total"].max()) if len(summary) else 0
    spread = "mean ± sample std over seeds" if seeds > 1 else "one seed"
    tested = analysis is not None and not analysis.empty
    several_sets = summary.loc[summary.combination == GRAY, "photo_set"].nunique() > 1
    return [
        "## Results", "",
        f"Val scores ({spread}); ↑ higher is better, ↓ lower is better, no arrow: descriptive (read it against "
        f"{code(TRUTH)}'s, never ranked); **bold**: best of the ranked rows and gray in the column (a row marked "
        "*not ranked* never is, and a column without a ranked row bolds nothing; the caveats say why)"
        + ("; rows are ranked only against rows scored on the same val photos" if several_sets else "") + ". "
        f"{code(GRAY)} is the input itself (ab = 0), the floor every model should clear."
        + (f" {code(TRUTH)} scores the val photos themselves: a reference, never ranked."
           if (summary.combination == TRUTH).any() else ""), "",
        markdown_table(summary), "",
        metric_legend(summary), "",
        f"The same numbers as tidy CSV: [summary.csv]({_link(RunFolder(out).summary, out)}); this table and "
        f"the others below as LaTeX (booktabs) for a paper: [table.tex]({_link(RunFolder(out).latex, out)}).", "",
        "## Reading the results", "",
        " ".join(winners), "",
        *(["Each combination against gray, as gains in each metric's own direction (positive = "
           "better, so a lower ↓ metric shows as +)"
           + ("; which of them are real differences is tested below" if tested else "") + ":", ""] if standing else []),
        *(f"- {line}" for line in standing), "",
        *([f"Along training (the curve figure below; a change is said where it exceeds {IMPROVING:.0%}): "
           + " ".join(improving), ""] if improving else []),
    ]


def cost_section(runs: list[Run], cost) -> list[str]:
    """What each combination's training cost (``bench.report.summary.training_cost``)."""
    if not cost:
        return []
    notes = prose.cost_notes(runs, cost)
    return [
        "## Cost", "",
        f"What each combination's training costs ({_devices(runs)}): the median wall time of a step after "
        "warm-up, and the whole cell's training (mean over seeds; scoring not "
        "included). Compare combinations of one run, on one machine.", "",
        "| combination | median step | training per cell | × cheapest step |", "| --- | ---: | ---: | ---: |",
        *(f"| {cell(c.label)} | {c.step * 1000:.0f} ms | {prose.duration(c.whole)} | {c.ratio:.1f}× |" for c in cost), "",
        *(f"*{n}.*" for n in notes), *([""] if notes else []),
    ]
