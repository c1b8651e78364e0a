"""The ``bench`` command: a thin click layer over the library functions, one module per
command. A command's module is imported only when that command runs, so ``bench --help``
prints at once and ``bench status`` never loads torch (it runs on a login node while the
jobs train). A command's module binds what its body runs with ``bench.later`` (imported
once the options parsed and passed their rules), so its ``--help`` and its refusals of a bad
option load no torch either (tests/test_cli_latency.py)."""
from __future__ import annotations

import importlib
import logging
import sys
import warnings

import click

from bench.escape import terminal

log = logging.getLogger("colorbench")

# name -> (module:attribute, the line `bench --help` shows), the line kept here so that
# listing the commands imports none of them (tests/test_architecture.py checks each line
# against its command's own help).
COMMANDS = {
    "run": ("bench.cli.run:run", "Train and score every loss combination x seed."),
    "report": ("bench.cli.report:report", "Write report.md (table, figures, reading) for RUN_DIR(s)."),
    "compare": ("bench.cli.report:compare_runs",
                "Which differences are real? Paired comparisons of RUN_DIR's combinations, photo by photo."),
    "colorize": ("bench.cli.colorize:colorize",
                 "Colourise photos (files or folders, any size) with a trained generator."),
    "score": ("bench.cli.score:score",
              "Score outside colorizers' photos: NAME=FOLDER per colorizer, files named like the photos."),
    "status": ("bench.cli.status:status", "Where every cell of RUN_DIR stands."),
    "losses": ("bench.cli.losses:list_losses", "List the registered loss terms."),
    "protocols": ("bench.cli.protocols:list_protocols", "List the scoring protocols (--protocol) and their settings."),
    "weights": ("bench.cli.weights:weights", "List the pretrained files Colorbench may need, and import downloads."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when they are invoked (or their --help asked)."""

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, name: str):
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx, formatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])

    def invoke(self, ctx):
        # Every error a command ends with passes here: its message (which may hold a file or
        # run name) is escaped for the terminal once, whichever command raised it.
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            exc.message = terminal(exc.message)
            raise


class _TerminalFormatter(logging.Formatter):
    """Log lines as the terminal should show them: names from files and folders cannot move
    the cursor, recolour or reorder it (bench/escape.py)."""

    def format(self, record) -> str:
        return terminal(super().format(record))


def echo(text: str = "", err: bool = False) -> None:
    """What a command prints, escaped for the terminal."""
    click.echo(terminal(text), err=err)


def _setup_logging(verbose: bool) -> None:
    """Colorbench's messages on stderr, bare (one handler of ours: a second `main()` in one
    process replaces it; handlers someone else added stay)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_TerminalFormatter("%(message)s"))
    handler.colorbench_cli = True
    log.handlers[:] = [h for h in log.handlers if not getattr(h, "colorbench_cli", False)] + [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    warnings.formatwarning = lambda msg, cat, *a, **k: f"WARNING: {msg}\n"


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Log more detail (skipped files, timings).")
def main(verbose: bool) -> None:
    """Colorbench: which loss colorizes black-and-white photos best?

    Trains the same U-Net on L -> ab once per loss combination under identical seeds and
    data, scores every model, and writes tables and a report under results/.
    """
    _setup_logging(verbose)
