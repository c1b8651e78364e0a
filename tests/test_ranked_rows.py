"""Which rows are ranked, and on which photos (issue #32, class 10): one notion that the
table's bold, the ranks, the reading's leads and the paired tests share. A row scored on part
of the photos (`bench score --allow-missing`), a loss on surrogate weights
(`perceptual[random-vgg]`) and a model that has not learnt to colour are shown, said and never
ranked; a lead is the paired Δ of the rows it names; gray alone is no winner; rows of other val
photos are never ranked against each other. Synthetic run folders (planted per-image scores)
and a tiny real run."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image, ImageEnhance

from bench.cli import main
from bench.report import paired
from bench.report import summary as summary_mod
from bench.report import prose
from bench.report.prose import caveats, reading
from bench.report.summary import summarize
from bench.rundir.layout import PER_IMAGE, RunFolder
from bench.rundir.read import load_run
from bench.score.per_image import write_frame
from conftest import offline_env, write_photos
from test_compare import synthetic_run

SNAPSHOTS = Path(__file__).parent / "snapshots"
TINY = ["--size", "32", "--width", "8", "--epochs", "1", "--batch-size", "4", "-q"]


# ---------------------------------------------------------------- synthetic run folders


def add_outside(root: Path, name: str, shift: float, photos: np.ndarray, seed: int = 7) -> None:
    """An outside colorizer's row as `bench score --allow-missing` writes it, scored on the
    val photos of the mask ``photos`` alone: its PSNR ``shift`` over gray's, photo by photo."""
    rng = np.random.default_rng(seed)
    base = pd.read_csv(root / PER_IMAGE)
    gray = base[(base.combination == "gray") & (base.metric == "psnr")].set_index("image")["value"]
    truth_cf = base[base.combination == "ground-truth"].set_index("image")["value"]
    images = [i for i, keep in zip(gray.index, photos) if keep]
    psnr = gray[images].to_numpy() + shift + rng.normal(0, 0.7, len(images))
    de00 = 12 - (psnr - 22) + rng.normal(0, 0.5, len(images))
    cf = truth_cf[images].to_numpy() * 0.8
    per = {"psnr": psnr, "de00": de00, "cf": cf}
    folder = RunFolder(root).external(name)
    folder.path.mkdir(parents=True)
    write_frame(folder.per_image, pd.concat([pd.DataFrame({"combination": name, "seed": None, "image": images,
                                                            "metric": m, "value": v}) for m, v in per.items()],
                                            ignore_index=True))
    values = {"psnr": psnr.mean(), "de00": de00.mean(), "cf": cf.mean(), "delta_cf": abs(cf.mean() - truth_cf.mean())}
    folder.record.write_text(json.dumps({"combination": name, "metrics": values, "notes": {}}))
    config = json.loads((root / "config.json").read_text())
    config.setdefault("external", []).append({"name": name, "folder": f"/preds/{name}", "images": len(images),
                                              "of": len(photos)})
    (root / "config.json").write_text(json.dumps(config))
    note = f"outside colorizer: {len(images)} of {len(photos)} val photos (--allow-missing)" if len(images) < len(photos) else ""
    metrics = pd.read_csv(root / "metrics.csv", dtype={"note": str}).fillna({"note": ""})
    rows = [{"combination": name, "seed": s, "metric": m, "value": v, "note": note}
            for s in config["options"]["seeds"] for m, v in values.items()]
    pd.concat([metrics, pd.DataFrame(rows)], ignore_index=True).to_csv(root / "metrics.csv", index=False)


def analysed(*roots):
    runs = [load_run(r) for r in roots]
    analysis = paired.analyse(runs, n_boot=400)
    summary = paired.paired_gains(paired.with_intervals(summarize(runs), analysis), analysis)
    return runs, summary, analysis


def leads(text: str) -> list[tuple[str, str, float, float]]:
    """Every lead of the reading: (best, runner-up, lead as quoted, Δ as quoted)."""
    found = re.findall(r"`([^`]+)` is best at [^,]+, ([\d.]+) ahead of `([^`]+)` \([^Δ]*Δ (-?[\d.]+) \[", text)
    return [(best, second, float(lead), float(delta)) for best, lead, second, delta in found]


