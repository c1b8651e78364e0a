"""`bench protocols`: the scoring protocols by name (no torch: it only lists them)."""
from __future__ import annotations

import click

from bench.cli import echo
from bench.score.presets import PRESETS, SETTINGS, describe, flag


@click.command("protocols")
def list_protocols():
    """List the scoring protocols (--protocol) and their settings."""
    base = PRESETS["colorbench"]
    for preset in PRESETS.values():
        changed = {k: getattr(preset, k) for k in SETTINGS if getattr(preset, k) != getattr(base, k)}
        echo(f"{preset.name}: " + (", ".join(f"{flag(k)} {describe(v)}" for k, v in changed.items())
                                   or "Colorbench's own settings"))
    echo("\nEach setting but metrics is also an option of `bench run` and `bench score`; docs/protocols.md pins "
         "every preset to the code it comes from.")
