"""Run configuration: one dataclass, two presets, and the device/precision choice."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from losses.adversarial import GAN_MODES
from losses.registry import DEFAULT_PERCEPTUAL_LAYERS, LossOptions

DEFAULT_LOSSES = "mse,l1,perceptual,gan"

PAPER_LOSSES = "mse,l1,perceptual,gan,100*l1+gan"

# quick: the 4-loss default finishes in minutes on 2 CPU cores. paper: the colorization
# tutorial's baseline (pix2pix U-Net n_down=8 nf=64, PatchGAN n_layers 3, batch 16,
# Adam 2e-4 beta (0.5, 0.999), 256 px); it trains `train_model(model, train_dl, 100)`,
# i.e. 100 epochs. lambda_L1 = 100 is the `100*l1+gan` term. For a GPU.
# The quick preset budgets optimizer steps, not epochs, so that a small set (the built-in
# sample's 45 tiles) trains long enough to show colour and a large one stays quick. 300
# steps of batch 16 at 32 px: l1 beats gray on the sample by ~3 dB PSNR and ~6 ΔE00 units,
# and the four default combinations train in under 2 minutes on 2 CPU cores in fp32 (the
# VGG16 perceptual term is three fifths of it; at 64 px the same budget takes 4x longer).
# Measured: benchmarks/README.md, "Quick preset".
QUICK_STEPS = 300

PRESETS: dict[str, dict] = {
    "quick": dict(size=32, width=32, steps=QUICK_STEPS, batch_size=16, generator="unet", losses=DEFAULT_LOSSES),
    "paper": dict(size=256, width=64, epochs=100, batch_size=16, generator="unet", losses=PAPER_LOSSES),
}


def _preset_summary() -> str:
    """What each preset sets, for ``--preset``'s help."""
    return "; ".join(
        f"{name}: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in values.items())
        for name, values in PRESETS.items()
    )


PRECISIONS = ("auto", "fp32", "bf16", "fp16")

_NOT_GIVEN = object()


def option(default=dataclasses.MISSING, *, help: str = "", identity: bool = False, old_runs=_NOT_GIVEN,
           internal: str = "", flag: str = "", choices: tuple = (), path: str = "", min=None,
           default_text: str = "", multiple: bool = False, default_factory=dataclasses.MISSING):
    """A ``RunConfig`` field with what ``bench run`` and a resumed run need to know about it:

    - ``help``: the ``bench run`` help text (the default is appended by bench/cli.py).
    - ``identity``: the option changes what a cell computes, so a resumed ``--out`` must
      match on it; ``old_runs``: for an identity option added after runs existed, the
      value those runs used (absent from their config.json).
    - ``internal``: why the field is not a ``bench run`` option (Python API only).
    - ``flag``: the command-line flag when not ``--field-name``; ``choices``: the values
      the flag accepts; ``path``: ``"path"`` or ``"folder"`` for a path option; ``min``:
      the smallest number it accepts; ``default_text``: how help shows a default that is
      not a plain value (None resolved later, or a preset's); ``multiple``: a repeatable
      flag, each value one item of a tuple.
    """
    metadata = {"help": help, "identity": identity, "internal": internal, "flag": flag, "choices": tuple(choices),
                "path": path, "min": min, "default_text": default_text, "multiple": multiple}
    if old_runs is not _NOT_GIVEN:
        metadata["old_runs"] = old_runs
    return field(default=default, default_factory=default_factory, metadata=metadata)