def test_a_partial_row_is_shown_but_never_ranked_and_every_lead_is_its_paired_delta(tmp_path):
    """The issue's case: an outside colorizer on 30 of 242 photos, far better on them than the
    models on all 242, was bolded best, and its lead ("9.25 ahead") disagreed with its Δ (-0.00)."""
    root = synthetic_run(tmp_path / "syn", {"l1": 0.6, "mse": 0.55}, seed_sd=0.02)
    first30 = np.arange(242) < 30
    add_outside(root, "ext", 6.0, first30)                       # far better, on 30 photos
    add_outside(root, "other", 5.0, np.arange(242) >= 200, 8)   # another 42 photos: a second partial set
    add_outside(root, "full", 0.1, np.ones(242, bool), 9)        # every photo: ranked with the models
    runs, summary, analysis = analysed(root)
    rows = summary.drop_duplicates("row").set_index("combination")
    assert rows.loc["ext", "row"] == "ext (30/242 photos)" and rows.loc["other", "row"] == "other (42/242 photos)"
    for name, n in (("ext", 30), ("other", 42)):
        assert not rows.loc[name, "ranked"] and rows.loc[name, "photos"] == n
        assert f"scored on {n} of the 242 val photos" in rows.loc[name, "not_ranked_because"]
    assert rows.loc["full", "ranked"] and rows.loc["l1", "ranked"]
    assert len({rows.loc[c, "photo_set"] for c in ("ext", "other", "l1")}) == 3
    assert rows.loc["l1", "photo_set"] == rows.loc["full", "photo_set"] == rows.loc["gray", "photo_set"]
    assert not summary.loc[summary.combination.isin(["ext", "other"]), "best"].any()
    assert summary.loc[(summary.metric == "psnr") & summary.best, "combination"].tolist() == ["l1"]
    table = summary_mod.markdown_table(summary)
    assert "| `ext (30/242 photos)` (not ranked) |" in table
    assert not re.search(r"\| `ext[^|]*\|[^\n]*\*\*", table)  # nothing of its line is bold
    winners, standing = reading(summary, analysis.pairwise)
    text = " ".join(winners)
    found = leads(text)
    assert found and all(lead == delta for _, _, lead, delta in found), found  # a lead is its Δ, sign and size
    assert all(best in ("l1", "mse", "full") and second in ("l1", "mse", "full", "gray") for best, second, _, _ in found)
    assert not re.search(r"-0\.0+(?!\d)", text) and "`ext (30/242 photos)` is best" not in text
    assert "`ext (30/242 photos)` was scored on part of the val photos alone: it is not ranked" in text
    # its gain over gray is the paired one, on its 30 photos: not against gray's mean of all 242
    pairs = analysis.pairwise
    vs_gray = pairs[(pairs.metric == "psnr") & (pairs.a == "ext (30/242 photos)") & (pairs.b == "gray")]
    assert vs_gray["photos"].tolist() == [30]
    ext = summary[(summary.combination == "ext") & (summary.metric == "psnr")].iloc[0]
    assert ext.vs_gray == pytest.approx(vs_gray["diff"].iloc[0])
    line = next(s for s in standing if s.startswith("`ext (30/242 photos)` (paired, on the photos both have)"))
    assert f"psnr (+{ext.vs_gray:.2f})" in line
    # two partial rows on disjoint photos share none: never paired, never compared
    assert pairs[(pairs.a.str.startswith("ext") & pairs.b.str.startswith("other"))].empty
    section = " ".join(prose.section(analysis, summary))
    assert "Every model was scored on the same 242 val photos (except `ext (30/242 photos)` and " \
           "`other (42/242 photos)`, scored on part of them" in section
    said = caveats(runs, summary)
    assert any(c.startswith("`ext` is **not ranked**: scored on 30 of the 242 val photos") for c in said)
    assert not any("outside colorizer: 30 of 242" in c for c in said)  # said once, in its not-ranked caveat


