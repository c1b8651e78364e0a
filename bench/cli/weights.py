"""`bench weights`: the pretrained files Colorbench may need, and `bench weights import`."""
from __future__ import annotations

import click

from bench import later
from bench.cli import echo

pretrained = later("models.pretrained")  # the models' package loads torch: imported when the command runs
install = later("models.pretrained:import_weights")


@click.group("weights", invoke_without_command=True)
@click.pass_context
def weights(ctx):
    """List the pretrained files Colorbench may need, and import downloads.

    Where each is looked for, present or missing, and the URL to get it; `bench weights
    import FILE...` installs downloaded files.
    """
    if ctx.invoked_subcommand is None:
        _list_weights()


def _list_weights() -> None:

    folder = pretrained.checkpoint_dir()
    echo(f"Looked for in {folder}")
    echo("  (torch hub's cache, shared with torchvision and pytorch-fid; set TORCH_HOME to move it)")
    if pretrained.offline():
        echo("  COLORBENCH_OFFLINE is set: missing files are not downloaded")
    rows = []
    for w in pretrained.known_weights().values():
        path = pretrained.cached_path(w)
        if path.is_file():  # hashed once against the name's SHA-256 prefix, then remembered
            size, status = f"{path.stat().st_size / 2**20:.0f} MB", pretrained.cache_status(w)
        else:
            size, status = (f"~{w.approx_mb} MB" if w.approx_mb else "?"), "MISSING"
        rows.append((w.key, w.filename, size, status, w.used_for, w.url))
    linear = pretrained.lpips_linear_path()
    rows.append(("lpips", linear.name, f"{linear.stat().st_size / 2**10:.0f} KB" if linear.is_file() else "?",
                 "present" if linear.is_file() else "MISSING", "LPIPS's linear layers",
                 f"ships with the lpips package: {linear}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        echo(("  " + "  ".join(v.ljust(n) for v, n in zip(r[:5], widths))).rstrip())
        echo(f"  {'':<{widths[0]}}  {r[5]}")
    if any(r[3] != "present" for r in rows):
        echo("Without internet: fetch the URLs on another machine, then `bench weights import FILE...`.")


@weights.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path())
def import_weights(files):
    """Copy downloaded weights FILEs into the cache, after checking the SHA-256 prefix in
    each file's name (as torchvision and pytorch-fid name them)."""
    refused = 0
    for f in files:
        try:
            entry, dest, copied = install(f)
        except pretrained.WeightsImportError as exc:
            echo(f"Error: {exc}", err=True)
            refused += 1
            continue
        echo(f"{f}: {'imported as' if copied else 'already in place:'} {dest} ({entry.used_for})")
    if refused:
        raise click.ClickException(f"{refused} of {len(files)} file(s) refused; nothing was written for them")
