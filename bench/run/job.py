"""One run's cells trained by a job of their own: a local worker, a SLURM array task, or the
ranks of ``torchrun -m bench.run.job`` training one cell data-parallel.

Every job starts from the run folder alone: config.json (written by ``bench run`` before it
submits) says the options, the photos' fingerprint, the precision and the threads per cell;
the job loads the photos and weights itself, refuses to train if either differs from what
the run was planned with, and then trains its cells one at a time, each under the cell's
own lock (bench/rundir/lock.py). A job given several cells (a local worker) takes whichever are
neither finished nor held by another job, so N workers share one queue with no scheduler
of ours. After each cell the job rewrites metrics.csv from the cells' records; the last
one to finish leaves the complete table.

    torchrun --nproc-per-node 2 -m bench.run.job results/run-A --combination l1 --seed 0
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import submitit
import torch

from bench.config.machine import (
    gpu_capability,
    gpu_has_native_bf16,
    job_name,
    resolve_device,
    set_determinism,
    torch_threads,
)
from bench.config.options import config_options
from bench.config.plugins import load_plugins
from bench.run.reuse import check_cell_numerics
from bench.run.stages import (
    Plan,
    assemble_metrics,
    gallery_images,
    identity_changes,
    load_photos,
    load_weights,
    run_cell,
)
from bench.run.stop import RunInterrupted, StopOnSignals
from bench.rundir.layout import CellFolder, RunFolder
from bench.rundir.lock import RunFolderBusy
from bench.rundir.read import cells_in_order, read_cell_record, read_config, read_json
from bench.rundir.write import write_json
from bench.score.scorer import Scorer
from bench.train.distributed import any_rank, process_group
from bench.train.loop import Interrupted
from losses import parse_losses

log = logging.getLogger("colorbench")


class JobRefused(RuntimeError):
    """This job cannot train the run's cells as planned; the message names what differs and
    the fix."""


@dataclass
class JobRun:
    """A run folder opened by a job: what ``runner.run_cell`` needs for any of its cells."""

    folder: RunFolder
    config: dict
    plan: object  # runner.Plan
    train: object  # the train split, on the device
    data_print: dict
    scorer: object | None  # None on ranks other than 0: only rank 0 scores
    settings: object
    gallery: object | None = None  # rank 0's gallery images (bench.score.images.GalleryImages)


def open_run(run_dir: Path, device: str | None = None, dist=None) -> JobRun:
    """The run folder's plan, photos and (rank 0) scorer, checked against config.json."""
    folder = RunFolder(run_dir)
    config = read_config(folder.config)
    cfg = config_options(config["options"])
    load_plugins(cfg.plugin, recorded_in=folder.config)  # the run's own losses, metrics and generators
    if changed := identity_changes(config):
        raise JobRefused(f"{'; '.join(changed)} since `bench run` planned {folder}: this job would train its cells "
                         "with other code than planned; restore the plugin as it was (a path every node shares), "
                         "or rerun `bench run` into a new --out")
    dev = resolve_device(device or ("cuda" if planned_on_gpu(config) else "cpu"))
    main_rank = dist is None or dist.is_main
    if dev.type == "cuda" and dist is not None and dist.world_size > 1:
        dev = torch.device("cuda", dist.local_rank)
    precision = config["precision"]
    if dev.type == "cuda" and precision == "bf16" and not gpu_has_native_bf16(dev):
        raise JobRefused(f"{folder.config} plans bf16 and this GPU ({torch.cuda.get_device_name(dev)}, "
                         f"{gpu_capability(dev)}) runs it only emulated, slower than fp32: rerun `bench run` "
                         "into a new --out with --precision fp16 or fp32")
    plan = Plan(cfg, parse_losses(cfg.losses), dev, precision, folder, cfg.loss_options(dev))
    with quiet_loading():
        data, _ = load_photos(plan, progress=False)
        plan.combos, nets = load_weights(plan.combos, plan.options, dev, strict=cfg.strict_weights, protocol=cfg.scoring())
    if data.manifest["fingerprint"] != config["data"].get("fingerprint"):
        raise JobRefused(f"the photos this job loaded ({data.manifest['source']}) are not those {folder.config} "
                         "was planned with: a job must see the same --data (a path shared by every node)")
    planned = [c["name"] for c in config["combinations"]]
    if [c.name for c in plan.combos] != planned:
        raise JobRefused(f"this job would train {', '.join(c.name for c in plan.combos)} and the run planned "
                         f"{', '.join(planned)}: its machine lacks weights the submitting one had (`bench weights`); "
                         "share TORCH_HOME between the nodes, or import the files on every node")
    set_determinism(cfg.deterministic, dev)
    scorer = Scorer.for_split(data.val.to(dev), nets, cfg.eval_batch_size, cfg.scoring()) if main_rank else None
    if scorer is not None and scorer.notes != config.get("metric_notes", scorer.notes):
        raise JobRefused(f"this job's metric networks are not those {folder.config} was planned with "
                         f"({scorer.notes} here, {config.get('metric_notes')} there): its machine has other "
                         "weights files (`bench weights`); share TORCH_HOME between the nodes")
    gallery = gallery_images(cfg, scorer, data) if scorer is not None else None
    return JobRun(folder, config, plan, data.train.to(dev), data.manifest["fingerprint"], scorer,
                  cfg.train_settings(precision), gallery)


