"""`bench losses`: the registered loss terms."""
from __future__ import annotations

import click

from losses import LOSSES


@click.command("losses")
def list_losses():
    """List the registered loss terms."""
    width = max(map(len, LOSSES))
    for info in sorted(LOSSES.values(), key=lambda i: i.name):
        click.echo(f"{info.name:<{width}}  {info.description}")
        if info.reference:
            click.echo(f"{'':<{width}}  paper: {info.reference}")
        if info.defaults:
            click.echo(f"{'':<{width}}  defaults: {info.defaults}")
