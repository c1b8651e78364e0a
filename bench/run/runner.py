"""``bench run`` as a library call: every (combination, seed) cell, trained and scored."""
from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import platform
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import torch

from bench.config.machine import (
    cell_threads,
    gpu_capability,
    job_device,
    job_precision,
    package_versions,
    resolve_device,
    resolve_precision,
    set_determinism,
    torch_threads,
)
from bench.config.options import LaunchConfig, RunConfig, TrainSettings, default_out
from bench.config.validate import RunError, validate
from bench.run.launch import launch_cells
from bench.run.reuse import (
    cells_to_continue,
    check_cell_numerics,
    check_cells,
    check_numerics,
    check_reuse,
    discard_run,
    reopen_cell,
)
from bench.run.stages import (
    Plan,
    assemble_metrics,
    gallery_images,
    identity_changes,
    load_photos,
    load_weights,
    run_cell,
    run_identity,
)
from bench.run.status import duration_words
from bench.run.stop import RunInterrupted, StopOnSignals, stoppable, stoppable_preparation
from bench.run.watch import TENSORBOARD_MISSING, tensorboard_available
from bench.rundir.guard import RUN_MAKER, inspect_out
from bench.rundir.layout import RunFolder
from bench.rundir.lock import RunLock
from bench.rundir.read import external_entries, read_cell_record, read_config, read_json
from bench.rundir.write import write_json
from bench.score.images import GalleryImages, written_alongside
from bench.score.per_image import write_baseline_scores
from bench.score.protocol import metric_protocol
from bench.score.scorer import Scorer
from bench.train.checkpoint import CorruptCheckpoint
from bench.train.loop import Interrupted, total_steps
from losses import parse_losses, release_networks

log = logging.getLogger("colorbench")


def plan_run(cfg: RunConfig, overwrite: bool, launch: LaunchConfig | None = None) -> Plan:
    """Every option checked, the device and precision resolved, and an existing --out
    checked against them: nothing is loaded or written yet."""
    validate(cfg, launch)  # every option, the losses spec included
    remote = launch is not None and launch.launcher == "slurm"
    device = job_device(cfg.device) if remote else resolve_device(cfg.device)
    precision = job_precision(cfg.precision, device) if remote else resolve_precision(cfg.precision, device)
    folder = RunFolder(cfg.out)
    existing = inspect_out(folder.path, RUN_MAKER, overwrite)  # the user's own files are never written over
    if existing.maker not in (None, RUN_MAKER) and not overwrite:
        raise RunError(f"--out {folder} holds a folder made by `{existing.maker}`, not a run to train: choose another "
                       f"--out (`bench score --run {folder}` adds outside colorizers to a run)")
    if not overwrite and folder.config.is_file():
        recorded = read_config(folder.config)  # a damaged config.json: RecordError naming the fix
        continues_from = check_reuse(folder.path, recorded, cfg)
        if changed := identity_changes(recorded):
            raise RunError(f"{folder}: {'; '.join(changed)} since this run was made, so its cells would be "
                           f"{'trained further' if continues_from else 'resumed or kept'} beside code they were not "
                           "made with. Restore the plugin as it was, or use another --out (or --overwrite to train "
                           "every cell again)")
        check_numerics(folder.path, recorded, precision, device)
    else:
        continues_from = None
    return Plan(cfg, parse_losses(cfg.losses), device, precision, folder, cfg.loss_options(device), continues_from)


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
        "gpu_capability": gpu_capability(device),  # what --precision auto was decided on
        "precision": plan.precision,
        "threads": cell_threads(launch),  # per cell (per process): a CPU's last bits depend on it
        "versions": package_versions(),
        "data": data.manifest,
        "steps_per_cell": steps,
        "started": datetime.now().isoformat(timespec="seconds"),
        "ground_truth": scorer.ground_truth(),
        "gray": gray, "metric_notes": scorer.notes,
        # where gray and the photos were scored: a SLURM login node without a GPU scores them
        # on its CPU while the cells score on GPUs (the report says so)
        "baselines_scored_on": scorer.device.type,
        "protocol": metric_protocol(scorer, data.manifest, plan.cfg.size),
        **run_identity(plan.cfg.plugin, plan.combos, list(gray), plan.cfg.generator),
    }


