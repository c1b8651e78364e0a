"""Reading a run folder's own files back, never trusting them blindly.

Every file Colorbench reads back (config.json, each cell's metrics.json, metrics.csv,
train_log.csv) may have been cut short by a full disk, edited by hand or damaged. Each
reader checks what it needs and raises ``RecordError`` naming the file and the fix, instead
of a KeyError or a pandas traceback three calls later. The cells' own ``metrics.json`` are
the source of truth for their scores; ``metrics.csv`` is the convenient table built from
them (plus the gray and ground-truth rows) and is checked against them
(``reconcile_metrics``).
"""
from __future__ import annotations

import io
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config.plugins import (
    PluginError,
    declaration_changes,
    load_plugins,
    plugin_changes,
    plugins_for_reading,
)
from bench.escape import code
from bench.rundir.layout import (
    BASELINES,
    GRAY,
    METRICS,
    METRICS_COLUMNS,
    TRUTH,
    RunFolder,
    is_within,
)

log = logging.getLogger("colorbench")


def read_json(path: Path):
    """Reads ``null`` and, from runs written before it, bare ``NaN`` alike."""
    return json.loads(Path(path).read_text())


# Columns of the tidy tables that hold names (a user's colorizer, run or photo): read as
# written, so a colorizer named ``NA``, ``null`` or ``None`` stays a name and is never a
# missing value; only the number columns take pandas' spellings of a missing number.
TEXT_COLUMNS = ("combination", "image", "metric", "note", "run", "kind")
MISSING_NUMBER = ["", "nan", "NaN", "NA", "N/A", "null", "None", "<NA>", "-nan"]


def read_tidy_csv(source, **options) -> pd.DataFrame:
    """A tidy CSV that Colorbench wrote (metrics.csv, per-image scores, curves, summaries)."""
    return pd.read_csv(source, dtype=dict.fromkeys(TEXT_COLUMNS, str), keep_default_na=False,
                       na_values={c: MISSING_NUMBER for c in ("seed", "value", "step")}, **options)


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """A run's metrics.csv as a tidy frame (``read_metrics_csv``, its problems left aside)."""
    return read_metrics_csv(RunFolder(run_dir).metrics)[0]


class RecordError(ValueError):
    """A damaged or foreign results file; the message names it and the fix."""


def read_json_file(path: Path, fix: str):
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path} is not valid JSON ({str(exc).splitlines()[0][:120]}: damaged or cut short); {fix}") from None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def config_fix(folder: Path) -> str:
    return (f"restore it, or discard the run by rerunning `bench run` with its options and "
            f"`--out {folder} --overwrite` (or use another --out)")


def config_problem(config) -> str | None:
    """What makes ``config`` (a parsed config.json) unusable, or None."""
    if not isinstance(config, dict):
        return f"it holds a JSON {type(config).__name__}, not the object `bench run` writes"
    options = config.get("options")
    if not isinstance(options, dict):
        return "it has no 'options' object"
    combos = config.get("combinations")
    if not isinstance(combos, list) or not all(
        isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("spec"), str) for c in combos
    ):
        return "its 'combinations' is not a list of {spec, name} objects"
    for key in ("size", "width", "epochs", "steps", "batch_size", "workers"):
        if key in ("epochs", "steps") and options.get(key) is None:
            continue  # a cell trains for epochs or for steps: one of the two is unset
        if key in options and not (_int(options[key]) and options[key] >= (0 if key == "workers" else 1)):
            return f"options.{key} is {options[key]!r}, not a positive whole number"
    seeds = options.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(_int(s) for s in seeds):
        return f"options.seeds is {seeds!r}, not a list of whole numbers"
    for key in ("data", "val_data", "dataset", "data_root"):
        if options.get(key) is not None and not isinstance(options[key], str):
            return f"options.{key} is {options[key]!r}, not a path or name"
    if "data" in config and not isinstance(config["data"], dict):
        return "its 'data' manifest is not an object"
    return None


def read_config(path: Path) -> dict:
    """A run's config.json, checked: an object with ``options`` and ``combinations``."""
    path = Path(path)
    if not path.exists():
        what = "does not exist" if not path.parent.exists() else "has no config.json"
        raise RecordError(f"{path.parent} {what}: it is not a `bench run` folder; pass the folder given to "
                          "(or printed by) `bench run --out`")
    fix = config_fix(path.parent)
    config = read_json_file(path, fix)
    problem = config_problem(config)
    if problem:
        raise RecordError(f"{path} is not a usable `bench run` config.json: {problem}; {fix}")
    return config


def external_entries(config: dict) -> list[dict]:
    """config.json's outside colorizers, those well formed (a name and a folder)."""
    entries = config.get("external")
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str) and e["name"]]


