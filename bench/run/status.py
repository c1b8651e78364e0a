"""``bench status RUN``: where every cell of a run stands, read from the run folder alone.

A cell is ``done`` or ``diverged`` (its metrics.json), ``running`` (a process holds its lock:
which host, pid and job), ``failed`` (its job recorded the error in failure.json), ``pending``
(a live job of launch.json will take it), ``stopped`` (the job that had it ended without
finishing it: killed, out of memory, node failure; its checkpoint is kept) or ``not started``.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from bench.rundir.layout import RunFolder
from bench.rundir.lock import holder
from bench.rundir.read import (
    RecordError,
    cells_in_order,
    read_cell_record,
    read_config,
    read_json,
)

log = logging.getLogger("colorbench")


ALIVE_SLURM_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
                      "REQUEUE_HOLD", "REQUEUE_FED", "PREEMPTED", "SIGNALING", "STAGE_OUT"}


def read_launches(folder: RunFolder) -> list[dict]:
    """launch.json's launches, oldest first (none if the run never launched jobs)."""
    if not folder.launch.is_file():
        return []
    try:
        launches = read_json(folder.launch)["launches"]
        if all(isinstance(launch, dict) and isinstance(launch.get("jobs"), list) for launch in launches):
            return list(launches)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    log.warning("%s is damaged: the jobs it listed are not followed (each cell's lock still keeps it to one "
                "process); delete it once those jobs have ended", folder.launch)
    return []


def job_alive(launch: dict, job: dict) -> bool:
    """Whether a recorded job may still train cells: a local worker whose process lives on
    this host, or a SLURM job that SLURM lists as pending, running or requeued."""
    if launch["launcher"] == "local":
        if launch.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(job["id"]), 0)
        except (OSError, ValueError):
            return False
        return _not_zombie(int(job["id"]))
    if launch["launcher"] == "slurm":
        # UNKNOWN: sacct cannot be asked from here; never submit a cell twice on a guess
        return slurm_state(job["id"]) in ALIVE_SLURM_STATES | {"UNKNOWN"}
    return False


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True  # no /proc: the signal said it exists


def slurm_state(job_id: str) -> str:
    """SLURM's state of a job (``sacct`` through submitit), or UNKNOWN off the cluster."""
    try:
        from submitit.slurm.slurm import SlurmJob

        return SlurmJob(folder="/", job_id=str(job_id)).state
    except Exception:  # noqa: BLE001 - no sacct here: nothing known
        return "UNKNOWN"


def cells_waiting(folder: RunFolder) -> set[tuple[str, int]]:
    """The cells a live job of an earlier launch will still train."""
    waiting = set()
    for launch in read_launches(folder):
        for job in launch.get("jobs", []):
            if job_alive(launch, job):
                waiting |= {(name, int(seed)) for name, seed in job["cells"]}
    return waiting


STATES = ("done", "diverged", "running", "pending", "failed", "stopped", "not started")


@dataclass
class CellStatus:
    combination: str
    seed: int
    state: str
    where: str = ""
    job: str = ""
    detail: str = ""
    log: list[str] = field(default_factory=list)  # the last lines of its job's log, for a failed or stopped cell


def tail(path: str | Path | None, lines: int) -> list[str]:
    """The last ``lines`` non-empty lines of a log file (none if it is missing)."""
    try:
        text = Path(path).read_text(errors="replace") if path else ""
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def _latest_jobs(folder: RunFolder) -> dict[tuple[str, int], tuple[dict, dict]]:
    """Each cell's newest (launch, job) in launch.json."""
    latest = {}
    for launch in read_launches(folder):
        for job in launch.get("jobs", []):
            for name, seed in job.get("cells", []):
                latest[(name, int(seed))] = (launch, job)
    return latest


def _finished(record: dict) -> tuple[str, str]:
    state = "done" if record.get("status") == "ok" else "diverged"
    detail = f"{record.get('steps', '?')} steps in {record.get('seconds', '?')} s"
    if state == "diverged":
        detail += f", non-finite loss at step {record.get('diverged_at')}"
    return state, detail


