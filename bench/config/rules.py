"""The options' rules that need no registry, no torch and no photo: every field by its own
rules, the ranges, and the options that depend on each other. ``bench run`` applies them as
soon as its options are parsed, before anything heavy loads (a refusal answers at once);
``bench.config.validate`` applies them first, then the rules that need the registries (loss
names, generators), the machine (GPUs) or the photo folders."""
from __future__ import annotations

from pathlib import Path

from bench.config.options import (
    LaunchConfig,
    OptionError,
    RunConfig,
    check_options,
    parse_devices,
)
from bench.rundir.layout import is_within

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


def check_rules(cfg: RunConfig, launch: LaunchConfig | None = None) -> None:
    """Check ``cfg`` (and ``launch``) by every rule that needs no registry, no torch and no
    file read; raises ``OptionError`` (a ValueError) naming the option and the fix.

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
    _check_sizes(cfg)
    _check_how_long(cfg)
    _check_seeds_and_optimizer(cfg)
    _check_places(cfg)
    if launch is not None:
        _check_launch(launch, cfg)


def _check_sizes(cfg: RunConfig) -> None:
    """The networks' sizes (each generator's own rule on --size is the registry's:
    ``bench.config.validate``)."""
    if not _is_int(cfg.size) or not MIN_SIZE <= cfg.size <= MAX_SIZE:
        raise OptionError(f"--size {cfg.size!r} is out of range: use {MIN_SIZE} to {MAX_SIZE} px (size= in Python; "
                          "e.g. 64, or 256 as the paper preset)")
    _int_in(cfg, "width", 1, MAX_WIDTH, " (the paper's U-Net is 64)")
    _int_in(cfg, "disc_width", 1, MAX_WIDTH, " (pix2pix's PatchGAN is 64)")


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


def _check_places(cfg: RunConfig) -> None:
    """Where the photos come from and where the run goes, as far as the options alone say
    (the dataset's name and the folders themselves: ``bench.config.validate``)."""
    if cfg.data is not None and cfg.dataset is not None:
        raise OptionError("give either --data DIR or --dataset NAME, not both")
    if cfg.val_data is not None and cfg.data is None:
        raise OptionError("--val-data needs --data (the training photos) too")
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


def _check_launch(launch: LaunchConfig, cfg: RunConfig) -> None:
    """How the cells run (the GPUs this machine has: ``bench.config.validate``)."""
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
    for item in launch.slurm_option:
        if not isinstance(item, str) or "=" not in item or not item.split("=", 1)[0].strip():
            raise OptionError(f"--slurm-option {item!r}: give KEY=VALUE, e.g. --slurm-option account=myproject")
    slurm_only = [f for f in ("slurm_partition", "slurm_option", "slurm_cpus_per_task", "slurm_mem_gb")
                  if getattr(launch, f)]
    if launch.launcher != "slurm" and slurm_only:
        raise OptionError(f"{_flag(slurm_only[0])} is for --launcher slurm")
    if launch.no_wait and launch.launcher == "serial":
        raise OptionError("--no-wait needs --launcher local or slurm: a serial run trains in this process")
