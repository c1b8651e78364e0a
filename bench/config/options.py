"""Run configuration: ``RunConfig`` (every option of ``bench run``), ``LaunchConfig`` (how its
cells run), the presets, and ``TrainSettings`` (how every cell trains)."""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import numbers
import os
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench import later
from bench.config.plugins import load_plugins, plugin_name
from bench.score.presets import PRESETS as PROTOCOLS
from bench.score.presets import SETTINGS as PROTOCOL_SETTINGS
from bench.score.presets import ScoringProtocol, flag

# This module imports no torch: `bench run --help` and every option's refusal are built
# from it at once (docs/architecture.md). The losses' package loads torch, so what the
# options take from it is spelled here, and tests/test_cli_latency.py checks that the two
# agree: the GAN objectives (losses.adversarial.GAN_MODES) and the perceptual loss's
# default layers (losses.registry.DEFAULT_PERCEPTUAL_LAYERS).
GAN_MODES = ("vanilla", "lsgan", "hinge", "wgangp")
DEFAULT_PERCEPTUAL_LAYERS = "relu1_2,relu2_2,relu3_3,relu4_3"
LossOptions = later("losses.registry:LossOptions")  # what RunConfig.loss_options builds, once a run starts

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


class OptionError(ValueError):
    """An option outside its allowed range; the message names the option, the range and the fix."""


def option(default=dataclasses.MISSING, *, help: str = "", identity: bool = False, old_runs=_NOT_GIVEN,
           internal: str = "", flag: str = "", choices: tuple = (), path: str = "", min=None,
           min_open: bool = False, default_text: str = "", multiple: bool = False,
           default_factory=dataclasses.MISSING):
    """A ``RunConfig`` field with what ``bench run`` and a resumed run need to know about it:

    - ``help``: the ``bench run`` help text (the default is appended by bench/cli/run.py).
    - ``identity``: the option changes what a cell computes, so a resumed ``--out`` must
      match on it; ``old_runs``: for an identity option added after runs existed, the
      value those runs used (absent from their config.json).
    - ``internal``: why the field is not a ``bench run`` option (Python API only).
    - ``flag``: the command-line flag when not ``--field-name``; ``choices``: the values
      the flag accepts; ``path``: ``"path"`` or ``"folder"`` for a path option; ``min``:
      the smallest number it accepts (``min_open``: it must be above it); ``default_text``:
      how help shows a default that is not a plain value (None resolved later, or a
      preset's); ``multiple``: a repeatable flag, each value one item of a tuple.

    With the field's type, these are the option's one set of rules (``check_option``): the
    CLI's flag is built from them, and ``make_config`` and ``validate`` apply them to the
    values given in Python.
    """
    metadata = {"help": help, "identity": identity, "internal": internal, "flag": flag, "choices": tuple(choices),
                "path": path, "min": min, "min_open": min_open, "default_text": default_text, "multiple": multiple}
    if old_runs is not _NOT_GIVEN:
        metadata["old_runs"] = old_runs
    return field(default=default, default_factory=default_factory, metadata=metadata)


def _protocol_option(key: str, **rules):
    meta = PROTOCOL_SETTINGS[key].metadata
    return option(None, identity=True, old_runs=None, flag=flag(key), choices=meta["choices"],
                  default_text="the protocol's", help=meta["help"], **rules)


# The protocol settings `bench run` and `bench score` take one by one (``metrics`` is a preset's alone)
PROTOCOL_OVERRIDES = tuple(k for k in PROTOCOL_SETTINGS if k != "metrics")


def scoring_protocol(name: str = "colorbench", **settings) -> ScoringProtocol:
    """The preset ``name`` with ``settings`` (None: the preset's) changed, each checked by its
    option's rules (``check_option``: `bench score` takes them too)."""
    if name not in PROTOCOLS:
        raise ValueError(f"--protocol {name!r}: expected one of {', '.join(PROTOCOLS)}")
    settings = {k: check_option(RunConfig, k, v) if k in RUN_FIELDS else v for k, v in settings.items()}
    return PROTOCOLS[name].with_settings(**settings)