def test_the_reading_snapshot_of_partial_rows(tmp_path):
    """The reading of the case above, word for word (UPDATE_SNAPSHOTS=1 rewrites it)."""
    root = synthetic_run(tmp_path / "syn", {"l1": 0.6, "mse": 0.55}, seed_sd=0.02)
    add_outside(root, "ext", 6.0, np.arange(242) < 30)
    _, summary, analysis = analysed(root)
    winners, standing = reading(summary, analysis.pairwise)
    text = "\n".join([summary_mod.markdown_table(summary[summary.metric.isin(["psnr", "de00"])]), "", *winners, "",
                      *standing]) + "\n"
    path = SNAPSHOTS / "reading_partial_rows.md"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def test_a_lead_over_means_of_other_seeds_quotes_the_paired_delta_and_says_so(tmp_path):
    """`l1` seed 2 lost its psnr (diverged after scoring, say): the table's mean is over 2 seeds,
    the paired test over the 3 seeds both have, so the two numbers differ: the lead quoted is
    the paired Δ and the reading says why the means differ."""
    root = synthetic_run(tmp_path / "syn", {"l1": 0.6, "mse": 0.3}, seed_sd=0.4, rng_seed=3)
    metrics = pd.read_csv(root / "metrics.csv")
    hit = (metrics.combination == "l1") & (metrics.seed == 2) & (metrics.metric == "psnr")
    metrics.loc[hit, "value"] = np.nan
    metrics.to_csv(root / "metrics.csv", index=False)
    record = root / "cells" / "l1" / "seed2" / "metrics.json"
    data = json.loads(record.read_text())
    data["metrics"]["psnr"] = None
    record.write_text(json.dumps(data))
    _, summary, analysis = analysed(root)
    winners, _ = reading(summary, analysis.pairwise)
    sentence = next(w for w in winners if w.startswith("**psnr**"))
    pair = analysis.pairwise.set_index(["metric", "a", "b"]).loc[("psnr", "l1", "mse")]
    means = summary[summary.metric == "psnr"].set_index("row")["mean"]
    assert pair["seeds"] == 3 and summary.loc[(summary.row == "l1") & (summary.metric == "psnr"), "seeds"].item() == 2
    assert f"`l1` is best at {means['l1']:.2f}, {pair['diff']:.2f} ahead of `mse` on the seeds both have (" in sentence
    assert f"Δ {pair['diff']:.2f} [" in sentence
    assert f"the table's means, over different seeds, differ by {means['l1'] - means['mse']:.2f})" in sentence


def test_gray_alone_takes_no_bold_and_no_crown(tmp_path, monkeypatch):
    """Every model unranked: no column is bolded (gray was bolded in every one, though both
    models beat it on PSNR and it was worst on ΔCF), and the reading says no model is ranked."""
    monkeypatch.setattr(summary_mod, "MIN_RANKED_STEPS", 10**9)
    root = synthetic_run(tmp_path / "syn", {"l1": 0.6, "mse": 0.3})
    for seed in (0, 1, 2):
        for name in ("l1", "mse"):
            record = root / "cells" / name / f"seed{seed}" / "metrics.json"
            record.write_text(json.dumps(json.loads(record.read_text()) | {"steps": 20}))
    _, summary, analysis = analysed(root)
    assert not summary["best"].any() and not summary["ranked"].any()
    assert "**" not in summary_mod.markdown_table(summary)
    winners, _ = reading(summary, analysis.pairwise)
    psnr = next(w for w in winners if w.startswith("**psnr**"))
    assert psnr.startswith("**psnr** ↑: no model is ranked (none has learnt to colour yet, see the caveats)")
    assert "is best" not in " ".join(winners) and "beats the gray baseline" not in " ".join(winners)