@contextmanager
def quiet_loading():
    """A job's photos and weights load without repeating what `bench run` already said
    once (the sample set's caveat, each missing weights file): the job refuses to start if
    what it loaded differs from the plan, so nothing it would say is new."""
    logger = logging.getLogger("colorbench")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def write_failure(cell: CellFolder, exc: BaseException, job: str, launch_id: str) -> None:
    """failure.json: why this cell's job failed, for `bench status`, until it is retried."""
    write_json(cell.failure, {
        "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc().splitlines()[-30:],
        "job": job, "host": socket.gethostname(), "launch": launch_id,
        "when": datetime.now().isoformat(timespec="seconds"),
    })


def failed_in_launch(cell: CellFolder, launch_id: str) -> bool:
    """Whether ``cell`` already failed in this launch (a worker does not retry what another
    worker of the same launch saw fail; a new `bench run` does)."""
    if not launch_id or not cell.failure.is_file():
        return False
    try:
        return read_json(cell.failure).get("launch") == launch_id
    except (OSError, ValueError):
        return False


def train_one(run: JobRun, name: str, seed: int, stop, dist=None) -> dict | None:
    """Train and score one cell of ``run`` (its lock already held by this job)."""
    combo = next(c for c in run.plan.combos if c.name == name)
    cell = run.folder.cell(name, seed)
    if cell.is_done():
        check_cell_numerics(cell.record, read_cell_record(cell.record), run.plan.precision, run.plan.device)
        return None
    return run_cell(combo, seed, run.train, run.scorer, run.settings, run.plan.options, run.plan.device, cell,
                    progress=False, stop=stop, data=run.data_print, dist=dist, watch=run.plan.cfg.watch_settings(),
                    gallery=run.gallery)


def run_job(run_dir: str | Path, cells: list[tuple[str, int]], device: str | None = None, launch_id: str = "",
            gpus_per_cell: int = 1) -> int:
    """A job's work: each of ``cells`` that is neither finished nor held by another job,
    trained under its lock (by torchrun's processes when ``gpus_per_cell`` > 1). A cell that
    fails is recorded (failure.json) and the job goes on to the next; raises at the end if
    any failed. Returns how many cells it trained."""
    folder, job = RunFolder(run_dir), job_name()
    config = read_config(folder.config)
    with torch_threads(config_threads(config)):  # restored after: the debug executor runs jobs in-process
        run = open_run(folder.path, device) if gpus_per_cell == 1 else None
        trained, failed = _train_cells(run, folder, config, cells, job, launch_id, gpus_per_cell, device)
    if failed:
        raise RuntimeError("cells failed (their failure.json has the traceback): " + "; ".join(failed))
    return trained


def planned_on_gpu(config: dict) -> bool:
    """Whether the run's cells train on GPUs (config.json's ``device``, as planned)."""
    return str(config.get("device", "")).startswith("cuda")


def config_threads(config: dict) -> int:
    """The threads each cell of the run trains with: config.json's ``threads``, except in a
    SLURM task, which has the CPUs SLURM gave it (SLURM_CPUS_PER_TASK; the ``threads``
    were counted on the login node)."""
    given = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if given.isdigit() and int(given) > 0 and planned_on_gpu(config):
        return int(given)
    return int(config.get("threads") or torch.get_num_threads())


def _train_cells(run, folder, config, cells, job, launch_id, gpus_per_cell, device) -> tuple[int, list[str]]:
    """``run_job``'s loop: the cells trained here, and those that failed."""
    trained, failed = 0, []
    with StopOnSignals() as stop:
        for name, seed in cells:
            cell = folder.cell(name, seed)
            if cell.is_done() or failed_in_launch(cell, launch_id):
                continue
            try:
                lock = cell.lock(job).acquire()
            except RunFolderBusy:
                continue  # another job trains it
            try:
                if not cell.is_done():
                    cell.failure.unlink(missing_ok=True)
                    log.info("%s seed %d: training (%s)", name, seed, job or f"pid {os.getpid()}")
                    if run is None:
                        torchrun_cell(folder.path, name, seed, gpus_per_cell, device)
                    else:
                        train_one(run, name, seed, stop)
                    trained += 1
            except Interrupted:
                raise RunInterrupted(folder.path, stop.requested) from None
            except Exception as exc:  # noqa: BLE001 - recorded for `bench status`, then the next cell
                write_failure(cell, exc, job, launch_id)
                failed.append(f"{name} seed {seed}: {type(exc).__name__}: {exc}")
                log.error("%s seed %d failed: %s", name, seed, exc)
            finally:
                lock.release()
            assemble_metrics(folder, config)
    return trained, failed


