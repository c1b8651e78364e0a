"""``bench run`` as a library call: every (combination, seed) cell, trained and scored."""
from __future__ import annotations

import logging
import os
import platform
import signal
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from bench.cells import check_cells, discard_run
from bench.config import (
    IDENTITY_FIELDS, OPTIONS_ADDED_LATER, LaunchConfig, RunConfig, cell_threads, changed_options, resolve_device,
    resolve_precision, validate,
)
from bench.evaluate import Scorer, generator_record
from bench.folder import GRAY, TRUTH, CellFolder, RunFolder
from bench.lock import holds_run_lock, job_name, taking_turns
from bench.records import cells_in_order, read_config, record_rows
from bench.per_image import write_baseline_scores, write_cell_scores
from bench.protocol import metric_protocol
from bench.results import metrics_frame, read_json, write_csv, write_json, atomic_torch_save
from bench.train import CorruptCheckpoint, Interrupted, TrainSettings, total_steps, train_cell
from colorbench_datasets import load_data
from losses import Combination, LossOptions, parse_losses, weights_tags
from models.metric_nets import load_metric_nets
from models.pretrained import WeightsUnavailable

log = logging.getLogger("colorbench")


class RunError(ValueError):
    """A run that cannot start; the message names the option and the fix."""


class RunInterrupted(Exception):
    """Ctrl-C: the current cell's state is saved; rerunning the same command resumes."""

    def __init__(self, out: Path):
        self.out = out
        super().__init__(f"interrupted; finished cells and the current cell's checkpoint are in {out}")


class StopOnSigint:
    """First Ctrl-C asks training to stop at the next step boundary (after saving);
    a second one aborts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("\nCtrl-C: saving and stopping after this step (press again to abort now).")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def set_determinism(deterministic: bool, device: torch.device) -> None:
    """``--deterministic``: bitwise-repeatable GPU runs at some speed cost. CPU runs are
    repeatable either way; on GPU, cuDNN autotuning and atomics-based kernels otherwise
    make results vary in the last bits."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "lpips", "pytorch-fid", "scikit-image", "numpy", "pandas", "colorbench"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def tag_combinations(combos: list[Combination], options: LossOptions) -> list[Combination]:
    """The combinations with any weights caveat (``random-vgg``) in their names; the losses
    that declare pretrained weights load them once here, before any training."""
    tags = weights_tags([t.name for c in combos for t in c.terms], options)
    return [c.tagged(tags) for c in combos]


def check_reuse(out: Path, recorded: dict, cfg: RunConfig) -> None:
    """Refuse to mix results of two different configurations in one --out (``recorded``:
    its config.json)."""
    old = {**OPTIONS_ADDED_LATER, **recorded["options"]}
    new = cfg.to_dict()
    diff = changed_options(old, new, IDENTITY_FIELDS)  # paths resolved, combinations canonical
    if diff:
        changes = ", ".join(
            f"--{k.replace('_', '-')}: {old.get(k)!r}{'' if k in recorded['options'] else ' (before the option existed)'} "
            f"-> {new.get(k)!r}"
            for k in diff
        )
        raise RunError(
            f"{out} holds a run with other options ({changes}); use another --out, "
            "or --overwrite to discard it"
        )


def check_numerics(out: Path, recorded: dict, precision: str, device: torch.device) -> None:
    """Refuse to add cells trained in another precision or on another kind of device to a
    run: ``--precision auto`` resolves per machine (bf16 on a CPU with AVX512-BF16, fp32 on
    one without), and a table mixing the two compares numerics, not losses."""
    was = (recorded.get("precision"), str(recorded.get("device", "")).split(":")[0])
    now = (precision, device.type)
    if was[0] is not None and was != now:
        raise RunError(
            f"{out} was trained in {was[0]} on {was[1] or '?'}, and this run would train in {now[0]} on {now[1]} "
            f"(--precision {'auto resolves differently on this machine' if was[0] != now[0] else 'is the same'}); "
            f"one table must not mix them. Rerun with --precision {was[0]}"
            + (f" --device {was[1]}" if was[1] != now[1] else "") + " to continue it, or use another --out"
        )


def check_cell_numerics(path: Path, record: dict, precision: str, device: torch.device) -> None:
    """A finished cell kept in the table must have been trained as the rest will be."""
    was = (record.get("precision", precision), record.get("device", device.type))
    if was != (precision, device.type):
        raise RunError(
            f"{path} was trained in {was[0]} on {was[1]}, this run trains in {precision} on {device.type}; "
            f"one table must not mix them. Rerun with --precision {was[0]} --device {was[1]}, or delete that "
            "cell's folder to retrain it"
        )


