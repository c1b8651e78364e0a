"""Every option checked before any photo is loaded or file written; each refusal names the
option and the fix."""
from __future__ import annotations

from pathlib import Path

import torch
from colorbench_datasets import DATASETS
from colorbench_datasets.images import check_folder
from colorbench_datasets.sources import unknown_dataset

from bench.config.machine import resolve_device, resolve_precision, visible_gpus
from bench.config.options import (
    LaunchConfig,
    OptionError,
    RunConfig,
    check_options,
    parse_devices,
)
from bench.rundir.layout import is_within, slug
from losses import parse_losses
from losses.perceptual import parse_layer_weights
from models import DISCRIMINATORS, GENERATORS, size_problem


def _check_launch(launch: LaunchConfig, cfg: RunConfig) -> None:
    if cfg.batch_size % launch.gpus_per_cell:
        raise OptionError(f"--batch-size {cfg.batch_size} does not split evenly over --gpus-per-cell "
                          f"{launch.gpus_per_cell}: each process trains on an equal shard of the global batch; use a "
                          f"--batch-size that is a multiple of {launch.gpus_per_cell}")
    devices = parse_devices(launch.devices)
    if devices and launch.launcher != "local":
        raise OptionError("--devices spreads cells over this machine's GPUs: it needs --launcher local "
                          "(SLURM picks the GPUs of each job: use --gpus-per-cell)")
    bad = [d for d in devices if not (d.startswith("cuda:") and d[5:].isdigit())]
    if bad:
        raise OptionError(f"--devices: {bad[0]!r} is not a GPU; list them as cuda:0,cuda:1,...")
    if devices and len(devices) < launch.gpus_per_cell:
        raise OptionError(f"--devices lists {len(devices)} GPU(s) and --gpus-per-cell asks for "
                          f"{launch.gpus_per_cell} per cell; list more devices or lower --gpus-per-cell")
    _check_visible_gpus(launch, cfg, devices)
    for item in launch.slurm_option:
        if not isinstance(item, str) or "=" not in item or not item.split("=", 1)[0].strip():
            raise OptionError(f"--slurm-option {item!r}: give KEY=VALUE, e.g. --slurm-option account=myproject")
    slurm_only = [f for f in ("slurm_partition", "slurm_option", "slurm_cpus_per_task", "slurm_mem_gb")
                  if getattr(launch, f)]
    if launch.launcher != "slurm" and slurm_only:
        raise OptionError(f"{_flag(slurm_only[0])} is for --launcher slurm")
    if launch.no_wait and launch.launcher == "serial":
        raise OptionError("--no-wait needs --launcher local or slurm: a serial run trains in this process")


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


MAX_SIZE = 2048          # px; the paper preset is 256
MIN_SIZE = 8             # px; a generator may ask for more (the U-Net: 32)


MAX_WIDTH = 512          # base channels; the paper's U-Net is 64 (512 is ~3.5e9 parameters)


MAX_EPOCHS = 100_000


MAX_STEPS = 1_000_000_000


MAX_BATCH = 65_536


MAX_WORKERS = 256


MAX_SEED = 2**32 - 1     # numpy's seed range; torch's manual_seed(seed + offset) stays far from 2**64


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_in(cfg, name: str, low: int, high: int, hint: str = "") -> None:
    value = getattr(cfg, name)
    if not _is_int(value) or not low <= value <= high:
        raise OptionError(f"{_flag(name)} must be at least {low} and at most {high:,} (a whole number; {name}= in "
                          f"Python), got {value!r}{hint}")


def validate(cfg: RunConfig, launch: LaunchConfig | None = None) -> None:
    """Check every option of ``cfg`` (and of ``launch``) against its allowed range, before
    any work: no weights loaded, no photo decoded, no run folder created. Raises
    ``OptionError`` (a ValueError) naming the option, what it may be and how to fix it.

    First each field by its own rules (``check_options``: the rules ``bench run``'s flags and
    ``make_config`` apply; a list of seeds or a ``Path`` is stored as config.json keeps it),
    then the ranges and the options that depend on each other."""
    if not isinstance(cfg, RunConfig):
        raise OptionError(f"the run's options must be a RunConfig, e.g. bench.make_config('quick', losses='l1'); "
                          f"got {type(cfg).__name__}")
    if launch is not None and not isinstance(launch, LaunchConfig):
        raise OptionError(f"launch= must be a LaunchConfig, e.g. launch=bench.LaunchConfig(launcher='local', "
                          f"max_parallel=2); got {launch!r}")
    check_options(cfg)
    if launch is not None:
        check_options(launch)
    _check_what_trains(cfg)
    _check_how_long(cfg)
    _check_seeds_and_optimizer(cfg)
    _check_machine(cfg, remote=launch is not None and launch.launcher == "slurm")
    _check_photos_and_out(cfg)
    if launch is not None:
        _check_launch(launch, cfg)


