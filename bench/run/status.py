"""``bench status RUN``: where every cell of a run stands, read from the run folder alone.

A cell is ``done`` or ``diverged`` (its metrics.json), ``running`` (a process holds its lock:
which host, pid and job), ``failed`` (its job recorded the error in failure.json), ``pending``
(a live job of launch.json, or the live `bench run` holding the folder, will take it),
``stopped`` (the process that had it ended without finishing it: Ctrl-C, killed, out of
memory, node failure; which step it reached and what is kept: its checkpoint, or a trained
generator not yet scored) or ``not started``. A finished cell whose run was given a larger
--steps (its state.pt back as its checkpoint) waits to be trained further: ``pending`` while
that run is alive, ``stopped`` if it ended first.

A run folder held by a `bench run` that has not written its config.json yet is being
prepared (photos, weights, the baselines' scores): ``run_status_text`` says so, with the
holder, rather than refusing it.
"""
from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
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


def cell_state(folder: RunFolder, name: str, seed: int, latest: dict, alive: dict, lines: int,
               config_steps: int | None = None, run_held: dict | None = None) -> CellStatus:
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
        reached = _progress_steps(cell)
        return CellStatus(name, seed, "stopped", job=job_label, log=tail(job.get("stderr"), lines),
                         detail="its job ended without finishing it" + (
                             f" (at step {reached[0]} of {reached[1]})" if reached else "") + (
                             "; the checkpoint is kept" if cell.checkpoint.is_file() else ""))
    return _unfinished(cell, name, seed, job_label, config_steps, run_held)


def _steps_done(cell) -> int | None:
    """The steps a finished cell was trained for: its train_log.csv's rows (one per step)."""
    try:
        with open(cell.train_log, "rb") as f:
            return max(sum(1 for line in f if line.strip()) - 1, 0)
    except OSError:
        return None


def _progress_steps(cell) -> tuple[int, int] | None:
    try:
        p = read_json(cell.progress)
        return int(p["step"]), int(p["total"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _by(held: dict) -> str:
    return f"`bench run` pid {held.get('pid', '?')} on {held.get('host', '?')}"


def _unfinished(cell, name: str, seed: int, job_label: str, total: int | None, held: dict | None) -> CellStatus:
    """A cell no process holds and no job will take: where it was left, from its files.

    progress.json (rewritten along training, removed when the cell is done) says the step a
    stopped cell reached: short of its total, it was interrupted mid-training; at its total,
    it was trained and stopped while being scored. A cell with state.pt and a checkpoint and
    no progress is a finished cell reopened to be trained further (a larger --steps).
    ``held``: the live `bench run` holding the run folder, which trains it in its turn."""
    progress = _progress_steps(cell)
    checkpoint = cell.checkpoint.is_file()
    if progress is None and checkpoint and cell.state.is_file():  # reopened, not yet trained on
        done = _steps_done(cell)
        trained = f"trained for {done} steps" if done is not None else "trained"
        to = f" to {total}" if total and (done is None or total > done) else ""  # config.json is rewritten last
        if held is not None:
            return CellStatus(name, seed, "pending", job=job_label,
                              detail=f"{trained}; waiting to be trained further{to} by {_by(held)}")
        return CellStatus(name, seed, "stopped", job=job_label,
                          detail=f"{trained}, waiting to be trained further{to} (a larger --steps); rerun `bench run` "
                                 "with that --steps to train it on from its last state")
    if progress is not None and progress[0] < progress[1]:  # interrupted mid-training
        step, of = progress
        kept = "its checkpoint is kept" if checkpoint else "no checkpoint was saved yet (it starts again)"
        where = f"stopped at step {step} of {of} ({step / of:.0%}); {kept}"
        if held is not None:
            return CellStatus(name, seed, "pending", job=job_label, detail=f"{where}; {_by(held)} resumes it in its turn")
        return CellStatus(name, seed, "stopped", job=job_label,
                          detail=f"{where}; rerun `bench run` to resume it" if checkpoint else f"{where}; rerun `bench run`")
    if progress is not None or cell.generator.is_file():  # trained, and stopped before its scores were written
        return CellStatus(name, seed, "stopped", job=job_label,
                          detail="trained but not scored (stopped while scoring); rerun `bench run` to score it")
    if checkpoint:  # a checkpoint from before progress records
        return CellStatus(name, seed, "stopped", job=job_label,
                          detail="stopped mid-training; its checkpoint is kept: rerun `bench run` to resume it")
    if held is not None:
        return CellStatus(name, seed, "pending", detail=f"{_by(held)} trains it in its turn")
    return CellStatus(name, seed, "not started")


def run_holder(folder: RunFolder) -> dict | None:
    """The live `bench run` holding the run folder's lock (its pid, host, start, command), or None."""
    held = holder(folder.path)
    if held is None or held.get("task", "bench run") != "bench run":
        return None
    return held


def cell_states(folder: RunFolder | str | Path, config: dict | None = None, lines: int = 8) -> list[CellStatus]:
    """Every cell of the run, in the run's order, with where it stands."""
    folder = folder if isinstance(folder, RunFolder) else RunFolder(folder)
    config = config or read_config(folder.config)
    latest, alive = _latest_jobs(folder), {}
    held, total = run_holder(folder), config.get("steps_per_cell")
    return [cell_state(folder, name, seed, latest, alive, lines, total, held) for name, seed in cells_in_order(config)]


def _since(started: str | None) -> str:
    try:
        return f"since {started} ({duration_words((datetime.now() - datetime.fromisoformat(started)).total_seconds())})"
    except (TypeError, ValueError):
        return f"since {started or '?'}"


def preparing_text(folder: RunFolder, held: dict) -> str:
    """What `bench status` says of a run folder a `bench run` holds before its config.json:
    it is being prepared, by whom, since when."""
    return (f"{folder.path}: preparing (loading photos, weights and the baselines' scores…) — {_by(held)}, "
            f"{_since(held.get('started'))}: {' '.join(held.get('command') or [])}\n"
            "Its cells are listed once it writes config.json, just before the first one trains.")


def run_status_text(folder: RunFolder, lines: int = 8) -> str:
    """`bench status`'s whole answer for a run folder: a run being prepared, or its cells'
    table (with the live `bench run` holding it, if any). A folder with no config.json that
    nobody holds is refused by ``read_config``, naming the fix."""
    held = run_holder(folder)
    if held is not None and not folder.config.is_file():
        return preparing_text(folder, held)
    config = read_config(folder.config)
    text = status_text(folder, cell_states(folder, config, lines))
    if held is not None:
        # a rerun's preparation rewrites config.json last: until then, the holder started after it
        again = str(held.get("started") or "") > str(config.get("started") or "~")
        what = "preparing it again (photos, weights, the baselines' scores)" if again else "running it"
        text += f"\n{_by(held)} is {what}, {_since(held.get('started'))}"
    return text


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
