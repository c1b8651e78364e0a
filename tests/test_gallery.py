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


@pytest.mark.slow
@pytest.mark.needs("playwright")
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


@pytest.mark.slow
@pytest.mark.needs("playwright")
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
        visited = []
        for _ in range(10):  # on past the filters and the pages' controls to the first image button
            page.keyboard.press("Tab")
            visited.append(page.evaluate("document.activeElement.id || document.activeElement.className"))
            if visited[-1] == "thumb":
                break
        # 9 photos are one page: "Previous" and "Next" are disabled, so Tab passes them by
        assert visited == ["name", "low", "high", "page", "per-page", "thumb"], visited
        for control in ("page", "per-page"):
            assert page.locator(f"label[for={control}]").count() == 1
        page.keyboard.press("Enter")
        assert page.locator("#viewer").evaluate("d => d.open")
        page.keyboard.press("Escape")
        assert not page.locator("#viewer").evaluate("d => d.open")
        browser.close()


@pytest.mark.slow  # a real training and a browser
@pytest.mark.needs("playwright")
def test_gallery_fills_the_windows_width(gallery, tmp_path):
    """The thumbnails share the window's width (the page used under half of 1400 px with
    32-px photos), stay square, and follow a resize without a horizontal scrollbar."""
    from playwright.sync_api import sync_playwright

    measure = """() => {
        const img = document.querySelector('#rows img').getBoundingClientRect();
        return {table: document.querySelector('#gallery').getBoundingClientRect().width,
                client: document.documentElement.clientWidth, scroll: document.documentElement.scrollWidth,
                img: [img.width, img.height]};
    }"""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((gallery / "gallery.html").as_uri())
        seen = {}
        for width in (1400, 1000):
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_function(f"document.documentElement.clientWidth <= {width}")
            page.wait_for_timeout(200)  # the resize's animation frame
            m = seen[width] = page.evaluate(measure)
            assert m["table"] >= 0.9 * m["client"], m  # the window's width, not a column at the left
            assert m["scroll"] <= m["client"], m  # and no wider: nothing to scroll sideways
            assert m["img"][0] == m["img"][1] > 112, m
        assert seen[1400]["img"][0] > seen[1000]["img"][0]
        page.screenshot(path=str(tmp_path / "wide.png"))
        assert not errors, errors
        browser.close()


@pytest.mark.slow
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


def _synthetic(n: int, models: int = 4, seed: int = 0) -> dict:
    """gallery.html's data for ``n`` photos (gray, ``models`` combinations, the truth), as
    bench.report.gallery.gallery_data makes it; 1 % of the values missing."""
    import random

    rng = random.Random(seed)
    metrics = {"psnr": "higher", "de00": "lower", "cf": "descriptive"}

    def scores() -> dict:
        return {m: [round(rng.uniform(0, 40), 4) if rng.random() > 0.01 else None for _ in range(n)] for m in metrics}

    columns = [{"key": "gray", "label": "grayscale input", "combination": "gray", "seed": None, "kind": "gray",
                "images": None, "scores": scores()}]
    choices = [{"label": "gray", "seeds": 1, "column": 0}]
    for k in range(models):
        columns.append({"key": f"m{k}\u00000", "label": f"model{k}", "combination": f"model{k}", "seed": 0,
                        "kind": "model", "images": None, "scores": scores()})
        choices.append({"label": f"model{k}", "seeds": 1, "column": k + 1})
    columns.append({"key": "ground-truth", "label": "ground truth", "combination": "ground-truth", "seed": None,
                    "kind": "ground-truth", "images": None, "scores": scores()})
    return {"run": "synthetic", "size": 32, "photos": [f"photo_{i:05d}.jpg" for i in range(n)],
            "metrics": [{"name": m, "direction": d, "description": m} for m, d in metrics.items()],
            "columns": columns, "choices": choices}


def _order(values: list, desc: bool = True) -> list[int]:
    """The photos' indices as the page sorts them: missing values last, ties by index."""
    present = sorted((i for i, v in enumerate(values) if v is not None), key=lambda i: (-values[i] if desc else values[i], i))
    return present + [i for i, v in enumerate(values) if v is None]


