"""`bench report` and `bench colorize` on a tiny real run (seconds on a CPU)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bench.cli import main
from bench.score.metrics import METRICS, Metric
from bench.report.figures import FIGURES as FIGURE_LIST, pick_samples
from bench.report import summary as summary_mod
from bench.rundir.layout import slug
from bench.run.stages import WARMUP_STEPS
from conftest import offline_env, write_photo_folder, write_photos

TINY = ["--size", "32", "--width", "8", "--epochs", "1", "--batch-size", "4", "-q"]
ORDER = ["l1", "mse", "100*l1+gan"]  # deliberately not alphabetical: rows follow --losses
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRUTH = "ground-truth"  # bench run's rows for the val photos themselves: a reference, not ranked
FIGURES = {f.key: f.file for f in FIGURE_LIST}  # the report's figures: key -> file


def expected_rows(metrics: pd.DataFrame, combos: list[str]) -> list[str]:
    return ["gray", *combos] + ([TRUTH] if TRUTH in set(metrics.combination) else [])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Two seeds of three combinations, trained once for the whole module."""
    root = tmp_path_factory.mktemp("tiny")
    photos = write_photo_folder(root)
    out = root / "run"
    with offline_env(root):
        res = CliRunner().invoke(main, [
            "run", "--data", str(photos), "--losses", ",".join(ORDER),
            "--seeds", "0,1", "--out", str(out), *TINY,
        ])
    assert res.exit_code == 0, res.output
    return out


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("report.md", "summary.csv", "fig_*.png"))
    return dest


def make_report(*run_dirs, args=()) -> str:
    res = CliRunner().invoke(main, ["report", *map(str, run_dirs), "--samples", "3", "--display-size", "48", "--device", "cpu", *args])
    assert res.exit_code == 0, res.output
    return res.output


def parse_table(md: str) -> tuple[list[str], dict[str, list[str]]]:
    """The main table of report.md: its header cells and {row: cells}."""
    section = md.split("## Results", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    split = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    header = split(lines[0])
    rows = {split(line)[0].strip("`"): split(line)[1:] for line in lines[2:]}
    return header, rows


def number(cell: str) -> tuple[float, float | None, int]:
    """'**22.27 ± 0.13**' -> (22.27, 0.13, 2 decimals)."""
    m = re.match(r"\**(-?[\d.]+)(?: ± ([\d.]+))?", cell)
    assert m, cell
    decimals = len(m.group(1).split(".")[1]) if "." in m.group(1) else 0
    return float(m.group(1)), (float(m.group(2)) if m.group(2) else None), decimals


RANKING_THRESHOLDS = {"MIN_RANKED_STEPS": summary_mod.MIN_RANKED_STEPS, "MIN_CF_FRACTION": summary_mod.MIN_CF_FRACTION}


def _rank_every_model(mp) -> None:
    mp.setattr(summary_mod, "MIN_RANKED_STEPS", 0)
    mp.setattr(summary_mod, "MIN_CF_FRACTION", 0.0)


@pytest.fixture(autouse=True)
def rank_every_model(monkeypatch):
    """The tiny run's 4-step models are still ≈ gray, so the report would rank none of them;
    the tests of the table and the reading rank them anyway.
    ``test_models_that_have_not_learnt_to_colour_are_not_ranked`` restores the thresholds."""
    _rank_every_model(monkeypatch)


@pytest.fixture(scope="module")
def report_md(tiny_run) -> str:
    with pytest.MonkeyPatch.context() as mp:
        _rank_every_model(mp)
        make_report(tiny_run)
    return (tiny_run / "report.md").read_text()


@pytest.mark.slow
def test_table_matches_metrics_csv_with_arrows_and_bold_on_the_best(tiny_run, report_md):
    metrics = pd.read_csv(tiny_run / "metrics.csv")
    header, rows = parse_table(report_md)
    assert list(rows) == expected_rows(metrics, ORDER)
    names = sorted(metrics.metric.unique())
    assert sorted(h.split()[0] for h in header[1:]) == names
    for col, head in enumerate(header[1:]):
        metric, *mark = head.split()
        higher = METRICS[metric].higher_is_better
        assert mark == ([] if higher is None else ["↑" if higher else "↓"])
        stats = metrics[metrics.metric == metric].groupby("combination")["value"].agg(["mean", "std"])
        for row, cells in rows.items():
            if row not in stats.index or np.isnan(stats.loc[row, "mean"]):  # e.g. missing weights
                assert cells[col] == "—"
                continue
            mean, std, decimals = number(cells[col])
            assert mean == pytest.approx(stats.loc[row, "mean"], abs=0.6 * 10**-decimals)
            if row in ("gray", TRUTH):  # seed-independent rows print no "± 0"
                assert std is None
            else:
                assert std == pytest.approx(stats.loc[row, "std"], abs=0.6 * 10**-decimals)
        bold = [row for row, cells in rows.items() if cells[col].startswith("**")]
        stats = stats.drop(TRUTH, errors="ignore")
        assert TRUTH not in bold
        if stats["mean"].isna().all() or higher is None:  # no values, or descriptive (cf): never bold
            assert not bold
            continue
        best = stats["mean"].idxmax() if higher else stats["mean"].idxmin()
        assert best in bold
        assert all(number(rows[b][col])[0] == number(rows[best][col])[0] for b in bold)


@pytest.mark.slow
def test_every_figure_is_a_valid_png_linked_from_the_report(tiny_run, report_md):
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report_md)
    assert sorted(links) == sorted(FIGURES.values())
    for name in links:
        path = tiny_run / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert min(img.size) >= 200  # a figure someone can read, not a thumbnail


