"""`bench status`: where every cell of a run stands. Imports no torch: it runs on a login
node while the jobs train. What reads the run (pandas) is imported when the command runs."""
from __future__ import annotations

import click

from bench import later
from bench.cli import echo
from bench.rundir.layout import RunFolder

run_status_text = later("bench.run.status:run_status_text")
newest_run = later("bench.rundir.read:newest_run")


@click.command("status")
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--lines", type=click.IntRange(0, 200), default=8, show_default=True,
              help="Log lines shown for each failed or stopped cell.")
def status(run_dir, lines):
    """Where every cell of RUN_DIR stands.  [default: newest run under results/]

    Each cell is done, diverged, running (where, which job), pending, failed or stopped
    (with its log's last lines).
    """
    try:
        folder = RunFolder(run_dir or newest_run())
        echo(run_status_text(folder, lines))  # a run still being prepared is said to be, not refused
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