@pytest.mark.slow
@pytest.mark.needs("playwright")
def test_a_gallery_of_thousands_of_photos_opens_sorts_filters_and_pages(tmp_path):
    """5,000 photos: the page holds one page of rows (not 5,000), and its order, difference,
    filters and pages are those of the whole set. No timing is asserted: before the pages,
    2,000 photos took ~10 s to open and 10,000 over a minute (benchmarks/README.md)."""
    from playwright.sync_api import sync_playwright

    from bench.report.gallery import render_page

    n = 5000
    data = _synthetic(n)
    # the first photos of gray have images, as --gallery-photos 60 would leave them
    images = tmp_path / "gallery" / "gray"
    images.mkdir(parents=True)
    for i in range(60):
        Image.new("RGB", (32, 32), (i * 4, 100, 200 - i * 3)).save(images / f"{i}.webp")
    data["columns"][0]["images"] = {"dir": "gallery/gray", "count": 60, "full": False}
    page_file = tmp_path / "gallery.html"
    page_file.write_text(render_page(data))
    de00 = data["columns"][1]["scores"]["de00"]  # model0's: the default sort is de00 of the first model
    names = data["photos"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(120_000)  # a bound for a loaded machine, not a speed claim
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())
        status = page.locator("#status")
        assert status.inner_text().startswith(f"{n} of {n} photos, sorted by model0's de00, largest first")
        assert "showing 1–50 (page 1 of 100)" in status.inner_text()
        rows = page.locator("#rows tr")
        assert rows.count() == 50 and page.evaluate("document.getElementsByTagName('*').length") < 20_000
        expected = _order(de00)
        assert [rows.nth(k).get_attribute("data-index") for k in (0, 1, 49)] == [str(expected[k]) for k in (0, 1, 49)]
        assert _first_photo(page) == names[expected[0]]
        # the last page: the photos without a value, last
        page.get_by_label("Page", exact=True).fill("100")
        page.get_by_label("Page", exact=True).press("Enter")
        assert rows.last.get_attribute("data-index") == str(expected[-1]) and de00[expected[-1]] is None
        assert page.locator("#next").is_disabled() and not page.locator("#prev").is_disabled()
        page.locator("#prev").click()
        assert "page 99 of 100" in status.inner_text() and rows.first.get_attribute("data-index") == str(expected[4900])
        # smallest first; then the paired difference with gray (de00: lower is better, so gray − model0)
        page.get_by_label("Order").select_option("asc")
        assert "page 1 of 100" in status.inner_text() and _first_photo(page) == names[_order(de00, desc=False)[0]]
        page.get_by_label("minus (paired difference)").select_option(label="gray")
        gray = data["columns"][0]["scores"]["de00"]
        advantage = [None if a is None or b is None else b - a for a, b in zip(de00, gray)]
        assert _first_photo(page) == names[_order(advantage, desc=False)[0]]
        page.get_by_label("Order").select_option("desc")
        top = _order(advantage)[0]
        assert _first_photo(page) == names[top]
        assert float(rows.first.locator(".key").inner_text()) == pytest.approx(advantage[top], rel=2e-3)
        # filters: a name, then a range of the sort value, over all 5,000 photos
        page.get_by_label("Photo name contains").fill("photo_0123")
        assert rows.count() == 10 and status.inner_text().startswith(f"10 of {n} photos")
        page.get_by_label("Photo name contains").fill("")
        page.get_by_label("Sort value from").fill("0")
        page.get_by_label("to", exact=True).fill("5")
        inside = [i for i, v in enumerate(advantage) if v is not None and 0 <= v <= 5]
        assert status.inner_text().startswith(f"{len(inside)} of {n} photos")
        assert {int(rows.nth(k).get_attribute("data-index")) for k in range(rows.count())} <= set(inside)
        page.get_by_label("Sort value from").fill("")
        page.get_by_label("to", exact=True).fill("")
        page.get_by_label("Photos per page").select_option("200")
        assert rows.count() == 200 and "page 1 of 25" in status.inner_text()
        # the images of the photos that have them load (lazily: those on the screen)
        page.get_by_label("minus (paired difference)").select_option("")
        page.get_by_label("Sort by metric").select_option("psnr")
        page.get_by_label("of", exact=True).select_option(label="gray")
        page.get_by_label("Photo name contains").fill("photo_0000")  # photos 0..9, all with images
        page.wait_for_function("[...document.querySelectorAll('#rows img')].filter((i) => i.getBoundingClientRect().top "
                               "< innerHeight).every((i) => i.complete && i.naturalWidth)")
        assert page.locator("#rows img").count() == 10
        page.get_by_label("Photo name contains").fill("")
        page.screenshot(path=str(tmp_path / "thousands.png"))
        assert not errors, errors
        browser.close()
