"""What tests/test_ddp.py runs under ``torchrun --nproc-per-node 2``: tiny cells trained
data-parallel on CPUs (gloo), each rank's results saved to ``OUT/rank{r}.pt``.

    ddp_worker.py PHOTOS OUT all         the cells test_ddp.py compares (OUT holds single_stopped.pt)
    ddp_worker.py PHOTOS OUT interrupt   a tiny cell, then one stopped: Interrupted leaves the group
    ddp_worker.py PHOTOS OUT alone       rank 1 fails alone while rank 0 waits for it

The cells are defined here (``train``) so the tests train the one-process references alike.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as torch_dist
from torch import nn

import bench.train.loop as train_mod
from bench.train.distributed import SINGLE, DistContext, barrier, discriminator_as, process_group, replicate
from bench.train.loop import Interrupted, train_cell
from bench.config.options import TrainSettings
from colorbench_datasets import load_data
from losses import LossOptions, parse_losses
from losses.adversarial import AdversarialLoss, GANLoss
from models import GENERATORS, build_discriminator, register_generator

STEPS, STOP_AT = 10, 4
KINDS = {  # name: (losses, generator, gan mode)
    "full": ("l1+gan", "unet", "vanilla"),
    "toy": ("l1", "ddp_toy", "vanilla"),
    "wgangp": ("l1+gan", "unet", "wgangp"),
}


def toy_generator(size: int, width: int = 8, out_channels: int = 2) -> nn.Module:
    """No BatchNorm, no dropout: one process and two compute the same function of the global
    batch, so they differ only by the order of float sums."""
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, out_channels, 3, padding=1),
                         nn.Tanh())


def register_toy() -> None:
    register_generator("ddp_toy")(toy_generator)


def unregister_toy() -> None:
    GENERATORS.pop("ddp_toy", None)


def train(kind: str, split, dist: DistContext = SINGLE, checkpoint: Path | None = None, stop=lambda: False,
          batch_size: int = 4, steps: int = STEPS) -> dict:
    """One tiny cell of ``kind``: its final G and D, log and checkpoint writes."""
    spec, generator, gan_mode = KINDS[kind]
    cells, saves = [], []
    build, save = train_mod.build_cell, train_mod.atomic_torch_save
    train_mod.build_cell = lambda *a, **k: cells.append(build(*a, **k)) or cells[-1]  # to read D back
    train_mod.atomic_torch_save = lambda path, obj: saves.append(path) or save(path, obj)
    try:
        (combo,) = parse_losses(spec)
        settings = TrainSettings(generator=generator, size=32, width=8, steps=steps, batch_size=batch_size,
                                 checkpoint_seconds=0)
        result = train_cell(combo, 0, split, settings, LossOptions(disc_width=8, gan_mode=gan_mode),
                            torch.device("cpu"), checkpoint=checkpoint, progress=False, should_stop=stop, dist=dist)
    finally:
        train_mod.build_cell, train_mod.atomic_torch_save = build, save
    D = cells[-1].D
    return {"G": clone(result.generator), "D": clone(D) if D is not None else None, "log": result.log,
            "saves": len(saves)}


def clone(net: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def stopped_by_rank_1(dist: DistContext):
    """Only rank 1 asks to stop, before step STOP_AT: the ranks must still stop together."""
    calls = iter(range(10**6))
    return lambda: dist.rank == 1 and next(calls) == STOP_AT


def gradient_penalty_gap(dist: DistContext) -> float:
    """WGAN-GP's D loss (a double backward) through D's DDP wrapper, against each rank's
    plain gradients averaged by hand: the largest difference of any gradient element."""
    torch.manual_seed(0)
    term = AdversarialLoss(build_discriminator("patchgan", in_channels=3, width=8, norm="layer"), GANLoss("wgangp"))
    data = torch.Generator().manual_seed(dist.rank)  # each rank its own photos
    L, fake, real = (torch.randn(2, c, 32, 32, generator=data) for c in (1, 2, 2))
    grads = []
    for wrapper in (replicate(term.discriminator, torch.device("cpu"), dist), None):
        term.discriminator.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the penalty's interpolation weights, alike in both passes
        with discriminator_as(term, wrapper):
            term.discriminator_loss(L, fake, real).backward()
        grads.append([p.grad.clone() for p in term.discriminator.parameters()])
    for g in grads[1]:
        torch_dist.all_reduce(g)
        g /= dist.world_size
    return max((a - b).abs().max().item() for a, b in zip(*grads))


def run_all(split, out: Path, dist: DistContext) -> dict:
    results = {kind: train(kind, split, dist, out / f"{kind}.pt") for kind in KINDS}
    results["gp_gap"] = gradient_penalty_gap(dist)
    try:
        train("full", split, dist, out / "resume.pt", stop=stopped_by_rank_1(dist))
        results["stopped"] = None
    except Interrupted:
        results["stopped"] = torch.load(out / "resume.pt", weights_only=True)["step"]
    if dist.is_main:
        shutil.copy(out / "resume.pt", out / "stopped.pt")  # for a one-process run to resume
    barrier(dist)
    results["resumed"] = train("full", split, dist, out / "resume.pt")
    # A checkpoint a one-process run saved at step STOP_AT (the test wrote it)
    results["from_single"] = train("full", split, dist, out / "single_stopped.pt")
    try:
        train("full", split, dist, batch_size=3)
    except ValueError as exc:
        results["odd_batch"] = str(exc)
    return results


def main(photos: str, out: str, mode: str) -> None:
    torch.set_num_threads(1)
    register_toy()
    out = Path(out)
    split = load_data(photos, size=32, workers=1).train
    with process_group(torch.device("cpu")) as dist:
        if mode == "alone" and dist.rank == 1:
            raise RuntimeError("rank 1 fails alone")
        if mode == "all":
            torch.save(run_all(split, out, dist), out / f"rank{dist.rank}.pt")
        else:
            torch.save({"toy": train("toy", split, dist, steps=2)}, out / f"rank{dist.rank}.pt")
            train("toy", split, dist, out / "toy.pt", stop=lambda: True)


if __name__ == "__main__":
    main(*sys.argv[1:])
