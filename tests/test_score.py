"""`bench score`: outside colorizers' folders scored into a run folder that report, compare and
the gallery read as they are; bad folders refused by name, with nothing written."""
from __future__ import annotations

import hashlib
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage import color

from bench.cli import main
from bench.report.gallery import gallery_data
from bench.rundir.read import load_run
from colorbench_datasets.tensors import resize_and_crop
from conftest import TRAINED_RUN_ARGS, offline_env, write_photos

SIZE = ["--size", "32"]


def _lab_gray(rgb: np.ndarray) -> np.ndarray:
    """A greyscale copy as Colorbench's gray row makes it: the photo's L with a = b = 0."""
    lab = color.rgb2lab(rgb)
    lab[..., 1:] = 0
    return (np.clip(color.lab2rgb(lab), 0, 1) * 255).round().astype(np.uint8)


def _hsv_edit(rgb: np.ndarray, saturation: float = 1.0, hue: float = 0.0) -> np.ndarray:
    hsv = color.rgb2hsv(rgb)
    hsv[..., 1] *= saturation
    hsv[..., 0] = (hsv[..., 0] + hue) % 1
    return (color.hsv2rgb(hsv) * 255).round().astype(np.uint8)


def make_predictions(truth, root, names=("same", "grey", "half", "hue"), ext=".png"):
    """Folders of 'colourised' val photos made from the photos themselves."""
    out = {}
    for kind in names:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(truth.glob("*.jpg")):
            rgb = np.asarray(Image.open(path).convert("RGB"))
            img = {"same": lambda a: a, "grey": _lab_gray, "half": lambda a: _hsv_edit(a, saturation=0.5),
                   "hue": lambda a: _hsv_edit(a, hue=1 / 3)}[kind](rgb)
            im = Image.fromarray(img)
            if kind == "hue":  # a colorizer that outputs another resolution: aligned like the photo
                im = im.resize((im.width * 2, im.height * 2), Image.BICUBIC)
            im.save(folder / (path.stem + ext))
        out[kind] = folder
    return out


