"""The loss registry. Importing this package registers every loss: each module in it is
imported (``discover``), so a new loss is one new file with one decorated factory::

    @register_loss("tv", "total variation of the predicted ab")
    def tv(options):
        return MyModule()

What the trainer owes a term (a discriminator step, the training data, pretrained weights,
a generator head) is declared on ``register_loss``; see losses/registry.py.
"""
import importlib
import pkgutil

from losses.registry import (
    LOSSES,
    Combination,
    LossInfo,
    LossOptions,
    LossSpecError,
    Term,
    generator_head,
    is_adversarial,
    parse_combination,
    parse_losses,
    register_loss,
    release_networks,
    weights_tags,
)


def discover() -> list[str]:
    """Import every module of this package (in name order, so ``bench losses`` lists the
    same order on every machine); returns their names. Importing registers their losses."""
    names = [m.name for m in pkgutil.iter_modules(__path__, __name__ + ".")]
    for name in names:
        importlib.import_module(name)
    return names


discover()

__all__ = [
    "LOSSES",
    "Combination",
    "LossInfo",
    "LossOptions",
    "LossSpecError",
    "Term",
    "discover",
    "generator_head",
    "is_adversarial",
    "parse_combination",
    "parse_losses",
    "register_loss",
    "release_networks",
    "weights_tags",
]
