"""`bench colorize`: colourise photos with a trained generator. Its options import no torch;
what colourises is bound with ``later`` and imported when the command runs."""
from __future__ import annotations

import click

from bench import later
from bench.cli import echo

colorize_paths, plan_jobs = later("bench.colorize:colorize_paths"), later("bench.colorize:plan_jobs")
resolve_combination = later("bench.colorize:resolve_combination")
resolve_device = later("bench.config.machine:resolve_device")
generator_path, load_run = later("bench.rundir.read:generator_path"), later("bench.rundir.read:load_run")
refuse_out_in_photos = later("bench.rundir.read:refuse_out_in_photos")
load_generator = later("bench.score.scorer:load_generator")


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False), help="A finished `bench run` folder.")
@click.option("--loss", required=True, help="Which combination's generator, by name or --losses spec (e.g. l1, 100*l1+gan).")
@click.option("--seed", type=int, default=None, help="Which seed's generator.  [default: the run's first seed]")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the colourised PNGs.")
@click.option("--overwrite", is_flag=True,
              help="Replace output PNGs that already exist in --out (input photos are never overwritten).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def colorize(inputs, run_dir, loss, seed, out, overwrite, device, quiet):
    """Colourise photos (files or folders, any size) with a trained generator.

    The model runs at its training size; its colour is upsampled onto each photo's own
    full-resolution lightness, so the output keeps the photo's size and detail.
    """
    try:
        run = load_run(run_dir)
        combination = resolve_combination(run, loss)
        seed = run.seeds[0] if seed is None else seed
        refuse_out_in_photos(out, run)
        jobs = plan_jobs(inputs, out, overwrite)  # before loading anything: nothing to write over
        G = load_generator(generator_path(run, combination, seed), resolve_device(device))
        done, skipped = colorize_paths(G, int(G.meta["size"]), jobs, progress=not quiet)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    echo(f"{len(done)} photo(s) colourised by {combination} seed {seed} into {out}"
         + (f"; {len(skipped)} skipped (see warnings)" if skipped else ""))
    if not done:
        raise click.ClickException("no photo could be read; nothing written")