def cells_in_order(config: dict) -> list[tuple[str, int]]:
    """Every (combination, seed) cell of a run (its config.json), in the run's order: seeds,
    then combinations. metrics.csv's rows, the jobs' queue and `bench status` follow it."""
    return [(c["name"], seed) for seed in config["options"]["seeds"] for c in config["combinations"]]


def cell_fix(cell: Path) -> str:
    return f"delete the folder {cell} and rerun `bench run` with the same options and --out to train that cell again"


def record_problem(record) -> str | None:
    if not isinstance(record, dict):
        return f"it holds a JSON {type(record).__name__}, not an object"
    if record.get("status") not in ("ok", "diverged"):
        return f"its status is {record.get('status')!r}, not 'ok' or 'diverged'"
    if not isinstance(record.get("combination"), str) or not _int(record.get("seed")):
        return "it lacks the cell's combination or seed"
    metrics = record.get("metrics")
    if not isinstance(metrics, dict):
        return "it has no 'metrics' object"
    bad = [k for k, v in metrics.items() if v is not None and not _number(v)]
    if bad:
        return f"metric {bad[0]!r} is {metrics[bad[0]]!r}, not a number"
    notes = record.get("notes", {})
    if not isinstance(notes, dict) or not all(isinstance(v, str) for v in notes.values()):
        return "its 'notes' is not an object of texts"
    if record["status"] == "diverged" and not _int(record.get("diverged_at")):
        return "a diverged cell without the step it diverged at"
    if record.get("seconds") is not None and not _number(record["seconds"]):
        return f"its training time is {record['seconds']!r}, not a number"
    if "data" in record and not isinstance(record["data"], dict):
        return "its 'data' record is not an object"
    return None


def read_cell_record(path: Path) -> dict:
    """A cell's metrics.json, checked."""
    path = Path(path)
    record = read_json_file(path, cell_fix(path.parent))
    problem = record_problem(record)
    if problem:
        raise RecordError(f"{path} is not a usable cell record: {problem}; {cell_fix(path.parent)}")
    return record


def run_metric_names(config: dict, table: pd.DataFrame | None = None) -> list[str]:
    """The metrics a run scored, in its order: those of its gray baseline, which every run
    scores first (else, for a folder written by hand, those its metrics.csv names)."""
    if isinstance(config.get("gray"), dict):
        return list(config["gray"])
    return [] if table is None else list(table.metric.unique())


def record_rows(record: dict, metrics: list[str]) -> list[dict]:
    """The metrics.csv rows of a cell record (as ``bench run`` writes them): a diverged cell
    gets one empty row per metric of ``metrics``, with the reason as its note."""
    if record["status"] == "ok":
        values, notes = record["metrics"], record.get("notes", {})
    else:
        values = dict.fromkeys(metrics, math.nan)
        notes = dict.fromkeys(values, f"diverged at step {record['diverged_at']}")
    return [
        {"combination": record["combination"], "seed": record["seed"], "metric": m,
         "value": math.nan if v is None else float(v), "note": notes.get(m, "")}
        for m, v in values.items()
    ]


def external_note(entry: dict) -> str:
    """What metrics.csv and the tables say of an outside colorizer's row: that it scored
    fewer val photos than the run, when it did (``--allow-missing``)."""
    images, of = entry.get("images"), entry.get("of")
    if _int(images) and _int(of) and images < of:
        return f"outside colorizer: {images} of {of} val photos (--allow-missing)"
    return ""


def external_rows(folder: RunFolder, config: dict) -> list[dict]:
    """metrics.csv's rows of the outside colorizers (``bench score``): one per seed and
    metric, like gray's, since their scores do not depend on the seed."""
    rows = []
    for entry in external_entries(config):
        path = folder.external(entry["name"]).record
        if not path.is_file():
            continue
        fix = f"rerun `bench score --run {folder.path}` with {entry['name']}=FOLDER to score it again"
        record = read_json_file(path, fix)
        if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
            raise RecordError(f"{path} is not a usable outside colorizer's record; {fix}")
        notes, note = record.get("notes") or {}, external_note(entry)
        rows += [{"combination": entry["name"], "seed": s, "metric": m, "value": math.nan if v is None else float(v),
                  "note": "; ".join(n for n in (note, notes.get(m, "")) if n)}
                 for s in config["options"]["seeds"] for m, v in record["metrics"].items()]
    return rows


