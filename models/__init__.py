"""Generators and discriminators, selected by name (``--generator``, ``--discriminator``).
Importing this package imports each of its modules (``discover``), so a new generator is
one new file with one decorated builder (``@register_generator("name", size_rule=...)``)."""
import importlib
import pkgutil

from models.networks import (
    DISCRIMINATORS,
    GENERATORS,
    NLayerDiscriminator,
    ResUnetGenerator,
    UnetGenerator,
    UnetSkipConnectionBlock,
    build_discriminator,
    build_generator,
    init_weights,
    register_discriminator,
    register_generator,
    size_problem,
    unet_depth,
    valid_sizes_hint,
)


def discover() -> list[str]:
    """Import every module of this package, in name order; returns their names."""
    names = [m.name for m in pkgutil.iter_modules(__path__, __name__ + ".")]
    for name in names:
        importlib.import_module(name)
    return names


discover()

__all__ = [
    "DISCRIMINATORS",
    "GENERATORS",
    "NLayerDiscriminator",
    "ResUnetGenerator",
    "UnetGenerator",
    "UnetSkipConnectionBlock",
    "build_discriminator",
    "build_generator",
    "init_weights",
    "register_discriminator",
    "register_generator",
    "size_problem",
    "unet_depth",
    "valid_sizes_hint",
]
