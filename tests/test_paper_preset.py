"""The `paper` preset: the tutorial's recipe, and one real training step of it on the CPU."""
import math

import pytest
import torch
from click.testing import CliRunner

from bench.cli import main
from bench.config.options import make_config
from bench.config.options import TrainSettings
from bench.train.loop import build_terms, train_cell
from colorbench_datasets import resolve_sources
from colorbench_datasets.tensors import build_split
from losses import LossOptions, parse_losses
from models import build_generator


def test_paper_preset_is_the_tutorials_recipe():
    cfg = make_config("paper")
    assert (cfg.size, cfg.generator, cfg.width, cfg.batch_size) == (256, "unet", 64, 16)
    assert (cfg.lr, tuple(cfg.betas), cfg.discriminator, cfg.epochs) == (2e-4, (0.5, 0.999), "patchgan", 100)
    assert cfg.losses.split(",") == ["mse", "l1", "perceptual", "gan", "100*l1+gan"]
    assert make_config("paper", generator="resunet", losses="l1").generator == "resunet"  # options override


def test_preset_losses_apply_unless_given_on_the_command_line(monkeypatch):
    seen = {}

    def fake_run(cfg, progress, overwrite, launch=None):
        seen["cfg"] = cfg
        raise ValueError("stop here")

    monkeypatch.setattr("bench.cli.run.run_benchmark", fake_run)
    CliRunner().invoke(main, ["run", "--preset", "paper"])
    assert seen["cfg"].losses == make_config("paper").losses
    CliRunner().invoke(main, ["run", "--preset", "paper", "--losses", "l1"])
    assert seen["cfg"].losses == "l1"


@pytest.mark.slow
def test_one_step_of_the_paper_setup_on_cpu(photo_dir):
    """The preset's networks at full size (U-Net n_down 8, nf 64; PatchGAN n_layers 3) and the
    tutorial's objective 100*l1+gan: one step on two tutorial-style (squashed) 256 px photos."""
    cfg = make_config("paper")
    G = build_generator(cfg.generator, cfg.size, cfg.width)
    downs = [m for m in G.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(downs) == 8 and downs[-1].out_channels == 8 * cfg.width  # 256 / 2**8 = 1x1 bottleneck
    (combo,) = parse_losses("100*l1+gan")
    (_, _, _), (_, _, gan) = build_terms(combo, LossOptions(), seed=0)
    convs = [m for m in gan.discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3 + 2  # n_layers 3: first conv, three strided/normed, the 1-channel head

    items = resolve_sources(photo_dir).train[:2]
    split, _ = build_split(items, cfg.size, True, resize="squash")
    settings = TrainSettings(
        generator=cfg.generator, size=cfg.size, width=cfg.width, epochs=1, batch_size=2,
        lr=cfg.lr, betas=tuple(cfg.betas), precision="fp32",
    )
    result = train_cell(combo, 0, split, settings, LossOptions(), torch.device("cpu"), progress=False)
    assert result.diverged_at is None and len(result.log) == 1
    step = result.log[0]
    assert all(math.isfinite(step[k]) for k in ("l1", "gan", "total", "d_loss"))
    assert math.isclose(step["total"], step["gan"] + 100 * step["l1"], rel_tol=1e-5)