@dataclass
class RunConfig:
    """Every option of ``bench run``; ``config.json`` stores the resolved copy.

    Each field's metadata (``option``) is the one source of its help, its flag and whether
    it is an identity option; bench/cli/run.py builds ``bench run``'s options from it."""

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
    generator: str = option("unet", identity=True,
                            help="Generator network: unet, resunet, or one a plugin registers.")
    discriminator: str = option("patchgan", identity=True, help="Discriminator for GAN terms.")
    # PatchGAN base channels; None: --width, as pix2pix's ndf = ngf, so the quick preset's
    # half-width G meets a half-width D (and its GAN step costs ~2x less, benchmarks/README).
    # Runs made before the option trained a 64-channel D.
    disc_width: int | None = option(
        None, identity=True, old_runs=64, default_text="--width, as pix2pix's ndf = ngf",
        help="Discriminator base channels (pix2pix's ndf).")
    size: int = option(32, identity=True, help="Training/val crop size in px (the U-Net's: a multiple of 32).")
    width: int = option(32, identity=True, help="Generator base channels.")
    # How long each cell trains: passes over the train photos, or optimizer steps; one of
    # the two (neither: the quick preset's steps). Runs made before --steps trained epochs.
    epochs: int | None = option(
        None, identity=True, help="Passes over the train photos per cell (replaces --steps).")
    steps: int | None = option(
        None, identity=True, old_runs=None, help="Optimizer steps per cell (replaces --epochs).")
    batch_size: int = option(16, identity=True, help="Batch size.")
    seeds: tuple[int, ...] = option((0,), help="Comma-separated seeds; each is a cell per combination.")
    plugin: tuple[str, ...] = option(
        (), multiple=True,
        help="A module (a name on PYTHONPATH, or a .py file) that registers your own losses, metrics or "
             "generators; repeatable. Recorded, so every job and `bench report` import it too.")
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
    # How the cells and baselines are scored (bench/score/presets.py, docs/protocols.md): a
    # named protocol and, below, any of its settings changed one by one.
    protocol: str = option(
        "colorbench", identity=True, old_runs="colorbench", choices=tuple(PROTOCOLS),
        help="Scoring protocol: colorbench, or a paper's (ddcolor, ct2, zhang), each a named bundle of the "
             "settings below; docs/protocols.md tables them. `bench protocols` lists them.")
    cf_formula: str | None = _protocol_option("cf_formula")
    delta_cf: str | None = _protocol_option("delta_cf")
    fid_features: str | None = _protocol_option("fid_features")
    fid_input: str | None = _protocol_option("fid_input")
    lpips_net: str | None = _protocol_option("lpips_net")
    ssim_window: str | None = _protocol_option("ssim_window")
    ssim_range: float | None = _protocol_option("ssim_range", min=0, min_open=True)  # a data range of 0 divides by 0
    ground_truth: str | None = _protocol_option("ground_truth")
    predictions_as: str | None = _protocol_option("predictions_as")
    val_geometry: str | None = _protocol_option("val_geometry")
    psnr_crop_border: int | None = _protocol_option("psnr_crop_border", min=0)
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
    # Watching a run: none of these changes a number of metrics.csv, so none is an identity
    # option (the scores along training draw no random number and leave BatchNorm alone).
    eval_every: int | None = option(
        None, min=0, default_text="an eighth of the steps, so about 8 evaluations per cell",
        help="Score each cell on the val photos every N steps along training (per-image metrics), "
             "into its curve.csv, TensorBoard and the report's curve figure; 0: no curve.")
    eval_set_metrics: bool = option(
        False, help="Also FID and KID at each evaluation along training (each costs minutes on a CPU).")
    tensorboard: bool = option(
        True, flag="--tensorboard/--no-tensorboard", default_text="on",
        help="Write TensorBoard event files to <run>/tensorboard/ (losses, val scores, val photos); "
             "needs the tensorboard package (pip install -e '.[tensorboard]').")
    gallery_photos: int | None = option(
        None, min=0, default_text="every val photo",
        help="How many val photos get image files for the report's gallery.html (every photo keeps its "
             "scores).")
    keep_state: bool = option(
        True, flag="--keep-state/--no-keep-state", default_text="on",
        help="Keep each finished cell's last training state (state.pt: G, D and Adam's moments, about 3x "
             "generator.pt), so a larger --steps can train the run further.")
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
        d["seeds"], d["betas"], d["plugin"] = list(self.seeds), list(self.betas), list(self.plugin)
        return d

    def loss_options(self, device):
        """What the loss factories get (``losses.LossOptions``): the loss fields of this config,
        on ``device`` (resolved)."""
        options = LossOptions.load()
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(options) if f.name != "device"}
        return options(device=str(device), **values)

    def scoring(self) -> ScoringProtocol:
        """The scoring protocol: ``--protocol``'s preset with every setting given on top."""
        return scoring_protocol(self.protocol, **{k: getattr(self, k) for k in PROTOCOL_OVERRIDES})

    def watch_settings(self) -> "WatchSettings":
        """What every cell records along its training and for the gallery."""
        return WatchSettings(self.eval_every, self.eval_set_metrics, self.tensorboard, self.gallery_photos)

    def train_settings(self, precision: str):
        """How every cell trains: the training fields of this config, in ``precision`` (resolved)."""
        return TrainSettings(
            generator=self.generator, size=self.size, width=self.width, epochs=self.epochs or 0, steps=self.steps,
            batch_size=self.batch_size, lr=self.lr, betas=tuple(self.betas), precision=precision,
            compile=self.compile, checkpoint_seconds=self.checkpoint_seconds, keep_state=self.keep_state,
        )


