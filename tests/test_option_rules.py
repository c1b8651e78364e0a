"""The Python API checks what the CLI checks (issue #32, class 8): each option has one set of
rules, from its field's type and metadata (bench/config/options.py ``check_option``), that
``bench run``'s flags, ``make_config``, ``validate`` (so ``run_benchmark``) and
``LaunchConfig`` all go by. A bad value is a ValueError naming the option as Python spells it
and as its flag, with the fix; it is never a raw TypeError, nor read by its truth."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import bench
from bench.cli import main
from bench.config.options import (
    LAUNCH_FIELDS,
    RUN_FIELDS,
    LaunchConfig,
    OptionError,
    RunConfig,
    _kind,
    check_option,
    check_options,
    make_config,
    option_flag,
)
from bench.config.validate import validate


def _flag_and_name(cls, name: str) -> tuple[str, str]:
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return name, ("" if f.metadata["internal"] else option_flag(f))


def _names_the_option(exc: BaseException, cls, name: str) -> None:
    text = str(exc)
    python, flag = _flag_and_name(cls, name)
    assert isinstance(exc, ValueError) and python in text, text
    assert flag in text, text  # internal options have no flag: "" is in every text


# ---- the cases of the issue, with the fix each message gives ------------------------------

ISSUE = {
    "plugin=5": (dict(plugin=5), "plugin", "a str or a list of str"),
    "data=5": (dict(data=5), "data", "must be a path (a str or pathlib.Path)"),
    "out=5": (dict(out=5), "out", "must be a path (a str or pathlib.Path)"),
    "checkpoint_seconds='5'": (dict(checkpoint_seconds="5"), "checkpoint_seconds", "must be a number of at least 0"),
    "keep_state='no'": (dict(keep_state="no"), "keep_state", "pass keep_state=True or keep_state=False"),
    "tensorboard='no'": (dict(tensorboard="no"), "tensorboard", "pass tensorboard=True or tensorboard=False"),
    "eval_every=-1": (dict(eval_every=-1), "eval_every", "a whole number (an int) of at least 0"),
    "gallery_photos='all'": (dict(gallery_photos="all"), "gallery_photos", "or None for every val photo; got a str"),
}


@pytest.mark.parametrize("case", ISSUE)
def test_the_issues_values_are_refused_by_make_config_naming_the_option(case):
    given, name, fix = ISSUE[case]
    with pytest.raises(OptionError) as info:
        make_config("quick", **given)
    _names_the_option(info.value, RunConfig, name)
    assert fix in str(info.value)
    assert "--keep-state/--no-keep-state" in str(info.value) or name != "keep_state"


@pytest.mark.parametrize("case", ISSUE)
def test_the_issues_values_are_refused_by_validate_and_run_benchmark(case, tmp_path):
    given, name, fix = ISSUE[case]
    with pytest.raises(OptionError) as info:
        validate(RunConfig(**given))
    _names_the_option(info.value, RunConfig, name)
    assert fix in str(info.value)
    if name != "out":
        with pytest.raises(OptionError, match=name):
            bench.run_benchmark(RunConfig(**given, out=str(tmp_path / "run")), progress=False)
        assert list(tmp_path.iterdir()) == []  # nothing written: no run folder, no lock left


# ---- every field: wrong values derived from its type and metadata, so a new option is covered


def _bad_values(cls, name: str) -> list:
    """Values the option's flag could never give: another type, a bool for a number, a
    truthy str for a switch, below its smallest value, None where it cannot be unset."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    meta = f.metadata
    kind, optional = _kind(cls, name)
    bad = [] if optional else [None]
    if meta["path"]:
        return bad + [5, "", b"photos", ["a", "b"]]
    if name == "seeds":
        return bad + ["0,x", "", [0.5], 1.5, True, [], [0, 0], -1, [True], {"a": 1}]
    if meta["multiple"]:
        return bad + [5, [5], "", ["ok", ""], {"a": 1}]
    if meta["choices"]:
        return bad + ["no-such-choice", 5, True, [meta["choices"][0]]]
    if kind is bool:
        return bad + ["no", "yes", "False", 1, 0, np.bool_(True)]
    if kind is int:
        low = meta["min"]
        return bad + ["5", 5.0, 2.5, True, [5]] + ([low - 1, -10**9] if low is not None else [])
    if kind is float:
        low = meta["min"]
        below = ([low, low - 1] if meta["min_open"] else [low - 1]) if low is not None else []
        return bad + ["5", "nan", True, [1.0]] + below + ([math.nan] if low is not None else [])
    if kind is str:
        return bad + [5, ["a"], b"a"]
    if kind is dict:
        return bad + [[], "notes"]
    return bad + [(0.5,), "ab", (True, 0.5), 0.5]  # a fixed tuple of numbers (betas)


RUN_CASES = [(n, v) for n in RUN_FIELDS for v in _bad_values(RunConfig, n)]
LAUNCH_CASES = [(n, v) for n in LAUNCH_FIELDS for v in _bad_values(LaunchConfig, n)]


def _id(case) -> str:
    return f"{case[0]}={case[1]!r}"


@pytest.mark.parametrize("case", RUN_CASES, ids=map(_id, RUN_CASES))
def test_every_run_option_refuses_bad_values_naming_it(case):
    name, value = case
    if value is not None and name != "preset":  # make_config: None is "not given"; preset its argument
        with pytest.raises(ValueError) as info:
            validate(make_config("quick", **{name: value}))
        _names_the_option(info.value, RunConfig, name)
    with pytest.raises(ValueError) as info:  # built directly, refused when run
        validate(RunConfig(**{name: value}))
    _names_the_option(info.value, RunConfig, name)