def test_rows_of_other_val_photos_are_ranked_within_their_own_photos(tmp_path):
    """Two runs on different val photos: each has its best, and the reading names the photos."""
    a = synthetic_run(tmp_path / "a", {"l1": 0.6, "mse": 0.3})
    b = synthetic_run(tmp_path / "b", {"l1": 0.2, "mse": 0.5}, rng_seed=4)
    for root, digest in ((a, "aaa"), (b, "bbb")):
        config = json.loads((root / "config.json").read_text())
        config["data"]["val_files_sha256"] = digest
        (root / "config.json").write_text(json.dumps(config))
    runs, summary, analysis = analysed(a, b)
    best = summary[(summary.metric == "psnr") & summary.best]
    assert sorted(best.row) == ["l1 · a", "mse · b"]  # one per photo set
    winners, _ = reading(summary, analysis.pairwise)
    psnr = next(w for w in winners if w.startswith("**psnr**"))
    assert "on `a`'s val photos, `l1 · a` is best" in psnr and "on `b`'s val photos, `mse · b` is best" in psnr
    assert "ahead of `l1 · a`" not in psnr.split("on `b`'s")[1]  # never a lead across the two sets
    assert any("rows of different photos are never ranked against each other" in c for c in caveats(runs, summary))


# ---------------------------------------------------------------- a tiny real run


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """l1 and perceptual (offline: perceptual[random-vgg]) on 24 val photos, and outside folders:
    `half` (every photo, half saturation), `near` (the photos themselves at 90 % saturation on
    12 of them) and `far` (the same on 12 others)."""
    root = tmp_path_factory.mktemp("ranked")
    write_photos(root / "photos" / "train", 16, seed=1, prefix="tr")
    val = write_photos(root / "photos" / "val", 24, seed=2, prefix="va")
    folders = {}
    for name, factor, keep in (("half", 0.5, range(24)), ("near", 0.9, range(12)), ("far", 0.9, range(12, 24))):
        folder = root / "preds" / name
        folder.mkdir(parents=True)
        for i in keep:
            ImageEnhance.Color(Image.open(val[i]).convert("RGB")).enhance(factor).save(folder / f"{val[i].stem}.png")
        folders[name] = folder
    with offline_env(root):
        res = CliRunner().invoke(main, ["run", "--data", str(root / "photos"), "--losses", "l1,perceptual",
                                        "--out", str(root / "run"), *TINY])
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(main, ["score", "--run", str(root / "run"), "--allow-missing", "-q",
                                        *[f"{k}={v}" for k, v in folders.items()]])
        assert res.exit_code == 0, res.output
    return root, res.output


def _report(run: Path, out: Path) -> str:
    res = CliRunner().invoke(main, ["report", str(run), "--out", str(out), "--samples", "2", "--display-size", "32",
                                    "--device", "cpu"])
    assert res.exit_code == 0, res.output
    return (out / "report.md").read_text()


@pytest.mark.slow
def test_a_random_vgg_row_is_shown_unranked_beside_real_losses(real, tmp_path, monkeypatch):
    monkeypatch.setattr(summary_mod, "MIN_RANKED_STEPS", 0)
    monkeypatch.setattr(summary_mod, "MIN_CF_FRACTION", 0.0)
    root, _ = real
    md = _report(root / "run", tmp_path / "rep")
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv", dtype={"not_ranked_because": str}).fillna(
        {"not_ranked_because": ""})
    rows = summary.drop_duplicates("row").set_index("row")
    assert not rows.loc["perceptual[random-vgg]", "ranked"]
    assert "its perceptual term ran on random-vgg weights" in rows.loc["perceptual[random-vgg]", "not_ranked_because"]
    assert rows.loc["l1", "ranked"] and rows.loc["half", "ranked"]
    assert not summary.loc[summary.row == "perceptual[random-vgg]", "best"].any()
    assert "| `perceptual[random-vgg]` (not ranked) |" in md
    assert "`perceptual[random-vgg]` is **not ranked**: its perceptual term ran on random-vgg weights" in md
    assert "`bench weights` says how to get the file" in md
    reading_text = md.split("## Reading the results", 1)[1].split("\n## ", 1)[0]
    assert "`perceptual[random-vgg]` is best" not in reading_text and "`perceptual[random-vgg]` tie" not in reading_text
    # partial rows on other photos are said, never bolded, never crowned
    for name in ("near (12/24 photos)", "far (12/24 photos)"):
        assert f"| `{name}` (not ranked) |" in md and f"`{name}` is best" not in reading_text
        assert not summary.loc[summary.row == name, "best"].any()
    for best, second, lead, delta in leads(reading_text):
        assert lead == delta and best in ("l1", "half")
    assert not re.search(r"-0\.0+(?!\d)", md)  # no difference printed as -0.00: it has no side


