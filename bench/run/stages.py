"""The stages a run and every job share: the photos and weights loaded, one cell trained and
scored into its folder, and metrics.csv assembled from the cells' records."""
from __future__ import annotations

import logging
import platform
import statistics
import time
from dataclasses import dataclass
from functools import partial

import pandas as pd
import torch
from colorbench_datasets import load_data
from tqdm.auto import tqdm

from bench.config.machine import job_name
from bench.config.plugins import declaration_changes, declared_now, declarer, plugin_changes, plugin_records
from bench.config.options import RunConfig, WatchSettings
from bench.config.validate import RunError
from bench.run.watch import CellMonitor, tensorboard_available
from bench.rundir.layout import GRAY, TRUTH, CellFolder, RunFolder
from bench.rundir.lock import taking_turns
from bench.rundir.read import (
    RecordError,
    cells_in_order,
    external_rows,
    read_cell_record,
    read_config,
    record_rows,
    run_metric_names,
)
from bench.rundir.write import atomic_torch_save, metrics_frame, write_csv, write_json
from bench.score.images import GalleryImages
from bench.score.networks import load_metric_nets
from bench.score.per_image import write_cell_scores
from bench.score.presets import PRESETS, ScoringProtocol
from bench.score.scorer import Scorer, curve_values, generator_record
from bench.train.loop import train_cell
from losses import LOSSES, Combination, LossOptions, weights_tags
from models.networks import GENERATORS
from models.pretrained import WeightsUnavailable

log = logging.getLogger("colorbench")


@declarer("losses")
def _declared_losses() -> dict[str, dict]:
    """What a run records of each loss term it trains (config.json's ``declared``)."""
    return {name: {"adversarial": info.adversarial, "needs_data": info.needs_data, "weights": info.weights,
                   "generator_head": info.generator_head, "defaults": info.defaults, "module": info.factory.__module__}
            for name, info in LOSSES.items()}


@declarer("generators")
def _declared_generators() -> dict[str, dict]:
    return {name: {"module": builder.__module__} for name, builder in GENERATORS.items()}


def run_identity(plugins, combos: list[Combination], metric_names: list[str], generator: str | None = None) -> dict:
    """What the run's numbers depend on beyond its options, for config.json: each plugin's
    content digest, and what the registries declared of its loss terms, metrics and generator."""
    terms = sorted({t.name for c in combos for t in c.terms})
    return {"plugins": plugin_records(plugins),
            "declared": {"losses": declared_now("losses", terms), "metrics": declared_now("metrics", metric_names),
                         "generators": declared_now("generators", [generator] if generator else [])}}


def identity_changes(config: dict) -> list[str]:
    """What changed since ``config`` was written in the plugins and declarations it recorded
    (empty for a run of an earlier version, which recorded none)."""
    declared = config.get("declared")
    return (plugin_changes(config.get("plugins")) + declaration_changes(declared, "losses")
            + declaration_changes(declared, "metrics"))


def tag_combinations(combos: list[Combination], options: LossOptions) -> list[Combination]:
    """The combinations with any weights caveat (``random-vgg``) in their names; the losses
    that declare pretrained weights load them once here, before any training."""
    tags = weights_tags([t.name for c in combos for t in c.terms], options)
    return [c.tagged(tags) for c in combos]


def load_weights(combos: list[Combination], options: LossOptions, device: torch.device, strict: bool,
                 protocol: ScoringProtocol = PRESETS["colorbench"]):
    """The losses' and metrics' pretrained networks (those ``protocol`` scores with), each
    missing file said in one line: ``(combinations with their weights caveats, metric networks)``."""
    try:
        combos = tag_combinations(combos, options)
        # LPIPS's and FID's networks: loaded once per run, not once per cell.
        return combos, load_metric_nets(device, strict=strict, protocol=protocol)
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
    continues_from: int | None = None  # a larger --steps: the steps its finished cells were trained for


def load_photos(plan: Plan, progress: bool):
    """The train and val splits, checked against the batch size; and how long they took."""
    cfg = plan.cfg
    started = time.perf_counter()
    bar = partial(tqdm, desc="Loading photos", unit="img", leave=False, dynamic_ncols=True) if progress else None
    data = load_data(
        cfg.data, cfg.val_data, cfg.dataset, cfg.size, workers=cfg.workers, progress=bar, data_root=cfg.data_root,
        val_geometry=cfg.scoring().val_geometry,  # the protocol's: the val photos as its paper's code prepares them
    )
    if cfg.batch_size > len(data.train):
        raise RunError(
            f"--batch-size {cfg.batch_size} is larger than the {len(data.train)} training images; "
            f"use --batch-size {len(data.train)} or less, or add photos"
        )
    return data, time.perf_counter() - started


def gallery_images(cfg: RunConfig, scorer: Scorer, data) -> GalleryImages | None:
    """What writes the gallery's images of this run's val photos (None with --gallery-photos 0);
    the enlargements open the photos ``data`` (``load_photos``) was loaded from."""
    if cfg.gallery_photos == 0:
        return None
    return GalleryImages(scorer, cfg.gallery_photos, dict(data.sources.val) if data.sources is not None else None)


def baseline_rows(config: dict) -> list[dict]:
    """metrics.csv's rows for ``gray`` (the input itself) and the val photos' own values,
    one per seed so that means over seeds line up with the models'."""
    seeds, notes = config["options"]["seeds"], config.get("metric_notes", {})
    rows = [{"combination": GRAY, "seed": s, "metric": m, "value": v, "note": notes.get(m, "")}
            for s in seeds for m, v in config["gray"].items()]
    return rows + [{"combination": TRUTH, "seed": s, "metric": m, "value": v, "note": "the val photos themselves"}
                   for s in seeds for m, v in config["ground_truth"].items()]


