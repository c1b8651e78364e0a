"""Training one cell: a (loss combination, seed) pair. Reads top to bottom."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from bench.cells import checkpoint_problem
from bench.config import autocast_dtype
from bench.results import atomic_torch_save
from colorbench_datasets import LabSplit, random_crop_flip
from colorbench_datasets.manifest import split_print
from losses import LOSSES, Combination, LossOptions, generator_head
from models import build_generator


@dataclass
class TrainSettings:
    generator: str = "unet"
    size: int = 64
    width: int = 32
    epochs: int = 3
    batch_size: int = 32
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    precision: str = "fp32"
    out_channels: int = 2
    # None: by device and precision. cuDNN's tensor-core kernels and oneDNN's bf16 ones want
    # NHWC (a CPU bf16 step ran 1.8x faster in it); fp32 on a CPU gained nothing consistent
    # and lost ~10% in some steps (benchmarks/README.md).
    channels_last: bool | None = None
    compile: bool = False  # torch.compile the generator (pays off on long GPU runs)


@dataclass
class CellResult:
    generator: nn.Module
    log: list[dict] = field(default_factory=list)
    diverged_at: int | None = None
    seconds: float = 0.0


def make_generator(settings: TrainSettings, seed: int, head: dict | None = None) -> nn.Module:
    """The generator every combination of this seed starts from: same seed, same weights
    (a ``head``, e.g. Zhang's class logits, changes only the output layer)."""
    torch.manual_seed(seed)
    return build_generator(settings.generator, settings.size, settings.width, settings.out_channels, head)


def build_terms(combo: Combination, options: LossOptions, seed: int) -> list[tuple[str, float, nn.Module]]:
    # Seeded apart from the generator, so adding a GAN term never changes G's init.
    torch.manual_seed(seed + 1_000_003)
    return [(t.name, t.weight, LOSSES[t.name].factory(options)) for t in combo.terms]


def adam(params, settings: TrainSettings, device: torch.device) -> torch.optim.Adam:
    # fused Adam runs one kernel for all parameters; foreach is the fallback.
    fused = device.type in ("cuda", "cpu")
    return torch.optim.Adam(params, lr=settings.lr, betas=settings.betas, fused=fused)


def train_step(G, terms, opt_G, opt_D, L, ab, autocast=contextlib.nullcontext) -> torch.Tensor:
    """One optimisation step: the discriminator (if a term has one), then the generator.

    Returns each term's value, the weighted total and the D loss as one detached tensor,
    left on the device so the caller decides when to sync.
    """
    critic = next((t for _, _, t in terms if hasattr(t, "discriminator_loss")), None)
    with autocast():
        fake = G(L).float()

    d_loss = torch.zeros((), device=L.device)
    if critic is not None:
        critic.discriminator.requires_grad_(True)
        opt_D.zero_grad(set_to_none=True)
        with autocast():
            d_loss = critic.discriminator_loss(L, fake, ab)
        d_loss.backward()
        opt_D.step()
        critic.discriminator.requires_grad_(False)  # G's step needs no D weight grads

    opt_G.zero_grad(set_to_none=True)
    with autocast():
        values = [term(L, fake, ab).float() for _, _, term in terms]
    total = sum(w * v for (_, w, _), v in zip(terms, values))
    total.backward()
    opt_G.step()
    return torch.stack([*values, total, d_loss.float()]).detach()


def default_channels_last(device: torch.device, precision: str) -> bool:
    """The memory format ``bench run`` trains in when not told (see TrainSettings)."""
    return device.type == "cuda" or precision != "fp32"


def autocast_context(precision: str, device: torch.device):
    """A factory of autocast contexts for ``precision`` (a no-op for fp32)."""
    dtype = autocast_dtype(precision)
    return (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext


class Interrupted(Exception):
    """Training stopped on request (Ctrl-C) after saving ``checkpoint``."""

    def __init__(self, checkpoint: Path | None):
        self.checkpoint = checkpoint
        super().__init__(f"interrupted; state saved to {checkpoint}")


class CorruptCheckpoint(RuntimeError):
    pass


def load_checkpoint(path: Path, device: torch.device) -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # truncated, foreign or pickled-code file: never trusted
        raise CorruptCheckpoint(
            f"cannot resume from {path}: not a readable Colorbench checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}). Delete it to restart this cell from scratch."
        ) from None


def train_cell(
    combo: Combination,
    seed: int,
    train: LabSplit,
    settings: TrainSettings,
    options: LossOptions,
    device: torch.device,
    checkpoint: Path | None = None,
    progress: bool = True,
    desc: str = "",
    should_stop: Callable[[], bool] = lambda: False,
    checkpoint_seconds: float = 300.0,
) -> CellResult:
    """Train a generator on ``train`` with ``combo``.

    State is saved to ``checkpoint`` after every epoch and every ``checkpoint_seconds``
    within one, and training resumes from it bit for bit. When ``should_stop()`` turns
    true the state is saved at the next step boundary and ``Interrupted`` is raised.
    """
    channels_last = settings.channels_last
    if channels_last is None:
        channels_last = default_channels_last(device, settings.precision)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    G = make_generator(settings, seed, generator_head(combo)).to(device, memory_format=memory_format)
    if settings.compile:
        G.compile()  # in place: state_dict keys stay those of the plain module
    terms = build_terms(combo, options, seed)
    for _, _, term in terms:
        term.to(device, memory_format=memory_format)
        if hasattr(term, "prepare"):  # needs the training data or G (classification: class prior, logits)
            term.prepare(G, train)
    critic = next((t for _, _, t in terms if hasattr(t, "discriminator_loss")), None)
    D = critic.discriminator if critic is not None else None
    opt_G = adam(G.parameters(), settings, device)
    opt_D = adam(D.parameters(), settings, device) if D is not None else None

    # The data order and crops come from their own generator, seeded alike for every
    # combination, so all combinations of a seed see identical batches.
    data_rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout
    n_steps = len(train) // settings.batch_size
    epoch, step, order, log, elapsed = 0, 0, None, [], 0.0
    if checkpoint is not None and checkpoint.is_file():
        state = load_checkpoint(checkpoint, device)
        if (problem := checkpoint_problem(state, G, D, train, settings.batch_size)) is not None:
            raise CorruptCheckpoint(f"cannot resume from {checkpoint}: {problem}. Delete it to restart this cell from scratch.")
        G.load_state_dict(state["G"])
        opt_G.load_state_dict(state["opt_G"])
        if D is not None:
            D.load_state_dict(state["D"])
            opt_D.load_state_dict(state["opt_D"])
        data_rng.set_state(state["data_rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        epoch, step, order, log, elapsed = state["epoch"], state["step"], state["order"], state["log"], state["seconds"]

    names = [name for name, _, _ in terms]
    pending: list[torch.Tensor] = []  # per-step losses still on the device

    def flush() -> int | None:
        """Move pending losses into ``log`` (one host sync); the first non-finite step."""
        rows = torch.stack(pending).cpu().tolist() if pending else []
        first = len(log)
        for j, row in enumerate(rows):
            entry = {"step": first + j, "epoch": epoch, **dict(zip(names, row[:-2])), "total": row[-2]}
            entry["d_loss"] = row[-1] if D is not None else math.nan
            log.append(entry)
        pending.clear()
        return next((first + j for j, row in enumerate(rows) if not all(map(math.isfinite, row))), None)

    def save() -> None:
        if checkpoint is None:
            return
        state = {
            "G": G.state_dict(), "opt_G": opt_G.state_dict(), "epoch": epoch, "step": step,
            "order": order, "log": log, "data_rng": data_rng.get_state(),
            "torch_rng": torch.get_rng_state(), "seconds": time.perf_counter() - t0,
            "data": split_print(train),  # resumed only on the same train photos (bench/cells.py)
        }
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        if D is not None:
            state |= {"D": D.state_dict(), "opt_D": opt_D.state_dict()}
        atomic_torch_save(checkpoint, state)

    autocast = autocast_context(settings.precision, device)
    bar = tqdm(
        total=settings.epochs * n_steps, initial=epoch * n_steps + step, desc=desc,
        disable=not progress, leave=True, dynamic_ncols=True, unit="step",
    )
    t0 = time.perf_counter() - elapsed
    last_save = time.perf_counter()
    G.train()
    while epoch < settings.epochs:
        if order is None:
            order = torch.randperm(len(train), generator=data_rng)
        while step < n_steps:
            if should_stop():
                if flush() is None:
                    save()
                bar.close()
                raise Interrupted(checkpoint)
            idx = order[step * settings.batch_size : (step + 1) * settings.batch_size].to(train.L.device)
            L, ab = random_crop_flip(train.L[idx], train.ab[idx], settings.size, data_rng)
            L = L.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            ab = ab.to(device, non_blocking=True).contiguous(memory_format=memory_format)

            pending.append(train_step(G, terms, opt_G, opt_D, L, ab, autocast))
            step += 1
            bar.update(1)
            if checkpoint is not None and time.perf_counter() - last_save > checkpoint_seconds and step < n_steps:
                if (bad := flush()) is not None:
                    bar.close()
                    return CellResult(G, log, diverged_at=bad, seconds=time.perf_counter() - t0)
                save()
                last_save = time.perf_counter()

        if (bad := flush()) is not None:
            bar.close()
            return CellResult(G, log, diverged_at=bad, seconds=time.perf_counter() - t0)
        if log:
            shown = names + (["d_loss"] if D is not None else [])
            bar.set_postfix({k: f"{log[-1][k]:.3g}" for k in shown}, refresh=False)
        epoch, step, order = epoch + 1, 0, None
        save()
        last_save = time.perf_counter()
    bar.close()
    return CellResult(G, log, seconds=time.perf_counter() - t0)