def kept_externals(folder) -> list[dict]:
    """The outside colorizers an earlier config.json of this folder lists (``bench score
    --run``): a rerun of ``bench run`` keeps them, scored on the same photos under the same
    protocol (both identity options)."""
    try:
        return external_entries(read_json(folder.config)) if folder.config.is_file() else []
    except (OSError, ValueError):
        return []


def holds_run_lock(run):
    """Decorate ``run_benchmark(cfg, ...)``: pin ``cfg.out`` (a timestamped folder when not
    given) and hold its lock for the whole call."""

    @functools.wraps(run)
    def locked(cfg, *args, **kwargs):
        if not isinstance(cfg, RunConfig):
            validate(cfg, kwargs.get("launch"))  # refuses it with its message, before anything is taken
        chosen = cfg.out is None
        if chosen:
            cfg = replace(cfg, out=default_out())
        if not isinstance(cfg.out, (str, os.PathLike)):
            return run(cfg, *args, **kwargs)  # validate() refuses it with its message
        try:
            with RunLock(cfg.out):
                return run(cfg, *args, **kwargs)
        except BaseException:
            if chosen:  # the folder default_out made, if the run failed before writing into it
                with contextlib.suppress(OSError):
                    Path(cfg.out).rmdir()
            raise

    return locked


@holds_run_lock  # one process plans and assembles a run folder at a time (bench/rundir/lock.py)
def run_benchmark(cfg: RunConfig, progress: bool = True, overwrite: bool = False,
                  launch: LaunchConfig | None = None) -> Path:
    """Train and score every cell of ``cfg``; returns the run folder. Finished cells of an
    earlier run in the same ``--out`` are kept, an unfinished one resumes. ``launch`` says
    how the cells run (bench/run/launch.py): in this process by default."""
    launch = launch or LaunchConfig()
    started = time.perf_counter()
    with stoppable_preparation(cfg.out, overwrite):  # a stop signal: at once, --out left as a rerun needs it
        run = prepare_run(cfg, launch, progress, overwrite)
    folder, config = run.plan.folder, run.config
    serial = launch.launcher == "serial" and launch.gpus_per_cell == 1
    # The gallery's images: written by a low-priority thread while the cells train, waited
    # for at the end (bench/score/images.py); the jobs write their own cells'.
    gallery = run.gallery if serial or run.gallery is None else run.gallery.on_split(run.data.val)
    with stoppable(folder.path, "the gallery's remaining images are written when rerun"), \
            written_alongside(gallery, folder, config, models=serial):
        if serial:
            with torch_threads(config["threads"]):
                run_cells(run, progress)
        else:
            release_device(run)  # the jobs load their own; a worker may train on this GPU
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
    gallery: GalleryImages | None = None


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
        plan.combos, nets = load_weights(plan.combos, cfg.loss_options(here), here, strict=True, protocol=cfg.scoring())
    data, data_seconds = load_photos(plan, progress)
    settings = cfg.train_settings(plan.precision)
    steps = total_steps(settings, len(data.train))
    log.info(
        "Data: %s — %d train / %d val images at %d px (%.1fs to load); %d steps of %d per cell (%.1f passes)",
        data.manifest["source"], len(data.train), len(data.val), cfg.size, data_seconds,
        steps, cfg.batch_size, steps * cfg.batch_size / len(data.train),
    )
    if nets is None:
        plan.combos, nets = load_weights(plan.combos, cfg.loss_options(here), here, strict=False, protocol=cfg.scoring())
    check_cells(plan.folder.path, plan.combos, cfg.seeds, data.manifest, overwrite)  # kept cells: same photos
    further = cells_to_continue(plan.folder, plan.combos, cfg.seeds, steps) if plan.continues_from else []
    # Only now, with options, weights and data known good, is anything written: a run that
    # fails before training leaves no empty run folder behind.
    plan.folder.path.mkdir(parents=True, exist_ok=True)
    if overwrite:
        discard_run(plan.folder.path)  # every file of the old run, report and figures included
    for cell in further:
        reopen_cell(cell)
    if further:
        log.info("Training %d finished cell(s) further, from step %d to %d", len(further), plan.continues_from, steps)
    announce_plan(plan, steps)
    set_determinism(cfg.deterministic, plan.device)
    if cfg.tensorboard and not tensorboard_available():
        log.info(TENSORBOARD_MISSING)
    scorer = Scorer.for_split(data.val.to(here), nets, cfg.eval_batch_size, cfg.scoring())
    gray = scorer.gray_scores()
    write_baseline_scores(plan.folder.path, scorer, gray)  # per-image scores for paired statistics
    gallery = gallery_images(cfg, scorer, data)  # its images are written while the cells train (run_benchmark)
    config = start_config(plan, data, steps, scorer, gray.means, launch)
    config["external"] = [] if overwrite else kept_externals(plan.folder)  # `bench score`'s rows stay
    write_json(plan.folder.config, config)
    assemble_metrics(plan.folder, config)  # the baselines and any kept cells, before the first cell trains
    return PreparedRun(plan, data, data_seconds, scorer, settings, config, gallery)


