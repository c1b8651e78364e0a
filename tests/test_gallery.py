"""gallery.html in a real browser: Debian's chromium driven by Playwright, from the file system.

Without chromium the test is skipped on a user's machine and fails in CI (CI=1, as .ci/run
sets), where the browser is installed."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from bench.cli import main

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
HOSTILE = "x<img src=q onerror=window.pwned=1>&amp;"  # a photo file name that must stay text


def _chromium() -> str:
    if not Path(CHROMIUM).is_file():
        message = "the gallery's browser test needs Chromium: apt-get install chromium (Debian, Ubuntu)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    from conftest import write_photos

    root = tmp_path_factory.mktemp("gallery")
    photos = root / "photos"
    write_photos(photos / "train", 16, seed=1, prefix="tr")
    write_photos(photos / "val", 8, seed=2, prefix="va")
    wide = Image.open(photos / "val" / "va000.jpg").resize((72, 48))  # enlargements keep the photo's own size
    wide.save(photos / "val" / f"{HOSTILE}.jpg", quality=95)
    out = root / "run"
    res = CliRunner().invoke(main, ["run", "--data", str(photos), "--out", str(out), "--size", "32", "--width", "8",
                                    "--steps", "24", "--batch-size", "4", "--losses", "l1,gan", "--seeds", "0,1", "-q"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["report", str(out)])
    assert res.exit_code == 0, res.output
    return out


def _advantage(run: Path, a: str, b: str, metric: str) -> pd.Series:
    """Per photo: how much lower (better) ``a``'s mean over seeds is than ``b``'s, from the
    cells' per_image.csv.gz, as `bench compare` pairs them."""
    frames = [pd.read_csv(p) for p in run.glob("cells/*/seed*/per_image.csv.gz")]
    scores = pd.concat(frames)
    scores = scores[scores.metric == metric].groupby(["combination", "image"])["value"].mean()
    return -(scores[a] - scores[b])  # de00: lower is better


def _first_photo(page) -> str:
    return page.locator("#rows tr").first.locator("td.photo span").first.inner_text()


def test_gallery_sorts_by_a_paired_difference_and_enlarges(gallery, tmp_path):
    from playwright.sync_api import sync_playwright

    advantage = _advantage(gallery, "l1", "gan", "de00")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((gallery / "gallery.html").as_uri())
        assert page.locator("#rows tr").count() == len(advantage) == 9
        page.get_by_label("Sort by metric").select_option("de00")
        page.get_by_label("of", exact=True).select_option(label="l1 (mean of 2 seeds)")
        page.get_by_label("minus (paired difference)").select_option(label="gan (mean of 2 seeds)")
        assert _first_photo(page) == advantage.idxmax()  # where l1 beats gan most on de00
        shown = float(page.locator("#rows tr").first.locator(".key").inner_text())
        assert shown == pytest.approx(advantage.max(), rel=2e-3)
        page.get_by_label("Order").select_option("asc")
        assert _first_photo(page) == advantage.idxmin()  # ... and where least
        # a hostile file name is text, never markup
        assert page.evaluate("window.pwned") is None
        assert page.get_by_text(f"{HOSTILE}.jpg", exact=True).count() == 1
        # every column's image of the first row loaded; one enlarges at the photo's own resolution
        first = page.locator("#rows tr").first
        assert all(page.evaluate("(img) => img.naturalWidth", img) > 0 for img in first.locator("img").element_handles())
        page.get_by_label("Photo name contains").fill("x<img")
        assert page.locator("#rows tr").count() == 1
        page.get_by_role("button", name=f"Enlarge l1 (seed 0) of {HOSTILE}.jpg").click()
        viewer = page.locator("#viewer-img")
        page.wait_for_function("document.getElementById('viewer-img').complete")
        assert page.locator("#viewer").evaluate("d => d.open")
        assert (viewer.evaluate("i => i.naturalWidth"), viewer.evaluate("i => i.naturalHeight")) == (72, 48)
        page.keyboard.press("Escape")
        assert not page.locator("#viewer").evaluate("d => d.open")
        page.get_by_label("Photo name contains").fill("")
        page.screenshot(path=str(tmp_path / "gallery.png"))
        assert not errors, errors
        browser.close()


def test_gallery_works_with_the_keyboard_alone(gallery):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=ARGS)
        page = browser.new_page()
        page.goto((gallery / "gallery.html").as_uri())
        focused = []
        for _ in range(7):
            page.keyboard.press("Tab")
            focused.append(page.evaluate("document.activeElement.id"))
        assert focused == ["metric", "first", "second", "order", "name", "low", "high"]
        for control in focused:  # each is a real form element with a label
            assert page.locator(f"label[for={control}]").count() == 1
        status = page.locator("#status").inner_text()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Shift+Tab")  # back on "Order"
        assert page.evaluate("document.activeElement.id") == "order"
        page.keyboard.press("ArrowDown")  # a closed select changes with the arrow keys
        assert page.locator("#order").input_value() == "asc"
        assert page.locator("#status").inner_text() != status and "smallest first" in page.locator("#status").inner_text()
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")  # the first image button
        assert page.evaluate("document.activeElement.className") == "thumb"
        page.keyboard.press("Enter")
        assert page.locator("#viewer").evaluate("d => d.open")
        page.keyboard.press("Escape")
        assert not page.locator("#viewer").evaluate("d => d.open")
        browser.close()


def test_gallery_photos_caps_the_images_and_every_photo_keeps_its_scores(photo_dir, tmp_path):
    import json

    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--out", str(out), "--size", "32", "--width", "8",
                                    "--steps", "4", "--batch-size", "4", "--losses", "l1", "-q", "--gallery-photos", "2",
                                    "--no-tensorboard"])
    assert res.exit_code == 0, res.output
    cell = out / "cells" / "l1" / "seed0" / "gallery"
    assert sorted(p.name for p in cell.iterdir()) == ["0.full.jpg", "0.webp", "1.full.jpg", "1.webp"]
    assert len(list((out / "gallery" / "gray").iterdir())) == 4
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0
    page = (out / "gallery.html").read_text()
    data = json.loads(page.split('<script type="application/json" id="data">')[1].split("</script>")[0])
    assert len(data["photos"]) == 6
    column = next(c for c in data["columns"] if c["combination"] == "l1")
    assert column["images"]["count"] == 2 and all(v is not None for v in column["scores"]["psnr"])