def read_metrics_csv(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """metrics.csv as a tidy frame, and what was wrong with it (empty when nothing). Never
    raises for its content: a damaged table is reported and rebuilt by the caller."""
    path = Path(path)
    empty = pd.DataFrame({c: pd.Series(dtype="float64" if c == "value" else "object") for c in METRICS_COLUMNS})
    text = path.read_bytes().decode("utf-8", "replace")
    problems = []
    if text and not text.endswith("\n"):  # pandas ends every row with a newline: the last one was cut
        text = text[: text.rfind("\n") + 1]
        problems.append("its last line was cut short")
    try:
        frame = read_tidy_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        return empty, problems + [f"it is not a readable CSV table ({str(exc).splitlines()[0][:80]})"]
    missing = [c for c in METRICS_COLUMNS if c not in frame.columns]
    if missing:
        return empty, problems + [f"it lacks the column(s) {', '.join(missing)} of the table `bench run` writes"]
    frame = frame[METRICS_COLUMNS].copy()
    frame["note"] = frame["note"].fillna("")
    seeds = pd.to_numeric(frame["seed"], errors="coerce")
    values = pd.to_numeric(frame["value"], errors="coerce")
    bad_seed = seeds.isna() | (seeds != seeds.round())
    bad_value = values.isna() & frame["value"].notna()
    bad_name = frame["combination"].isna() | frame["metric"].isna()
    if bad_seed.any() or bad_value.any() or bad_name.any():
        n = int((bad_seed | bad_value | bad_name).sum())
        problems.append(f"{n} row(s) hold a non-numeric seed or value, or no name")
    frame["value"] = values
    frame = frame[~(bad_seed | bad_value | bad_name)].copy()
    frame["seed"] = seeds[frame.index].astype(int)
    return frame.reset_index(drop=True), problems


def _same(a: float, b: float) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(np.isclose(a, b, rtol=1e-9, atol=0))
    except TypeError:
        return False


def reconcile_metrics(
    frame: pd.DataFrame, records: dict[tuple[str, int], dict], unreadable: set[tuple[str, int]], baselines,
    metrics: list[str],
) -> tuple[pd.DataFrame, dict[str, list]]:
    """metrics.csv's rows checked against the cells' records (the source of truth).

    Returns the table to use -- every finished cell's rows as its record has them, rows of
    cells without a (readable) record dropped, baseline rows and metrics the records do not
    know kept -- and what was fixed: ``{"missing": [...], "differing": [...], "orphaned": [...]}``
    (lists of "combination seed N" labels)."""
    fixed = {"missing": [], "differing": [], "orphaned": []}
    keep = frame.combination.isin(baselines)
    pieces, dropped = [], False
    for (combo, seed), group in frame[~keep].groupby(["combination", "seed"], sort=False):
        if (combo, seed) not in records:
            dropped = True
            if (combo, seed) not in unreadable:  # those are reported with their file's problem
                fixed["orphaned"].append(f"{code(combo)} seed {seed}")
            continue
        known = set(records[(combo, seed)]["metrics"]) if records[(combo, seed)]["status"] == "ok" else set(group.metric)
        pieces.append(group[~group.metric.isin(known)])  # metrics the record does not have: kept
    for (combo, seed), record in records.items():
        group = frame[(frame.combination == combo) & (frame.seed == seed)]
        names = list(group.metric.unique()) if record["status"] == "diverged" and len(group) else metrics
        rows = pd.DataFrame(record_rows(record, names), columns=METRICS_COLUMNS)
        label = f"{code(combo)} seed {seed}"
        csv = {}
        for r in group.itertuples():
            csv[r.metric] = None if r.metric in csv else (r.value, r.note)  # a metric twice: not trusted
        if any(csv.get(m) is None for m in rows.metric):
            fixed["missing" if any(m not in csv for m in rows.metric) else "differing"].append(label)
        elif any(not _same(csv[r.metric][0], r.value) or csv[r.metric][1] != r.note for r in rows.itertuples()):
            fixed["differing"].append(label)
        pieces.append(rows)
    if not any(fixed.values()) and not dropped:
        return frame, fixed  # nothing to fix: the table exactly as written
    out = pd.concat([frame[keep], *pieces], ignore_index=True) if pieces else frame[keep].reset_index(drop=True)
    out["note"] = out["note"].fillna("")
    return out, fixed


def read_train_log(path: Path) -> pd.DataFrame | None:
    """A cell's train_log.csv, or None (with a warning naming it) if it is damaged."""
    try:
        frame = pd.read_csv(path)
        if "epoch" not in frame.columns or "step" not in frame.columns:
            raise ValueError("no step/epoch columns")
        return frame
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeDecodeError) as exc:
        logging.getLogger("colorbench").warning(
            "%s is damaged (%s): its training curve is left out; delete the cell folder and rerun `bench run` "
            "with the same --out to train it again", path, str(exc).splitlines()[0][:80])
        return None


