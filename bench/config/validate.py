"""Every option checked before any photo is loaded or file written; each refusal names the
option and the fix. The rules that need no registry and no torch are ``bench.config.rules``'s
(``bench run`` applies them at once); these add the registries, the machine and the photos."""
from __future__ import annotations

from pathlib import Path

import torch
from colorbench_datasets import DATASETS
from colorbench_datasets.images import check_folder
from colorbench_datasets.sources import unknown_dataset

from bench.config.machine import resolve_device, resolve_precision, visible_gpus
from bench.config.options import LaunchConfig, OptionError, RunConfig, parse_devices
from bench.config.rules import check_rules
from bench.rundir.layout import slug
from losses import parse_losses
from losses.perceptual import parse_layer_weights
from models import DISCRIMINATORS, GENERATORS, size_problem


def _check_visible_gpus(launch: LaunchConfig, cfg: RunConfig, devices: list[str]) -> None:
    """GPUs asked for and not there, refused before any photo or weight loads (each cell
    would fail on its own otherwise, minutes later). A SLURM submission is checked by
    SLURM: its login node may see no GPU at all."""
    visible, where = torch.cuda.device_count(), visible_gpus()
    absent = [d for d in devices if int(d[5:]) >= visible]  # (--devices is refused with slurm above)
    if absent:
        raise OptionError(f"--devices {absent[0]}: {where}; list only those")
    if launch.launcher == "slurm":
        return
    on_gpu = devices or (cfg.device != "cpu" and resolve_device(cfg.device).type == "cuda")
    if on_gpu and launch.gpus_per_cell > max(visible, 1):
        raise OptionError(f"--gpus-per-cell {launch.gpus_per_cell}: {where}; ask for at most {visible}")


def validate(cfg: RunConfig, launch: LaunchConfig | None = None) -> None:
    """Check every option of ``cfg`` (and of ``launch``) against its allowed range, before
    any work: no weights loaded, no photo decoded, no run folder created. Raises
    ``OptionError`` (a ValueError) naming the option, what it may be and how to fix it.

    First every rule that needs no registry and no torch (``bench.config.rules``: each field
    by its own rules, the ranges, the options that depend on each other; ``bench run`` applies
    them before it loads anything), then the losses and networks the registries know, the
    machine, the photo folders and this machine's GPUs."""
    check_rules(cfg, launch)
    _check_what_trains(cfg)
    _check_machine(cfg, remote=launch is not None and launch.launcher == "slurm")
    _check_photos(cfg)
    if launch is not None:
        _check_visible_gpus(launch, cfg, parse_devices(launch.devices))


def _check_what_trains(cfg: RunConfig) -> None:
    """The losses, the networks and the generator's own rule on --size (their ranges:
    ``bench.config.rules``)."""
    folders = {}
    for c in parse_losses(cfg.losses):  # LossSpecError names the bad part
        if slug(c.spec) in folders:
            raise OptionError(f"--losses: {folders[slug(c.spec)]!r} and {c.spec!r} would share the cell folder "
                              f"{slug(c.spec)!r}; rename one of the losses")
        folders[slug(c.spec)] = c.spec
    if cfg.generator not in GENERATORS:
        raise OptionError(f"unknown --generator {cfg.generator!r}; choose one of: {', '.join(sorted(GENERATORS))}")
    if cfg.discriminator not in DISCRIMINATORS:
        raise OptionError(f"unknown --discriminator {cfg.discriminator!r}; choose one of: {', '.join(sorted(DISCRIMINATORS))}")
    problem = size_problem(cfg.generator, cfg.size)  # each generator's own rule (the U-Net's: multiples of 32)
    if problem:
        raise OptionError(f"--generator {cfg.generator}: {problem}")
    try:
        parse_layer_weights(cfg.perceptual_layers)
    except (ValueError, AttributeError, TypeError) as exc:
        raise OptionError(str(exc)) from None


def _check_machine(cfg: RunConfig, remote: bool = False) -> None:
    """The device and the precision. ``remote``: the cells run on other
    machines (SLURM), so this one's GPUs say nothing about theirs."""
    if remote:
        if cfg.device not in ("auto", "cpu", "cuda"):
            raise OptionError(f"--device {cfg.device} with --launcher slurm: a job's GPUs are its own; use "
                              "--device cuda (or auto, or cpu), and --gpus-per-cell for more than one")
    else:
        device = resolve_device(cfg.device)
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise OptionError(f"--device {cfg.device}: this machine has {torch.cuda.device_count()} GPU(s), "
                              f"numbered from 0; use --device cuda:0 (or auto)")
        resolve_precision(cfg.precision, device)


def _check_photos(cfg: RunConfig) -> None:
    """The named dataset and the photo folders: cheap checks only (the folders are walked
    when the photos load; the rest of where they come from: ``bench.config.rules``)."""
    if cfg.dataset is not None and cfg.dataset not in DATASETS:
        raise OptionError(unknown_dataset(cfg.dataset))
    if cfg.data is not None:
        check_folder(Path(cfg.data), "--data")
    if cfg.val_data is not None:
        check_folder(Path(cfg.val_data), "--val-data")


class RunError(ValueError):
    """A run that cannot start; the message names the option and the fix."""
