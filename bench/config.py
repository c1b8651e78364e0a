"""Run configuration: one dataclass, two presets, and the device/precision choice."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

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


@dataclass
class RunConfig:
    """Every option of ``bench run``; ``config.json`` stores the resolved copy."""

    losses: str = DEFAULT_LOSSES
    data: str | None = None
    val_data: str | None = None
    dataset: str | None = None
    data_root: str | None = None  # where named datasets are cached; None: COLORBENCH_DATA or the user cache
    preset: str = "quick"
    generator: str = "unet"
    discriminator: str = "patchgan"
    # PatchGAN base channels; None: --width, as pix2pix's ndf = ngf, so the quick preset's
    # half-width G meets a half-width D (and its GAN step costs ~2x less, benchmarks/README).
    disc_width: int | None = None
    size: int = 32
    width: int = 32
    # How long each cell trains: passes over the train photos, or optimizer steps; one of
    # the two (neither: the quick preset's steps).
    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 16
    seeds: tuple[int, ...] = (0,)
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    gan_mode: str = "vanilla"
    perceptual_layers: str = "relu1_2,relu2_2,relu3_3,relu4_3"
    device: str = "auto"
    precision: str = "auto"
    strict_weights: bool = False
    deterministic: bool = False
    compile: bool = False
    checkpoint_seconds: float = 300.0
    eval_batch_size: int = 64
    workers: int = 2
    out: str | None = None
    extra: dict = field(default_factory=dict)

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


# Options that change what a cell computes; a resumed --out must match on these.
IDENTITY_FIELDS = (
    "losses", "data", "val_data", "dataset", "generator", "discriminator", "disc_width", "size", "width",
    "epochs", "steps", "batch_size", "lr", "betas", "gan_mode", "perceptual_layers", "precision",
)


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
    if requested not in ("auto", "fp32", "bf16", "fp16"):
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
