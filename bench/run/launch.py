"""Cells as jobs, through submitit: parallel workers on this machine (``--launcher local``)
or one SLURM job per cell as a job array (``--launcher slurm``); and a cell data-parallel
over several processes through torchrun (``--gpus-per-cell``).

Colorbench schedules nothing itself. ``bench run`` writes config.json, submits jobs that each
open the run folder on their own (bench/run/job.py), records them in launch.json, and either
waits (a progress bar of finished cells) or exits (``--no-wait``) and lets ``bench status``
follow them. A local launch starts ``--max-parallel`` workers that share the run's cells as a
queue, each cell claimed by its lock; a SLURM launch submits one array task per cell, with
the array's concurrency set to ``--max-parallel``. Rerunning ``bench run`` submits only the
cells that are neither finished, nor trained right now, nor waiting in a live job.
"""
from __future__ import annotations

import contextlib
import logging
import math
import signal
import socket
import time
import uuid
from datetime import datetime

import submitit
import torch
from colorbench_datasets import split_memory
from submitit.local.debug import DebugJob
from tqdm.auto import tqdm

from bench.config.options import LaunchConfig, max_parallel, parse_devices
from bench.run.job import Job, planned_on_gpu, run_job
from bench.run.status import cell_states, cells_waiting, read_launches
from bench.run.stop import RunInterrupted, StopOnSignals
from bench.rundir.layout import RunFolder
from bench.rundir.lock import holder
from bench.rundir.read import cells_in_order
from bench.rundir.write import write_json
from losses import LOSSES, parse_losses

log = logging.getLogger("colorbench")


# Seconds between SLURM's warning signal and the kill: a cell saves at its next step boundary.
SIGNAL_DELAY_S = 120


# Requeues of a job that reaches its time limit before submitit gives up on it (a preempted
# job is requeued whatever the count).
MAX_TIMEOUTS = 20


def cells_to_submit(folder: RunFolder, config: dict) -> list[tuple[str, int]]:
    """Cells that are neither finished, nor held by a job now, nor waiting in a live job;
    the longest first (``relative_cost``), so that workers sharing a queue finish together
    instead of one of them starting the longest cell last."""
    waiting = cells_waiting(folder)
    specs = {c["name"]: c["spec"] for c in config["combinations"]}
    todo = [(name, seed) for name, seed in cells_in_order(config)
            if not folder.cell(name, seed).is_done() and holder(folder.cell(name, seed).path) is None
            and (name, seed) not in waiting]
    return sorted(todo, key=lambda cell: -relative_cost(specs[cell[0]]))  # stable: the run's order within a cost


def relative_cost(spec: str) -> int:
    """A rough rank of a combination's cost per step, from what its terms declare: a term
    that runs a pretrained network (VGG16, AlexNet) costs most, one that trains a
    discriminator next. Measured per step on the shared photos (quick preset, 2 cores):
    l1 27 ms, gan 60 ms (2.2x), perceptual 122 ms (4.5x); the ranks are 1, 3 and 5."""
    (combo,) = parse_losses(spec)
    return 1 + sum(4 if LOSSES[t.name].weights else 2 if LOSSES[t.name].adversarial else 0 for t in combo.terms)


def make_executor(folder: RunFolder, launch: LaunchConfig, config: dict, kind: str | None = None):
    """submitit's executor for ``launch`` (``kind`` overrides the launcher: ``debug`` runs
    the jobs in this process, for tests), its logs under the run's jobs/ folder."""
    kind = kind or launch.launcher
    jobs = folder.jobs_dir / "%j"
    on_gpu = planned_on_gpu(config)
    if kind == "debug":
        return submitit.DebugExecutor(folder=jobs)
    if kind == "local":
        executor = submitit.LocalExecutor(folder=jobs, max_num_timeout=MAX_TIMEOUTS)
        executor.update_parameters(timeout_min=launch.timeout_min, signal_delay_s=SIGNAL_DELAY_S)
        return executor
    executor = submitit.SlurmExecutor(folder=jobs, max_num_timeout=MAX_TIMEOUTS)
    options = dict(item.split("=", 1) for item in launch.slurm_option)
    cpus, mem_gb = slurm_resources(launch, config)
    executor.update_parameters(
        job_name="colorbench", time=launch.timeout_min, partition=launch.slurm_partition,
        ntasks_per_node=launch.gpus_per_cell, gpus_per_node=launch.gpus_per_cell if on_gpu else None,
        cpus_per_task=cpus, mem=f"{mem_gb}GB", signal_delay_s=SIGNAL_DELAY_S,
        array_parallelism=max_parallel(launch) or 256, additional_parameters=options,
    )
    return executor