@pytest.mark.slow
def test_sample_grid_has_a_column_per_combination_plus_input_and_truth(tiny_run, report_md):
    """3 photos x (grayscale + 3 combinations + ground truth) cells of 48 px at least."""
    with Image.open(tiny_run / FIGURES["samples"]) as img:
        w, h = img.size
    assert w > h  # 5 columns, 3 rows
    assert w >= 5 * 48 and h >= 3 * 48


@pytest.mark.slow
def test_summary_csv_is_tidy_and_agrees_with_metrics_csv(tiny_run, report_md):
    summary = pd.read_csv(tiny_run / "summary.csv", keep_default_na=False, na_values=[""])
    metrics = pd.read_csv(tiny_run / "metrics.csv")
    expect = metrics.groupby(["combination", "metric"])["value"].agg(["mean", "std", "count"])
    got = summary.set_index(["combination", "metric"])
    for key, row in expect.iterrows():
        assert got.loc[key, "mean"] == pytest.approx(row["mean"], nan_ok=True)
        assert got.loc[key, "std"] == pytest.approx(row["std"], nan_ok=True)
        assert got.loc[key, "seeds"] == row["count"]
    gray = got.xs("gray", level="combination")["mean"]
    for (combo, metric), r in got.drop(["gray", TRUTH], level="combination", errors="ignore").iterrows():
        higher = METRICS[metric].higher_is_better
        if higher is None:  # descriptive: no gain over gray, no "higher" in summary.csv
            assert np.isnan(r["vs_gray"]) and r["direction"] == "descriptive" and not r["best"]
            continue
        sign = 1 if higher else -1
        assert r["vs_gray"] == pytest.approx(sign * (r["mean"] - gray[metric]), nan_ok=True)


@pytest.mark.slow
def test_reading_names_each_metrics_winner_and_the_distance_to_gray(tiny_run, report_md):
    reading = report_md.split("## Reading the results", 1)[1].split("##", 1)[0]
    metrics = pd.read_csv(tiny_run / "metrics.csv")
    means = metrics[metrics.combination != TRUTH].groupby(["metric", "combination"])["value"].mean()
    header, rows = parse_table(report_md)
    for col, metric in enumerate(h.split()[0] for h in header[1:]):
        m = means[metric]
        if m.isna().all():
            assert f"**{metric}**" not in reading
            continue
        higher = METRICS[metric].higher_is_better
        if higher is None:  # descriptive: stated against the photos' own value, never ranked or gained
            assert f"**{metric}** (descriptive, not ranked)" in reading
            assert not re.search(rf"(?<![\w]){metric} \(", reading.split("Each combination against gray", 1)[1])
            continue
        best = m.idxmax() if higher else m.idxmin()
        assert f"**{metric}** {'↑' if higher else '↓'}: `{best}`" in reading
        decimals = number(rows["gray"][col])[2]
        for combo in ORDER:
            line = next(x for x in reading.splitlines() if x.startswith(f"- `{combo}`: "))
            gain = round((1 if higher else -1) * (m[combo] - m["gray"]), decimals)
            if gain == 0:
                assert f"on {metric}" in line or f", {metric}" in line
                continue
            text = f"{metric} ({gain:+.{decimals}f})"
            assert text in line
            assert (line.index(text) < line.index("worse") if "worse" in line else True) == (gain > 0)


