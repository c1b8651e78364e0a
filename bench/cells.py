"""A rerun's view of an existing run folder: which cells it may keep or resume, and what
``--overwrite`` discards.

A finished cell is kept only if it was trained and scored on the photos of this run (its
metrics.json records them, ``colorbench_datasets.manifest``): otherwise its numbers would
share a table with cells scored on other photos. A checkpoint is resumed only if it was
saved on these train photos and fits the networks these options build.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from bench.folder import CELL_FILES, METRICS, RUN_FILES, RunFolder
from bench.lock import describe_holder, holder
from bench.records import RecordError, read_cell_record, read_config, read_json_file
from colorbench_datasets.manifest import describe_change, describe_split_change, split_print

log = logging.getLogger("colorbench")


# ---------------------------------------------------------------- checkpoints

def _shapes(state: dict) -> dict:
    return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


def _net_problem(name: str, saved, net: torch.nn.Module) -> str | None:
    if not isinstance(saved, dict):
        return f"its {name} weights are not a state dict"
    want, have = _shapes(net.state_dict()), _shapes(saved)
    if set(want) != set(have):
        extra = sorted(set(have) - set(want))[:2]
        lacking = sorted(set(want) - set(have))[:2]
        return (f"its {name} has other layers than these options build ("
                + ", ".join([f"{k} not expected" for k in extra] + [f"{k} missing" for k in lacking])
                + "): another --generator, --size or loss combination?")
    for key, shape in want.items():
        if have[key] != shape:
            return (f"its {name} does not match these options ({key} is {'x'.join(map(str, have[key]))} in the file, "
                    f"{'x'.join(map(str, shape))} here: another --width, --disc-width, --size or --generator?)")
    return None


def _optimizer_problem(name: str, saved, net: torch.nn.Module) -> str | None:
    try:
        groups = saved["param_groups"]
        count = sum(len(g["params"]) for g in groups)
    except (TypeError, KeyError):
        return f"its {name} optimizer state is not an Adam state dict"
    params = list(net.parameters())
    if count != len(params):
        return f"its {name} optimizer holds {count} parameters, the network here has {len(params)}"
    for index, param in zip(range(count), params):
        moments = saved.get("state", {}).get(index, {})
        avg = moments.get("exp_avg") if isinstance(moments, dict) else None
        if isinstance(avg, torch.Tensor) and avg.shape != param.shape:
            return f"its {name} optimizer state does not match the network's shapes"
    return None


def checkpoint_problem(state, G, D, train, train_print: dict | None = None) -> str | None:
    """Why ``state`` (a loaded checkpoint.pt) cannot resume training ``G`` (and ``D``) on
    ``train``, or None. Checked before anything is loaded from it, so a mismatch is a clear
    message instead of a size-mismatch traceback or an IndexError from a batch queue saved
    for other photos."""
    if not isinstance(state, dict):
        return "it is not a checkpoint (no dictionary of states)"
    needed = ["G", "opt_G", "step", "stream", "log", "torch_rng", "seconds"]
    needed += ["D", "opt_D"] if D is not None else []
    missing = [k for k in needed if k not in state]
    if missing:
        return f"it lacks {', '.join(missing)} (saved by another version, or for a combination with a discriminator?)"
    if D is None and "D" in state:
        return "it holds a discriminator, and this cell's combination has none"
    for problem in (
        _net_problem("generator", state["G"], G),
        D is not None and _net_problem("discriminator", state["D"], D),
        _optimizer_problem("generator", state["opt_G"], G),
        D is not None and _optimizer_problem("discriminator", state["opt_D"], D),
    ):
        if problem:
            return problem
    if isinstance(state.get("data"), dict):
        change = describe_split_change("train", state["data"], train_print or split_print(train))
        if change:
            return f"it was saved while training on other photos ({change}; restore those photos to resume it)"
    stream = state["stream"]
    if not isinstance(stream, dict) or not {"rng", "queue", "n"} <= set(stream):
        return "its batch stream is not one Colorbench saves"
    queue = stream["queue"]
    if not isinstance(queue, torch.Tensor) or queue.ndim != 1 or queue.dtype not in (torch.int64, torch.int32):
        return "its saved batch queue is not a list of photo indices"
    if stream["n"] != len(train) or (len(queue) and (int(queue.min()) < 0 or int(queue.max()) >= len(train))):
        return (f"its saved batch queue is for {stream['n']} train photos and the train split now has "
                f"{len(train)} (the photos changed since it was saved; restore them to resume it)")
    if not isinstance(state["log"], list):
        return "its training log is not a list"
    if not (isinstance(state["step"], int) and state["step"] >= 0 and state["step"] == len(state["log"])):
        return f"its position (step {state['step']!r}) does not match its log of {len(state['log'])} steps"
    for rng in (stream["rng"], state["torch_rng"]):
        if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8:
            return "a saved random generator state is not one"
    return None


def _peek_checkpoint(path: Path):
    """A checkpoint's contents without reading its tensors (memory-mapped), or an error in
    the words train.load_checkpoint uses."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # truncated, foreign or pickled-code file: never trusted
        raise RecordError(
            f"cannot resume from {path}: not a readable Colorbench checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}). Delete it to restart this cell from scratch."
        ) from None


# ---------------------------------------------------------------- finished cells

def _legacy_print(config: dict | None) -> dict | None:
    """What config.json's data manifest tells of the photos of cells recorded before cells
    kept their own data record: counts and name digests, no pixels."""
    data = (config or {}).get("data") or {}
    if not all(k in data for k in ("train_images", "val_images", "train_files_sha256", "val_files_sha256")):
        return None
    return {s: {"images": data[f"{s}_images"], "files_sha256": data[f"{s}_files_sha256"], "pixels_sha256": None}
            for s in ("train", "val")}