def cells_to_train(plan: Plan) -> int:
    return sum(not plan.folder.cell(c.name, seed).is_done() for seed in plan.cfg.seeds for c in plan.combos)


def announce_plan(plan: Plan, steps: int) -> None:
    """What the run will train, said before it starts; and when its size is a GPU's and the
    device a CPU, that it will take days (the estimate after the first steps says how long)."""
    cfg, cells = plan.cfg, len(plan.combos) * len(plan.cfg.seeds)
    todo = cells_to_train(plan)
    log.info("Plan: %d combination(s) x %d seed(s) = %d cells of %d steps%s", len(plan.combos), len(cfg.seeds), cells,
             steps, f" ({cells - todo} already done, {todo} to train)" if todo < cells else "")
    if plan.device.type == "cpu" and todo and (cfg.preset == "paper" or cfg.size >= GPU_SIZED_PX):
        log.warning("--size %d%s is sized for a GPU: on this CPU each of its steps takes seconds (the paper "
                    "preset's 100 epochs: days per cell); the estimate after the first steps says how long. "
                    "--preset quick runs in minutes here", cfg.size, " (--preset paper)" if cfg.preset == "paper" else "")


# Photos this large train on a GPU: a CPU takes days per cell (the paper preset's 256 px).
GPU_SIZED_PX = 128


class GridEstimate:
    """Said once, when the first cell this process trains has its pace: how long it and the
    cells after it will take at that pace."""

    def __init__(self, cells_after: int, steps: int):
        self.cells_after, self.steps = cells_after, steps

    def __call__(self, steps_per_second: float, steps_left: int) -> None:
        rest = self.cells_after * self.steps / steps_per_second
        log.info("At this cell's pace (%.3g steps/s) it ends in about %s%s", steps_per_second,
                 duration_words(steps_left / steps_per_second),
                 f", and the {self.cells_after} cell(s) after it in about {duration_words(rest)} (a GAN or VGG term "
                 "makes a cell slower, a plain one faster)" if self.cells_after else "")


def release_device(run: PreparedRun) -> None:
    """Free what the planning process holds on the device (the val split, the scoring and
    loss networks, the allocator's cache) before jobs train there: a local worker on cuda:0
    would otherwise share its memory with this idle process for the whole run."""
    run.scorer = run.data = run.gallery = None
    release_networks()
    gc.collect()
    if run.plan.device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_cells(run: PreparedRun, progress: bool) -> None:
    """Every (seed, combination) cell in this process: a finished cell is kept, an unfinished
    one trained (or resumed) and scored. metrics.csv is rewritten after each, so a killed
    run leaves the table of what it finished."""
    plan, config = run.plan, run.config
    train = run.data.train.to(plan.device)
    pace = GridEstimate(cells_to_train(plan) - 1, config["steps_per_cell"])
    with StopOnSignals() as stop:
        for seed in plan.cfg.seeds:
            for combo in plan.combos:
                cell = plan.folder.cell(combo.name, seed)
                if cell.is_done():
                    check_cell_numerics(cell.record, read_cell_record(cell.record), plan.precision, plan.device)
                    log.info("%-28s seed %d: already done, kept", combo.name, seed)
                    continue
                with cell.lock():  # a job of an earlier --no-wait launch may be training it
                    try:
                        run_cell(combo, seed, train, run.scorer, run.settings, plan.options, plan.device, cell,
                                 progress, stop, data=run.data.manifest["fingerprint"], watch=plan.cfg.watch_settings(),
                                 gallery=run.gallery, on_pace=pace)
                        pace = None  # said once, for the first cell
                    except Interrupted:
                        raise RunInterrupted(plan.folder.path, stop.requested) from None
                    except CorruptCheckpoint as exc:
                        raise RunError(str(exc)) from None
                assemble_metrics(plan.folder, config)
