"""The networks of the comparison, in pix2pix's vocabulary.

``unet`` is the pix2pix / colorization-tutorial generator, ``resunet`` the seed project's
residual U-Net, ``patchgan`` the 70x70 PatchGAN. Builders are registered by name so a new
network is one decorated function.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from models.classifier import build_head

GeneratorBuilder = Callable[..., nn.Module]
GENERATORS: dict[str, GeneratorBuilder] = {}
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {}

MAX_DEPTH = 8  # pix2pix's n_down at 256 px: the bottleneck is 1x1
MIN_DEPTH = 5  # innermost + three widening blocks + outermost


# name -> ``rule(size) -> why it does not fit, or None``: each generator's own constraint on
# --size (the U-Net's is a multiple of 2^5); a generator registered without one takes any.
SIZE_RULES: dict[str, Callable[[int], str | None]] = {}


def register_generator(name: str, size_rule: Callable[[int], str | None] | None = None):
    """Register ``fn(size, width, out_channels, ...) -> nn.Module`` as ``--generator NAME``;
    ``size_rule(size)`` says why a --size does not fit it (None: it fits)."""
    def wrap(fn: GeneratorBuilder) -> GeneratorBuilder:
        if name in GENERATORS:
            raise ValueError(f"generator {name!r} is already registered (by {GENERATORS[name].__module__}); "
                             "pick another name")
        GENERATORS[name] = fn
        if size_rule is not None:
            SIZE_RULES[name] = size_rule
        return fn

    return wrap


def register_discriminator(name: str):
    def wrap(fn):
        if name in DISCRIMINATORS:
            raise ValueError(f"discriminator {name!r} is already registered (by {DISCRIMINATORS[name].__module__}); "
                             "pick another name")
        DISCRIMINATORS[name] = fn
        return fn

    return wrap


def size_problem(generator: str, size: int) -> str | None:
    """Why ``--size size`` does not fit ``generator``, or None."""
    rule = SIZE_RULES.get(generator)
    return None if rule is None else rule(size)


def valid_sizes_hint() -> str:
    step = 2**MIN_DEPTH
    return f"multiples of {step}: {', '.join(str(step * k) for k in range(1, 9))}, ..."


def unet_depth(size: int) -> int:
    """Number of stride-2 downsamplings for ``size``: log2(size) up to 8, as pix2pix."""
    depth = 0
    while depth < MAX_DEPTH and size % 2 ** (depth + 1) == 0:
        depth += 1
    if depth < MIN_DEPTH:
        raise ValueError(
            f"--size {size} does not fit a U-Net of at least {MIN_DEPTH} stride-2 levels; "
            f"use one of the {valid_sizes_hint()}"
        )
    return depth


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """pix2pix's 'normal' init: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02)."""

    def init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    return net.apply(init)


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down, the levels inside it, up, and the skip across (pix2pix)."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        use_dropout: bool = False,
        tanh: bool = True,
    ):
        super().__init__()
        self.outermost = outermost
        input_nc = outer_nc if input_nc is None else input_nc
        down_conv = nn.Conv2d(input_nc, inner_nc, 4, 2, 1, bias=False)
        if outermost:
            up_conv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1)
            layers = [down_conv, submodule, nn.ReLU(True), up_conv] + ([nn.Tanh()] if tanh else [])
        elif innermost:
            up_conv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, 2, 1, bias=False)
            layers = [nn.LeakyReLU(0.2, True), down_conv, nn.ReLU(True), up_conv, nn.BatchNorm2d(outer_nc)]
        else:
            up_conv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, 2, 1, bias=False)
            layers = [
                nn.LeakyReLU(0.2, True), down_conv, nn.BatchNorm2d(inner_nc),
                submodule,
                nn.ReLU(True), up_conv, nn.BatchNorm2d(outer_nc),
            ]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """The tutorial's U-Net: ``n_down`` levels, ``nf`` base filters, dropout in the
    ``n_down - 5`` innermost decoder blocks (three at 256 px). ``tanh=False`` leaves the
    output unbounded (class logits)."""

    def __init__(self, input_c: int = 1, output_c: int = 2, n_down: int = 8, nf: int = 64, tanh: bool = True):
        super().__init__()
        block = UnetSkipConnectionBlock(nf * 8, nf * 8, innermost=True)
        for _ in range(n_down - 5):
            block = UnetSkipConnectionBlock(nf * 8, nf * 8, submodule=block, use_dropout=True)
        out_filters = nf * 8
        for _ in range(3):
            block = UnetSkipConnectionBlock(out_filters // 2, out_filters, submodule=block)
            out_filters //= 2
        self.model = UnetSkipConnectionBlock(
            output_c, out_filters, input_nc=input_c, submodule=block, outermost=True, tanh=tanh
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class _ResDown(nn.Module):
    """4x4 stride-2 conv + BatchNorm + LeakyReLU, plus a strided 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, norm: bool = True):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm),
            nn.BatchNorm2d(cout) if norm else nn.Identity(),
            nn.LeakyReLU(0.2, True),
        )
        self.shortcut = nn.Conv2d(cin, cout, 1, 2, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class ResUnetGenerator(nn.Module):
    """The seed project's generator: residual stride-2 down blocks, transposed-conv up
    blocks with skips, tanh ab output (or unbounded, ``tanh=False``, for class logits)."""

    def __init__(self, input_c: int = 1, output_c: int = 2, n_down: int = 8, width: int = 64, tanh: bool = True):
        super().__init__()
        self.tanh = tanh
        chans = [min(width * 2**i, width * 8) for i in range(n_down)]
        ins = [input_c] + chans[:-1]
        # No BatchNorm at the 1x1 bottleneck, where batch statistics are the noisiest.
        self.downs = nn.ModuleList(
            _ResDown(cin, cout, norm=i < n_down - 1) for i, (cin, cout) in enumerate(zip(ins, chans))
        )
        ups = []
        for i in range(n_down - 1, 0, -1):
            cin = chans[i] if i == n_down - 1 else chans[i] * 2
            ups.append(
                nn.Sequential(
                    nn.ConvTranspose2d(cin, chans[i - 1], 4, 2, 1, bias=False),
                    nn.BatchNorm2d(chans[i - 1]),
                    nn.ReLU(True),
                )
            )
        self.ups = nn.ModuleList(ups)
        self.head = nn.ConvTranspose2d(chans[0] * 2 if n_down > 1 else chans[0], output_c, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        x = skips.pop()
        for up in self.ups:
            x = torch.cat([up(x), skips.pop()], 1)
        x = self.head(x)
        return torch.tanh(x) if self.tanh else x


# A PatchGAN's normalisation layers. "batch" is pix2pix's. "layer" normalises each sample
# over its channels and positions (GroupNorm with one group), as Gulrajani et al. (WGAN-GP,
# NeurIPS 2017, sec. 4) use in the critic: the gradient penalty is taken per sample, and
# batch statistics would make each sample's critic value depend on the others (and
# SyncBatchNorm has no double backward, so a penalty over several GPUs cannot run).
DISCRIMINATOR_NORMS = {
    "batch": nn.BatchNorm2d,
    "layer": lambda channels: nn.GroupNorm(1, channels),
}


class NLayerDiscriminator(nn.Module):
    """PatchGAN: ``n_layers=3`` gives 70x70 receptive fields; no norm on the first layer."""

    def __init__(self, input_nc: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                DISCRIMINATOR_NORMS[norm](ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def unet_size_problem(size: int) -> str | None:
    try:
        unet_depth(size)
    except ValueError as exc:
        return str(exc)
    return None


@register_generator("unet", size_rule=unet_size_problem)
def unet(size: int, width: int = 64, in_channels: int = 1, out_channels: int = 2, tanh: bool = True) -> nn.Module:
    """pix2pix U-Net (the tutorial's), n_down = log2(size) up to 8."""
    return init_weights(UnetGenerator(in_channels, out_channels, unet_depth(size), width, tanh))


@register_generator("resunet", size_rule=unet_size_problem)
def resunet(size: int, width: int = 64, in_channels: int = 1, out_channels: int = 2, tanh: bool = True) -> nn.Module:
    """The seed's residual U-Net."""
    return init_weights(ResUnetGenerator(in_channels, out_channels, unet_depth(size), width, tanh))


@register_discriminator("patchgan")
def patchgan(in_channels: int = 3, width: int = 64, n_layers: int = 3, norm: str = "batch") -> nn.Module:
    """70x70 PatchGAN conditioned on L (input L+ab); ``norm``: a key of DISCRIMINATOR_NORMS."""
    return init_weights(NLayerDiscriminator(in_channels, width, n_layers, norm))


def _pick(registry: dict, kind: str, name: str):
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(registry))}") from None


def build_generator(name: str, size: int, width: int = 64, out_channels: int = 2, head: dict | None = None) -> nn.Module:
    """The named generator; ``head`` (e.g. Zhang's colour classes, see models/classifier.py)
    replaces its ab output by another one on the same body."""
    builder = _pick(GENERATORS, "generator", name)
    if head is None:
        return builder(size=size, width=width, out_channels=out_channels)
    return build_head(head, lambda **kw: builder(size=size, width=width, **kw))


def build_discriminator(name: str = "patchgan", **kwargs) -> nn.Module:
    return _pick(DISCRIMINATORS, "discriminator", name)(**kwargs)
