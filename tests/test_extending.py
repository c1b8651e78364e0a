"""Adding a loss is one new file under losses/; adding a generator is one registered
builder: each is shown here with a toy one, trained by ``bench run`` without any existing
file edited."""
import ast
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from torch import nn

import losses
from conftest import logged_warnings
from bench.cli import main
from losses import LOSSES, LossOptions, is_adversarial, parse_losses, weights_tags
from models import GENERATORS, register_generator

TINY = ["--size", "32", "--width", "8", "--steps", "2", "--batch-size", "4", "-q"]

TOY_LOSS = '''
import torch
from torch import nn

from losses.registry import register_loss


class MeanAbLoss(nn.Module):
    """Distance of the batch's mean ab from the training split's."""

    def prepare(self, train):
        self.target = train.ab.mean((0, 2, 3)).view(1, 2, 1, 1)
        PREPARED.append(len(train))

    def forward(self, L, fake_ab, real_ab):
        return (fake_ab.mean((0, 2, 3), keepdim=True) - self.target.to(fake_ab)).abs().mean()


PREPARED = []


@register_loss("toy_mean_ab", "a toy loss that needs the training data", needs_data=True)
def toy_mean_ab(options):
    return MeanAbLoss()
'''


@pytest.fixture
def toy_loss_module(tmp_path):
    """``toy_mean_ab.py`` in a folder on the losses package's path, as if dropped into losses/."""
    folder = tmp_path / "more_losses"
    folder.mkdir()
    (folder / "toy_mean_ab.py").write_text(TOY_LOSS)
    losses.__path__.append(str(folder))
    try:
        yield folder
    finally:
        losses.__path__.remove(str(folder))
        LOSSES.pop("toy_mean_ab", None)
        sys.modules.pop("losses.toy_mean_ab", None)


def test_a_loss_file_in_the_package_is_discovered_and_trained(toy_loss_module, photo_dir, tmp_path):
    assert "toy_mean_ab" not in LOSSES
    assert "losses.toy_mean_ab" in losses.discover()
    assert LOSSES["toy_mean_ab"].needs_data and not LOSSES["toy_mean_ab"].adversarial
    out = tmp_path / "run"
    res = CliRunner().invoke(
        main, ["run", "--data", str(photo_dir), "--losses", "toy_mean_ab,l1+toy_mean_ab", "--out", str(out), *TINY]
    )
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out / "metrics.csv")
    assert {"toy_mean_ab", "l1+toy_mean_ab"} <= set(frame["combination"])
    assert sys.modules["losses.toy_mean_ab"].PREPARED == [16, 16]  # prepared with the train split, once per cell


def test_every_loss_module_is_discovered_not_listed():
    package = Path(losses.__file__).parent
    modules = {f"losses.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    assert set(losses.discover()) == modules
    tree = ast.parse(Path(losses.__file__).read_text())
    listed = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("losses")}
    assert listed == {"losses.registry"}  # no hand list of loss modules to edit


def test_losses_never_import_bench():
    for path in Path(losses.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "bench" or n.startswith("bench.") for n in names), f"{path.name} imports {names}"


def test_weights_caveats_build_only_the_losses_that_declare_weights(monkeypatch):
    def refuse(options):
        raise AssertionError("built a loss that declares no pretrained weights")

    for name in ("gan", "l1", "classification"):
        monkeypatch.setitem(LOSSES, name, replace(LOSSES[name], factory=refuse))
    with logged_warnings("RANDOMLY INITIALISED VGG16"):
        tags = weights_tags(["l1", "gan", "perceptual", "classification"], LossOptions())
    assert tags == {"perceptual": "random-vgg"}
    combo = parse_losses("100*l1+gan,perceptual")
    tagged = [c.tagged(tags) for c in combo]
    assert [c.name for c in tagged] == ["100*l1+gan", "perceptual[random-vgg]"]
    assert combo[1].tags == {}  # a new combination, not an edited one


def test_adversarial_is_read_from_the_registration():
    assert is_adversarial("100*l1+gan") and is_adversarial("gan")
    assert not is_adversarial("l1+0.1*perceptual") and not is_adversarial("no_such_loss")


class ToyGenerator(nn.Module):
    def __init__(self, width, out_channels, tanh):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, out_channels, 3, padding=1))
        self.tanh = tanh

    def forward(self, L):
        x = self.net(L)
        return x.tanh() if self.tanh else x


