"""Which options a finished cell must share with a rerun to be kept: paths compared
resolved, loss combinations canonical, options added after old runs given their old value."""
from __future__ import annotations

import os

from bench.config.options import IDENTITY_FIELDS
from losses import parse_losses
from losses.perceptual import parse_layer_weights

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
        try:
            return sorted(c.spec for c in parse_losses(value))
        except ValueError:
            return value
    if key == "perceptual_layers":
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