def _generator_readable(path: Path) -> bool:
    try:
        record = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return isinstance(record, dict) and isinstance(record.get("state_dict"), dict)
    except Exception:
        return False


def check_cells(out: Path, combos, seeds, manifest: dict, overwrite: bool = False) -> None:
    """Before a rerun trains anything: refuse if a kept cell was trained or scored on other
    photos than ``manifest`` describes (naming what changed), if its record is damaged, or if
    a checkpoint to resume is unreadable or was saved on other train photos. Raises
    ``RecordError`` (a ValueError) with the fix."""
    out = Path(out)
    check_is_run_folder(out, overwrite)
    folder = RunFolder(out)
    if overwrite or not folder.cells_dir.is_dir():
        return

    new, new_files = manifest["fingerprint"], manifest.get("files")
    try:
        old_config = read_json_file(folder.config, "") if folder.config.is_file() else None
        old_config = old_config if isinstance(old_config, dict) else None
    except RecordError:
        old_config = None
    old_data = (old_config or {}).get("data") or {}
    changed: dict[str, list[str]] = {}
    for seed in seeds:
        for combo in combos:
            files = folder.cell(combo.name, seed)
            cell = files.path
            if files.record.is_file():
                record = read_cell_record(files.record)
                recorded = record.get("data") or _legacy_print(old_config)
                if recorded is None:
                    changes = ["no record of the photos it was scored on"]
                else:
                    old_files = old_data.get("files") if old_data.get("fingerprint") == recorded else None
                    changes = describe_change(recorded, new, old_files, new_files)
                    if "data" not in record and not changes:
                        log.info("%s: recorded before cells kept their data; checked by file names and counts", cell)
                if changes:
                    changed.setdefault("; ".join(changes), []).append(f"{combo.name} seed {seed}")
                elif record["status"] == "ok" and not _generator_readable(files.generator):
                    log.warning(
                        "%s is missing or damaged: the cell's scores are kept, but `bench report` figures and "
                        "`bench colorize` cannot use it; delete %s and rerun to train the cell again",
                        files.generator, cell)
            elif files.checkpoint.is_file():
                state = _peek_checkpoint(files.checkpoint)
                saved = state.get("data") if isinstance(state, dict) else None
                change = isinstance(saved, dict) and describe_split_change(
                    "train", saved, new["train"], (old_data.get("files") or {}).get("train"), (new_files or {}).get("train"))
                if change:
                    raise RecordError(
                        f"cannot resume from {files.checkpoint}: it was saved while training on other photos "
                        f"({change}; restore those photos to resume it). Delete it to restart this cell from scratch."
                    )
    if changed:
        lines = "; ".join(f"{', '.join(cells)}: {what}" for what, cells in changed.items())
        raise RecordError(
            f"{out} holds finished cells trained or scored on other photos than these ({lines}). Their scores "
            "cannot share a table with cells scored on these photos. Restore the photos they used, use another "
            "--out, or --overwrite to discard the old cells and start again."
        )


# ---------------------------------------------------------------- --overwrite

def check_is_run_folder(out: Path, overwrite: bool) -> None:
    """Refuse an existing --out that holds files by Colorbench's names but is not a run
    folder (no cells, and a config.json that is not a run's): a run would write over its
    metrics.csv, and --overwrite would delete its config.json and report.md."""
    if not out.is_dir() or RunFolder(out).cells_dir.is_dir():
        return
    config = RunFolder(out).config
    if config.is_file():
        try:
            read_config(config)
            return
        except RecordError:
            if not overwrite:
                return  # the rerun's option check names the damaged config.json and its fix
    ours = [name for name in RUN_FILES if (out / name).exists()]
    if ours and (overwrite or METRICS in ours):
        raise RecordError(
            f"--out {out} holds {', '.join(ours)} but is not a `bench run` folder (no cells/, no run config.json); "
            f"a run would write over {'them' if overwrite else 'metrics.csv'}. Choose another --out."
        )


def discard_run(out: Path) -> list[Path]:
    """Delete an earlier run's files from ``out`` (its config, table, report, summary,
    figures and cells, and any temp file of an interrupted write), and nothing else: a
    folder of the user's own files given as --out by mistake keeps them. Returns what was
    deleted."""
    out = Path(out)
    folder = RunFolder(out)
    for cell in folder.cell_dirs():
        if (busy := holder(cell)) is not None:
            raise RecordError(f"--overwrite: {cell} is being trained right now ({describe_holder(busy)}); stop that "
                              "job first (`bench status` lists them), or use another --out")
    doomed = [out / name for name in RUN_FILES] + folder.figures() + list(out.glob(".*.tmp"))
    doomed += list(folder.cells_dir.glob("*/.seed*.lock"))  # left by a killed job; nobody holds them (checked)
    cells = folder.cells_dir
    for cell in folder.cell_dirs():
        doomed += [cell / name for name in CELL_FILES] + list(cell.glob(".*.tmp"))
    deleted = []
    for path in doomed:
        if path.is_file() or path.is_symlink():
            path.unlink()
            deleted.append(path)
    if folder.jobs_dir.is_dir():  # submitit's job files and logs: all ours
        shutil.rmtree(folder.jobs_dir)
        deleted.append(folder.jobs_dir)
    if cells.is_dir():  # empty cell folders, deepest first
        for empty in sorted((p for p in cells.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [cells]:
            try:
                empty.rmdir()
            except OSError:
                pass  # holds something we did not write
    return deleted
