"""Training one cell: a (loss combination, seed) pair. Reads top to bottom."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from bench.config import autocast_dtype
from bench.results import atomic_torch_save
from colorbench_datasets import LabSplit, random_crop_flip
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
    # NHWC: oneDNN and cuDNN pick faster convolution kernels (measured in benchmarks/).
    channels_last: bool = True


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
) -> CellResult:
    """Train a generator on ``train`` with ``combo``; resumes from ``checkpoint`` if present."""
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    G = make_generator(settings, seed, generator_head(combo)).to(device, memory_format=memory_format)
    terms = build_terms(combo, options, seed)
    for _, _, term in terms:
        term.to(device, memory_format=memory_format)
        if hasattr(term, "prepare"):  # needs the training data or G (classification: class prior, logits)
            term.prepare(G, train)
    critic = next((t for _, _, t in terms if hasattr(t, "discriminator_loss")), None)
    opt_G = adam(G.parameters(), settings, device)
    opt_D = adam(critic.discriminator.parameters(), settings, device) if critic else None

    # The data order and crops come from their own generator, seeded alike for every
    # combination, so all combinations of a seed see identical batches.
    data_rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout
    n_steps = len(train) // settings.batch_size
    start_epoch, log, elapsed = 0, [], 0.0
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        G.load_state_dict(state["G"])
        opt_G.load_state_dict(state["opt_G"])
        if critic is not None:
            critic.discriminator.load_state_dict(state["D"])
            opt_D.load_state_dict(state["opt_D"])
        data_rng.set_state(state["data_rng"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch, log, elapsed = state["epoch"], state["log"], state["seconds"]

    dtype = autocast_dtype(settings.precision)
    autocast = (
        (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    )
    names = [name for name, _, _ in terms]
    bar = tqdm(
        total=settings.epochs * n_steps, initial=start_epoch * n_steps, desc=desc,
        disable=not progress, leave=True, dynamic_ncols=True, unit="step",
    )
    t0 = time.perf_counter() - elapsed
    G.train()
    for epoch in range(start_epoch, settings.epochs):
        order = torch.randperm(len(train), generator=data_rng)
        epoch_losses = []
        for i in range(n_steps):
            idx = order[i * settings.batch_size : (i + 1) * settings.batch_size].to(train.L.device)
            L, ab = random_crop_flip(train.L[idx], train.ab[idx], settings.size, data_rng)
            L = L.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            ab = ab.to(device, non_blocking=True).contiguous(memory_format=memory_format)

            with autocast():
                fake = G(L).float()

            d_loss = torch.zeros((), device=device)
            if critic is not None:
                critic.discriminator.requires_grad_(True)
                opt_D.zero_grad(set_to_none=True)
                with autocast():
                    d_loss = critic.discriminator_loss(L, fake, ab)
                d_loss.backward()
                opt_D.step()
                critic.discriminator.requires_grad_(False)

            opt_G.zero_grad(set_to_none=True)
            with autocast():
                values = [term(L, fake, ab).float() for _, _, term in terms]
            total = sum(w * v for (_, w, _), v in zip(terms, values))
            total.backward()
            opt_G.step()
            # Kept on the device; one host sync per epoch, not per step.
            epoch_losses.append(torch.stack([*values, total, d_loss.float()]).detach())
            bar.update(1)

        rows = torch.stack(epoch_losses).cpu().tolist() if epoch_losses else []
        first_step = epoch * n_steps
        for j, row in enumerate(rows):
            entry = {"step": first_step + j, "epoch": epoch, **dict(zip(names, row[:-2]))}
            entry["total"], entry["d_loss"] = row[-2], row[-1] if critic is not None else math.nan
            log.append(entry)
        bad = next((first_step + j for j, row in enumerate(rows) if not all(map(math.isfinite, row))), None)
        if bad is not None:
            bar.close()
            return CellResult(G, log, diverged_at=bad, seconds=time.perf_counter() - t0)
        if rows:
            shown = names + (["d_loss"] if critic is not None else [])
            bar.set_postfix({k: f"{log[-1][k]:.3g}" for k in shown}, refresh=False)
        if checkpoint is not None:
            state = {
                "G": G.state_dict(), "opt_G": opt_G.state_dict(), "epoch": epoch + 1, "log": log,
                "data_rng": data_rng.get_state(), "torch_rng": torch.get_rng_state(),
                "seconds": time.perf_counter() - t0,
            }
            if critic is not None:
                state |= {"D": critic.discriminator.state_dict(), "opt_D": opt_D.state_dict()}
            atomic_torch_save(checkpoint, state)
    bar.close()
    return CellResult(G, log, seconds=time.perf_counter() - t0)