def _listed_now(folder: RunFolder, config: dict) -> dict:
    try:
        return read_config(folder.config)
    except RecordError:
        return config  # not written yet (a run's first assembly writes it just before)


def assemble_metrics(folder: RunFolder, config: dict) -> bool:
    """Rewrite metrics.csv from config.json's baselines and every finished cell's record, in
    the run's order (seeds, then combinations) whoever finished them: a parallel run's table
    is the serial run's, row for row. Returns whether every cell is in it.

    Jobs finishing together each rewrite it; they take turns on a lock, and each reads the
    records under it, so the last to write has seen every cell finished before it."""
    rows, complete, metrics = baseline_rows(config), True, run_metric_names(config)
    with taking_turns(folder.metrics_lock):  # a rewrite takes milliseconds
        for name, seed in cells_in_order(config):
            cell = folder.cell(name, seed)
            if cell.is_done():
                rows += record_rows(read_cell_record(cell.record), metrics)
            else:
                complete = False
        # the outside colorizers as config.json lists them now, read under the turn: a `bench
        # score --run` may have added one since this process read the config
        write_csv(folder.metrics, metrics_frame(rows + external_rows(folder, _listed_now(folder, config))))
    return complete


# Steps timed before the median: the first steps pay for allocation, oneDNN's kernel choice
# and cuDNN's autotuning, and are not what a step costs.
WARMUP_STEPS = 5


def step_time(log: list[dict]) -> dict:
    """The median step time after warm-up (at most half the steps), and how many steps it
    is over."""
    timed = [r["seconds"] for r in log[min(WARMUP_STEPS, len(log) // 2):] if r.get("seconds") is not None]
    return {"step_seconds": round(statistics.median(timed), 4) if timed else None, "timed_steps": len(timed)}


def cell_monitor(cell: CellFolder, combo: Combination, seed: int, scorer: Scorer, watch: WatchSettings,
                 on_pace=None) -> CellMonitor:
    """The cell's monitor: its curve, progress record and (if wanted and installed) TensorBoard."""
    tensorboard = RunFolder(cell.run).tensorboard(combo.name, seed) if watch.tensorboard and tensorboard_available() else None
    return CellMonitor(cell, scorer, watch, tensorboard, on_pace)


def run_cell(combo, seed, train_split, scorer: Scorer, settings, options, device, cell: CellFolder, progress: bool,
             stop=lambda: False, data: dict | None = None, dist=None, watch: WatchSettings | None = None,
             gallery: GalleryImages | None = None, on_pace=None) -> dict | None:
    """Train (or resume) and score one cell; its files are written, its record returned.
    ``dist``: this process is one rank of a data-parallel cell (bench/train/distributed.py); the
    other ranks only train, and return None. ``watch``: what is recorded along training
    (default: nothing but the final scores); ``gallery``: writes the cell's images for the
    report's gallery; ``on_pace(steps_per_second, steps_left)`` is told once the cell's pace is known."""
    main_rank = dist is None or dist.is_main
    watch = watch if watch is not None else WatchSettings(eval_every=0, tensorboard=False, gallery_photos=0)
    monitor = None
    if main_rank:
        cell.path.mkdir(parents=True, exist_ok=True)
        if cell.checkpoint.is_file():
            log.info("%-28s seed %d: resuming from its checkpoint", combo.name, seed)
        monitor = cell_monitor(cell, combo, seed, scorer, watch, on_pace)
    try:
        result = train_cell(
            combo, seed, train_split, settings, options, device,
            checkpoint=cell.checkpoint, progress=progress and main_rank, desc=f"{combo.name} s{seed}", should_stop=stop,
            dist=dist, monitor=monitor,
        )
        if not main_rank:
            return None
        return finish_cell(combo, seed, result, scorer, settings, device, cell, data, dist, monitor, gallery)
    finally:
        if monitor is not None:
            monitor.close()


def finish_cell(combo, seed, result, scorer: Scorer, settings, device, cell: CellFolder, data, dist,
                monitor: CellMonitor, gallery: GalleryImages | None) -> dict:
    """A trained cell's files: its log, generator, scores, curve and record (last: it marks the cell done)."""
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
        if gallery is not None:
            gallery.write_model(cell.gallery, result.generator, settings.size)
        if monitor.every:  # the curve's last point: the final scores, as an evaluation then would give them
            final = curve_values(scores.means, monitor.watch.eval_set_metrics)
            step = len(result.log)
            monitor.evaluated(result.curve + [{"step": step, "metric": k, "value": v} for k, v in final.items()],
                              step, final, result.generator)
        record |= {"status": "ok", "diverged_at": None, "metrics": scores.means, "notes": scorer.notes}
        log.info(
            "%-28s seed %d: %s (%.0fs)", combo.name, seed,
            ", ".join(f"{k} {v:.4g}" for k, v in scores.means.items() if v == v), result.seconds,  # v == v: not NaN
        )
    write_json(cell.record, record)
    if record["status"] == "ok" and settings.keep_state and cell.checkpoint.is_file():
        cell.checkpoint.replace(cell.state)  # the last state, kept: a larger --steps continues from it
    else:  # no state of this record: an earlier one (a shorter --steps) must not pass for it
        cell.state.unlink(missing_ok=True)
    cell.checkpoint.unlink(missing_ok=True)
    cell.progress.unlink(missing_ok=True)  # the record says it now
    return record