# CPUs a GPU task asks for by default: data loading is in memory, so a few cores per GPU
# keep it fed; the login node's core count says nothing of the compute nodes'.
GPU_TASK_CPUS = 8
# Memory beyond the photos: torch, CUDA's context, the metric networks, the checkpoint.
TASK_BASE_MEM_GB = 8


def slurm_resources(launch: LaunchConfig, config: dict) -> tuple[int, int]:
    """CPUs and memory (GB) per SLURM task: the options, else from the run. Unasked, a task
    gets the cluster's default (often one core and a few GB) while it holds every photo."""
    on_gpu = planned_on_gpu(config)
    cpus = launch.slurm_cpus_per_task or (GPU_TASK_CPUS if on_gpu else int(config.get("threads") or 1))
    if launch.slurm_mem_gb is not None:
        return cpus, math.ceil(launch.slurm_mem_gb)
    data, size = config.get("data", {}), int(config.get("options", {}).get("size", 0))
    photos = split_memory(int(data.get("train_images", 0)), int(data.get("val_images", 0)), size,
                          data.get("resize") or "crop")
    return cpus, TASK_BASE_MEM_GB + math.ceil(photos / 2**30)


def submit(folder: RunFolder, config: dict, launch: LaunchConfig, cells, launch_id: str, kind: str | None = None):
    """Submit jobs for ``cells``: one per cell on SLURM, ``--max-parallel`` queue workers
    locally (each started at another cell, so they rarely race for the same lock)."""
    executor = make_executor(folder, launch, config, kind)
    run_dir = str(folder.path.resolve())
    if (kind or launch.launcher) == "slurm":
        # device None: each task takes the run's planned device type (bench.run.job.open_run)
        return executor.submit_array([Job(run_dir, [cell], None, launch_id, launch.gpus_per_cell) for cell in cells])
    devices = local_devices(launch, config)
    groups = [devices[k:k + launch.gpus_per_cell] for k in range(0, len(devices) - launch.gpus_per_cell + 1,
                                                               launch.gpus_per_cell)]
    workers = min(max_parallel(launch) or 1, len(cells))
    jobs = []
    for i in range(workers):
        group = groups[i % len(groups)] if groups else []  # more workers than GPUs: they share them in turn
        if group and kind != "debug":
            executor.update_parameters(gpus_per_node=len(group), visible_gpus=[int(d.split(":")[1]) for d in group])
        device = ("cuda" if group else "cpu") if devices else None
        jobs.append(executor.submit(Job(run_dir, cells[i:] + cells[:i], device, launch_id, launch.gpus_per_cell)))
    return jobs