@pytest.mark.slow
def test_header_says_what_was_run(report_md):
    head = report_md.split("## Results")[0]
    for fact in ("`l1`, `mse`, `100*l1+gan`", "**Seeds**: 0, 1", "**size** 32 px", "16 train / 6 val", "torch"):
        assert fact in head


@pytest.mark.slow
def test_cost_section_gives_each_combinations_median_step_time(tiny_run, report_md):
    cost = report_md.split("## Cost", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip().strip("`"): line for line in cost.splitlines() if line.startswith("| `")}
    assert list(rows) == ORDER
    records = {c: [json.loads((tiny_run / "cells" / slug(c) / f"seed{s}" / "metrics.json").read_text()) for s in (0, 1)]
               for c in ORDER}
    step = {c: float(np.median([r["step_seconds"] for r in rs])) for c, rs in records.items()}
    cheapest = min(step, key=step.get)
    assert "| 1.0× |" in rows[cheapest]
    for c in ORDER:
        assert f"| {step[c] * 1000:.0f} ms |" in rows[c]
        assert f"| {step[c] / step[cheapest]:.1f}× |" in rows[c]
        # the median is over the steps after warm-up, which the cell's log times one by one
        log = pd.read_csv(tiny_run / "cells" / slug(c) / "seed0" / "train_log.csv")
        timed = log["seconds"].iloc[min(WARMUP_STEPS, len(log) // 2):]
        assert records[c][0]["step_seconds"] == pytest.approx(timed.median(), abs=1e-4)
        assert records[c][0]["timed_steps"] == len(timed) < 20
    # 16 photos, batch 4, 1 epoch: 4 steps, 2 of them warm-up: too few to compare costs, and said so
    assert "fewer than 20 steps after warm-up: too few to compare costs" in cost


@pytest.mark.slow
def test_models_that_have_not_learnt_to_colour_are_not_ranked(tiny_run, tmp_path):
    """A 4-step model "wins" by staying gray; the report says so instead of ranking it."""
    for name, value in RANKING_THRESHOLDS.items():
        setattr(summary_mod, name, value)  # the autouse fixture's monkeypatch undoes it after the test
    out = tmp_path / "report"
    make_report(tiny_run, args=["--out", str(out)])
    md = (out / "report.md").read_text()
    header, rows = parse_table(md)
    for combo in ORDER:
        assert f"{combo}` (not ranked)" in rows
        assert not any(cell.startswith("**") for cell in rows[f"{combo}` (not ranked)"])
        assert f"`{combo}` is **not ranked**: trained only" in md
    reading = md.split("## Reading the results", 1)[1].split("##", 1)[0]
    assert not any(f": `{combo}` is best" in reading or f": `{combo}` tie" in reading for combo in ORDER)
    # gray alone is no winner either: with every model unranked the reading says so, with the
    # numbers the table shows, instead of "gray is best ... no combination beats gray"
    assert "`gray` is best" not in reading and "no combination beats the gray baseline" not in reading
    assert "**psnr** ↑: no model is ranked" in reading
    summary = pd.read_csv(out / "summary.csv")
    assert not summary.loc[summary.combination.isin(ORDER), "ranked"].any()
    assert not summary.loc[summary.combination.isin(ORDER), "best"].any()


@pytest.mark.slow
def test_notes_diverged_cells_and_unknown_metrics_show_up(tiny_run, tmp_path, monkeypatch):
    """Edit a copy's metrics.csv: seed 1 of mse diverged, a metric with a sample-size note,
    a lower-is-better metric and one this version does not know."""
    run = copy_run(tiny_run, tmp_path / "edited")
    frame = pd.read_csv(run / "metrics.csv", dtype={"note": str}).fillna({"note": ""})
    hit = (frame.combination == "mse") & (frame.seed == 1)
    frame.loc[hit, "value"] = np.nan
    frame.loc[hit, "note"] = "diverged at step 3"
    rng = np.random.default_rng(0)
    extra = []
    for (combo, seed), _ in frame.groupby(["combination", "seed"], sort=False):
        diverged = combo == "mse" and seed == 1
        for metric, note in (("err", ""), ("mystery", ""), ("fidish", "n=6")):
            value = np.nan if diverged else rng.uniform(1, 2)
            extra.append({"combination": combo, "seed": seed, "metric": metric, "value": value,
                          "note": "diverged at step 3" if diverged else note})
    pd.concat([frame, pd.DataFrame(extra)]).to_csv(run / "metrics.csv", index=False)
    # the cell's own record says so too: it, not metrics.csv, is the source of truth
    record_path = run / "cells" / "mse" / "seed1" / "metrics.json"
    record = json.loads(record_path.read_text()) | {"status": "diverged", "diverged_at": 3, "metrics": {}, "notes": {}}
    record_path.write_text(json.dumps(record))
    monkeypatch.setitem(METRICS, "err", Metric("err", None, False, "an error, lower is better"))
    monkeypatch.setitem(METRICS, "fidish", Metric("fidish", None, False, "a distance to the val set"))

    make_report(run)
    md = (run / "report.md").read_text()
    header, rows = parse_table(md)
    col = {h.split()[0]: i for i, h in enumerate(header[1:])}
    assert header[1 + col["err"]] == "err ↓" and header[1 + col["mystery"]] == "mystery"
    assert not any(cells[col["mystery"]].startswith("**") for cells in rows.values())
    errs = {r: number(c[col["err"]])[0] for r, c in rows.items()}
    assert rows[min(errs, key=errs.get)][col["err"]].startswith("**")
    assert "(1/2 seeds)" in rows["mse"][col["psnr"]]
    assert "`mse` seed 1 diverged at step 3" in md
    assert "`fidish` (all rows): n=6" in md
    assert "direction unknown to this version for `mystery`" in md


@pytest.mark.slow
def test_several_runs_make_one_comparison_report(tiny_run, tmp_path):
    a, b = copy_run(tiny_run, tmp_path / "a"), copy_run(tiny_run, tmp_path / "b")
    make_report(a, b, args=["--out", str(tmp_path / "cmp")])
    md = (tmp_path / "cmp" / "report.md").read_text()
    _, rows = parse_table(md)
    # the two runs share val photos and size, hence one gray row
    metrics = pd.read_csv(tiny_run / "metrics.csv")
    assert list(rows) == expected_rows(metrics, [*(f"{c} · a" for c in ORDER), *(f"{c} · b" for c in ORDER)])
    assert "[metrics.csv](../a/metrics.csv)" in md
    for name in FIGURES.values():
        assert (tmp_path / "cmp" / name).read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.slow
def test_report_defaults_to_the_newest_run_under_results(tiny_run, tmp_path, monkeypatch):
    import os

    import bench.cli.report
    import bench.report.build

    old, new = copy_run(tiny_run, tmp_path / "results" / "old"), copy_run(tiny_run, tmp_path / "results" / "new")
    os.utime(old / "metrics.csv", (1, 1))
    monkeypatch.chdir(tmp_path)
    seen = []

    def fake_build(dirs, out, settings, overwrite=False):  # the default is what is tested, not the build again
        seen.append([Path(d).resolve() for d in dirs])
        return bench.report.build.Report(Path(dirs[0]) / "report.md", {})

    monkeypatch.setattr(bench.cli.report, "build_report", fake_build)
    make_report()
    assert seen == [[new.resolve()]]


def test_report_of_a_folder_that_is_not_a_run_names_the_file(tmp_path):
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code != 0 and "config.json not found" in res.output


def test_sample_photos_are_fixed_and_spread_over_the_val_set():
    names = [f"{src}_{i:02d}.jpg" for src in ("bsds", "inet", "kodak") for i in range(10)]
    picked = pick_samples(list(reversed(names)), 3)
    assert picked == pick_samples(names, 3)
    assert {p.split("_")[0] for p in picked} == {"bsds", "inet", "kodak"}


# ---------------------------------------------------------------- colorize


@pytest.mark.slow
def test_colorize_keeps_every_photos_size_and_lightness(tiny_run, tmp_path):
    from colorbench_datasets import rgb_to_lab

    photos = tmp_path / "in"
    sizes = {"wide.jpg": (90, 40), "sub/tall.png": (30, 70), "bw.png": (64, 64)}
    rng = np.random.default_rng(0)
    for name, (w, h) in sizes.items():
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        (img.convert("L") if name.startswith("bw") else img).save(photos / name)
    (photos / "broken.jpg").write_bytes(b"not a photo")  # skipped with its reason, not fatal
    single = write_photos(tmp_path / "one", 1, size=40)[0]

    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["colorize", "--run", str(tiny_run), "--loss", "100*l1+gan", "--seed", "1",
                                    str(photos), str(single), "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "4 photo(s) colourised by 100*l1+gan seed 1" in res.output and "1 skipped" in res.output
    expected = {Path(n).with_suffix(".png").as_posix(): s for n, s in sizes.items()} | {single.stem + ".png": (40, 40)}
    written = {p.relative_to(out).as_posix(): p for p in out.rglob("*.png")}
    assert sorted(written) == sorted(expected)
    for name, path in written.items():
        with Image.open(path) as img:
            assert img.size == expected[name] and img.mode == "RGB"
    # the full-resolution lightness is the input's own, not an upsampled one
    src = Image.open(photos / "wide.jpg").convert("RGB")
    lab_in, lab_out = (rgb_to_lab(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1))
                       for im in (src, Image.open(written["wide.png"])))
    assert (lab_in[0] - lab_out[0]).abs().mean() < 1.5


@pytest.mark.parametrize("args, message", [
    (["--loss", "perceptual"], "choose one of: l1, mse, 100*l1+gan"),
    (["--loss", "l1", "--seed", "7"], "--seed 7 was not trained"),
    (["--loss", "l1", "nowhere.jpg"], "nowhere.jpg does not exist"),
])
@pytest.mark.slow
def test_colorize_errors_name_the_option(tiny_run, tmp_path, args, message):
    inputs = [] if any(a.endswith(".jpg") for a in args) else [str(write_photos(tmp_path / "p", 1)[0])]
    res = CliRunner().invoke(main, ["colorize", "--run", str(tiny_run), *args, *inputs, "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and message in res.output


@pytest.mark.slow
def test_missing_val_photos_leave_out_only_the_sample_grid(tiny_run, tmp_path):
    import json

    run = copy_run(tiny_run, tmp_path / "moved")
    config = json.loads((run / "config.json").read_text())
    config["options"]["data"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(config))
    make_report(run)
    md = (run / "report.md").read_text()
    assert "the val photos could not be read" in md and str(tmp_path / "gone") in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    # only the sample grid shows the photos; the colourfulness figure is drawn from the stored scores
    assert sorted(links) == sorted(f for key, f in FIGURES.items() if key != "samples")


@pytest.mark.slow
def test_a_table_scored_on_two_kinds_of_device_says_so(tiny_run, tmp_path):
    """A SLURM login node without a GPU scores gray and the photos on its CPU while the cells
    score on GPUs: the rows of one table then come from two kinds of device."""
    from bench.report.prose import caveats
    from bench.report.summary import summarize
    from bench.rundir.read import load_run

    def said(run_dir):
        run = load_run(run_dir)
        return [c for c in caveats([run], summarize([run])) if "scored on the" in c]

    run_dir = copy_run(tiny_run, tmp_path / "mixed")
    assert load_run(run_dir).config["baselines_scored_on"] == "cpu" and not said(run_dir)
    record = next(run_dir.glob("cells/*/seed0/metrics.json"))
    record.write_text(json.dumps({**json.loads(record.read_text()), "device": "cuda"}))
    said = said(run_dir)
    assert len(said) == 1 and "**cpu**" in said[0] and "cuda" in said[0]


@pytest.mark.slow
def test_names_that_are_markdown_html_or_formulas_are_escaped_in_every_sink(tiny_run, tmp_path):
    """A run folder named with a table's pipe, backticks, HTML and a leading formula sign:
    report.md's tables keep their columns, no raw HTML reaches it, summary.csv cannot run a
    formula, and the terminal never gets a control character."""
    import re

    from bench.escape import code, csv_cell, terminal
    from bench.report.build import build_report

    name = "=1+2|`x``<img src=y onerror=alert(1)>*b*"
    run = copy_run(tiny_run, tmp_path / name)
    other = copy_run(tiny_run, tmp_path / "plain")
    result = build_report([run, other], tmp_path / "both")
    md = result.path.read_text()
    for table in re.findall(r"((?:^\|.*\|\n)+)", md, flags=re.M):
        widths = {len(re.findall(r"(?<!\\)\|", row)) for row in table.splitlines()}
        assert len(widths) == 1, table  # every row as many cells as the header
    outside_code = re.sub(r"(`+)(?s:.+?)\1", "", md)  # what a renderer would not show literally
    assert "<img" not in outside_code and "=1+2" not in outside_code
    summary = pd.read_csv(tmp_path / "both" / "summary.csv")
    assert set(summary["run"]) == {"'" + name, "plain"}
    # the helpers themselves: a span holds any backtick run, a CSV cell any sign, the terminal no escape
    assert code("a``b") == "```a``b```" and code("`x") == "`` `x ``"
    assert [csv_cell(v) for v in ("=A1", "+1", "-1", "@f", "ok", -1.0)] == ["'=A1", "'+1", "'-1", "'@f", "ok", -1.0]
    assert terminal("red\x1b[31m\u202eevil\nnext") == "red\\x1b[31m\\u202eevil\nnext"


@pytest.mark.slow
def test_the_report_draws_only_the_photos_that_were_scored(tmp_path, monkeypatch):
    """`bench run --data photos` (relative) then `bench report` from another folder found no
    photos, or others of the same relative name; photos edited since the run were drawn as
    if scored. The run records the folder's absolute path, and the report checks the photos
    against the run's fingerprint."""
    root = tmp_path / "project"
    write_photo_folder(root)  # root/photos/{train,val}
    monkeypatch.chdir(root)
    with offline_env(root):
        res = CliRunner().invoke(main, ["run", "--data", "photos", "--losses", "l1", "--out", "run", *TINY])
    assert res.exit_code == 0, res.output
    assert json.loads((root / "run" / "config.json").read_text())["options"]["data"] == str(root / "photos")
    elsewhere = tmp_path / "elsewhere"
    write_photo_folder(elsewhere)  # other photos under the same relative name
    monkeypatch.chdir(elsewhere)
    make_report(root / "run")
    md = (root / "run" / "report.md").read_text()
    assert "fig_samples.png" in md and "could not be read" not in md and "not those this run scored" not in md
    # a val photo edited after the run: the figures are left out, saying which photo changed
    val = sorted((root / "photos" / "val").iterdir())[0]
    Image.fromarray(255 - np.asarray(Image.open(val).convert("RGB"))).save(val)
    make_report(root / "run")
    md = (root / "run" / "report.md").read_text()
    assert "fig_samples.png" not in md and "not those this run scored" in md and val.name in md


@pytest.mark.slow
def test_a_report_that_fails_half_way_leaves_the_old_one_whole(tiny_run, tmp_path):
    """A real write failure part-way through `bench report` (the kernel's file-size limit:
    summary.csv fits, a figure does not): the error names the file, and report.md, the
    CSVs and the figures are all still the previous report's, with no temp file left."""
    run = copy_run(tiny_run, tmp_path / "run")
    make_report(run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    # the next report would differ in every output: a cell's PSNR changed (its record is
    # the source of truth, metrics.csv is rebuilt from it)
    record = run / "cells" / "l1" / "seed0" / "metrics.json"
    edited = json.loads(record.read_text())
    edited["metrics"]["psnr"] += 1.0
    record.write_text(json.dumps(edited))
    before = {name: data for name, data in before.items() if name != "metrics.csv"}
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))\n"
        "from bench.cli import main\n"
        "main(sys.argv[1:], prog_name='bench')\n"
    )
    done = subprocess.run([sys.executable, "-c", script, "report", str(run), "--samples", "3", "--display-size", "48",
                           "--device", "cpu"], capture_output=True, text=True, env={**os.environ, "COLORBENCH_OFFLINE": "1"})
    assert done.returncode == 1, done.stderr
    assert f"cannot write {run}/fig_" in done.stderr and "File too large" in done.stderr
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "metrics.csv"}
    assert after == before  # nothing new, nothing half-new, no temp files