LAUNCHERS = ("serial", "local", "slurm")


@dataclass
class LaunchConfig:
    """How ``bench run`` executes the cells, not what they compute: in this process one
    after another, as parallel jobs on this machine, or as a SLURM job array (bench/run/launch.py),
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
    slurm_cpus_per_task: int | None = option(
        None, min=1, default_text="a GPU task: 8 per GPU; a CPU task: the run's threads per cell",
        help="slurm: CPUs per task; the task's torch threads follow it (SLURM_CPUS_PER_TASK).")
    slurm_mem_gb: float | None = option(
        None, min=1, default_text="the run's photos as held in memory, plus 8 GB",
        help="slurm: memory per task in GB (each task holds every photo in memory).")
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


RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


# Options that change what a cell computes; a resumed --out must match on these. Not
# --precision as asked: what it resolved to (``auto`` differs per machine) is compared
# instead, with the device type (runner.check_numerics).
IDENTITY_FIELDS = tuple(name for name, f in RUN_FIELDS.items() if f.metadata["identity"])


# Identity options added after runs were made, with the value those runs used.
OPTIONS_ADDED_LATER = {name: f.metadata["old_runs"] for name, f in RUN_FIELDS.items() if "old_runs" in f.metadata}


# Options whose default comes from --preset.
PRESET_FIELDS = tuple(name for name in RUN_FIELDS if any(name in values for values in PRESETS.values()))


def parse_seeds(value) -> tuple[int, ...]:
    """``--seeds`` as the CLI takes it ("0,1,2") or as Python gives it (0, or [0, 1]): whole
    numbers only (a float or a bool is refused, never truncated)."""
    def one(s):
        if isinstance(s, str):
            return int(s)
        if isinstance(s, numbers.Integral) and not isinstance(s, bool):
            return int(s)
        raise TypeError(s)

    where = f"seeds={_shown(value)} (--seeds)"
    try:
        if isinstance(value, (str, numbers.Integral)) and not isinstance(value, bool):
            seeds = tuple(one(s) for s in (value.split(",") if isinstance(value, str) else [value]))
        elif isinstance(value, Iterable) and not isinstance(value, (bytes, dict, set, frozenset)):
            seeds = tuple(one(s) for s in value)
        else:
            raise TypeError(value)
    except (TypeError, ValueError):
        raise OptionError(f"{where} is not a comma-separated list of integers, e.g. 0,1,2 (in Python also a "
                          "list such as seeds=[0, 1, 2])") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise OptionError(f"{where}: seeds must be distinct non-negative integers, e.g. 0,1,2")
    return seeds


# ---- one set of rules per option -------------------------------------------------------
# Each field's type and metadata (``option``) say what it accepts; ``bench run``'s flag is
# built from them (bench/cli/run.py), and ``check_option`` applies them to a value given in
# Python (make_config, validate), so the Python API refuses what the CLI refuses, with the
# option named both ways.


def option_flag(f: dataclasses.Field) -> str:
    """The command-line flag of a field (``--keep-state/--no-keep-state`` for a switch)."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _kind(cls, name: str):
    """The field's type without None, and whether None is one of its values."""
    hint = _hints(cls)[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = typing.get_args(hint)
        return next(a for a in args if a is not type(None)), type(None) in args
    return hint, False


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value) -> str:
    return type(value).__name__