def snapshot(*folders) -> dict:
    return {str(p): hashlib.sha1(p.read_bytes()).hexdigest() for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    truth = root / "truth"
    write_photos(truth, 8, size=48, seed=5, prefix="ph")
    preds = make_predictions(truth, root / "preds")
    with offline_env(root):
        res = CliRunner().invoke(main, ["score", "--truth", str(truth), *[f"{k}={v}" for k, v in preds.items()],
                                        "--out", str(root / "run"), *SIZE, "-q"])
        assert res.exit_code == 0, res.output
        rep = CliRunner().invoke(main, ["report", str(root / "run")])
        assert rep.exit_code == 0, rep.output
    return root, truth, preds, res.output


def _means(run_dir) -> pd.DataFrame:
    m = pd.read_csv(run_dir / "metrics.csv")
    return m.groupby(["combination", "metric"])["value"].mean().unstack()


def test_the_photos_against_themselves_score_perfectly(scored):
    root, truth, preds, output = scored
    t = _means(root / "run")
    assert math.isinf(t.loc["same", "psnr"]) and t.loc["same", "de00"] == 0 and t.loc["same", "delta_cf"] == 0
    assert t.loc["same", "auc"] == pytest.approx(100) and t.loc["same", "ssim"] == pytest.approx(1)
    report = (root / "run" / "report.md").read_text()
    assert "| `same` | **∞** |" in report and "`same` is best at ∞ (no error at all)" in report  # PSNR inf
    # both are scored, and both said: probably not the folder meant
    assert "pixel for pixel the val photos themselves" in output and "have no colour" in output
    cfg = json.loads((root / "run" / "config.json").read_text())
    assert [e["name"] for e in cfg["external"]] == ["same", "grey", "half", "hue"]
    assert cfg["external"][0]["identical"] == 8 and cfg["external"][1]["greyscale"] == 8


def test_greyscale_copies_equal_the_gray_row(tmp_path):
    truth = tmp_path / "truth"
    write_photos(truth, 6, size=48, seed=6, prefix="g")
    # greyscale copies of the val crops (graying and resizing do not commute: a copy of the
    # full photo, resized, is another image)
    preds = {"grey": tmp_path / "p" / "grey"}
    preds["grey"].mkdir(parents=True)
    for path in sorted(truth.glob("*.jpg")):
        crop = resize_and_crop(Image.open(path).convert("RGB"), 32, 32)
        Image.fromarray(_lab_gray(crop)).save(preds["grey"] / (path.stem + ".png"))
    runs = {}
    for protocol in (["--predictions-as", "uint8"], []):
        out = tmp_path / f"run{len(runs)}"
        res = CliRunner().invoke(main, ["score", "--truth", str(truth), f"copies={preds['grey']}", "--out", str(out),
                                        *SIZE, "-q", *protocol])
        assert res.exit_code == 0, res.output
        runs[bool(protocol)] = _means(out)
    exact, floats = runs[True], runs[False]
    # gray rounded to 8 bits as the copies are: the same images, the same numbers
    for m in ("psnr", "ssim", "de00", "cf", "delta_cf", "auc", "auc_rebal"):
        assert exact.loc["copies", m] == pytest.approx(exact.loc["gray", m], rel=1e-6, abs=1e-6), m
    # gray in float: within what 8-bit rounding moves
    assert floats.loc["copies", "psnr"] == pytest.approx(floats.loc["gray", "psnr"], abs=0.05)
    assert floats.loc["copies", "de00"] == pytest.approx(floats.loc["gray", "de00"], abs=0.05)


def test_half_saturation_and_a_hue_shift_move_the_scores_as_they_must(scored):
    root, *_ = scored
    t = _means(root / "run")
    truth_cf = t.loc["ground-truth", "cf"]
    # half the saturation: about half the colourfulness, a ΔCF near half the photos' CF, and a
    # colour error far below gray's (it keeps every hue)
    assert 0.35 * truth_cf < t.loc["half", "cf"] < 0.65 * truth_cf
    assert t.loc["half", "de00"] < 0.7 * t.loc["gray", "de00"]
    # a hue shift keeps the amount of colour (ΔCF small) but gets every colour wrong
    assert t.loc["hue", "delta_cf"] < 0.5 * t.loc["half", "delta_cf"]
    assert t.loc["hue", "de00"] > t.loc["gray", "de00"] > t.loc["half", "de00"]
    assert t.loc["hue", "psnr"] < t.loc["half", "psnr"]
    pairs = pd.read_csv(root / "run" / "pairwise.csv")
    half_hue = pairs[(pairs.metric == "de00") & (pairs.a == "half") & (pairs.b == "hue")]
    assert len(half_hue) == 1 and half_hue["diff"].iloc[0] > 0 and half_hue["photos"].iloc[0] == 8


def test_a_scored_folder_is_read_by_report_compare_and_the_gallery(scored):
    root, *_ = scored
    run = load_run(root / "run")
    assert run.external_names == ["same", "grey", "half", "hue"]
    data, notes = gallery_data([run], root / "run")
    labels = [c["label"] for c in data["columns"]]
    assert {"half", "hue", "same"} <= set(labels)
    half = next(c for c in data["columns"] if c["label"] == "half")
    assert half["images"] and half["images"]["count"] == 8 and half["images"]["full"]
    assert (root / "run" / "external" / "hue" / "gallery" / "0.full.jpg").is_file()
    res = CliRunner().invoke(main, ["compare", str(root / "run"), "--metric", "de00"])
    assert res.exit_code == 0, res.output
    assert "half" in res.output and "hue" in res.output


@pytest.mark.parametrize("case, message", [
    ("missing", r"has no prediction for 1 of the 6 val photos: b002\.jpg; colourise them too, or pass --allow-missing"),
    ("extra", r"holds 1 image file\(s\) named like no val photo: stray\.png"),
    ("unreadable", r"1 prediction\(s\) cannot be scored: b001\.png: .*not a readable image"),
    ("twice", r"1 photo\(s\) have two prediction files each \(b001\.(jpg and b001\.png|png and b001\.jpg)\)"),
    ("aspect", r"b000\.png is 40x20 px, neither the val crop's 32x32 nor the aspect ratio of its photo b000\.jpg"),
    ("no-equals", r"expected NAME=FOLDER"),
    ("empty-name", r"empty NAME"),
    ("baseline-name", r"'gray' is a baseline row of every run"),
    ("no-folder", r"the folder does not exist"),
    ("out-inside", r"is inside the truth folder"),
])
def test_bad_predictions_each_get_their_message_and_nothing_is_written(tmp_path, case, message):
    truth = tmp_path / "truth"
    write_photos(truth, 6, size=48, seed=7, prefix="b")
    preds = make_predictions(truth, tmp_path / "p", names=("same",))["same"]
    if case == "missing":
        (preds / "b002.png").unlink()
    elif case == "extra":
        Image.new("RGB", (48, 48), "red").save(preds / "stray.png")
    elif case == "unreadable":
        (preds / "b001.png").write_bytes(b"not a png")
    elif case == "twice":
        Image.open(preds / "b001.png").save(preds / "b001.jpg")
    elif case == "aspect":
        Image.new("RGB", (40, 20), "red").save(preds / "b000.png")
    pair = {"no-equals": str(preds), "empty-name": f"={preds}", "baseline-name": f"gray={preds}",
            "no-folder": f"x={tmp_path / 'nowhere'}"}.get(case, f"mine={preds}")
    out = truth / "run" if case == "out-inside" else tmp_path / "run"
    before = snapshot(truth, preds)
    res = CliRunner().invoke(main, ["score", "--truth", str(truth), pair, "--out", str(out), *SIZE, "-q"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert re.search(message, res.output), res.output
    assert snapshot(truth, preds) == before  # nothing written into the truth or prediction folders
    assert not out.exists()


def test_allow_missing_scores_the_photos_both_have_and_every_table_says_so(tmp_path):
    truth = tmp_path / "truth"
    write_photos(truth, 8, size=48, seed=8, prefix="m")
    preds = make_predictions(truth, tmp_path / "p", names=("half", "hue"))
    (preds["half"] / "m003.png").unlink()
    (preds["half"] / "m005.png").unlink()
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["score", "--truth", str(truth), f"half={preds['half']}", f"hue={preds['hue']}",
                                    "--out", str(out), "--allow-missing", *SIZE, "-q"])
    assert res.exit_code == 0, res.output
    assert "scored on the 6 of 8 val photos it has a prediction for" in res.output
    notes = pd.read_csv(out / "metrics.csv", dtype={"note": str}).fillna({"note": ""})
    assert (notes[notes.combination == "half"]["note"].str.contains("6 of 8 val photos")).all()
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0
    report = (out / "report.md").read_text()
    assert "| `half (6/8 photos)` |" in report
    summary = pd.read_csv(out / "summary.csv")
    assert "half (6/8 photos)" in set(summary.row)
    pairs = pd.read_csv(out / "pairwise.csv")
    on_de00 = pairs[(pairs.metric == "de00") & pairs.a.str.startswith("half") & (pairs.b == "hue")]
    assert on_de00["photos"].tolist() == [6]  # tested on the photos both have
    per_image = pd.read_csv(out / "external" / "half" / "per_image.csv.gz")
    assert set(per_image.image) == {f"m{i:03d}.jpg" for i in range(8)} - {"m003.jpg", "m005.jpg"}


@pytest.mark.slow
def test_outside_rows_join_a_trained_run_and_are_tested_against_its_combinations(copied_run, tmp_path):
    photos, run_dir = copied_run  # conftest's session run (l1 and mse), copied
    preds = make_predictions(photos / "val", tmp_path / "p", names=("half", "hue"))
    res = CliRunner().invoke(main, ["score", "--run", str(run_dir), f"half={preds['half']}", f"hue={preds['hue']}", "-q"])
    assert res.exit_code == 0, res.output
    t = _means(run_dir)
    assert {"l1", "half", "hue", "gray", "ground-truth"} <= set(t.index)
    assert CliRunner().invoke(main, ["report", str(run_dir)]).exit_code == 0
    pairs = pd.read_csv(run_dir / "pairwise.csv")
    against = pairs[(pairs.metric == "de00") & (pairs.a == "l1") & pairs.b.isin(["half", "hue"])]
    assert sorted(against.b) == ["half", "hue"] and (against.photos == 6).all()
    # another protocol than the run's is refused: the rows would not compare
    res = CliRunner().invoke(main, ["score", "--run", str(run_dir), f"x={preds['half']}", "--protocol", "ddcolor", "-q"])
    assert res.exit_code != 0 and "was scored under the protocol colorbench, not ddcolor" in res.output
    # a name the run trained is refused
    res = CliRunner().invoke(main, ["score", "--run", str(run_dir), f"l1={preds['half']}", "-q"])
    assert res.exit_code != 0 and "'l1' is a combination this run trained" in res.output
    # rerunning `bench run` into the folder keeps the outside rows
    res = CliRunner().invoke(main, ["run", "--data", str(photos), "--out", str(run_dir), *TRAINED_RUN_ARGS])
    assert res.exit_code == 0, res.output
    assert {"half", "hue"} <= set(_means(run_dir).index)
    assert [e["name"] for e in json.loads((run_dir / "config.json").read_text())["external"]] == ["half", "hue"]


@pytest.mark.slow
def test_a_scored_folder_records_its_protocol_and_the_report_names_it(tmp_path):
    truth = tmp_path / "truth"
    write_photos(truth, 6, size=48, seed=9, prefix="q")
    preds = make_predictions(truth, tmp_path / "p", names=("half",))
    cf = {}
    for protocol in ("colorbench", "ddcolor", "ct2"):
        out = tmp_path / protocol
        res = CliRunner().invoke(main, ["score", "--truth", str(truth), f"half={preds['half']}", "--out", str(out),
                                        "--protocol", protocol, *SIZE, "-q"])
        assert res.exit_code == 0, res.output
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["protocol"]["scoring"]["name"] == protocol
        cf[protocol] = _means(out).loc["half", "cf"]
    assert cf["ddcolor"] != pytest.approx(cf["colorbench"], rel=1e-3)
    # two runs of different protocols in one report: said, at the top of the caveats
    res = CliRunner().invoke(main, ["report", str(tmp_path / "colorbench"), str(tmp_path / "ddcolor"),
                                    "--out", str(tmp_path / "both")])
    assert res.exit_code == 0, res.output
    report = (tmp_path / "both" / "report.md").read_text()
    assert "the runs were scored under different protocols" in report and "`ddcolor`" in report
