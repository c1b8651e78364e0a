"""The CLI answers at once (issue #33, item 5): every command's --help, click's own refusals
and the options' rules that need no registry import no torch, torchvision or pandas; what a
command runs is imported (``bench.later``) once its options passed. Speed itself is measured
by benchmarks/cli_latency.py, never asserted here."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench import later
from bench.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "pandas")

# (arguments, the exit code, words of the answer): click's refusals (exit 2) and the
# project's own rules that need no registry (exit 1)
REFUSALS = [
    (["run", "--size", "0"], 1, "--size 0 is out of range"),
    (["run", "--lr", "-1", "--losses", "no-such-loss"], 1, "--lr -1.0 is out of range"),
    (["run", "--launcher", "serial", "--no-wait"], 1, "--no-wait needs --launcher local or slurm"),
    (["run", "--data", "photos", "--dataset", "cifar10"], 1, "give either --data DIR or --dataset NAME"),
    (["run", "--epochs", "2", "--steps", "3"], 1, "--epochs or --steps, not both"),
    (["run", "--batch-size", "many"], 2, "'many' is not a valid integer"),
    (["run", "--eval-every", "-1"], 2, "-1 is not in the range x>=0"),
    (["run", "--precision", "fp8"], 2, "'fp8' is not one of"),
    (["run", "--no-such-option"], 2, "No such option"),
    (["score", "--size", "1", "--truth", "t", "a=b"], 2, "1 is not in the range 8<=x<=4096"),
    (["score", "--ssim-range", "0", "--truth", "t", "a=b"], 2, "0.0 is not in the range x>0"),
    (["score", "a=b"], 2, "give --truth FOLDER (a new run folder) or --run RUN_DIR"),
    (["score", "--run", "r", "--out", "o", "a=b"], 2, "--out is for --truth"),
    (["score", "--protocol", "nope", "--truth", "t", "a=b"], 2, "'nope' is not one of"),
    (["report", "--samples", "0"], 2, "0 is not in the range 1<=x<=24"),
    (["report", "--no-such-option"], 2, "No such option"),
    (["compare", "--resamples", "5"], 2, "5 is not in the range"),
    (["colorize", "photo.jpg"], 2, "Missing option '--run'"),
    (["status", "--lines", "-1"], 2, "-1 is not in the range"),
]


def _run_in_fresh_process(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_commands_help_and_refusals_import_no_torch():
    calls = [[name, "--help"] for name in COMMANDS] + [["weights", "import", "--help"]]
    calls += [args for args, _, _ in REFUSALS]
    seen = _run_in_fresh_process(f"""
        import json, sys
        from click.testing import CliRunner
        from bench.cli import main
        answers = [(r.exit_code, r.output) for r in (CliRunner().invoke(main, args) for args in {calls!r})]
        print(json.dumps({{"answers": answers, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
    """)
    assert seen["heavy"] == [], f"imported {seen['heavy']} for --help or a refused option"
    answers = dict(zip(map(tuple, calls), seen["answers"]))
    for name in COMMANDS:
        code, output = answers[(name, "--help")]
        assert code == 0 and "Usage:" in output, (name, output)
    for args, code, words in REFUSALS:
        got, output = answers[tuple(args)]
        assert got == code and words in output, (args, got, output)


def test_bench_run_help_lists_every_option_with_the_preset_defaults():
    # the same help as when the options module imported the losses' package
    output = CliRunner().invoke(main, ["run", "--help"], terminal_width=200).output
    for flag in ("--losses", "--gan-mode", "--perceptual-layers", "--protocol", "--launcher", "--slurm-option"):
        assert flag in output
    assert "[vanilla|lsgan|hinge|wgangp]" in output and "relu1_2,relu2_2,relu3_3,relu4_3" in output


def test_what_the_options_spell_out_agrees_with_the_losses_package():
    """bench/config/options.py imports no torch, so it spells the GAN objectives and the
    perceptual loss's default layers itself: the losses' package must say the same."""
    import dataclasses

    from bench.config import options
    from losses.adversarial import GAN_MODES
    from losses.registry import DEFAULT_PERCEPTUAL_LAYERS, LossOptions

    assert options.GAN_MODES == GAN_MODES
    assert options.DEFAULT_PERCEPTUAL_LAYERS == DEFAULT_PERCEPTUAL_LAYERS
    assert options.RUN_FIELDS["gan_mode"].metadata["choices"] == GAN_MODES
    assert options.RUN_FIELDS["perceptual_layers"].default == DEFAULT_PERCEPTUAL_LAYERS
    built = options.make_config("quick", gan_mode="hinge").loss_options("cpu")
    assert isinstance(built, LossOptions) and (built.gan_mode, built.device, built.disc_width) == ("hinge", "cpu", 32)
    assert {f.name for f in dataclasses.fields(LossOptions)} - {"device"} <= set(options.RUN_FIELDS)


def test_later_imports_on_first_use_only():
    name = "colorsys"  # a small standard module no test has reason to import
    sys.modules.pop(name, None)
    module, function = later(name), later(f"{name}:rgb_to_hsv")
    assert name not in sys.modules and repr(function) == "later('colorsys:rgb_to_hsv')"
    assert function(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0) and name in sys.modules
    assert module.hsv_to_rgb(0.0, 0.0, 1.0) == (1.0, 1.0, 1.0)
    mapping = later("string:ascii_lowercase")
    assert "q" in mapping and len(mapping) == 26 and mapping[0] == "a" and "".join(mapping).endswith("xyz")
    with pytest.raises(AttributeError):
        module.__wrapped__  # dunders never import: copy, pickle and inspect probe them


def test_a_stop_signal_during_a_run_is_still_answered_with_the_resume_line(monkeypatch, tmp_path):
    from bench.run.stop import RunInterrupted

    def stopped(cfg, progress, overwrite, launch=None):
        raise RunInterrupted(tmp_path / "r", 2)

    monkeypatch.setattr("bench.cli.run.run_benchmark", stopped)
    res = CliRunner().invoke(main, ["run", "--losses", "l1", "--out", str(tmp_path / "r")])
    assert res.exit_code == 130 and "Stopped by" in res.output and "Resume with:" in res.output, res.output