def _a(value) -> str:
    """'an int', 'a str', 'a numpy.bool': the type of ``value`` as a message names it."""
    kind = type(value)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__.split('.')[0]}.{kind.__name__}"
    return ("an " if name[0] in "aeiou" else "a ") + name


def check_option(cls, name: str, value):
    """``value`` of the option ``name`` of ``cls`` (``RunConfig`` or ``LaunchConfig``) checked
    against its field's rules: its type (a switch only as True or False, a whole number as an
    int, a path as a str or ``os.PathLike``), None only where the option may be unset, its
    choices, its smallest value. Returns it as config.json stores it (a path as a str, a
    list of seeds or plugins as a tuple, a numpy number as Python's); raises ``OptionError``
    naming the option as Python spells it and as its flag, with the fix. Ranges that depend
    on other options (a generator's sizes, GPUs present) are ``bench.config.validate``'s."""
    f = {fl.name: fl for fl in dataclasses.fields(cls)}[name]
    kind, optional = _kind(cls, name)
    where = "no command-line flag: set it from Python" if f.metadata.get("internal") else option_flag(f)
    if value is None:
        if optional:
            return None
        raise OptionError(f"{name}=None ({where}): this option cannot be None; give {_expected(name, f, kind)}, "
                          "or leave it out for its default")
    if name == "seeds":
        return parse_seeds(value)
    try:
        return _convert(f, kind, value)
    except _Wrong as wrong:
        unset = f", or None for {f.metadata['default_text'] or 'its default'}" if optional else ""
        got = f"; got {wrong.got}" if wrong.got else ""
        raise OptionError(f"{name}={_shown(value)} ({where}) must be {wrong.expected or _expected(name, f, kind)}"
                          f"{unset}{got}") from None


class _Wrong(Exception):
    """A value its option does not take: what it takes (empty: ``_expected``'s words), and what it got."""

    def __init__(self, expected: str = "", got: str = ""):
        super().__init__(expected)
        self.expected, self.got = expected, got


