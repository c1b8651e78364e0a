"""One source for every option: RunConfig's field metadata makes ``bench run``'s options,
the identity options and the loss/training views (issue #17, item 1)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bench.config import options as config
from bench.config.identity import changed_options
from bench.cli import main
from bench.cli.run import run
from bench.config.options import IDENTITY_FIELDS, LAUNCH_FIELDS, OPTIONS_ADDED_LATER, PRESET_FIELDS, PRESETS, RUN_FIELDS, LaunchConfig, RunConfig, make_config
from bench.config.options import TrainSettings
from losses import LossOptions
from losses.perceptual import DEFAULT_LAYERS
from losses.registry import DEFAULT_PERCEPTUAL_LAYERS

CLI_ONLY = {"overwrite", "quiet"}  # what `bench run` does with the run, not what it computes


def _params():
    return {p.name: p for p in run.params if isinstance(p, click.Option) and p.name != "help"}


def test_every_field_is_an_option_of_bench_run_or_marked_internal():
    params = _params()
    for name, f in RUN_FIELDS.items():
        assert set(f.metadata) >= {"help", "identity", "internal"}, name  # made by config.option
        if f.metadata["internal"]:
            assert name not in params, f"{name} is marked internal but is an option of bench run"
        else:
            assert name in params, f"RunConfig.{name} is neither a `bench run` option nor marked internal"
            assert f.metadata["help"], f"--{name} has no help"
    for name, f in LAUNCH_FIELDS.items():  # how a run executes: every field an option
        assert name in params and f.metadata["help"] and not f.metadata["internal"], name
    assert set(params) - set(RUN_FIELDS) - set(LAUNCH_FIELDS) == CLI_ONLY
    internal = {n for n, f in RUN_FIELDS.items() if f.metadata["internal"]}
    assert internal == {"betas", "eval_batch_size", "workers", "extra"}


def test_flags_are_the_field_names():
    params = _params()
    for name in set(params) - CLI_ONLY:
        assert params[name].opts == ["--" + name.replace("_", "-")]
    assert set(params["quiet"].opts) == {"--quiet", "-q"}


def test_defaults_and_help_come_from_the_metadata():
    params = _params()
    for name, p in params.items():
        if name in CLI_ONLY:
            continue
        f = RUN_FIELDS.get(name) or LAUNCH_FIELDS[name]
        assert p.help.startswith(f.metadata["help"])
        if name in PRESET_FIELDS:  # the preset fills it: None on the command line
            assert p.default is None and "[default: preset's" in p.help
        elif name == "seeds":
            assert p.default == "0"
        elif f.metadata["multiple"]:  # --slurm-option: repeatable, none by default
            assert p.multiple and f.default == ()
        else:
            assert p.default == f.default, name
        if f.metadata["choices"]:
            assert tuple(p.type.choices) == f.metadata["choices"]
    assert tuple(params["gan_mode"].type.choices) == config.GAN_MODES
    assert tuple(params["preset"].type.choices) == tuple(PRESETS)
    assert "[default: 0.0002]" in params["lr"].help
    assert "[default: 300]" in params["checkpoint_seconds"].help
    assert params["checkpoint_seconds"].type.min == 0
    assert "[default: preset's; quick: 300]" in params["steps"].help
    assert "[default: preset's; paper: 100]" in params["epochs"].help
    assert "[default: preset's, unet]" in params["generator"].help
    assert "[default: --width, as pix2pix's ndf = ngf]" in params["disc_width"].help


def test_cli_defaults_make_the_python_defaults():
    """`bench run` with no options and RunConfig(), LaunchConfig() are one configuration."""
    ctx = run.make_context("run", [])
    options = dict(ctx.params)
    options.pop("quiet"), options.pop("overwrite")
    assert LaunchConfig(**{name: options.pop(name) for name in LAUNCH_FIELDS}) == LaunchConfig()
    assert make_config(options.pop("preset"), **options) == RunConfig()


def test_bench_run_help_lists_every_option():
    out = CliRunner().invoke(main, ["run", "--help"], terminal_width=200).output
    for name, f in RUN_FIELDS.items():
        flag = "--" + name.replace("_", "-")
        if f.metadata["internal"]:
            assert f"{flag} " not in out
        else:
            assert f"{flag} " in out, flag
            assert " ".join(f.metadata["help"].split()[:4]) in " ".join(out.split())
    for flag in ("--overwrite", "--quiet", "-q,", "--help"):
        assert flag in out


def test_identity_fields_are_derived_from_the_metadata():
    assert IDENTITY_FIELDS == (
        "losses", "data", "val_data", "dataset", "generator", "discriminator", "disc_width", "size", "width",
        "epochs", "steps", "batch_size", "lr", "betas", "gan_mode", "perceptual_layers",
        # how the cells are scored: a run is kept under the protocol it was scored under
        "protocol", "cf_formula", "delta_cf", "fid_features", "fid_input", "lpips_net", "ssim_window", "ssim_range",
        "ground_truth", "predictions_as", "val_geometry", "psnr_crop_border",
    )
    assert "precision" not in IDENTITY_FIELDS  # its resolved value is compared instead (check_numerics)
    # runs made before protocols were scored under colorbench's, with no setting changed
    assert OPTIONS_ADDED_LATER == {"disc_width": 64, "steps": None, "protocol": "colorbench",
                                   **{k: None for k in IDENTITY_FIELDS[-11:]}}
    assert set(OPTIONS_ADDED_LATER) <= set(IDENTITY_FIELDS)


def test_identity_is_compared_on_resolved_values():
    # --disc-width unset resolves to --width: the same run as one asking for it
    assert changed_options(RunConfig(width=16).to_dict(), RunConfig(width=16, disc_width=16).to_dict()) == []
    assert changed_options(RunConfig().to_dict(), RunConfig(disc_width=64).to_dict()) == ["disc_width"]
    assert changed_options(RunConfig().to_dict(), RunConfig(steps=300).to_dict()) == []
    assert changed_options(RunConfig().to_dict(), RunConfig(precision="fp32", device="cpu").to_dict()) == []


def test_preset_fields_are_the_presets_keys():
    assert set(PRESET_FIELDS) == {k for values in PRESETS.values() for k in values}


def test_loss_options_are_a_view_of_the_config():
    cfg = RunConfig(gan_mode="hinge", discriminator="patchgan", width=24, strict_weights=True,
                    perceptual_layers="relu2_2")
    options = cfg.loss_options("cuda:1")
    assert options == LossOptions(device="cuda:1", gan_mode="hinge", discriminator="patchgan", disc_width=24,
                                  strict_weights=True, perceptual_layers="relu2_2")
    assert {f.name for f in dataclasses.fields(LossOptions)} - {"device"} <= set(RUN_FIELDS)


def test_train_settings_are_a_view_of_the_config():
    cfg = RunConfig(generator="resunet", size=64, width=16, epochs=2, batch_size=8, lr=1e-3, betas=[0.9, 0.99],
                    compile=True, checkpoint_seconds=10)
    settings = cfg.train_settings("bf16")
    assert settings == TrainSettings(generator="resunet", size=64, width=16, epochs=2, steps=None, batch_size=8,
                                     lr=1e-3, betas=(0.9, 0.99), precision="bf16", compile=True, checkpoint_seconds=10)
    assert RunConfig().train_settings("fp32").epochs == 0 and RunConfig().train_settings("fp32").steps == 300
    # every TrainSettings field is a RunConfig field, but for what the runner resolves or decides
    own = {"out_channels", "channels_last"}
    assert {f.name for f in dataclasses.fields(TrainSettings)} - own <= set(RUN_FIELDS)


@pytest.mark.parametrize("name", ["gan_mode", "discriminator", "strict_weights", "perceptual_layers"])
def test_loss_option_defaults_match_the_config(name):
    assert getattr(LossOptions(), name) == RUN_FIELDS[name].default


def test_perceptual_layers_default_is_written_once():
    # bench/config/options.py imports no torch, so it spells the default too; tests/test_cli_latency.py
    # checks that the two agree
    assert RUN_FIELDS["perceptual_layers"].default == DEFAULT_PERCEPTUAL_LAYERS
    assert LossOptions().perceptual_layers is DEFAULT_PERCEPTUAL_LAYERS
    assert DEFAULT_LAYERS is DEFAULT_PERCEPTUAL_LAYERS


def test_two_runs_in_the_same_second_get_their_own_default_folders(tmp_path, monkeypatch):
    """The default --out was named by the second alone: two `bench run` started together
    wrote into one folder. Each name is now taken by creating its folder."""
    import datetime as dt

    from bench.config import options

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 3, 8, 0, 0)

    monkeypatch.setattr(options, "datetime", Frozen)
    first, second = options.default_out(tmp_path), options.default_out(tmp_path)
    assert Path(first).name == "run-20261203-080000" and Path(second).name == "run-20261203-080000-2"
    assert Path(first).is_dir() and Path(second).is_dir()
    # a run refused before it wrote anything leaves no folder of its own behind
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["run", "--lr", "-1"])
    assert res.exit_code != 0 and sorted(p.name for p in (tmp_path / "results").glob("*")) == []  # (or no results/)
