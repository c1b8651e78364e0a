"""``bench status RUN``: where every cell of a run stands, read from the run folder alone.

A cell is ``done`` or ``diverged`` (its metrics.json), ``running`` (a process holds its lock:
which host, pid and job), ``failed`` (its job recorded the error in failure.json), ``pending``
(a live job of launch.json will take it), ``stopped`` (the job that had it ended without
finishing it: killed, out of memory, node failure; its checkpoint is kept) or ``not started``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.folder import RunFolder
from bench.launch import job_alive, read_launches, slurm_state
from bench.lock import holder
from bench.records import cells_in_order
from bench.results import read_json

STATES = ("done", "diverged", "running", "pending", "failed", "stopped", "not started")


@dataclass
class CellState:
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


def cell_state(folder: RunFolder, name: str, seed: int, latest: dict, alive: dict, lines: int) -> CellState:
    cell = folder.cell(name, seed)
    launch, job = latest.get((name, seed), (None, None))
    job_label = f"{launch['launcher']} job {job['id']}" if job else ""
    if cell.is_done():
        record = read_json(cell.record)
        state, detail = _finished(record)
        return CellState(name, seed, state, where=record.get("host", ""), job=record.get("job", ""), detail=detail)
    held = holder(cell.path)
    if held is not None:
        return CellState(name, seed, "running", where=f"{held.get('host', '?')} pid {held.get('pid', '?')}",
                         job=held.get("job") or job_label, detail=f"since {held.get('started', '?')}")
    if cell.failure.is_file():
        failure = read_json(cell.failure)
        log_lines = (failure.get("traceback") or [])[-lines:]
        return CellState(name, seed, "failed", where=failure.get("host", ""), job=failure.get("job") or job_label,
                         detail=failure.get("error", ""), log=log_lines)
    if job is not None:
        key = (launch["id"], job["id"])
        if key not in alive:
            alive[key] = job_alive(launch, job)
        if alive[key]:
            detail = f"SLURM: {slurm_state(job['id'])}" if launch["launcher"] == "slurm" else "waiting for a worker"
            return CellState(name, seed, "pending", job=job_label, detail=detail)
        return CellState(name, seed, "stopped", job=job_label, log=tail(job.get("stderr"), lines),
                         detail="its job ended without finishing it" + (
                             "; the checkpoint is kept" if cell.checkpoint.is_file() else ""))
    detail = "a checkpoint is kept" if cell.checkpoint.is_file() else ""
    return CellState(name, seed, "not started", detail=detail)


def cell_states(folder: RunFolder | str | Path, config: dict | None = None, lines: int = 8) -> list[CellState]:
    """Every cell of the run, in the run's order, with where it stands."""
    from bench.records import read_config

    folder = folder if isinstance(folder, RunFolder) else RunFolder(folder)
    config = config or read_config(folder.config)
    latest, alive = _latest_jobs(folder), {}
    return [cell_state(folder, name, seed, latest, alive, lines) for name, seed in cells_in_order(config)]


def status_text(folder: RunFolder, states: list[CellState]) -> str:
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