@dataclass
class RunConfig:
    """Every option of ``bench run``; ``config.json`` stores the resolved copy.

    Each field's metadata (``option``) is the one source of its help, its flag and whether
    it is an identity option; bench/cli.py builds ``bench run``'s options from it."""

    losses: str = option(
        DEFAULT_LOSSES, identity=True,
        help="Comma-separated combinations; each a '+'-sum of optionally weighted terms, "
             "e.g. 'mse,l1,100*l1+gan,l1+0.1*perceptual'. See `bench losses`.")
    data: str | None = option(
        None, identity=True, path="path", default_text="built-in sample set",
        help="Folder of photos (recursive). Uses its train/ and val/ (or test/) subfolders "
             "if present, else a 10% file-name-hash val split.")
    val_data: str | None = option(
        None, identity=True, path="path", help="Folder of val photos (then --data is all train).")
    dataset: str | None = option(
        None, identity=True,
        help="A named dataset instead of --data: sample, coco-sample (the tutorial's 8000/2000 "
             "COCO split), cifar10, stl10, places365. Downloaded once into --data-root.")
    data_root: str | None = option(  # None: COLORBENCH_DATA or the user cache
        None, path="folder",
        default_text="$COLORBENCH_DATA, else colorbench/data in the user cache folder, e.g. ~/.cache/colorbench/data",
        help="Cache folder for named datasets.")
    preset: str = option("quick", choices=tuple(PRESETS), help=f"Defaults for the options below. {_preset_summary()}.")
    generator: str = option("unet", identity=True, help="Generator network: unet or resunet.")
    discriminator: str = option("patchgan", identity=True, help="Discriminator for GAN terms.")
    # PatchGAN base channels; None: --width, as pix2pix's ndf = ngf, so the quick preset's
    # half-width G meets a half-width D (and its GAN step costs ~2x less, benchmarks/README).
    # Runs made before the option trained a 64-channel D.
    disc_width: int | None = option(
        None, identity=True, old_runs=64, default_text="--width, as pix2pix's ndf = ngf",
        help="Discriminator base channels (pix2pix's ndf).")
    size: int = option(32, identity=True, help="Training/val crop size in px (a multiple of 32).")
    width: int = option(32, identity=True, help="Generator base channels.")
    # How long each cell trains: passes over the train photos, or optimizer steps; one of
    # the two (neither: the quick preset's steps). Runs made before --steps trained epochs.
    epochs: int | None = option(
        None, identity=True, help="Passes over the train photos per cell (replaces --steps).")
    steps: int | None = option(
        None, identity=True, old_runs=None, help="Optimizer steps per cell (replaces --epochs).")
    batch_size: int = option(16, identity=True, help="Batch size.")
    seeds: tuple[int, ...] = option((0,), help="Comma-separated seeds; each is a cell per combination.")
    lr: float = option(2e-4, identity=True, help="Adam learning rate for G and D.")
    betas: tuple[float, float] = option(
        (0.5, 0.999), identity=True, internal="Adam's betas are pix2pix's; set them from Python")
    gan_mode: str = option(
        "vanilla", identity=True, choices=GAN_MODES,
        help="GAN objective (wgangp: Wasserstein loss with gradient penalty).")
    perceptual_layers: str = option(
        DEFAULT_PERCEPTUAL_LAYERS, identity=True,
        help="VGG16 layers the perceptual loss compares, each optionally LAYER:WEIGHT, "
             "e.g. 'relu2_2' or 'relu1_2:0.5,relu2_2,relu3_3' (relu1_1 ... relu5_3).")
    device: str = option("auto", help="auto, cpu or cuda[:N].")
    # Not an identity option: what --precision resolved to (``auto`` differs per machine)
    # is compared instead, with the device type (runner.check_numerics).
    precision: str = option(
        "auto", choices=PRECISIONS, help="auto: bf16 where the hardware runs it natively, else fp32.")
    strict_weights: bool = option(
        False, help="Fail before training if pretrained weights are missing, instead of falling back.")
    deterministic: bool = option(
        False, help="Deterministic GPU kernels (slower); CPU runs are repeatable without it.")
    compile: bool = option(
        False, help="torch.compile the generator: faster steps on GPU after a compile pause; off by default "
                    "because on CPU the compile time outweighs short runs.")
    checkpoint_seconds: float = option(
        300.0, min=0,
        help="Save a cell's training state at least this often, so a kill loses no more; also at "
             "the end of a pass over the photos once a fifth of it has gone by.")
    eval_batch_size: int = option(64, internal="how many val photos are scored at once; set it from Python")
    workers: int = option(2, internal="threads decoding photos; set it from Python")
    out: str | None = option(
        None, path="path", default_text="results/run-TIMESTAMP",
        help="Run folder; rerunning into it skips finished cells.")
    extra: dict = option(default_factory=dict, internal="free-form notes kept in config.json")

    def __post_init__(self):
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give --epochs or --steps, not both: each sets how long every cell trains")
        if self.epochs is None and self.steps is None:
            self.steps = QUICK_STEPS
        if self.disc_width is None:
            self.disc_width = self.width

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["seeds"], d["betas"] = list(self.seeds), list(self.betas)
        return d

    def loss_options(self, device) -> LossOptions:
        """What the loss factories get: the loss fields of this config, on ``device`` (resolved)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(LossOptions) if f.name != "device"}
        return LossOptions(device=str(device), **values)

    def train_settings(self, precision: str):
        """How every cell trains: the training fields of this config, in ``precision`` (resolved)."""
        from bench.train import TrainSettings

        return TrainSettings(
            generator=self.generator, size=self.size, width=self.width, epochs=self.epochs or 0, steps=self.steps,
            batch_size=self.batch_size, lr=self.lr, betas=tuple(self.betas), precision=precision,
            compile=self.compile, checkpoint_seconds=self.checkpoint_seconds,
        )


LAUNCHERS = ("serial", "local", "slurm")


@dataclass
class LaunchConfig:
    """How ``bench run`` executes the cells, not what they compute: in this process one
    after another, as parallel jobs on this machine, or as a SLURM job array (bench/launch.py),
    each cell on one device or data-parallel on several. config.json records it under
    ``launch``; the per-cell thread count it implies is recorded under ``threads``."""

    launcher: str = option(
        "serial", choices=LAUNCHERS,
        help="serial: cells one after another in this process; local: parallel jobs on this machine "
             "(submitit's local executor); slurm: one SLURM job per cell, as a job array.")
    max_parallel: int | None = option(
        None, min=1, default_text="serial: 1; local: one per --devices GPU, else 2; slurm: no limit",
        help="Cells at once (local jobs, or the SLURM array's concurrency). On a CPU each cell gets "
             "cores/N threads whatever the launcher, so a parallel run repeats the serial run of the "
             "same command to the last bit.")
    devices: str | None = option(
        None, help="local: the GPUs to spread cells over, one cell per device at a time, e.g. cuda:0,cuda:1.")
    gpus_per_cell: int = option(
        1, min=1,
        help="Train each cell data-parallel on N GPUs (torchrun + DistributedDataParallel; N gloo "
             "processes on a CPU). --batch-size stays the global batch.")
    slurm_partition: str | None = option(None, help="slurm: the partition to submit to.")
    timeout_min: int = option(
        24 * 60, min=1,
        help="slurm (and local): a job's time limit in minutes; a job that reaches it is requeued "
             "and resumes its cell from the checkpoint.")
    slurm_option: tuple[str, ...] = option(
        (), multiple=True,
        help="slurm: an extra sbatch option KEY=VALUE (repeatable), e.g. --slurm-option account=proj "
             "--slurm-option constraint=a100.")
    no_wait: bool = option(
        False, help="local/slurm: exit once the jobs are submitted; `bench status RUN` follows them, and "
                    "the last job assembles metrics.csv.")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["slurm_option"] = list(self.slurm_option)
        return d


LAUNCH_FIELDS = {f.name: f for f in dataclasses.fields(LaunchConfig)}


def parse_devices(devices: str | None) -> list[str]:
    return [d.strip() for d in devices.split(",") if d.strip()] if devices else []


def max_parallel(launch: LaunchConfig) -> int | None:
    """How many cells run at once: None for a SLURM array without a limit."""
    if launch.max_parallel is not None:
        return launch.max_parallel
    if launch.launcher == "local":
        return max(1, len(parse_devices(launch.devices)) // launch.gpus_per_cell) if launch.devices else 2
    return None if launch.launcher == "slurm" else 1


def cores() -> int:
    """The cores this process may use (its affinity mask: taskset, a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# torch's intra-op threads as this process started (the physical cores, or OMP_NUM_THREADS),
# read once: a library call that changes them later must not change the next run's numbers.
STARTING_THREADS = torch.get_num_threads()


def cell_threads(launch: LaunchConfig) -> int:
    """Intra-op threads for one CPU cell (per process of a data-parallel cell). A CPU splits a
    reduction's work by thread, so the thread count changes a cell's last bits: it follows
    from --max-parallel alone, never from the launcher, and the serial run of a command
    repeats its parallel run exactly (a 2-core machine: 1 thread each for --max-parallel 2)."""
    return max(1, min(cores(), STARTING_THREADS) // (max_parallel(launch) or 1) // launch.gpus_per_cell)


def _check_launch(launch: LaunchConfig, cfg: RunConfig) -> None:
    if launch.launcher not in LAUNCHERS:
        raise OptionError(f"unknown --launcher {launch.launcher!r}; choose one of: {', '.join(LAUNCHERS)}")
    for name in ("max_parallel", "gpus_per_cell", "timeout_min"):
        value = getattr(launch, name)
        if value is not None and (not _is_int(value) or value < 1):
            raise OptionError(f"{_flag(name)} must be a whole number of at least 1, got {value!r}")
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
    if launch.launcher != "slurm" and (launch.slurm_partition or launch.slurm_option):
        raise OptionError("--slurm-partition and --slurm-option are for --launcher slurm")
    if launch.no_wait and launch.launcher == "serial":
        raise OptionError("--no-wait needs --launcher local or slurm: a serial run trains in this process")


RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}

# Options that change what a cell computes; a resumed --out must match on these. Not
# --precision as asked: what it resolved to (``auto`` differs per machine) is compared
# instead, with the device type (runner.check_numerics).
IDENTITY_FIELDS = tuple(name for name, f in RUN_FIELDS.items() if f.metadata["identity"])

# Identity options added after runs were made, with the value those runs used.
OPTIONS_ADDED_LATER = {name: f.metadata["old_runs"] for name, f in RUN_FIELDS.items() if "old_runs" in f.metadata}

# Options whose default comes from --preset.
PRESET_FIELDS = tuple(name for name in RUN_FIELDS if any(name in values for values in PRESETS.values()))


def make_config(preset: str = "quick", **options) -> RunConfig:
    """Preset values, overridden by every option that is not None."""
    if preset not in PRESETS:
        raise ValueError(f"unknown --preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    given = {k: v for k, v in options.items() if v is not None}
    if "epochs" in given and "steps" in given:
        raise ValueError("give --epochs or --steps, not both: each sets how long every cell trains")
    preset_values = dict(PRESETS[preset])
    if "epochs" in given or "steps" in given:  # the budget given replaces the preset's, of either kind
        preset_values.pop("epochs", None), preset_values.pop("steps", None)
    values = {"epochs": None, "steps": None, **preset_values, **given}
    for key in ("data", "val_data", "out", "data_root"):
        if values.get(key) is not None:
            values[key] = str(Path(values[key]))
    return RunConfig(preset=preset, **values)


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is visible to torch; use --device cpu or auto")
    if requested not in ("cpu",) and not requested.startswith("cuda"):
        raise ValueError(f"unknown --device {requested!r}; use auto, cpu or cuda[:N]")
    return torch.device(requested)


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16: the CPUs where bf16 convolutions beat fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(requested: str, device: torch.device) -> str:
    if requested not in PRECISIONS:
        raise ValueError(f"unknown --precision {requested!r}; use auto, fp32, bf16 or fp16")
    if requested == "fp16" and device.type != "cuda":
        raise ValueError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast_dtype(precision: str):
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


# ---------------------------------------------------------------- validating every option

class OptionError(ValueError):
    """An option outside its allowed range; the message names the option, the range and the fix."""


MAX_SIZE = 2048          # px; the paper preset is 256
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
        raise OptionError(f"{_flag(name)} must be at least {low} and at most {high:,} (a whole number), got {value!r}{hint}")


def _folder(value, flag: str) -> None:
    from colorbench_datasets.images import check_folder

    if not isinstance(value, (str, os.PathLike)):
        raise OptionError(f"{flag} must be a folder path, got {value!r}")
    check_folder(Path(value), flag)


def _inside(path, folder) -> bool:
    path, folder = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return path == folder or folder in path.parents


def validate(cfg: RunConfig, launch: LaunchConfig | None = None) -> None:
    """Check every option of ``cfg`` (and of ``launch``) against its allowed range, before
    any work: no weights loaded, no photo decoded, no run folder created. Raises
    ``OptionError`` (a ValueError) naming the option, what it may be and how to fix it."""
    if cfg.preset not in PRESETS:
        raise OptionError(f"unknown --preset {cfg.preset!r}; choose one of: {', '.join(PRESETS)}")
    _check_what_trains(cfg)
    _check_how_long(cfg)
    _check_seeds_and_optimizer(cfg)
    _check_machine(cfg, remote=launch is not None and launch.launcher == "slurm")
    _check_photos_and_out(cfg)
    if launch is not None:
        _check_launch(launch, cfg)


def _check_what_trains(cfg: RunConfig) -> None:
    """The losses, the networks and their sizes."""
    from bench.folder import slug  # cells are folders by name; two combinations must not share one
    from losses import parse_losses
    from losses.perceptual import parse_layer_weights
    from models import DISCRIMINATORS, GENERATORS, unet_depth

    if not isinstance(cfg.losses, str):
        raise OptionError(f"--losses must be a string such as 'l1,100*l1+gan', got {cfg.losses!r}")
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
    if not _is_int(cfg.size) or not 32 <= cfg.size <= MAX_SIZE or cfg.size % 32:
        raise OptionError(f"--size {cfg.size!r} is out of range: use one of the multiples of 32 from 32 to "
                          f"{MAX_SIZE} (e.g. 64, or 256 as the paper preset)")
    unet_depth(cfg.size)
    _int_in(cfg, "width", 1, MAX_WIDTH, " (the paper's U-Net is 64)")
    _int_in(cfg, "disc_width", 1, MAX_WIDTH, " (pix2pix's PatchGAN is 64)")
    if cfg.gan_mode not in GAN_MODES:
        raise OptionError(f"unknown --gan-mode {cfg.gan_mode!r}; choose one of: {', '.join(GAN_MODES)}")
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
    if cfg.checkpoint_seconds != cfg.checkpoint_seconds or cfg.checkpoint_seconds < 0:  # NaN or negative
        raise OptionError(f"--checkpoint-seconds must be 0 or more, got {cfg.checkpoint_seconds}")
    _int_in(cfg, "batch_size", 1, MAX_BATCH)
    _int_in(cfg, "eval_batch_size", 1, MAX_BATCH)
    _int_in(cfg, "workers", 0, MAX_WORKERS)


def _check_seeds_and_optimizer(cfg: RunConfig) -> None:
    seeds = cfg.seeds
    if not isinstance(seeds, (tuple, list)) or not seeds:
        raise OptionError("--seeds is empty; give comma-separated integers such as 0,1,2")
    bad = [s for s in seeds if not _is_int(s) or not 0 <= s <= MAX_SEED]
    if bad:
        raise OptionError(f"--seeds: {bad[0]!r} is out of range; seeds are whole numbers from 0 to {MAX_SEED:,} (2^32 - 1)")
    if len(set(seeds)) != len(seeds):
        raise OptionError(f"--seeds {','.join(map(str, seeds))}: each seed may be given once")
    if isinstance(cfg.lr, bool) or not isinstance(cfg.lr, (int, float)) or not 0 < cfg.lr <= 1:
        raise OptionError(f"--lr {cfg.lr!r} is out of range: use a positive number up to 1 (Adam's usual is 2e-4)")
    betas = cfg.betas
    if (not isinstance(betas, (tuple, list)) or len(betas) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
        raise OptionError(f"betas {betas!r}: Adam needs two numbers in [0, 1), e.g. (0.5, 0.999)")


def _check_machine(cfg: RunConfig, remote: bool = False) -> None:
    """The device, the precision and the switches. ``remote``: the cells run on other
    machines (SLURM), so this one's GPUs say nothing about theirs."""
    if not isinstance(cfg.device, str):
        raise OptionError(f"--device must be auto, cpu or cuda[:N], got {cfg.device!r}")
    if remote:
        if cfg.device not in ("auto", "cpu", "cuda"):
            raise OptionError(f"--device {cfg.device} with --launcher slurm: a job's GPUs are its own; use "
                              "--device cuda (or auto, or cpu), and --gpus-per-cell for more than one")
        if cfg.precision not in PRECISIONS:
            raise OptionError(f"unknown --precision {cfg.precision!r}; use auto, fp32, bf16 or fp16")
    else:
        device = resolve_device(cfg.device)
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise OptionError(f"--device {cfg.device}: this machine has {torch.cuda.device_count()} GPU(s), "
                              f"numbered from 0; use --device cuda:0 (or auto)")
        resolve_precision(cfg.precision, device)
    for name in ("strict_weights", "deterministic", "compile"):
        if not isinstance(getattr(cfg, name), bool):
            raise OptionError(f"{_flag(name)} is a flag (True or False), got {getattr(cfg, name)!r}")
    if not isinstance(cfg.extra, dict):
        raise OptionError(f"extra must be a dict, got {type(cfg.extra).__name__}")


def _check_photos_and_out(cfg: RunConfig) -> None:
    """Where the photos come from and where the run goes: cheap checks only (the folders
    are walked when the photos load)."""
    from colorbench_datasets import DATASETS

    if cfg.data is not None and cfg.dataset is not None:
        raise OptionError("give either --data DIR or --dataset NAME, not both")
    if cfg.val_data is not None and cfg.data is None:
        raise OptionError("--val-data needs --data (the training photos) too")
    if cfg.dataset is not None and cfg.dataset not in DATASETS:
        raise OptionError(f"unknown --dataset {cfg.dataset!r}; choose one of: {', '.join(sorted(DATASETS))}")
    if cfg.data is not None:
        _folder(cfg.data, "--data")
    if cfg.val_data is not None:
        _folder(cfg.val_data, "--val-data")
    if cfg.data_root is not None and (not isinstance(cfg.data_root, (str, os.PathLike))
                                      or (Path(cfg.data_root).exists() and not Path(cfg.data_root).is_dir())):
        raise OptionError(f"--data-root {cfg.data_root!r} must be a folder (it is created if missing)")
    if cfg.out is None:
        return
    if not isinstance(cfg.out, (str, os.PathLike)):
        raise OptionError(f"--out must be a folder path, got {cfg.out!r}")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise OptionError(f"--out {cfg.out} is a file; give a folder for the run (new or an earlier run's)")
    for value, flag in ((cfg.data, "--data"), (cfg.val_data, "--val-data")):
        if value is not None and _inside(cfg.out, value):
            raise OptionError(
                f"--out {cfg.out} is inside {flag} {value}: the run's files (and its report's PNG figures) "
                "would be read as photos next time; put --out outside the photo folders"
            )


# ---------------------------------------------------------------- comparing recorded options

PATH_OPTIONS = ("data", "val_data", "data_root", "out")


def _comparable(key: str, options: dict):
    """An option's value as two runs should compare it: paths resolved (``photos`` and
    ``/home/me/photos`` are one folder), combinations as a set of canonical names (``mse+l1``
    is ``l1+mse``; the order of --losses only orders the table), numbers as floats."""
    value = options.get(key)
    if value is None:
        return "sample" if key == "dataset" and options.get("data") is None else None
    if key in PATH_OPTIONS:
        return os.path.realpath(os.path.expanduser(str(value)))
    if key == "losses":
        from losses import parse_losses

        try:
            return sorted(c.spec for c in parse_losses(value))
        except ValueError:
            return value
    if key == "perceptual_layers":
        from losses.perceptual import parse_layer_weights

        try:
            return parse_layer_weights(value)
        except ValueError:
            return value
    if isinstance(value, (list, tuple)):
        return [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def changed_options(old: dict, new: dict, keys=None) -> list[str]:
    """The identity options on which two option dicts (config.json's ``options``) differ."""
    return [k for k in (keys or IDENTITY_FIELDS) if _comparable(k, old) != _comparable(k, new)]
