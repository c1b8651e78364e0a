"""`bench losses`: the registered loss terms, the plugins' included."""
from __future__ import annotations

import click

from bench import later
from bench.cli import echo
from bench.config.plugins import load_plugins, plugin_name

LOSSES = later("losses:LOSSES")  # the registry loads torch: imported when the command runs


@click.command("losses")
@click.option("--plugin", "plugins", multiple=True,
              help="Also import this module (a name on PYTHONPATH, or a .py file) and list what it registers.")
def list_losses(plugins):
    """List the registered loss terms."""
    try:
        load_plugins([plugin_name(p) for p in plugins])
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    width = max(map(len, LOSSES))
    for info in sorted(LOSSES.values(), key=lambda i: i.name):
        echo(f"{info.name:<{width}}  {info.description}")
        if info.reference:
            echo(f"{'':<{width}}  paper: {info.reference}")
        if info.defaults:
            echo(f"{'':<{width}}  defaults: {info.defaults}")