@pytest.fixture
def toy_generator():
    from models.networks import SIZE_RULES

    # a fully convolutional generator: any even size fits it, e.g. 40 px that the U-Net refuses
    @register_generator("toy_conv", size_rule=lambda size: None if size % 2 == 0 else f"--size {size} is odd")
    def toy_conv(size, width=64, in_channels=1, out_channels=2, tanh=True):
        return ToyGenerator(width, out_channels, tanh)

    try:
        yield "toy_conv"
    finally:
        GENERATORS.pop("toy_conv", None)
        SIZE_RULES.pop("toy_conv", None)


def test_a_generator_declares_its_own_size_rule_and_its_name_once(toy_generator, photo_dir, tmp_path):
    args = ["run", "--data", str(photo_dir), "--losses", "l1", "--steps", "2", "--width", "8", "--batch-size", "4", "-q"]
    res = CliRunner().invoke(main, [*args, "--generator", toy_generator, "--size", "40", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a" / "cells" / "l1" / "seed0" / "metrics.json").read_text())["status"] == "ok"
    refused = CliRunner().invoke(main, [*args, "--size", "40", "--out", str(tmp_path / "b")])
    assert refused.exit_code != 0 and "--generator unet: --size 40 does not fit a U-Net" in refused.output
    odd = CliRunner().invoke(main, [*args, "--generator", toy_generator, "--size", "41", "--out", str(tmp_path / "c")])
    assert odd.exit_code != 0 and "--generator toy_conv: --size 41 is odd" in odd.output
    with pytest.raises(ValueError, match="generator 'toy_conv' is already registered"):
        register_generator("toy_conv")(lambda **kw: None)


def test_a_registered_generator_is_trained_by_bench_run(toy_generator, photo_dir, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(
        main, ["run", "--data", str(photo_dir), "--generator", toy_generator, "--losses", "l1,classification",
               "--out", str(out), *TINY]
    )
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out / "metrics.csv")
    assert {"l1", "classification"} <= set(frame["combination"])
    assert frame[frame.combination.isin(["l1", "classification"]) & (frame.metric == "psnr")]["value"].notna().all()
    from bench.score.scorer import load_generator

    assert isinstance(load_generator(out / "cells" / "l1" / "seed0" / "generator.pt"), ToyGenerator)
    assert isinstance(load_generator(out / "cells" / "classification" / "seed0" / "generator.pt").net, ToyGenerator)


PLUGIN = '''
from torch import nn

from losses.registry import register_loss


class TotalVariation(nn.Module):
    def forward(self, L, fake_ab, real_ab):
        return fake_ab.diff(dim=-1).abs().mean() + fake_ab.diff(dim=-2).abs().mean()


@register_loss("toy_tv", "total variation of the predicted ab (a plugin's)")
def toy_tv(options):
    return TotalVariation()
'''


@pytest.mark.parametrize("how", ["module", "file"])
@pytest.mark.slow
def test_a_plugin_registered_outside_the_package_trains_under_the_local_launcher(photo_dir, tmp_path, monkeypatch,
                                                                                how):
    """A loss from the user's own module: the local launcher's workers import it too (from
    config.json), `bench report` reads the run, and `bench losses` lists it."""
    from losses import LOSSES

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "my_tv_plugin.py").write_text(PLUGIN)
    if how == "module":  # on the path of this process and of every job it starts
        monkeypatch.syspath_prepend(str(folder))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
        plugin = "my_tv_plugin"
    else:
        plugin = str(folder / "my_tv_plugin.py")
    out = tmp_path / "run"
    try:
        res = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--plugin", plugin, "--losses", "l1,l1+0.1*toy_tv",
                                        "--launcher", "local", "--max-parallel", "2", "--out", str(out), *TINY])
        assert res.exit_code == 0, res.output
        config = json.loads((out / "config.json").read_text())
        assert config["options"]["plugin"] == [plugin if how == "module" else str(Path(plugin).resolve())]
        frame = pd.read_csv(out / "metrics.csv")
        assert {"l1", "l1+0.1*toy_tv"} <= set(frame.combination)
        assert not (out / "jobs" / "%j").exists()  # submitit's template folder is not left behind
        assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0
        listed = CliRunner().invoke(main, ["losses", "--plugin", plugin])
        assert listed.exit_code == 0 and "toy_tv" in listed.output and "a plugin's" in listed.output
    finally:  # the plugin's loss and module are this test's alone
        LOSSES.pop("toy_tv", None)
        for name in [m for m in sys.modules if m == "my_tv_plugin" or m.startswith("colorbench_plugin_")]:
            del sys.modules[name]
    missing = CliRunner().invoke(main, ["run", "--plugin", "no_such_plugin_here", "--out", str(tmp_path / "x")])
    assert missing.exit_code != 0 and "--plugin no_such_plugin_here" in missing.output and "PYTHONPATH" in missing.output