def duration_words(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_text(path: Path) -> str:
    """A training cell's progress record (progress.json, rewritten at each log sync) in
    words: its step of its total, steps per second, time left and latest losses; "" if there
    is none or it cannot be read (a rewrite is atomic: the next look sees a whole one)."""
    try:
        p = read_json(path)
        step, total = int(p["step"]), int(p["total"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    words = f"step {step}/{total} ({step / total:.0%})" if total else f"step {step}"
    if p.get("steps_per_second"):
        words += f", {p['steps_per_second']:.3g} steps/s, about {duration_words(p.get('eta_seconds') or 0)} left"
    losses = p.get("losses") or {}
    if isinstance(losses, dict) and losses:
        words += "; " + ", ".join(f"{k} {v:.3g}" for k, v in losses.items() if isinstance(v, (int, float)))
    if p.get("updated"):
        words += f" (at {p['updated']})"
    return words


def cell_state(folder: RunFolder, name: str, seed: int, latest: dict, alive: dict, lines: int) -> CellStatus:
    cell = folder.cell(name, seed)
    launch, job = latest.get((name, seed), (None, None))
    job_label = f"{launch['launcher']} job {job['id']}" if job else ""
    if cell.is_done():
        try:
            record = read_cell_record(cell.record)
        except RecordError as exc:  # damaged: said for this cell, the others still shown
            return CellStatus(name, seed, "failed", detail=str(exc))
        state, detail = _finished(record)
        return CellStatus(name, seed, state, where=record.get("host", ""), job=record.get("job", ""), detail=detail)
    held = holder(cell.path)
    if held is not None:
        progress = progress_text(cell.progress)
        return CellStatus(name, seed, "running", where=f"{held.get('host', '?')} pid {held.get('pid', '?')}",
                         job=held.get("job") or job_label,
                         detail=f"since {held.get('started', '?')}" + (f"; {progress}" if progress else ""))
    if cell.failure.is_file():
        failure = read_json(cell.failure)
        log_lines = (failure.get("traceback") or [])[-lines:]
        return CellStatus(name, seed, "failed", where=failure.get("host", ""), job=failure.get("job") or job_label,
                         detail=failure.get("error", ""), log=log_lines)
    if job is not None:
        key = (launch["id"], job["id"])
        if key not in alive:
            alive[key] = job_alive(launch, job)
        if alive[key]:
            detail = f"SLURM: {slurm_state(job['id'])}" if launch["launcher"] == "slurm" else "waiting for a worker"
            return CellStatus(name, seed, "pending", job=job_label, detail=detail)
        return CellStatus(name, seed, "stopped", job=job_label, log=tail(job.get("stderr"), lines),
                         detail="its job ended without finishing it" + (
                             "; the checkpoint is kept" if cell.checkpoint.is_file() else ""))
    if cell.generator.is_file():  # trained, and stopped before its scores were written
        return CellStatus(name, seed, "stopped", job=job_label,
                          detail="trained but not scored (stopped while scoring); rerun `bench run` to score it")
    detail = "a checkpoint is kept" if cell.checkpoint.is_file() else ""
    return CellStatus(name, seed, "not started", detail=detail)


def cell_states(folder: RunFolder | str | Path, config: dict | None = None, lines: int = 8) -> list[CellStatus]:
    """Every cell of the run, in the run's order, with where it stands."""
    folder = folder if isinstance(folder, RunFolder) else RunFolder(folder)
    config = config or read_config(folder.config)
    latest, alive = _latest_jobs(folder), {}
    return [cell_state(folder, name, seed, latest, alive, lines) for name, seed in cells_in_order(config)]


def status_text(folder: RunFolder, states: list[CellStatus]) -> str:
    """The table `bench status` prints, with the log lines of failed and stopped cells."""
    rows = [("combination", "seed", "state", "where", "job", "detail")]
    rows += [(s.combination, str(s.seed), s.state, s.where, s.job, s.detail) for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r[:5], widths)) + "  " + r[5] for r in rows]
    counts = {state: sum(s.state == state for s in states) for state in STATES}
    lines.append(f"\n{len(states)} cells: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n))
    metrics = "metrics.csv has every cell" if counts["done"] + counts["diverged"] == len(states) else (
        "metrics.csv is assembled as cells finish; the last one completes it")
    lines.append(f"{folder.path}: {metrics}")
    for s in states:
        if s.log:
            lines.append(f"\n{s.combination} seed {s.seed} ({s.state}), last log lines:")
            lines += [f"  | {line}" for line in s.log]
    return "\n".join(lines)
