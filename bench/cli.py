"""The ``bench`` command: a thin click layer over the library functions."""
from __future__ import annotations

import logging
import sys
import warnings

import click

from bench.config import DEFAULT_LOSSES, PRESETS, RunConfig

log = logging.getLogger("colorbench")


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
    warnings.formatwarning = lambda msg, cat, *a, **k: f"WARNING: {msg}\n"


def _seeds(ctx, param, value):
    if value is None:
        return None
    try:
        seeds = tuple(int(s) for s in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers, e.g. 0,1,2") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise click.BadParameter(f"{value!r}: seeds must be distinct non-negative integers")
    return seeds


def _preset_help() -> str:
    return "; ".join(
        f"{name}: " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in values.items())
        for name, values in PRESETS.items()
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Log more detail (skipped files, timings).")
def main(verbose: bool) -> None:
    """Colorbench: which loss colorizes black-and-white photos best?

    Trains the same U-Net on L -> ab once per loss combination under identical seeds and
    data, scores every model, and writes tables and a report under results/.
    """
    _setup_logging(verbose)


D = RunConfig()


@main.command()
@click.option("--losses", default=DEFAULT_LOSSES, show_default=True,
              help="Comma-separated combinations; each a '+'-sum of optionally weighted terms, "
                   "e.g. 'mse,l1,100*l1+gan,l1+0.1*perceptual'. See `bench losses`.")
@click.option("--data", type=click.Path(file_okay=True), default=None,
              help="Folder of photos (recursive). Uses its train/ and val/ (or test/) subfolders "
                   "if present, else a 10% file-name-hash val split.  [default: built-in sample set]")
@click.option("--val-data", type=click.Path(), default=None, help="Folder of val photos (then --data is all train).")
@click.option("--dataset", default=None, help="A named dataset instead of --data (e.g. 'sample').")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="quick", show_default=True,
              help=f"Defaults for the options below. {_preset_help()}.")
@click.option("--generator", default=None, help=f"Generator network: unet or resunet.  [default: preset's, {D.generator}]")
@click.option("--discriminator", default=D.discriminator, show_default=True, help="Discriminator for GAN terms.")
@click.option("--size", type=int, default=None, help="Training/val crop size in px (a multiple of 32).  [default: preset's]")
@click.option("--width", type=int, default=None, help="Generator base channels.  [default: preset's]")
@click.option("--epochs", type=int, default=None, help="Training epochs per cell.  [default: preset's]")
@click.option("--batch-size", type=int, default=None, help="Batch size.  [default: preset's]")
@click.option("--seeds", callback=_seeds, default="0", show_default=True, help="Comma-separated seeds; each is a cell per combination.")
@click.option("--lr", type=float, default=D.lr, show_default=True, help="Adam learning rate for G and D.")
@click.option("--gan-mode", type=click.Choice(["vanilla", "lsgan", "hinge", "wgangp"]), default=D.gan_mode,
              show_default=True, help="GAN objective (wgangp: Wasserstein loss with gradient penalty).")
@click.option("--perceptual-layers", default=D.perceptual_layers, show_default=True,
              help="VGG16 layers the perceptual loss compares, each optionally LAYER:WEIGHT, "
                   "e.g. 'relu2_2' or 'relu1_2:0.5,relu2_2,relu3_3' (relu1_1 ... relu5_3).")
@click.option("--device", default=D.device, show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=D.precision, show_default=True,
              help="auto: bf16 where the hardware runs it natively, else fp32.")
@click.option("--out", type=click.Path(), default=None,
              help="Run folder; rerunning into it skips finished cells.  [default: results/run-TIMESTAMP]")
@click.option("--overwrite", is_flag=True, help="Discard an earlier run in --out that used other options.")
@click.option("--strict-weights", is_flag=True, help="Fail before training if pretrained weights are missing, instead of falling back.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def run(quiet, overwrite, **options):
    """Train and score every loss combination x seed."""
    from bench.config import make_config
    from bench.runner import run_benchmark

    preset = options.pop("preset")
    try:
        cfg = make_config(preset, **options)
        out = run_benchmark(cfg, progress=not quiet, overwrite=overwrite)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    _print_summary(out)


def _print_summary(out) -> None:
    from bench.results import read_metrics

    frame = read_metrics(out)
    table = frame.pivot_table(index="combination", columns="metric", values="value", aggfunc="mean", sort=False)
    click.echo(f"\nResults in {out} (mean over seeds):")
    click.echo(table.to_string(float_format=lambda v: f"{v:.4f}"))


@main.command("losses")
def list_losses():
    """List the registered loss terms."""
    from losses import LOSSES

    width = max(map(len, LOSSES))
    for info in sorted(LOSSES.values(), key=lambda i: i.name):
        click.echo(f"{info.name:<{width}}  {info.description}")
        if info.reference:
            click.echo(f"{'':<{width}}  paper: {info.reference}")
        if info.defaults:
            click.echo(f"{'':<{width}}  defaults: {info.defaults}")


if __name__ == "__main__":
    main()