def _check_what_trains(cfg: RunConfig) -> None:
    """The losses, the networks and their sizes."""
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
    if not _is_int(cfg.size) or not MIN_SIZE <= cfg.size <= MAX_SIZE:
        raise OptionError(f"--size {cfg.size!r} is out of range: use {MIN_SIZE} to {MAX_SIZE} px (size= in Python; "
                          "e.g. 64, or 256 as the paper preset)")
    problem = size_problem(cfg.generator, cfg.size)  # each generator's own rule (the U-Net's: multiples of 32)
    if problem:
        raise OptionError(f"--generator {cfg.generator}: {problem}")
    _int_in(cfg, "width", 1, MAX_WIDTH, " (the paper's U-Net is 64)")
    _int_in(cfg, "disc_width", 1, MAX_WIDTH, " (pix2pix's PatchGAN is 64)")
    try:
        parse_layer_weights(cfg.perceptual_layers)
    except (ValueError, AttributeError, TypeError) as exc:
        raise OptionError(str(exc)) from None


def _check_how_long(cfg: RunConfig) -> None:
    """The training budget, the batches, the checkpoints."""
    # One of epochs and steps is set (RunConfig.__post_init__).
    if cfg.epochs is not None:
        _int_in(cfg, "epochs", 1, MAX_EPOCHS)
    if cfg.steps is not None:
        _int_in(cfg, "steps", 1, MAX_STEPS)
    _int_in(cfg, "batch_size", 1, MAX_BATCH)
    _int_in(cfg, "eval_batch_size", 1, MAX_BATCH)
    _int_in(cfg, "workers", 0, MAX_WORKERS)


def _check_seeds_and_optimizer(cfg: RunConfig) -> None:
    # their types, and seeds distinct and not negative: check_options (parse_seeds)
    bad = [s for s in cfg.seeds if s > MAX_SEED]
    if bad:
        raise OptionError(f"--seeds: {bad[0]!r} is out of range; seeds are whole numbers from 0 to {MAX_SEED:,} (2^32 - 1)")
    if not 0 < cfg.lr <= 1:  # NaN too
        raise OptionError(f"--lr {cfg.lr!r} is out of range: use a positive number up to 1 (lr= in Python; Adam's "
                          "usual is 2e-4)")
    if not all(0 <= b < 1 for b in cfg.betas):
        raise OptionError(f"betas {cfg.betas!r}: Adam needs two numbers in [0, 1), e.g. (0.5, 0.999)")


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


def _check_photos_and_out(cfg: RunConfig) -> None:
    """Where the photos come from and where the run goes: cheap checks only (the folders
    are walked when the photos load)."""
    if cfg.data is not None and cfg.dataset is not None:
        raise OptionError("give either --data DIR or --dataset NAME, not both")
    if cfg.val_data is not None and cfg.data is None:
        raise OptionError("--val-data needs --data (the training photos) too")
    if cfg.dataset is not None and cfg.dataset not in DATASETS:
        raise OptionError(unknown_dataset(cfg.dataset))
    if cfg.data is not None:
        check_folder(Path(cfg.data), "--data")
    if cfg.val_data is not None:
        check_folder(Path(cfg.val_data), "--val-data")
    if cfg.data_root is not None and Path(cfg.data_root).exists() and not Path(cfg.data_root).is_dir():
        raise OptionError(f"--data-root {cfg.data_root!r} must be a folder (it is created if missing)")
    if cfg.out is None:
        return
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise OptionError(f"--out {cfg.out} is a file; give a folder for the run (new or an earlier run's)")
    for value, flag in ((cfg.data, "--data"), (cfg.val_data, "--val-data")):
        if value is not None and is_within(cfg.out, value):
            raise OptionError(
                f"--out {cfg.out} is inside {flag} {value}: the run's files (and its report's PNG figures) "
                "would be read as photos next time; put --out outside the photo folders"
            )


class RunError(ValueError):
    """A run that cannot start; the message names the option and the fix."""