@pytest.mark.parametrize("case", LAUNCH_CASES, ids=map(_id, LAUNCH_CASES))
def test_every_launch_option_refuses_bad_values_naming_it(case):
    name, value = case
    with pytest.raises(ValueError) as info:
        validate(RunConfig(), LaunchConfig(**{name: value}))
    _names_the_option(info.value, LaunchConfig, name)


def test_every_field_has_bad_values_and_its_defaults_pass():
    assert all(_bad_values(RunConfig, n) for n in RUN_FIELDS) and all(_bad_values(LaunchConfig, n) for n in LAUNCH_FIELDS)
    run, launch = RunConfig(), LaunchConfig()
    check_options(run), check_options(launch)
    assert run == RunConfig() and launch == LaunchConfig()


def test_a_bad_preset_is_named():
    for bad in ("nope", 5, None):
        with pytest.raises(OptionError, match=r"preset=.* \(--preset\).* one of quick, paper"):
            make_config(bad)


def test_run_benchmark_refuses_a_launch_that_is_not_a_launch_config(tmp_path):
    cfg = make_config("quick", out=str(tmp_path / "run"))
    for bad in ("local", {"launcher": "local"}):
        with pytest.raises(OptionError, match="launch= must be a LaunchConfig"):
            bench.run_benchmark(cfg, launch=bad, progress=False)
    with pytest.raises(OptionError, match=r"max_parallel='2' \(--max-parallel\)"):
        bench.run_benchmark(cfg, launch=LaunchConfig(launcher="local", max_parallel="2"), progress=False)
    with pytest.raises(OptionError, match=r"no_wait='no' \(--no-wait\) must be True or False"):
        bench.run_benchmark(cfg, launch=LaunchConfig(launcher="local", no_wait="no"), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_option_error_is_the_public_value_error():
    assert bench.OptionError is OptionError and issubclass(OptionError, ValueError)
    from bench.config import validate as validate_module

    assert validate_module.OptionError is OptionError  # one class, whichever module it is imported from


# ---- good values still work, as config.json stores them --------------------------------


def test_good_python_values_are_kept_or_normalized(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cfg = make_config(
        "quick", seeds=np.arange(3), size=np.int64(64), width=16, lr=np.float32(0.5), data=photos,
        out=tmp_path / "out", keep_state=False, tensorboard=False, eval_every=0, gallery_photos=0,
        checkpoint_seconds=0, ssim_range=0.5, psnr_crop_border=0, cf_formula="absolute", plugin=[],
    )
    assert cfg.seeds == (0, 1, 2) and type(cfg.size) is int and cfg.size == 64 and type(cfg.lr) is float
    assert cfg.data == str(photos) and cfg.out == str(tmp_path / "out") and isinstance(cfg.out, str)
    assert (cfg.keep_state, cfg.tensorboard, cfg.eval_every, cfg.gallery_photos) == (False, False, 0, 0)
    validate(cfg)
    assert make_config("quick", seeds="0,1").seeds == make_config("quick", seeds=[0, 1]).seeds == (0, 1)
    assert make_config("quick", seeds=3).seeds == (3,)
    direct = RunConfig(seeds=[0, 1], data=photos, betas=[0.9, 0.99])
    validate(direct)  # stored as config.json keeps them
    assert direct.seeds == (0, 1) and direct.data == str(photos) and direct.betas == (0.9, 0.99)
    launch = LaunchConfig(launcher="slurm", slurm_option="account=proj", max_parallel=np.int64(3), slurm_mem_gb=16)
    validate(RunConfig(), launch)
    assert launch.slurm_option == ("account=proj",) and type(launch.max_parallel) is int


def test_check_option_returns_what_config_json_stores():
    assert check_option(RunConfig, "data", Path("a/b")) == "a/b"
    assert check_option(RunConfig, "plugin", "my_losses") == ("my_losses",)
    assert check_option(RunConfig, "eval_every", None) is None  # an option that may be unset
    assert check_option(RunConfig, "checkpoint_seconds", 10) == 10
    assert check_option(LaunchConfig, "slurm_option", ["a=1", "b=2"]) == ("a=1", "b=2")


# ---- the CLI goes by the same rules ------------------------------------------------------


def test_the_cli_flags_carry_the_same_smallest_values():
    from bench.cli.run import run

    params = {p.name: p for p in run.params}
    for name, f in {**RUN_FIELDS, **LAUNCH_FIELDS}.items():
        if f.metadata["min"] is not None and name in params:
            assert params[name].type.min == f.metadata["min"], name
            assert getattr(params[name].type, "min_open", False) == f.metadata["min_open"], name


@pytest.mark.parametrize("args, message", [
    (["--ssim-range", "0"], "0.0 is not in the range x>0"),  # click's, from the field's min and min_open
    (["--checkpoint-seconds", "nan"], "checkpoint_seconds=nan (--checkpoint-seconds) must be a number of at least 0"),
    (["--slurm-mem-gb", "nan", "--launcher", "slurm"], "slurm_mem_gb=nan (--slurm-mem-gb)"),
    (["--data", ""], "data='' (--data) must be a path"),
    (["--eval-every", "-1"], "-1 is not in the range x>=0"),  # click's own refusal, from the same metadata
])
def test_the_cli_refuses_what_python_refuses(tmp_path, args, message):
    res = CliRunner().invoke(main, ["run", "--out", str(tmp_path / "r"), *args])
    assert res.exit_code != 0 and message in res.output, res.output
    assert "Traceback" not in res.output and not (tmp_path / "r").exists()
