"""Per-image scores in the run folder, paired comparisons (`bench compare`) and the report's
"Which differences are real?" section: on a tiny real run, and on a synthetic run folder
where the truth is planted."""
from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from bench.report import paired, prose
from bench.score import stats
from bench.cli import main
from bench.rundir.layout import PER_IMAGE, REPLICATES
from bench.score.per_image import replicates_frame, write_frame
from bench.rundir.layout import slug
from bench.rundir.read import load_run
from conftest import offline_env, write_photo_folder

TINY = ["--size", "32", "--width", "8", "--epochs", "1", "--batch-size", "4", "-q"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    photos = write_photo_folder(root)
    with offline_env(root):
        res = CliRunner().invoke(main, ["run", "--data", str(photos), "--losses", "l1,mse", "--seeds", "0,1",
                                        "--out", str(root / "run"), *TINY])
    assert res.exit_code == 0, res.output
    return root / "run"


@pytest.mark.slow
def test_every_cell_keeps_per_image_scores_that_average_to_metrics_csv(tiny_run):
    metrics = pd.read_csv(tiny_run / "metrics.csv")
    base = pd.read_csv(tiny_run / PER_IMAGE)
    images = sorted(p.name for p in (tiny_run.parent / "photos" / "val").iterdir())
    truth = base[base.combination == "ground-truth"].pivot(index="image", columns="metric", values="value")
    assert sorted(truth.index) == images and set(truth.columns) == {"cf", "auc_rebal_weight"}
    for combination, seed in [("gray", None), ("l1", 0), ("l1", 1), ("mse", 0), ("mse", 1)]:
        if seed is None:
            frame = base[base.combination == "gray"]
            recorded = metrics[(metrics.combination == "gray") & (metrics.seed == 0)]
        else:
            frame = pd.read_csv(tiny_run / "cells" / slug(combination) / f"seed{seed}" / PER_IMAGE)
            assert list(frame.columns) == ["combination", "seed", "image", "metric", "value"]
            assert set(frame.combination) == {combination} and set(frame.seed) == {seed}
            recorded = metrics[(metrics.combination == combination) & (metrics.seed == seed)]
        wide = frame.pivot(index="image", columns="metric", values="value")
        assert sorted(wide.index) == images
        assert set(wide.columns) == {"psnr", "ssim", "de00", "cf", "auc", "auc_rebal"}  # no lpips without weights
        value = recorded.set_index("metric")["value"]
        for m in ("psnr", "ssim", "de00", "cf", "auc"):
            assert wide[m].mean() == pytest.approx(value[m], rel=1e-6)
        w = truth.loc[wide.index, "auc_rebal_weight"]
        assert (wide["auc_rebal"] * w).sum() / w.sum() == pytest.approx(value["auc_rebal"], rel=1e-6)
        assert abs(wide["cf"].mean() - truth["cf"].mean()) == pytest.approx(value["delta_cf"], rel=1e-5)
        assert not (tiny_run / "cells" / slug(combination) / f"seed{seed}" / REPLICATES).exists()  # no Inception here


@pytest.mark.slow
def test_config_records_the_scoring_protocol(tiny_run):
    protocol = json.loads((tiny_run / "config.json").read_text())["protocol"]
    assert protocol["lpips"]["net"] == "alex" and protocol["lpips"]["version"] == "0.1"
    assert protocol["lpips"]["input"].startswith("sRGB scaled to [-1, 1]") and protocol["lpips"]["computed"] is False
    assert "299x299" in protocol["fid"]["resize"] and protocol["fid"]["images"] == 6
    assert protocol["val_photos"]["preparation"].startswith("shorter side resized to 32 px")
    assert protocol["auc_rebal"]["occupied_cells"] > 10


@pytest.mark.slow
def test_report_says_which_differences_are_real(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    res = CliRunner().invoke(main, ["report", str(run), "--samples", "2", "--display-size", "48", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    md = (run / "report.md").read_text()
    section = md.split("## Which differences are real?", 1)[1].split("\n## ", 1)[0]
    for metric in ("psnr", "de00", "delta_cf"):
        assert f"**{metric}** " in section
    assert "lpips" not in section.split("### How the numbers were made")[0].split("All pairs")[0]  # no values, no claims
    assert "![pairwise](fig_pairwise.png)" in section and (run / "fig_pairwise.png").is_file()
    assert "Holm" in section and "**lpips**: package: lpips" in section and "(not computed: weights missing)" in section
    pairs = pd.read_csv(run / "pairwise.csv")
    assert list(pairs.columns) == paired.PAIRWISE_COLUMNS
    assert "cf" not in set(pairs.metric)  # descriptive: never a winner
    assert len(pairs[pairs.metric == "psnr"]) == 3  # l1-mse, l1-gray, mse-gray
    assert (pairs.b[pairs.a != "l1"] == "gray").all() and (pairs.seeds == 2).all() and (pairs.photos == 6).all()
    summary = pd.read_csv(run / "summary.csv")
    assert list(summary.columns[-4:]) == paired.INTERVAL_COLUMNS
    rows = summary[summary.metric.isin(["psnr", "de00", "delta_cf"]) & (summary.combination != "ground-truth")]
    assert rows.photo_ci_low.notna().all()
    assert (rows.photo_ci_low <= rows["mean"] + 1e-9).all() and (rows["mean"] <= rows.photo_ci_high + 1e-9).all()
    l1 = rows[(rows.combination == "l1") & (rows.metric == "psnr")].iloc[0]
    expect = stats.t_interval_from(l1["mean"], l1["std"], 2)
    assert l1.seed_ci_low == pytest.approx(expect.low) and l1.seed_ci_high == pytest.approx(expect.high)
    assert summary[summary.combination == "gray"].seed_ci_low.isna().all()
    # the same data twice: the same intervals (seeded resampling)
    before = pairs.copy()
    res = CliRunner().invoke(main, ["report", str(run), "--samples", "2", "--display-size", "48", "--device", "cpu"])
    pd.testing.assert_frame_equal(pd.read_csv(run / "pairwise.csv"), before)


@pytest.mark.slow
def test_a_run_without_per_image_scores_still_reports(tiny_run, tmp_path):
    run = tmp_path / "old"
    shutil.copytree(tiny_run, run)
    for f in run.rglob(PER_IMAGE):
        f.unlink()
    res = CliRunner().invoke(main, ["report", str(run), "--samples", "2", "--display-size", "48", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    md = (run / "report.md").read_text()
    assert "No paired comparisons" in md and "made before Colorbench kept them" in md
    res = CliRunner().invoke(main, ["compare", str(run)])
    assert res.exit_code != 0 and "no per-image scores" in res.output


# ---------------------------------------------------------------- planted truth


N, SEEDS = 242, (0, 1, 2)


def synthetic_run(root, combos: dict[str, float], seed_sd: float = 0.0, rng_seed: int = 0, fid: bool = False):
    """A run folder as `bench run` writes it, with per-image PSNR, de00 and cf planted:
    ``combos`` maps a combination to its PSNR shift over gray (de00 moves the other way,
    cf towards the photos' own)."""
    rng = np.random.default_rng(rng_seed)
    images = [f"photo{i:03d}.jpg" for i in range(N)]
    difficulty = rng.normal(22, 3, N)
    truth_cf = rng.gamma(4, 10, N)
    rows, base = [], []

    def cell(combination, seed, shift):
        offset = rng.normal(0, seed_sd) if seed is not None else 0.0
        psnr = difficulty + shift + offset + rng.normal(0, 0.7, N)
        de00 = 12 - (psnr - 22) + rng.normal(0, 0.5, N)
        cf = np.clip(truth_cf * min(1.0, 0.1 + shift) + rng.normal(0, 2, N), 0, None)
        per = {"psnr": psnr, "de00": de00, "cf": cf}
        frame = pd.concat([pd.DataFrame({"combination": combination, "seed": seed, "image": images, "metric": m,
                                         "value": v}) for m, v in per.items()], ignore_index=True)
        values = {"psnr": psnr.mean(), "de00": de00.mean(), "cf": cf.mean(), "delta_cf": abs(cf.mean() - truth_cf.mean())}
        return frame, values

    gray_frame, gray_values = cell("gray", None, 0.0)
    base.append(gray_frame)
    base.append(pd.DataFrame({"combination": "ground-truth", "seed": None, "image": images, "metric": "cf", "value": truth_cf}))
    write_frame(root / PER_IMAGE, pd.concat(base, ignore_index=True))
    for s in SEEDS:
        rows += [{"combination": "gray", "seed": s, "metric": m, "value": v, "note": ""} for m, v in gray_values.items()]
    reps = []
    for name, shift in combos.items():
        for s in SEEDS:
            frame, values = cell(name, s, shift)
            folder = root / "cells" / slug(name) / f"seed{s}"
            folder.mkdir(parents=True)
            write_frame(folder / PER_IMAGE, frame)
            if fid:  # FID falls as PSNR rises; replicates from the shared photo resamples
                values["fid"] = 50 - 10 * shift
                counts = stats.photo_counts(N, stats.N_BOOT_SET)
                noise = (counts - 1) @ rng.normal(0, 0.5, N) / N
                reps.append(pd.DataFrame({"combination": name, "seed": s, "metric": "fid",
                                          "replicate": np.arange(stats.N_BOOT_SET), "value": values["fid"] + noise}))
                write_frame(folder / REPLICATES, reps[-1])
            rows += [{"combination": name, "seed": s, "metric": m, "value": v, "note": ""} for m, v in values.items()]
            # the cell's own record, which metrics.csv is checked against
            record = {"status": "ok", "combination": name, "seed": s, "metrics": values, "notes": {}}
            (folder / "metrics.json").write_text(json.dumps(record))
    pd.DataFrame(rows).to_csv(root / "metrics.csv", index=False)
    config = {"options": {"seeds": list(SEEDS), "size": 64, "losses": ",".join(combos)},
              "combinations": [{"spec": c, "name": c, "tags": {}} for c in combos],
              "data": {"val_images": N, "source": "synthetic"}, "finished": "now"}
    (root / "config.json").write_text(json.dumps(config))
    return root


def test_planted_differences_are_found_and_identical_losses_are_not(tmp_path):
    run = synthetic_run(tmp_path / "syn", {"l1": 0.6, "mse": 0.3, "twin": 0.3}, seed_sd=0.02, fid=True)
    analysis = paired.analyse([load_run(run)])
    pairs = analysis.pairwise.set_index(["metric", "a", "b"])
    l1_mse = pairs.loc[("psnr", "l1", "mse")]
    assert l1_mse.significant and l1_mse.verdict == "real" and l1_mse.better == "l1" and l1_mse.ci_low < 0.3 < l1_mse.ci_high
    assert pairs.loc[("de00", "l1", "mse")].significant  # de00 falls as PSNR rises: l1 better there too
    assert not pairs.loc[("psnr", "mse", "twin")].significant  # the same planted loss twice
    assert pairs.loc[("psnr", "mse", "gray")].significant and pairs.loc[("psnr", "mse", "gray")]["diff"] > 0
    assert pairs.loc[("delta_cf", "l1", "gray")].test == "bootstrap"
    fid = pairs.loc[("fid", "l1", "mse")]
    assert fid.resamples == stats.N_BOOT_SET and fid["diff"] == pytest.approx(3.0) and fid.significant
    assert np.isfinite(pairs["p_seeds"]).all() and (pairs.seeds == 3).all()
    text = " ".join(prose.section(analysis, paired.with_intervals(_summary(run), analysis)))
    assert "`l1` beats `mse` on psnr by 0.3" in text and "after Holm" in text
    assert "`mse` vs `twin`" in text or "`twin` vs `mse`" in text  # not told apart


def _summary(run):
    from bench.report.summary import summarize

    return summarize([load_run(run)])


def test_seed_luck_is_not_a_real_difference(tmp_path):
    """Identical losses, but each seed's model is off by its own luck (sd 0.3 dB)."""
    run = synthetic_run(tmp_path / "luck", {"a": 0.3, "b": 0.3}, seed_sd=0.3, rng_seed=5)
    pairs = paired.pairwise(paired.load_scores(load_run(run)), ["psnr"])
    ab = pairs[(pairs.a == "a") & (pairs.b == "b")].iloc[0]
    assert ab.p_holm < 0.05  # photo by photo the trained models do differ ...
    assert not ab.significant and ab.p_seeds > 0.05  # ... but not consistently across seeds
    assert ab.verdict == paired.MODELS_ONLY and ab.better in ("a", "b")


def test_bench_compare_says_who_beats_whom_by_how_much(tmp_path):
    """As the report says it: "l1 beats mse on de00 by 0.30 [..], p < 0.001 after Holm", the
    winner first and the margin positive, never a bare signed Δ of a over b."""
    run = synthetic_run(tmp_path / "syn", {"l1": 0.6, "mse": 0.3}, seed_sd=0.02)
    res = CliRunner().invoke(main, ["compare", str(run), "--metric", "de00", "--metric", "cf", "--csv", str(tmp_path / "t.csv")])
    assert res.exit_code == 0, res.output
    assert "de00 ↓ (lower is better): 242 photos, 3 seed(s)" in res.output
    lines = [x.strip() for x in res.output.splitlines()]
    assert re.fullmatch(r"l1 beats mse on de00 by 0\.\d+ \[0\.\d+, 0\.\d+\], p [<=] 0\.\d+ after Holm", lines[1])
    assert any(x.startswith("l1 beats gray on de00 by ") for x in lines[2:])
    assert "+0." not in res.output
    assert "cf: not compared (descriptive" in res.output
    assert set(pd.read_csv(tmp_path / "t.csv").metric) == {"de00"}
    res = CliRunner().invoke(main, ["compare", str(run), "--metric", "nope"])
    assert res.exit_code != 0 and "unknown metric nope" in res.output


def test_fid_and_kid_replicates_come_from_the_features_in_memory():
    from test_scoring import _tiny_nets, _val

    from bench.score.scorer import Scorer

    val = _val()
    scorer = Scorer.for_split(val, _tiny_nets())
    scores = scorer.ab_scores(0.5 * val.ab)
    assert set(scores.features) == {"inception"} and scores.per_image["psnr"].mean() == pytest.approx(scores.means["psnr"])
    frame = replicates_frame("x", 0, scorer, scores, n_boot=20)
    assert set(frame.metric) == {"fid", "kid"} and len(frame) == 40
    # replicate r is FID on the photos of resample r, predictions and photos alike
    idx = torch.as_tensor(stats.photo_indices(len(val), 20)[3])
    from bench.score.metrics import fid

    expect = fid(scores.features["inception"][idx], scorer.target_features["inception"][idx]).item()
    got = frame[(frame.metric == "fid") & (frame.replicate == 3)]["value"].item()
    assert got == pytest.approx(expect, rel=1e-6) and math.isfinite(got)


def test_a_verdict_quotes_only_the_corrected_p_values_the_table_shows():
    """A verdict read "p = 0.048 after Holm, but p = 0.049 over seeds", a raw seed p beside a
    Holm p. Every p in the sentence is now one of the Holm-corrected columns of pairwise.csv."""
    from types import SimpleNamespace

    row = SimpleNamespace(a="l1", b="gan", diff=0.3, ci_low=-0.05, ci_high=0.6, metric="de00", p=0.004,
                          p_seeds=0.049, p_holm=0.012, p_combined=0.098, test="wilcoxon",
                          verdict=paired.MODELS_ONLY)
    said = prose.claim(row, 2)
    shown = {prose.format_p(row.p_holm), prose.format_p(row.p_combined)}
    quoted = set(re.findall(r"p [=<] [\d.]+", said))
    assert quoted and quoted <= shown, said
    assert prose.format_p(row.p_seeds) not in said and prose.format_p(row.p) not in said
    row.verdict, row.test, row.p, row.p_holm, row.p_combined = paired.UNCLEAR, "not tested: 1 distinct val photo(s)", \
        math.nan, math.nan, math.nan
    assert "not tested: 1 distinct val photo(s)" in prose.claim(row, 2)