def read_curve(path: Path) -> pd.DataFrame | None:
    """A cell's curve.csv (step, metric, value), or None (with a warning naming it) if damaged."""
    try:
        frame = read_tidy_csv(path)
        if not {"step", "metric", "value"} <= set(frame.columns):
            raise ValueError("no step/metric/value columns")
        frame["step"], frame["value"] = frame["step"].astype(int), frame["value"].astype(float)
        return frame
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, TypeError, UnicodeDecodeError) as exc:
        logging.getLogger("colorbench").warning(
            "%s is damaged (%s): its val curve is left out of the report; rerun the cell to record it again",
            path, str(exc).splitlines()[0][:80])
        return None


__all__ = ["BASELINES", "GRAY", "TRUTH", "Run", "RunFolderError", "load_run"]  # the baselines' names: bench.rundir.layout


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
        """The trained combinations, in ``--losses`` order."""
        return [c["name"] for c in self.combinations]

    @property
    def externals(self) -> list[dict]:
        """The outside colorizers ``bench score`` added: ``[{name, folder, images, of, ...}]``."""
        return external_entries(self.config)

    @property
    def external_names(self) -> list[str]:
        return [e["name"] for e in self.externals]

    @property
    def row_names(self) -> list[str]:
        """Every scored row but the baselines: the trained combinations, then the outside colorizers."""
        return self.combination_names + [n for n in self.external_names if n not in self.combination_names]

    def seedless(self, combination: str) -> bool:
        """Whether a row's scores do not depend on the seed: gray and the outside colorizers."""
        return combination == GRAY or combination in self.external_names

    def scored_folder(self, combination: str, seed):
        """Where a row's per-image scores and gallery images are: an outside colorizer's
        folder, else the (combination, seed) cell's."""
        if combination in self.external_names:
            return self.folder.external(combination)
        return self.folder.cell(combination, seed)

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
    try:  # the metrics and generators the run registered (not its loss terms: nothing here trains)
        load_plugins(plugins_for_reading(config), recorded_in=folder.config)
    except PluginError as exc:
        raise RunFolderError(str(exc)) from None
    if changed := declaration_changes(config.get("declared"), "metrics"):
        raise RunFolderError(
            f"{path} was scored with metrics declared otherwise than now: {'; '.join(changed)}. Its arrows, ranks "
            f"and verdicts would be read the wrong way; restore the plugin that registers them as it was "
            f"({', '.join(plugins_for_reading(config)) or 'an installed package'}), or score the run again")
    frame, csv_problems = read_metrics_csv(folder.metrics)
    run = Run(path, config, frame)
    run.metrics, run.problems = _check_table(run, csv_problems)
    run.problems += [f"{change} since {path} was made: its numbers are those of the plugin as it was then"
                     for change in plugin_changes(config.get("plugins"))]
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
    # the outside colorizers' rows are kept as written, like the baselines' (their records are not cells)
    frame, fixed = reconcile_metrics(run.metrics, records, unreadable, (*BASELINES, *run.external_names),
                                     run_metric_names(run.config, run.metrics))
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


def refuse_out_in_photos(out: str | Path, run: Run, flag: str = "--out") -> None:
    """Refuse an output folder inside the run's photo folders: what is written there (a
    report's figures, colourised photos) would be read as photos by the next run on them."""
    for key in ("data", "val_data"):
        folder = run.options.get(key)
        if folder and is_within(out, folder):
            raise RunFolderError(f"{flag} {out} is inside the photo folder {folder} of {run.path}: a run on that "
                                 f"folder would take what is written there for photos; choose a {flag} outside it")


def generator_path(run: Run, combination: str, seed: int) -> Path:
    if seed not in run.seeds:
        raise RunFolderError(
            f"--seed {seed} was not trained in {run.path}; choose one of: {', '.join(map(str, run.seeds))}"
        )
    cell = run.folder.cell(combination, seed)
    path, record = cell.generator, run.cell_record(combination, seed)
    if not path.is_file():
        status = (record or {}).get("status", "unfinished")
        if status == "ok":  # a finished cell is kept by a rerun: only a retrain restores its generator
            fix = f"delete the cell folder {cell.path} and rerun `bench run` with the same --out to train it again"
        elif status == "diverged":
            fix = "pick another --loss/--seed (a diverged cell keeps no generator)"
        else:
            fix = "pick another --loss/--seed, or finish the run by rerunning `bench run` with the same --out"
        raise RunFolderError(f"{path} not found ({combination} seed {seed} is {status}); {fix}")
    if record is None:
        log.warning("%s seed %d was trained but not scored (its run stopped while scoring): rerun `bench run` "
                    "with the same --out to score it", combination, seed)
    return path
