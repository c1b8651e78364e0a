"""Reading a finished run folder back: its config, scores, cells and val photos.

``bench report`` and ``bench colorize`` both start from a run folder that ``bench run``
wrote; where each file lives is ``bench.folder``'s business.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.folder import BASELINES, GRAY, METRICS, TRUTH, RunFolder
from bench.records import RecordError, read_cell_record, read_config, read_metrics_csv, reconcile_metrics

__all__ = ["BASELINES", "GRAY", "TRUTH", "Run", "RunFolderError", "load_run"]  # the baselines' names: bench.folder


class RunFolderError(ValueError):
    """A run folder that cannot be read; the message names the path and the fix."""


@dataclass
class Run:
    path: Path
    config: dict
    metrics: pd.DataFrame
    # What was wrong with the folder's files and how it was handled (a short metrics.csv
    # rebuilt from the cells' records...): the report lists these as caveats.
    problems: list[str] = field(default_factory=list)

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def combinations(self) -> list[dict]:
        """``[{spec, name, tags}]`` in the order given to ``--losses``."""
        return self.config.get("combinations", [])

    @property
    def combination_names(self) -> list[str]:
        return [c["name"] for c in self.combinations]

    @property
    def options(self) -> dict:
        return self.config.get("options", {})

    @property
    def seeds(self) -> list[int]:
        return list(self.options.get("seeds", [0]))

    def cell(self, combination: str, seed: int) -> Path:
        return self.folder.cell(combination, seed).path

    def cell_record(self, combination: str, seed: int) -> dict | None:
        """The cell's metrics.json (status, scores, training seconds); None until it finished
        (or when it is damaged: ``load_run`` lists that among the run's problems)."""
        record = self.folder.cell(combination, seed).record
        try:
            return read_cell_record(record) if record.is_file() else None
        except RecordError:
            return None


def load_run(path: str | Path) -> Run:
    """A run folder, its files checked: a damaged config.json is an error naming the fix;
    metrics.csv is checked against the cells' own records, which win (see ``_check_table``)."""
    path = Path(path)
    folder = RunFolder(path)
    for needed in (folder.config, folder.metrics):
        if not needed.is_file():
            raise RunFolderError(
                f"{needed} not found: {path} is not a finished `bench run` folder; "
                "pass the folder given to (or printed by) `bench run --out`"
            )
    try:
        config = read_config(folder.config)
    except RecordError as exc:
        raise RunFolderError(str(exc)) from None
    frame, csv_problems = read_metrics_csv(folder.metrics)
    run = Run(path, config, frame)
    run.metrics, run.problems = _check_table(run, csv_problems)
    return run


def _check_table(run: Run, csv_problems: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """metrics.csv against the cells' metrics.json: a short, damaged or edited table is
    rebuilt from the records, and every such repair becomes a caveat."""
    records, unreadable, problems = {}, set(), []
    for combination in run.combination_names:
        for seed in run.seeds:
            path = run.folder.cell(combination, seed).record
            if not path.is_file():
                continue
            try:
                records[(combination, seed)] = read_cell_record(path)
            except RecordError as exc:
                unreadable.add((combination, seed))
                problems.append(f"{exc} (until then the cell is left out of the table)")
    frame, fixed = reconcile_metrics(run.metrics, records, unreadable, BASELINES)
    rerun = "rerun `bench run` with the same options and --out to rewrite it (finished cells are kept)"
    where = run.folder.metrics
    if csv_problems or fixed["missing"]:
        what = "; ".join(csv_problems) or "rows of finished cells are missing"
        problems.append(f"{where} is damaged or cut short ({what}): the rows of "
                        f"{len(records)} finished cell(s) were read from their own metrics.json; {rerun}")
    if fixed["differing"]:
        problems.append(f"{where} disagreed with the cells' own records for {', '.join(fixed['differing'])}: "
                        f"the records' numbers are shown; {rerun}")
    if fixed["orphaned"]:
        problems.append(f"{where} has rows for {', '.join(fixed['orphaned'])}, which have no readable "
                        "metrics.json (not finished, or deleted to retrain): left out")
    if GRAY not in set(frame.combination) and records:
        problems.append(f"the `gray` baseline is missing: its rows live only in {where}; rerun `bench run` with the "
                        "same options and --out to score it again (finished cells are kept)")
    return frame, problems


def newest_run(root: str | Path = "results") -> Path:
    """The most recently written run folder under ``root`` (by its metrics.csv)."""
    root = Path(root)
    runs = [RunFolder(p.parent) for p in root.glob(f"*/{METRICS}")]
    if not runs:
        raise RunFolderError(
            f"no run found under {root}/ (no */{METRICS}); run `bench run` first or pass RUN_DIR"
        )
    return max(runs, key=lambda f: f.metrics.stat().st_mtime).path


def resolve_combination(run: Run, loss: str) -> str:
    """A combination's name from its name or its ``--losses`` spec (``perceptual`` finds
    ``perceptual[random-vgg]``)."""
    for c in run.combinations:
        if loss in (c["name"], c["spec"]):
            return c["name"]
    canonical = _canonical(loss)  # `gan+100*l1` finds `100*l1+gan`
    for c in run.combinations:
        if canonical is not None and _canonical(c["spec"]) == canonical:
            return c["name"]
    known = ", ".join(c["name"] for c in run.combinations)
    raise RunFolderError(f"--loss {loss!r} is not a combination of {run.path}; choose one of: {known}")


def check_report_out(runs: list[Run], out: Path, overwrite: bool = False) -> None:
    """Refuse to write a report over another run's report, or over a report on other runs,
    unless ``overwrite``: ``bench report A --out B``, B being another run, would replace
    B's report.md, summary.csv and figures."""
    import os

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
            previous = set(pd.read_csv(target.summary, usecols=["run"])["run"].astype(str))
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
            previous = set()
        from colorbench_datasets.images import display_name

        if previous != {display_name(r.name) for r in runs}:  # as summary.csv writes names
            raise RunFolderError(f"--out {out} holds a report on other runs ({', '.join(sorted(previous)) or 'unknown'}), "
                                 f"not on {names}; {fix}")
    elif target.report.is_file():
        raise RunFolderError(f"--out {out} holds a report.md that `bench report` did not write for {names}; {fix}")


def _canonical(spec: str) -> str | None:
    from losses import parse_combination

    try:
        return parse_combination(spec).spec
    except ValueError:
        return None


def generator_path(run: Run, combination: str, seed: int) -> Path:
    if seed not in run.seeds:
        raise RunFolderError(
            f"--seed {seed} was not trained in {run.path}; choose one of: {', '.join(map(str, run.seeds))}"
        )
    path = run.folder.cell(combination, seed).generator
    if not path.is_file():
        why = (run.cell_record(combination, seed) or {}).get("status", "unfinished")
        raise RunFolderError(
            f"{path} not found ({combination} seed {seed} is {why}); pick another --loss/--seed, "
            "or finish the run by rerunning `bench run` with the same --out"
        )
    return path


def run_sources(run: Run):
    """The run's photo sources, located from config.json as ``bench run`` located them."""
    from colorbench_datasets import resolve_sources

    o = run.options
    return resolve_sources(
        o.get("data"), o.get("val_data"), o.get("dataset"), size=int(o["size"]), data_root=o.get("data_root"),
    )


def val_sources(run: Run):
    """The run's val photos as ``(name, opener)`` items; the openers give the original,
    full-resolution photos."""
    return run_sources(run).val


def load_val_split(run: Run):
    """The run's val split exactly as it was scored (same size, resize mode, crop and
    skips); a named dataset's cached split is reused, not rebuilt."""
    from colorbench_datasets.tensors import build_split

    sources = run_sources(run)
    size, workers = int(run.options["size"]), int(run.options.get("workers", 2))
    if sources.cache is not None:
        from colorbench_datasets.cache import build_cache

        split, _ = build_cache(sources.val, size, False, sources.cache, sources.resize, workers)
    else:
        split, _ = build_split(sources.val, size, False, workers, None, sources.resize)
    return split
