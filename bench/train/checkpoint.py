"""A cell's checkpoint: the one loader, and the checks that a saved state fits the networks
and photos it is resumed with."""
from __future__ import annotations

from pathlib import Path

import torch
from colorbench_datasets.manifest import describe_split_change, split_print


class CorruptCheckpoint(RuntimeError):
    pass


def load_checkpoint(path: Path, mmap: bool = False) -> dict:
    """A cell's checkpoint.pt, always onto the CPU: its random generator states and batch
    queue must stay CPU tensors (``Generator.set_state`` takes a CPU ByteTensor), and
    ``load_state_dict`` moves each weight and optimizer moment onto its parameter's device.
    ``mmap``: read the tensors lazily (to look at a checkpoint, not to resume it)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # truncated, foreign or pickled-code file: never trusted
        raise CorruptCheckpoint(
            f"cannot resume from {path}: not a readable Colorbench checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}). Delete it to restart this cell from scratch."
        ) from None
    if isinstance(state, dict) and state.get("format") != CHECKPOINT_FORMAT:
        saved = state.get("format")
        newer = isinstance(saved, int) and saved > CHECKPOINT_FORMAT
        raise CorruptCheckpoint(
            f"cannot resume from {path}: it was written by a "
            + (f"newer Colorbench (checkpoint format {saved}; this one reads {CHECKPOINT_FORMAT}): resume it with "
               "that version, or delete it to restart this cell from scratch here." if newer else
               "older Colorbench (epoch-based batches). Delete it to restart this cell from scratch.")
        )
    return state


# Checkpoints of the step-budgeted loop with its batch stream; older ones are refused by name.
CHECKPOINT_FORMAT = 2


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
        if rng.numel() != torch.get_rng_state().numel():  # another torch build's generator
            return (f"its random generator state has {rng.numel()} bytes and this torch's has "
                    f"{torch.get_rng_state().numel()} (saved by another torch build?): it cannot continue the "
                    "same random sequence")
    return None
