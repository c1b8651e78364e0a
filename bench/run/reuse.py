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
from colorbench_datasets.manifest import describe_change, describe_split_change

from bench.config.identity import changed_options
from bench.config.options import IDENTITY_FIELDS, OPTIONS_ADDED_LATER, RunConfig
from bench.config.validate import RunError
from bench.rundir.layout import (
    CELL_FILES,
    CELL_TREES,
    RUN_FILES,
    RUN_TREES,
    STATE,
    CellFolder,
    RunFolder,
)
from bench.rundir.lock import describe_holder, holder
from bench.rundir.read import (
    RecordError,
    read_cell_record,
    read_config,
    read_curve,
    read_json_file,
)
from bench.rundir.write import atomic_torch_save
from bench.train.checkpoint import CorruptCheckpoint, load_checkpoint

log = logging.getLogger("colorbench")


def _peek_checkpoint(path: Path):
    """A checkpoint's contents without reading its tensors (memory-mapped)."""
    try:
        return load_checkpoint(path, mmap=True)
    except CorruptCheckpoint as exc:
        raise RecordError(str(exc)) from None


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
    # submitit's job files and logs, the gallery's images, TensorBoard's events: all ours
    trees = [out / name for name in RUN_TREES] + [cell / name for cell in folder.cell_dirs() for name in CELL_TREES]
    for tree in trees:
        if tree.is_dir() and not tree.is_symlink():
            shutil.rmtree(tree)
            deleted.append(tree)
    if cells.is_dir():  # empty cell folders, deepest first
        for empty in sorted((p for p in cells.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [cells]:
            try:
                empty.rmdir()
            except OSError:
                pass  # holds something we did not write
    return deleted


def check_reuse(out: Path, recorded: dict, cfg: RunConfig) -> int | None:
    """Refuse to mix results of two different configurations in one --out (``recorded``:
    its config.json). A larger --steps than the run's, and nothing else changed, continues
    its cells: returns the steps they were trained for (None: nothing to continue)."""
    old = {**OPTIONS_ADDED_LATER, **recorded["options"]}
    new = cfg.to_dict()
    diff = changed_options(old, new, IDENTITY_FIELDS)  # paths resolved, combinations canonical
    if diff == ["steps"] and isinstance(old.get("steps"), int) and isinstance(new.get("steps"), int):
        if new["steps"] > old["steps"]:
            return old["steps"]
        raise RunError(f"{out} holds a run trained for --steps {old['steps']}; --steps {new['steps']} cannot "
                       f"untrain it. Use --steps {old['steps']} (or more, to train it further), or another --out")
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
    return None


def cells_to_continue(folder: RunFolder, combos, seeds, steps: int) -> list[CellFolder]:
    """The finished cells trained for fewer than ``steps`` (a larger --steps), each with its
    last state kept; a cell without one is refused by name before anything is written."""
    cells, stateless = [], []
    for seed in seeds:
        for combo in combos:
            cell = folder.cell(combo.name, seed)
            if not cell.is_done():
                continue
            record = read_cell_record(cell.record)
            if record.get("status") != "ok" or int(record.get("steps") or 0) >= steps:
                continue  # a diverged cell stays diverged
            (cells if state_step(cell) == record.get("steps") else stateless).append(cell)
    if stateless:
        names = ", ".join(f"{c.path.parent.name} seed{c.path.name[4:]}" for c in stateless[:4])
        raise RunError(f"--steps {steps}: {names}{' and others' if len(stateless) > 4 else ''} kept no last training "
                       f"state of the steps it was scored at ({STATE} missing, or from an earlier, shorter --steps: "
                       "trained with --no-keep-state, by an earlier version, or deleted), so cannot train further "
                       "without training another model than the one scored; rerun into another --out")
    return cells


def state_step(cell: CellFolder) -> int | None:
    """The step of a finished cell's kept state (None: none, or unreadable): it belongs to the
    cell's record only if this is the record's step count."""
    if not cell.state.is_file():
        return None
    try:
        state = load_checkpoint(cell.state, mmap=True)
    except CorruptCheckpoint:
        return None
    step = state.get("step") if isinstance(state, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def reopen_cell(cell: CellFolder) -> None:
    """Make a finished cell unfinished again, to train on from its last state: the state
    becomes its checkpoint (with the curve as curve.csv has it, its final point included),
    and only then is its record removed, so a crash in between leaves it finished."""
    state = load_checkpoint(cell.state)
    curve = read_curve(cell.curve) if cell.curve.is_file() else None
    if curve is not None:  # the curve up to the state's own step: never joined onto another state
        state["curve"] = curve[curve["step"] <= state["step"]].to_dict("records")
    atomic_torch_save(cell.checkpoint, state)
    cell.record.unlink()


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