def _convert(f: dataclasses.Field, kind, value):
    """``value`` (not None) by the rules of ``f``, as config.json stores it; ``_Wrong`` if not."""
    meta, name = f.metadata, f.name
    if meta.get("path"):
        path = os.fspath(value) if isinstance(value, os.PathLike) else value
        if not isinstance(path, str) or not path.strip():
            what = "a folder path" if meta["path"] == "folder" else "a path"
            raise _Wrong(f"{what} (a str or pathlib.Path), e.g. {name}='path/to/folder'",
                         "an empty path" if isinstance(path, str) else _a(value))
        return path
    if meta.get("multiple"):
        items = (value,) if isinstance(value, str) else value
        expected = f"a str or a list of str (one per {option_flag(f)} on the command line)"
        if not isinstance(items, (list, tuple)):
            raise _Wrong(expected, _a(value))
        bad = [v for v in items if not isinstance(v, str) or not v.strip()]
        if bad:
            raise _Wrong(expected, f"the item {_shown(bad[0])}")
        return tuple(items)
    if meta.get("choices"):
        if not isinstance(value, str) or value not in meta["choices"]:
            raise _Wrong()
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise _Wrong(f"True or False (pass {name}=True or {name}=False)",
                         f"{_a(value)}, which a switch never reads by its truth")
        return value
    if kind is int or kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral if kind is int else numbers.Real):
            raise _Wrong(got=_a(value))
        number = int(value) if kind is int else value if type(value) in (int, float) else float(value)
        low = meta.get("min")
        if low is not None and not (number > low if meta.get("min_open") else number >= low):  # NaN too
            raise _Wrong()
        return number
    if kind is str or kind is dict:
        if not isinstance(value, kind):
            raise _Wrong(got=_a(value))
        return value
    if typing.get_origin(kind) is tuple:  # a fixed number of numbers (Adam's betas)
        size = len(typing.get_args(kind))
        if (not isinstance(value, (list, tuple)) or len(value) != size
                or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)):
            raise _Wrong(f"{size} numbers, e.g. {name}={f.default!r}")
        return tuple(v if type(v) in (int, float) else float(v) for v in value)
    return value


def _expected(name: str, f: dataclasses.Field, kind) -> str:
    """What the option takes, with an example: 'a whole number (an int) of at least 1, e.g. size=32'."""
    low, meta = f.metadata.get("min"), f.metadata
    if meta.get("choices"):
        return f"one of {', '.join(map(str, meta['choices']))}"
    what = {int: "a whole number (an int)", float: "a number", str: "a str", dict: "a dict"}.get(kind, "a value")
    if low is not None:
        what += f" {'above' if meta.get('min_open') else 'of at least'} {low:g}"
    example = f.default if f.default not in (None, dataclasses.MISSING) else None
    if example is None and kind is int:
        example = max(10, low or 0)
    elif example is None and kind is float:
        example = max(1.0, low or 0) + (1.0 if meta.get("min_open") and (low or 0) >= 1 else 0.0)
    return what + (f", e.g. {name}={example!r}" if example is not None else "")


def check_options(config) -> None:
    """Every field of ``config`` (a ``RunConfig`` or ``LaunchConfig``) through
    ``check_option``; the checked values replace the given ones (a path as a str, a list of
    seeds as a tuple)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        checked = check_option(type(config), f.name, value)
        if checked is not value:
            setattr(config, f.name, checked)


def make_config(preset: str = "quick", **options) -> RunConfig:
    """Preset values, overridden by every option that is not None. Takes the values the CLI
    takes (``seeds="0,1"``, ``losses="l1,mse"``) as well as Python's (``seeds=[0, 1]``)."""
    unknown = sorted(set(options) - set(RUN_FIELDS))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}; `bench run --help` lists them "
                         "(as --option-name; in Python, option_name)")
    check_option(RunConfig, "preset", preset)
    # each given value by its option's rules (the CLI's), as config.json stores it
    given = {k: check_option(RunConfig, k, v) for k, v in options.items() if v is not None}
    # before anything else is checked: the plugins register the losses, metrics and
    # generators the options may name
    given["plugin"] = tuple(plugin_name(p) for p in given.get("plugin", ()))
    load_plugins(given["plugin"])
    if "epochs" in given and "steps" in given:
        raise ValueError("give --epochs or --steps, not both: each sets how long every cell trains")
    preset_values = dict(PRESETS[preset])
    if "epochs" in given or "steps" in given:  # the budget given replaces the preset's, of either kind
        preset_values.pop("epochs", None), preset_values.pop("steps", None)
    values = {"epochs": None, "steps": None, **preset_values, **given}
    for key in ("data", "val_data", "out", "data_root"):
        if values.get(key) is not None:
            values[key] = str(Path(values[key]))
    # the photo folders as absolute paths: config.json is read from other folders (a job, a
    # `bench report` run elsewhere), where a path typed relative to this one finds nothing
    # or other photos
    for key in ("data", "val_data", "data_root"):
        if values.get(key) is not None:
            values[key] = os.path.abspath(os.path.expanduser(values[key]))
    return RunConfig(preset=preset, **values)