def torchrun_cell(run_dir: Path, name: str, seed: int, processes: int, device: str | None = None) -> None:
    """Train one cell data-parallel in ``processes`` processes started by torchrun, this
    process holding the cell's lock for them."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "bench.run.job", str(run_dir), "--combination", name, "--seed", str(seed), "--parent-holds-lock"]
    if device:
        command += ["--device", device]
    subprocess.run(command, check=True)


@dataclass
class Job:
    """What submitit runs: ``run_job`` on the listed cells. SLURM's USR2 warning (before the
    time limit, or on preemption) asks the cell in training to save at its next step
    boundary; then submitit's own handler calls ``checkpoint`` and requeues the same job,
    which resumes the cell from what it saved."""

    run_dir: str
    cells: list[tuple[str, int]]
    device: str | None = None
    launch_id: str = ""
    gpus_per_cell: int = 1

    def __call__(self) -> int:
        if not logging.getLogger("colorbench").handlers:  # the job's log: what it trains, what failed
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        requeue = signal.getsignal(signal.SIGUSR2)  # submitit's: checkpoint(), requeue, exit
        try:
            return self._run()
        except RunInterrupted as exc:
            if exc.signum == signal.SIGUSR2 and callable(requeue):
                requeue(signal.SIGUSR2, None)  # the cell is saved: now requeue
            raise

    def _run(self) -> int:
        if self.gpus_per_cell > 1 and submitit.JobEnvironment().num_tasks > 1:
            # One task per GPU in this job (SLURM's --ntasks-per-node): each task is a rank
            # of the cell's process group, as torchrun's processes are.
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            (name, seed), = self.cells
            return int(train_distributed(self.run_dir, name, seed, self.device))
        return run_job(self.run_dir, self.cells, self.device, self.launch_id, self.gpus_per_cell)

    def checkpoint(self, *args, **kwargs):
        return submitit.helpers.DelayedSubmission(self)


def train_distributed(run_dir: str | Path, name: str, seed: int, device: str | None = None,
                      parent_holds_lock: bool = False) -> bool:
    """One cell, data-parallel over torchrun's processes: rank 0 takes the cell's lock (unless
    the process that launched torchrun holds it), every rank trains its shard of each global
    batch, rank 0 alone writes. Returns whether this group trained the cell."""
    want = torch.device(device) if device else None
    config = read_config(RunFolder(run_dir).config)
    with torch_threads(config_threads(config)), \
            process_group(want or torch.device("cuda" if torch.cuda.is_available() else "cpu")) as dist:
        run = open_run(Path(run_dir), device, dist)
        if (name, seed) not in cells_in_order(run.config):
            raise JobRefused(f"{run.folder.path} has no cell {name} seed {seed}; its cells are the combinations "
                             f"{', '.join(c.name for c in run.plan.combos)} with seeds "
                             f"{', '.join(map(str, run.plan.cfg.seeds))}")
        cell = run.folder.cell(name, seed)
        lock = None
        if dist.is_main and not parent_holds_lock and not cell.is_done():
            try:
                lock = cell.lock(job_name()).acquire()
            except RunFolderBusy as exc:
                log.info("%s", exc)
        go = any_rank(dist.is_main and not cell.is_done() and (lock is not None or parent_holds_lock), dist)
        try:
            if go:
                with StopOnSignals() as stop:
                    try:
                        train_one(run, name, seed, stop, dist)
                    except Interrupted:
                        raise RunInterrupted(run.folder.path, stop.requested) from None
                if dist.is_main:
                    assemble_metrics(run.folder, run.config)
        finally:
            if lock is not None:
                lock.release()
    return go


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run.job", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run folder planned by `bench run` (its config.json)")
    parser.add_argument("--combination", required=True, help="the cell's combination, as config.json names it")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--device", default=None, help="cpu or cuda (each rank takes cuda:LOCAL_RANK)")
    parser.add_argument("--parent-holds-lock", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        train_distributed(args.run_dir, args.combination, args.seed, args.device, args.parent_holds_lock)
    except RunInterrupted:
        if os.environ.get("RANK", "0") == "0":  # one message for the group; the checkpoint is saved
            print(f"Stopped; rerun the same command to resume {args.combination} seed {args.seed}.", file=sys.stderr)
        sys.exit(130)
    except (ValueError, OSError, JobRefused) as exc:
        sys.exit(f"Error: {exc}")


if __name__ == "__main__":
    main()