def load_weights(combos: list[Combination], options: LossOptions, device: torch.device, strict: bool):
    """The losses' and metrics' pretrained networks, each missing file said in one line:
    ``(combinations with their weights caveats, metric networks)``."""
    try:
        combos = tag_combinations(combos, options)
        # LPIPS's and FID's networks: loaded once per run, not once per cell.
        return combos, load_metric_nets(device, strict=strict)
    except WeightsUnavailable as exc:
        raise RunError(f"--strict-weights: {exc}") from None


@dataclass
class Plan:
    """What a run will do, settled before any photo is loaded or file written."""

    cfg: RunConfig
    combos: list[Combination]
    device: torch.device
    precision: str
    folder: RunFolder
    options: LossOptions


def plan_run(cfg: RunConfig, overwrite: bool, launch: LaunchConfig | None = None) -> Plan:
    """Every option checked, the device and precision resolved, and an existing --out
    checked against them: nothing is loaded or written yet."""
    validate(cfg, launch)  # every option, the losses spec included
    remote = launch is not None and launch.launcher == "slurm"
    device = job_device(cfg.device) if remote else resolve_device(cfg.device)
    precision = job_precision(cfg.precision, device) if remote else resolve_precision(cfg.precision, device)
    folder = RunFolder(cfg.out)
    if not overwrite and folder.config.is_file():
        recorded = read_config(folder.config)  # a damaged config.json: RecordError naming the fix
        check_reuse(folder.path, recorded, cfg)
        check_numerics(folder.path, recorded, precision, device)
    return Plan(cfg, parse_losses(cfg.losses), device, precision, folder, cfg.loss_options(device))


def job_device(requested: str) -> torch.device:
    """The device of a SLURM job's cells, decided on a login node that may have no GPU:
    ``auto`` and ``cuda`` are a GPU (the jobs ask SLURM for one), ``cpu`` is a CPU."""
    return torch.device("cpu" if requested == "cpu" else requested if requested.startswith("cuda") else "cuda")


def job_precision(requested: str, device: torch.device) -> str:
    """``--precision auto`` for jobs on another machine: bf16 on a GPU (every GPU since
    Ampere runs it natively; a job on an older one refuses to start and names --precision
    fp16), the CPU rule otherwise. Each cell records what it trained in."""
    if requested == "auto" and device.type == "cuda":
        return "bf16"
    return resolve_precision(requested, device) if device.type == "cpu" else requested


def load_photos(plan: Plan, progress: bool):
    """The train and val splits, checked against the batch size; and how long they took."""
    cfg = plan.cfg
    started = time.perf_counter()
    bar = partial(tqdm, desc="Loading photos", unit="img", leave=False, dynamic_ncols=True) if progress else None
    data = load_data(
        cfg.data, cfg.val_data, cfg.dataset, cfg.size, workers=cfg.workers, progress=bar, data_root=cfg.data_root
    )
    if cfg.batch_size > len(data.train):
        raise RunError(
            f"--batch-size {cfg.batch_size} is larger than the {len(data.train)} training images; "
            f"use --batch-size {len(data.train)} or less, or add photos"
        )
    return data, time.perf_counter() - started


def start_config(plan: Plan, data, steps: int, scorer: Scorer, gray: dict, launch: LaunchConfig) -> dict:
    """config.json as the run starts: every resolved option, the machine, the photos, how
    the cells run, and the baselines' scores (the jobs assemble metrics.csv from it)."""
    device = plan.device
    return {
        "options": plan.cfg.to_dict(),
        "launch": launch.to_dict(),
        "world_size": launch.gpus_per_cell,  # processes per cell (per-rank BatchNorm statistics on a CPU)
        "combinations": [{"spec": c.spec, "name": c.name, "tags": c.tags} for c in plan.combos],
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda" and torch.cuda.is_available()
                        else platform.processor() or platform.machine()),
        "precision": plan.precision,
        "threads": cell_threads(launch),  # per cell (per process): a CPU's last bits depend on it
        "versions": package_versions(),
        "data": data.manifest,
        "steps_per_cell": steps,
        "started": datetime.now().isoformat(timespec="seconds"),
        "ground_truth": scorer.ground_truth(),
        "gray": gray, "metric_notes": scorer.notes,
        "protocol": metric_protocol(scorer, data.manifest, plan.cfg.size),
    }


def baseline_rows(config: dict) -> list[dict]:
    """metrics.csv's rows for ``gray`` (the input itself) and the val photos' own values,
    one per seed so that means over seeds line up with the models'."""
    seeds, notes = config["options"]["seeds"], config.get("metric_notes", {})
    rows = [{"combination": GRAY, "seed": s, "metric": m, "value": v, "note": notes.get(m, "")}
            for s in seeds for m, v in config["gray"].items()]
    return rows + [{"combination": TRUTH, "seed": s, "metric": m, "value": v, "note": "the val photos themselves"}
                   for s in seeds for m, v in config["ground_truth"].items()]


