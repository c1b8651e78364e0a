"""Generators and discriminators, selected by name (``--generator``, ``--discriminator``)."""
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
    unet_depth,
    valid_sizes_hint,
)

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
    "unet_depth",
    "valid_sizes_hint",
]
