"""The loss registry. Importing this package registers every built-in loss.

A new loss is one decorated factory in one file, imported here::

    @register_loss("tv", "total variation of the predicted ab")
    def tv(options):
        return MyModule()
"""
from losses.registry import (
    LOSSES,
    Combination,
    LossInfo,
    LossOptions,
    LossSpecError,
    Term,
    generator_head,
    parse_combination,
    parse_losses,
    register_loss,
)
from losses import adversarial, classification, lpips_loss, perceptual, pixel  # noqa: F401,E402  (registration)

__all__ = [
    "LOSSES",
    "Combination",
    "LossInfo",
    "LossOptions",
    "LossSpecError",
    "Term",
    "generator_head",
    "parse_combination",
    "parse_losses",
    "register_loss",
]