def assemble_metrics(folder: RunFolder, config: dict) -> bool:
    """Rewrite metrics.csv from config.json's baselines and every finished cell's record, in
    the run's order (seeds, then combinations) whoever finished them: a parallel run's table
    is the serial run's, row for row. Returns whether every cell is in it.

    Jobs finishing together each rewrite it; they take turns on a lock, and each reads the
    records under it, so the last to write has seen every cell finished before it."""
    rows, complete = baseline_rows(config), True
    with taking_turns(folder.metrics_lock):  # a rewrite takes milliseconds
        for name, seed in cells_in_order(config):
            cell = folder.cell(name, seed)
            if cell.is_done():
                rows += record_rows(read_json(cell.record))
            else:
                complete = False
        write_csv(folder.metrics, metrics_frame(rows))
    return complete


@holds_run_lock  # one process plans and assembles a run folder at a time (bench/lock.py)
def run_benchmark(cfg: RunConfig, progress: bool = True, overwrite: bool = False,
                  launch: LaunchConfig | None = None) -> Path:
    """Train and score every cell of ``cfg``; returns the run folder. Finished cells of an
    earlier run in the same ``--out`` are kept, an unfinished one resumes. ``launch`` says
    how the cells run (bench/launch.py): in this process by default."""
    launch = launch or LaunchConfig()
    started = time.perf_counter()
    run = prepare_run(cfg, launch, progress, overwrite)
    folder, config = run.plan.folder, run.config
    if launch.launcher == "serial" and launch.gpus_per_cell == 1:
        with torch_threads(config["threads"]):
            run_cells(run, progress)
    else:
        from bench.launch import launch_cells

        if not launch_cells(folder, config, launch, progress):
            return folder.path  # --no-wait: the jobs finish it
    assemble_metrics(folder, config)
    config |= {"finished": datetime.now().isoformat(timespec="seconds"),
               "wall_seconds": round(time.perf_counter() - started, 1), "data_seconds": round(run.data_seconds, 2)}
    write_json(folder.config, config)
    return folder.path


@dataclass
class PreparedRun:
    """A run ready to train its cells: its plan, photos, scorer and config.json as written."""

    plan: Plan
    data: object
    data_seconds: float
    scorer: Scorer
    settings: TrainSettings
    config: dict


def prepare_run(cfg: RunConfig, launch: LaunchConfig, progress: bool, overwrite: bool) -> PreparedRun:
    """Everything before the first cell trains: options, photos and weights checked, kept
    cells checked against the photos, config.json and the baselines' scores written."""
    plan = plan_run(cfg, overwrite, launch)
    # Where this process loads weights and scores gray: the jobs' device, unless they run on
    # other machines (SLURM) and this one has no GPU.
    here = plan.device if plan.device.type == "cpu" or torch.cuda.is_available() else torch.device("cpu")
    # --strict-weights fails in seconds, before the photos load; otherwise the options and
    # the photos are checked first, so a typo is not buried under weights warnings.
    nets = None
    if cfg.strict_weights:
        plan.combos, nets = load_weights(plan.combos, cfg.loss_options(here), here, strict=True)
    data, data_seconds = load_photos(plan, progress)
    settings = cfg.train_settings(plan.precision)
    steps = total_steps(settings, len(data.train))
    log.info(
        "Data: %s — %d train / %d val images at %d px (%.1fs to load); %d steps of %d per cell (%.1f passes)",
        data.manifest["source"], len(data.train), len(data.val), cfg.size, data_seconds,
        steps, cfg.batch_size, steps * cfg.batch_size / len(data.train),
    )
    if nets is None:
        plan.combos, nets = load_weights(plan.combos, cfg.loss_options(here), here, strict=False)
    check_cells(plan.folder.path, plan.combos, cfg.seeds, data.manifest, overwrite)  # kept cells: same photos
    # Only now, with options, weights and data known good, is anything written: a run that
    # fails before training leaves no empty run folder behind.
    plan.folder.path.mkdir(parents=True, exist_ok=True)
    if overwrite:
        discard_run(plan.folder.path)  # every file of the old run, report and figures included
    set_determinism(cfg.deterministic, plan.device)
    scorer = Scorer.for_split(data.val.to(here), nets, cfg.eval_batch_size)
    gray = scorer.gray_scores()
    write_baseline_scores(plan.folder.path, scorer, gray)  # per-image scores for paired statistics
    config = start_config(plan, data, steps, scorer, gray.means, launch)
    write_json(plan.folder.config, config)
    assemble_metrics(plan.folder, config)  # the baselines and any kept cells, before the first cell trains
    return PreparedRun(plan, data, data_seconds, scorer, settings, config)


@contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to ``n`` for a block (a library call leaves them as it
    found them)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_cells(run: PreparedRun, progress: bool) -> None:
    """Every (seed, combination) cell in this process: a finished cell is kept, an unfinished
    one trained (or resumed) and scored. metrics.csv is rewritten after each, so a killed
    run leaves the table of what it finished."""
    plan, config = run.plan, run.config
    train = run.data.train.to(plan.device)
    with StopOnSigint() as stop:
        for seed in plan.cfg.seeds:
            for combo in plan.combos:
                cell = plan.folder.cell(combo.name, seed)
                if cell.is_done():
                    check_cell_numerics(cell.record, read_json(cell.record), plan.precision, plan.device)
                    log.info("%-28s seed %d: already done, kept", combo.name, seed)
                    continue
                with cell.lock():  # a job of an earlier --no-wait launch may be training it
                    try:
                        run_cell(combo, seed, train, run.scorer, run.settings, plan.options, plan.device, cell,
                                 progress, stop, data=run.data.manifest["fingerprint"])
                    except Interrupted:
                        raise RunInterrupted(plan.folder.path) from None
                    except CorruptCheckpoint as exc:
                        raise RunError(str(exc)) from None
                assemble_metrics(plan.folder, config)


# Steps timed before the median: the first steps pay for allocation, oneDNN's kernel choice
# and cuDNN's autotuning, and are not what a step costs.
WARMUP_STEPS = 5


def step_time(log: list[dict]) -> dict:
    """The median step time after warm-up (at most half the steps), and how many steps it
    is over."""
    timed = [r["seconds"] for r in log[min(WARMUP_STEPS, len(log) // 2):] if r.get("seconds") is not None]
    return {"step_seconds": round(statistics.median(timed), 4) if timed else None, "timed_steps": len(timed)}


def run_cell(combo, seed, train_split, scorer: Scorer, settings, options, device, cell: CellFolder, progress: bool,
             stop=lambda: False, data: dict | None = None, dist=None) -> dict | None:
    """Train (or resume) and score one cell; its files are written, its record returned.
    ``dist``: this process is one rank of a data-parallel cell (bench/distributed.py); the
    other ranks only train, and return None."""
    main_rank = dist is None or dist.is_main
    if main_rank:
        cell.path.mkdir(parents=True, exist_ok=True)
        if cell.checkpoint.is_file():
            log.info("%-28s seed %d: resuming from its checkpoint", combo.name, seed)
    result = train_cell(
        combo, seed, train_split, settings, options, device,
        checkpoint=cell.checkpoint, progress=progress and main_rank, desc=f"{combo.name} s{seed}", should_stop=stop,
        dist=dist,
    )
    if not main_rank:
        return None
    write_csv(cell.train_log, pd.DataFrame(result.log))
    record = {
        "combination": combo.name, "spec": combo.spec, "seed": seed, "seconds": round(result.seconds, 2),
        "steps": len(result.log), **step_time(result.log),
        # what the numbers were computed in: one table never mixes them (check_numerics); the
        # threads and processes change only the last bits, and are recorded
        "precision": settings.precision, "device": device.type, "threads": torch.get_num_threads(),
        "world_size": dist.world_size if dist is not None else 1, "job": job_name(), "host": platform.node(),
        # the photos it was trained and scored on: a rerun keeps the cell only for the same
        "data": data,
    }
    if result.diverged_at is not None:
        log.warning("%s seed %d diverged at step %d (non-finite loss); moving on", combo.name, seed, result.diverged_at)
        record |= {"status": "diverged", "diverged_at": result.diverged_at, "metrics": {}}
    else:
        atomic_torch_save(cell.generator, generator_record(result.generator, settings, combo.name, seed))
        scores = scorer.generator_scores(result.generator)
        write_cell_scores(cell.path, combo.name, seed, scorer, scores)  # per-image scores, before the record marks it done
        record |= {"status": "ok", "diverged_at": None, "metrics": scores.means, "notes": scorer.notes}
        log.info(
            "%-28s seed %d: %s (%.0fs)", combo.name, seed,
            ", ".join(f"{k} {v:.4g}" for k, v in scores.means.items() if v == v), result.seconds,  # v == v: not NaN
        )
    write_json(cell.record, record)
    cell.checkpoint.unlink(missing_ok=True)
    return record