@pytest.mark.slow
def test_every_model_unranked_in_a_real_run_bolds_nothing(real, tmp_path):
    """The real thresholds: the 4-step models are not ranked; `half` is, and only it is bold."""
    root, _ = real
    md = _report(root / "run", tmp_path / "rep")
    table = md.split("## Results", 1)[1].split("\n\n")[2]
    for line in table.splitlines()[2:]:
        if not line.startswith("| `half` |"):
            assert "**" not in line, line
    reading_text = md.split("## Reading the results", 1)[1].split("\n## ", 1)[0]
    assert "`gray` is best" not in reading_text


@pytest.mark.slow
def test_gray_only_scoring_bolds_nothing(real, tmp_path):
    """`bench score --truth` with a greyscale folder alone: ≈ gray, not ranked, no bold, no winner."""
    root, _ = real
    grey = tmp_path / "grey"
    grey.mkdir()
    for path in sorted((root / "photos" / "val").glob("*.jpg")):
        Image.open(path).convert("L").convert("RGB").save(grey / f"{path.stem}.png")
    out = tmp_path / "scored"
    with offline_env(tmp_path):
        res = CliRunner().invoke(main, ["score", "--truth", str(root / "photos" / "val"), f"grey={grey}",
                                        "--out", str(out), "--size", "32", "-q"])
        assert res.exit_code == 0, res.output
        assert "grey (not ranked)" in res.output
        md = _report(out, out)
    table = md.split("## Results", 1)[1].split("\n## ", 1)[0]
    assert "**" not in "\n".join(line for line in table.splitlines() if line.startswith("|"))
    assert "no model is ranked (`grey` is still ≈ gray, see the caveats)" in md


@pytest.mark.slow
def test_bench_score_prints_every_scored_row(real, tmp_path):
    """The printed summary has a line for every row of metrics.csv, named as the report names
    them (a colorizer named like pandas' missing values, `NA`, included)."""
    root, output = real
    printed = output.split("Results in", 1)[1]
    for row in ("gray", "l1 (not ranked)", "perceptual[random-vgg] (not ranked)", "half", "near (12/24 photos) (not ranked)",
                "far (12/24 photos) (not ranked)", "ground-truth"):
        assert re.search(rf"^{re.escape(row)}  ", printed, re.M), (row, printed)
    truth = root / "photos" / "val"
    out = tmp_path / "na"
    with offline_env(tmp_path):
        res = CliRunner().invoke(main, ["score", "--truth", str(truth), f"NA={root / 'preds' / 'half'}",
                                        f"half={root / 'preds' / 'half'}", "--out", str(out), "--size", "32", "-q"])
    assert res.exit_code == 0, res.output
    raw = pd.read_csv(out / "metrics.csv", keep_default_na=False)
    printed = res.output.split("Results in", 1)[1]
    for name in dict.fromkeys(raw.combination):
        assert re.search(rf"^{re.escape(name)}\s", printed, re.M), (name, printed)
    # a name is read as a name, never as a missing value: NA shows half's numbers (the same folder)
    lines = {line.split()[0]: line.split()[1:] for line in printed.splitlines()[2:] if line.strip()}
    assert lines["NA"] == lines["half"] and lines["NA"][0] != "—"
    means = load_run(out).metrics.groupby("combination")["value"].mean()
    assert means["NA"] == pytest.approx(means["half"])


def test_the_readme_weights_table_lists_every_file_bench_weights_knows():
    from models.pretrained import known_weights

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("## Pretrained weights", 1)[1].split("\n\n", 2)[1]
    for key, w in known_weights().items():
        assert f"| `{key}` | `{w.filename}` (~{w.approx_mb} MB) |" in table, key
