"""Nothing lost, nothing wrong, round 4 (docs/robustness.md, "Run folders"): names never become
paths, shared run files are updated only under the lock, one --out guard, half-written
folders never block their rerun, plugins are part of a run's identity, a state is used only
with its own record, and messages name what the user actually ran."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.rundir.layout import RunFolder, external_folder_name, slug
from conftest import offline_env, write_photo_folder, write_photos
from test_score import make_predictions

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--size", "32", "--width", "4", "--batch-size", "4", "-q"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def snapshot(*folders) -> dict:
    return {str(p): hashlib.sha1(p.read_bytes()).hexdigest()
            for f in folders for p in sorted(Path(f).rglob("*")) if p.is_file()}


def env_for_children(root: Path) -> dict:
    env = dict(os.environ, COLORBENCH_OFFLINE="1", TORCH_HOME=str(root / "torch_home"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory):
    """A `bench score --truth` run folder of one colorizer, and prediction folders to add."""
    root = tmp_path_factory.mktemp("round4")
    truth = root / "truth"
    write_photos(truth, 6, size=40, seed=3, prefix="ph")
    preds = make_predictions(truth, root / "preds", names=("half", "hue", "grey"))
    with offline_env(root):
        res = cli("score", "--truth", truth, f"base={preds['half']}", "--out", root / "run", "--size", "32", "-q")
    assert res.exit_code == 0, res.output
    return root, truth, preds


@pytest.fixture
def run_copy(scored_run, tmp_path):
    root, truth, preds = scored_run
    shutil.copytree(root / "run", tmp_path / "run")
    return tmp_path / "run", preds


# ---- 1. a user's name never becomes a path by itself -------------------------------------

TRICKY = ["..", ".", "x y", "x_y", "a*b", "axb", "a/b", "a_b", "DDColor", "ddcolor", "-x", ".hidden", "~", "a~b",
          "ünï", "a" * 300, "con", "x_y~" + hashlib.sha256(b"x y").hexdigest()[:12]]


def test_external_folder_names_are_one_to_one_and_never_paths():
    names = [external_folder_name(n) for n in TRICKY]
    assert len(set(names)) == len(names)
    assert len({n.lower() for n in names}) == len(names)  # a case-insensitive file system keeps them apart too
    for name in names:
        assert "/" not in name and "\\" not in name and name not in (".", "..") and not name.startswith((".", "-"))
        assert len(name) <= 80
    for name in ("..", ".", ".x", ""):
        assert slug(name) not in ("", ".", "..") and not slug(name).startswith(".")


@pytest.mark.slow
def test_names_like_paths_or_like_each_other_keep_their_own_folders_and_numbers(run_copy):
    run, preds = run_copy
    own = snapshot(run / "per_image.csv.gz")
    pairs = {"..": preds["hue"], ".": preds["grey"], "x y": preds["hue"], "x_y": preds["grey"],
             "a*b": preds["hue"], "axb": preds["grey"], "a/b": preds["hue"], "a_b": preds["grey"]}
    for name, folder in pairs.items():  # one at a time: each later one must not replace an earlier one
        res = cli("score", "--run", run, f"{name}={folder}", "-q")
        assert res.exit_code == 0, (name, res.output)
    assert snapshot(run / "per_image.csv.gz") == own  # the run's own scores untouched
    config = json.loads((run / "config.json").read_text())
    listed = [e["name"] for e in config["external"]]
    assert listed == ["base", *pairs]
    dirs = {e["name"]: e["dir"] for e in config["external"]}
    assert len(set(dirs.values())) == len(dirs)
    assert all((run / "external" / d / "metrics.json").is_file() for d in dirs.values())
    means = pd.read_csv(run / "metrics.csv").query("metric == 'cf'").groupby("combination")["value"].mean()
    for name, folder in pairs.items():  # each row shows its own predictions' numbers
        assert means[name] == pytest.approx(means["x y" if folder == preds["hue"] else "x_y"], abs=1e-9)
    assert means["x y"] > 5 + means["x_y"]  # hue-shifted colour against none
    rep = cli("report", run)
    assert rep.exit_code == 0, rep.output


def test_a_folder_taken_by_another_name_is_never_reused(run_copy):
    run, preds = run_copy
    taken = run / "external" / external_folder_name("mine")
    taken.mkdir(parents=True)
    (taken / "metrics.json").write_text(json.dumps({"combination": "someone else", "metrics": {}}))
    before = snapshot(run)
    res = cli("score", "--run", run, f"mine={preds['hue']}", "-q")
    assert res.exit_code != 0 and "holds the scores of 'someone else'" in res.output
    assert snapshot(run) == before


# ---- 2. shared run files are updated under the lock, from what was read under it --------

@pytest.mark.slow
def test_two_scorings_started_together_both_land(run_copy):
    run, preds = run_copy
    env = env_for_children(run.parent)
    procs = [subprocess.Popen([sys.executable, "-m", "bench", "score", "--run", str(run), f"{name}={preds[kind]}",
                               "-q"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, kind in (("first", "hue"), ("second", "grey"))]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    config = json.loads((run / "config.json").read_text())
    assert {"base", "first", "second"} == {e["name"] for e in config["external"]}
    assert {"base", "first", "second"} <= set(pd.read_csv(run / "metrics.csv").combination)
    rep = cli("report", run)
    assert rep.exit_code == 0, rep.output
    summary = pd.read_csv(run / "summary.csv")
    assert {"first", "second"} <= set(summary.combination)


def _hold_lock(out: Path, task: str, seconds: float) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time
        from bench.rundir.lock import RunLock
        with RunLock({str(out)!r}, task={task!r}):
            print("held", flush=True)
            time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_scoring_waits_for_another_scoring_and_is_refused_by_a_run_naming_it(tmp_path):
    from bench.rundir.lock import RunFolderBusy, RunLock

    out = tmp_path / "run"
    holder = _hold_lock(out, "bench score", 1.5)
    with RunLock(out, task="bench score", wait_for=("bench score",)):  # waits its turn
        assert holder.poll() is not None
    holder = _hold_lock(out, "bench run", 5)
    try:
        with pytest.raises(RunFolderBusy) as refused:
            RunLock(out, task="bench score", wait_for=("bench score",)).acquire()
        message = str(refused.value)
        assert "a `bench run` (pid" in message and "--out" not in message and "another `bench run`" not in message
        with pytest.raises(RunFolderBusy, match="another `bench run`.*use another --out"):
            RunLock(out).acquire()
    finally:
        holder.kill()
        holder.wait()


def test_a_table_assembled_from_an_old_copy_of_the_config_keeps_rows_added_since(run_copy):
    from bench.run.stages import assemble_metrics

    run, preds = run_copy
    stale = json.loads((run / "config.json").read_text())  # as a job read it when it started
    assert cli("score", "--run", run, f"late={preds['hue']}", "-q").exit_code == 0
    assemble_metrics(RunFolder(run), stale)  # a job finishing after `bench score` added `late`
    assert "late" in set(pd.read_csv(run / "metrics.csv").combination)


# ---- 3 and 4. one --out guard; nothing half-written blocks its rerun ---------------------

def test_every_command_that_makes_a_run_folder_refuses_the_users_own_files(scored_run, photo_dir, tmp_path):
    root, truth, preds = scored_run
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.csv").write_text("my,own\n1,2\n")
    (mine / "notes.txt").write_text("keep me")
    before = snapshot(mine)
    res = cli("score", "--truth", truth, f"x={preds['half']}", "--out", mine, "--size", "32", "-q")
    assert res.exit_code != 0 and "is not a `bench run` folder" in res.output and "Choose another --out" in res.output
    assert snapshot(mine) == before
    res = cli("run", "--data", photo_dir, "--losses", "l1", "--out", mine, "--steps", "2", *TINY)
    assert res.exit_code != 0 and "a run would write over metrics.csv" in res.output
    assert snapshot(mine) == before
    (mine / "metrics.csv").unlink()
    (mine / "config.json").write_text('{"my": "settings"}')
    before = snapshot(mine)
    res = cli("score", "--truth", truth, f"x={preds['half']}", "--out", mine, "--size", "32", "-q")
    assert res.exit_code != 0 and "config.json" in res.output and snapshot(mine) == before
    finished = root / "run"
    before = snapshot(finished)
    res = cli("score", "--truth", truth, f"x={preds['half']}", "--out", finished, "--size", "32", "-q")
    assert res.exit_code != 0 and f"bench score --run {finished}" in res.output
    res = cli("run", "--data", photo_dir, "--losses", "l1", "--out", finished, "--steps", "2", *TINY)
    assert res.exit_code != 0 and "made by `bench score`" in res.output
    assert snapshot(finished) == before


def test_a_scoring_that_fails_part_way_leaves_nothing_and_its_rerun_works(scored_run, tmp_path, monkeypatch):
    import bench.run.outside as outside

    root, truth, preds = scored_run
    out = tmp_path / "new"

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as mp:
        mp.setattr(outside, "assemble_metrics", full_disk)
        res = cli("score", "--truth", truth, f"x={preds['half']}", "--out", out, "--size", "32", "-q")
    assert res.exit_code != 0 and "No space left" in res.output
    assert not out.exists()  # all or nothing: the folder it made is gone
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep")
    with monkeypatch.context() as mp:
        mp.setattr(outside, "assemble_metrics", full_disk)
        res = cli("score", "--truth", truth, f"x={preds['half']}", "--out", existing, "--size", "32", "-q")
    assert res.exit_code != 0 and [p.name for p in existing.iterdir()] == ["mine.txt"]
    res = cli("score", "--truth", truth, f"x={preds['half']}", "--out", out, "--size", "32", "-q")
    assert res.exit_code == 0, res.output
    # a killed `bench score` (config.json of its own, never finished) is replaced by the rerun
    config = json.loads((out / "config.json").read_text())
    config.pop("finished")
    (out / "config.json").write_text(json.dumps(config))
    (out / "metrics.csv").unlink()
    res = cli("score", "--truth", truth, f"y={preds['hue']}", "--out", out, "--size", "32", "-q")
    assert res.exit_code == 0, res.output
    assert set(pd.read_csv(out / "metrics.csv").combination) == {"gray", "ground-truth", "y"}
    assert not (out / "external" / "x").exists()


def test_a_rescoring_that_fails_part_way_keeps_the_earlier_scores(run_copy, monkeypatch):
    import bench.score.external as external

    run, preds = run_copy
    before = snapshot(run)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as mp:
        mp.setattr(external, "write_json", full_disk)  # the record, the last file of a colorizer's folder
        res = cli("score", "--run", run, f"base={preds['hue']}", "-q")
    assert res.exit_code != 0 and "No space left" in res.output
    assert snapshot(run) == before
    assert not list((run / "external").glob(".*"))  # no staging folder left behind
    res = cli("score", "--run", run, f"base={preds['hue']}", "-q")
    assert res.exit_code == 0 and snapshot(run) != before


# ---- 5. plugins are part of a run's identity -----------------------------------------------

LOSS_PLUGIN = '''
from torch import nn
from losses.registry import register_loss


class Toy(nn.Module):
    def forward(self, L, fake_ab, real_ab):
        return (fake_ab - real_ab).abs().mean() * {scale}


@register_loss("toy_abs", "a plugin's L1")
def toy_abs(options):
    return Toy()
'''

METRIC_PLUGIN = '''
from bench.score.metrics import register_metric


@register_metric("toy_mae", higher_is_better={better}, description="a plugin's mean absolute sRGB error")
def toy_mae(pred, target, batch):
    return (pred - target).abs().flatten(1).mean(1) * {scale}
'''


def _bench(root: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *map(str, args)], env=env_for_children(root),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def plugin_run(tmp_path):
    """A run of a plugin loss scored with a plugin metric, trained for 2 steps (each test its
    own: the plugin files' paths are part of the run)."""
    root = tmp_path
    photos = write_photo_folder(root)
    (root / "toy_loss.py").write_text(LOSS_PLUGIN.format(scale=1.0))
    (root / "toy_metric.py").write_text(METRIC_PLUGIN.format(better=False, scale=1.0))
    res = _bench(root, "run", "--data", photos, "--losses", "toy_abs", "--plugin", root / "toy_loss.py", "--plugin",
                 root / "toy_metric.py", "--steps", "2", "--eval-every", "1", "--out", root / "run", *TINY)
    assert res.returncode == 0, res.stderr
    return root, photos


@pytest.mark.slow
def test_a_run_records_its_plugins_digests_and_declarations(plugin_run):
    root, _ = plugin_run
    config = json.loads((root / "run" / "config.json").read_text())
    digests = {Path(e["plugin"]).name: e["sha256"] for e in config["plugins"]}
    assert digests == {n: hashlib.sha256(n.encode() + b"\0" + (root / n).read_bytes() + b"\0").hexdigest()
                       for n in ("toy_loss.py", "toy_metric.py")}
    assert config["declared"]["metrics"]["toy_mae"]["higher_is_better"] is False
    assert config["declared"]["losses"]["toy_abs"]["adversarial"] is False


@pytest.mark.slow
def test_extending_or_resuming_under_an_edited_plugin_loss_is_refused_by_name(plugin_run):
    root, photos = plugin_run
    (root / "toy_loss.py").write_text(LOSS_PLUGIN.format(scale=3.0))  # same name, other loss
    before = snapshot(root / "run")
    res = _bench(root, "run", "--data", photos, "--losses", "toy_abs", "--plugin", root / "toy_loss.py", "--plugin",
                 root / "toy_metric.py", "--steps", "4", "--eval-every", "1", "--out", root / "run", *TINY)
    assert res.returncode != 0
    assert f"the plugin {root / 'toy_loss.py'} changed" in res.stderr and "trained further" in res.stderr
    assert snapshot(root / "run") == before


@pytest.mark.slow
def test_a_report_under_an_edited_plugin_metric_is_refused_or_says_so(plugin_run):
    root, _ = plugin_run
    (root / "toy_metric.py").write_text(METRIC_PLUGIN.format(better=True, scale=1.0))  # the arrow flipped
    res = _bench(root, "report", root / "run")
    assert res.returncode != 0 and "toy_mae" in res.stderr and "higher_is_better False then, True now" in res.stderr
    (root / "toy_metric.py").write_text(METRIC_PLUGIN.format(better=False, scale=2.0))  # same declaration, other code
    res = _bench(root, "report", root / "run")
    assert res.returncode == 0, res.stderr
    assert f"the plugin {root / 'toy_metric.py'} changed" in (root / "run" / "report.md").read_text()


@pytest.mark.slow
def test_compare_knows_the_runs_own_plugin_metric_and_readers_need_no_loss_plugin(plugin_run):
    root, _ = plugin_run
    res = _bench(root, "compare", root / "run", "--metric", "toy_mae")
    assert res.returncode == 0, res.stderr
    assert "unknown metric" not in res.stderr and "toy_mae" in res.stdout
    (root / "toy_loss.py").unlink()  # a loss-only plugin: reading the run does not need it
    res = _bench(root, "report", root / "run")
    assert res.returncode == 0, res.stderr
    (root / "toy_metric.py").unlink()
    for command in (["report", root / "run"], ["colorize", "--run", root / "run", "--loss", "toy_abs",
                                               root / "run" / "gallery", "--out", root / "coloured"]):
        res = _bench(root, *command)
        assert res.returncode != 0 and "--plugin" not in res.stderr, res.stderr
        assert f"that {root / 'run' / 'config.json'} lists: no such file" in res.stderr
        assert "the run was made with it: put the file back at that path" in res.stderr


# ---- 6. a state is used only with the record it belongs to ----------------------------------

def test_extension_never_trusts_a_state_of_other_steps(photo_dir, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--data", photo_dir, "--losses", "l1", "--out", out, "--eval-every", "2", *TINY]
    assert cli(*args, "--steps", "4").exit_code == 0
    cell = RunFolder(out).cell("l1", 0)
    early_state = cell.state.read_bytes()
    res = cli(*args, "--steps", "6", "--no-keep-state")
    # (--keep-state is not an identity option: the same run, trained further without keeping its state)
    assert res.exit_code == 0, res.output
    assert not cell.state.exists()  # the state of step 4 must not pass for step 6's
    before = snapshot(out)
    res = cli(*args, "--steps", "8")
    assert res.exit_code != 0 and "kept no last training state" in res.output
    assert snapshot(out) == before
    cell.state.write_bytes(early_state)  # a stale state put back (or left by a crash)
    res = cli(*args, "--steps", "8")
    assert res.exit_code != 0 and "from an earlier, shorter --steps" in res.output
    assert snapshot(out) == {**before, str(cell.state): hashlib.sha1(early_state).hexdigest()}


def test_a_reopened_cell_joins_only_its_own_curve(photo_dir, tmp_path):
    from bench.run.reuse import reopen_cell
    from bench.train.checkpoint import load_checkpoint

    out = tmp_path / "run"
    assert cli("run", "--data", photo_dir, "--losses", "l1", "--out", out, "--eval-every", "1", "--steps", "3",
               *TINY).exit_code == 0
    cell = RunFolder(out).cell("l1", 0)
    curve = pd.read_csv(cell.curve)
    later = curve[curve.step == 3].assign(step=5)  # points of a later training that this state never saw
    pd.concat([curve, later]).to_csv(cell.curve, index=False)
    reopen_cell(cell)
    steps = sorted({row["step"] for row in load_checkpoint(cell.checkpoint)["curve"]})
    assert steps == [1, 2, 3]


# ---- 7. messages about what the user ran ----------------------------------------------------

def test_the_resume_line_repeats_python_m_bench(monkeypatch, tmp_path):
    from bench.cli.run import _resume_command

    monkeypatch.setattr(sys, "argv", [str(ROOT / "bench" / "__main__.py"), "run", "--losses", "l1"])
    line = _resume_command(tmp_path / "r")
    assert " -m bench run --losses l1 --out " in line and not line.startswith("bench ")
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/bench", "run"])
    assert _resume_command(tmp_path / "r").startswith("bench run --out ")