def local_devices(launch: LaunchConfig, config: dict) -> list[str]:
    """The GPUs a local launch spreads its workers over: ``--devices``, else, for a run on
    CUDA, every GPU this process sees. submitit's local executor hides every GPU from a job
    it is not told to give any (CUDA_VISIBLE_DEVICES=""), so a GPU run must always name them."""
    if launch.devices or not planned_on_gpu(config):
        return parse_devices(launch.devices)
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def record_launch(folder: RunFolder, launch: LaunchConfig, jobs, cells, launch_id: str) -> None:
    """launch.json: every launch of this run, its jobs, their cells and logs (`bench status`)."""
    entry = {
        "id": launch_id, "launcher": launch.launcher, "host": socket.gethostname(),
        "submitted": datetime.now().isoformat(timespec="seconds"),
        "jobs": [{"id": str(job.job_id), "cells": [list(c) for c in job_cells(job, cells, launch)],
                  "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)} for job in jobs],
    }
    write_json(folder.launch, {"launches": [*read_launches(folder), entry]})


def job_cells(job, cells, launch: LaunchConfig):
    submission = job.submission() if callable(getattr(job, "submission", None)) else None
    fn = getattr(submission, "function", None)
    return fn.cells if isinstance(fn, Job) else cells


def launch_cells(folder: RunFolder, config: dict, launch: LaunchConfig, progress: bool, kind: str | None = None) -> bool:
    """Submit the cells still to train, and wait for every cell unless ``--no-wait``. Returns
    whether all are finished; raises ``LaunchFailed`` naming the cells that failed."""
    if launch.launcher == "serial":  # --gpus-per-cell N without a scheduler: torchrun, one cell after another
        try:
            run_job(folder.path, cells_to_submit(folder, config), launch_id=uuid.uuid4().hex[:8],
                    gpus_per_cell=launch.gpus_per_cell)
        except RuntimeError as exc:
            raise LaunchFailed(f"{exc}; `bench status {folder.path}` shows them") from None
        return True
    cells = cells_to_submit(folder, config)
    launch_id = uuid.uuid4().hex[:8]
    jobs = []
    if cells:
        jobs = submit(folder, config, launch, cells, launch_id, kind)
        record_launch(folder, launch, jobs, cells, launch_id)
        drop_template_folder(folder)
        log.info("Submitted %d %s job(s) for %d cell(s); logs in %s", len(jobs), kind or launch.launcher,
                 len(cells), folder.jobs_dir)
    if launch.no_wait:
        return False
    try:
        wait_for_cells(folder, config, jobs, progress)
    finally:
        drop_template_folder(folder)
    return True


def drop_template_folder(folder: RunFolder) -> None:
    """submitit makes its folder template (jobs/%j) as a folder too, and again when a job's
    paths are read; the jobs' own folders are beside it. Removed when empty."""
    with contextlib.suppress(OSError):
        (folder.jobs_dir / "%j").rmdir()


def stop_jobs(jobs, wait_s: float = 600.0, poll_s: float = 0.5) -> str:
    """Ask this launch's local workers to save and stop (each saves its cell at the next step
    boundary) and wait for them; SLURM's jobs are left to run. Returns what the
    user is told of them."""
    local = [job for job in jobs if isinstance(job, submitit.LocalJob) and not job.done()]
    others = [job for job in jobs if not isinstance(job, submitit.LocalJob) and not job.done()]
    for job in local:
        # SIGTERM, not submitit's cancel (SIGINT): a worker that the terminal's Ctrl-C
        # reached too is already saving, and a second SIGINT would abort it (bench/run/stop.py)
        process = getattr(job, "_process", None)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
    if local:
        log.warning("Waiting for %d local worker(s) to save their cells...", len(local))
    deadline = time.monotonic() + wait_s
    while any(not job.done() for job in local) and time.monotonic() < deadline:
        time.sleep(poll_s)
    still = sum(not job.done() for job in local)
    notes = []
    if still:
        notes.append(f"{still} local worker(s) had not stopped after {wait_s:.0f} s and go on")
    if others:
        notes.append(f"the {len(others)} SLURM job(s) go on training (`bench status` follows them; scancel stops "
                     "them)")
    return "; ".join(notes)


class LaunchFailed(ValueError):
    """Some cells did not finish; the message names them, their errors and their logs."""


def wait_for_cells(folder: RunFolder, config: dict, jobs, progress: bool, poll_s: float = 1.0) -> None:
    """Block until every cell is finished, or no job is left to finish the rest."""
    cells = cells_in_order(config)
    for job in jobs:
        if isinstance(job, DebugJob):
            job.exception()  # the debug executor runs its job here, now; a failure is in failure.json
    jobs = [job for job in jobs if not isinstance(job, DebugJob)]
    bar = tqdm(total=len(cells), desc="Cells", unit="cell", disable=not progress, dynamic_ncols=True)
    try:
        with StopOnSignals() as stop:
            while True:
                done = sum(folder.cell(name, seed).is_done() for name, seed in cells)
                bar.update(done - bar.n)
                working = any(not job.done() for job in jobs) or any(
                    holder(folder.cell(n, s).path) is not None for n, s in cells) or cells_waiting(folder)
                if done == len(cells) or not working:
                    break
                if stop():
                    raise RunInterrupted(folder.path, stop.requested, stop_jobs(jobs))
                time.sleep(poll_s)
    except KeyboardInterrupt:  # the same signal twice: stop waiting for the workers at once
        raise RunInterrupted(folder.path, None, "stopped waiting for the workers: any still running save their "
                                                "cell at their next step; `bench status` shows them") from None
    finally:
        bar.close()
    unfinished = [s for s in cell_states(folder, config) if s.state not in ("done", "diverged")]
    if unfinished:
        lines = [f"  {s.combination} seed {s.seed}: {s.state}{' - ' + s.detail if s.detail else ''}" for s in unfinished]
        raise LaunchFailed(
            f"{len(unfinished)} of {len(cells)} cells did not finish:\n" + "\n".join(lines)
            + f"\n`bench status {folder.path}` shows their logs; rerun the same `bench run` to resubmit them "
              "(finished cells are kept)")