def _run_default(name: str):
    return RUN_FIELDS[name].default


@dataclass
class TrainSettings:
    """How every cell of a run trains (``RunConfig.train_settings``); the defaults are
    ``RunConfig``'s, so a cell trained from Python matches one trained by ``bench run``."""

    generator: str = _run_default("generator")
    size: int = _run_default("size")
    width: int = _run_default("width")
    epochs: int = 3
    # Optimizer steps per cell; when set it replaces ``epochs`` (the quick preset budgets
    # steps, so a small photo set trains long enough and a large one stays quick).
    steps: int | None = None
    batch_size: int = _run_default("batch_size")
    lr: float = _run_default("lr")
    betas: tuple[float, float] = _run_default("betas")
    precision: str = "fp32"
    out_channels: int = 2
    # None: by device and precision. cuDNN's tensor-core kernels and oneDNN's bf16 ones want
    # NHWC (a CPU bf16 step ran 1.8x faster in it); fp32 on a CPU gained nothing consistent
    # and lost ~10% in some steps (benchmarks/README.md).
    channels_last: bool | None = None
    compile: bool = False  # torch.compile the generator (pays off on long GPU runs)
    checkpoint_seconds: float = 300.0  # how much training a kill may cost at most
    keep_state: bool = True  # a finished cell's last state kept (state.pt), to train it further


# How many times a cell is scored along its training when --eval-every is not given.
EVALUATIONS = 8


@dataclass
class WatchSettings:
    """What a cell records besides its final scores (``RunConfig.watch_settings``): the val
    scores every ``eval_every`` steps (None: ``EVALUATIONS`` times in all; 0: none, not even at the
    end), FID/KID among them with ``eval_set_metrics``, TensorBoard events, and image files
    of the first ``gallery_photos`` val photos (None: all) for the gallery."""

    eval_every: int | None = None
    eval_set_metrics: bool = False
    tensorboard: bool = True
    gallery_photos: int | None = None

    def interval(self, total: int) -> int:
        """Steps between two evaluations of a cell of ``total`` steps (0: none before the end)."""
        if self.eval_every is not None:
            return self.eval_every
        return max(1, math.ceil(total / EVALUATIONS))


def config_options(options: dict) -> RunConfig:
    """The ``RunConfig`` that config.json's ``options`` record."""
    values = {**OPTIONS_ADDED_LATER, **{k: v for k, v in options.items() if k in RUN_FIELDS}}
    values["seeds"], values["betas"] = tuple(values["seeds"]), tuple(values["betas"])
    values["plugin"] = tuple(values.get("plugin", ()))
    return RunConfig(**values)


def default_out(root: str | Path = "results", kind: str = "run") -> str:
    """A new run folder under ``root``, named by the time and created here, so that two runs
    started in the same second take ``run-...-2`` and ``run-...-3`` instead of one folder
    (``kind``: ``score`` for `bench score`'s)."""
    stamp = datetime.now().strftime(f"{kind}-%Y%m%d-%H%M%S")
    for k in itertools.count(1):
        path = Path(root) / (stamp if k == 1 else f"{stamp}-{k}")
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        return str(path)
