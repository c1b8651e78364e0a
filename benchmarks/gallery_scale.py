"""The gallery at the tutorial's scale: 2,000 val photos.

    python benchmarks/gallery_scale.py images          # gray's and the photos' images, and one model's, alone
    python benchmarks/gallery_scale.py run             # `bench run`: seconds until the first cell trains, and in all
    python benchmarks/gallery_scale.py page            # gallery.html in headless Chromium, 2,000 and 10,000 rows
    python benchmarks/gallery_scale.py all --photos 2000
    git archive REV | tar -x -C /tmp/before && python benchmarks/gallery_scale.py images --tree /tmp/before  # an earlier tree

The 2,000 val photos are made under /tmp (never in the repository) from ../shared/data:
its 1,685 photos as symlinks and the rest as mirrored, re-saved copies (other pixels, so
they are not counted as copies); 48 flipped copies make a small train split.

``images`` times ``GalleryImages.write_baselines`` (grayscale input + ground truth) and
``write_model`` (an untrained quick-preset U-Net: the cost does not depend on its weights) on
the val split at --size, and sums the bytes written. ``run`` starts `bench run --steps 1
--losses l1` and notes when the cell's progress.json appears (training has started), and when
the command ends; with the default gallery and with --gallery-photos 0. ``page`` writes
gallery.html for synthetic rows (5 models + gray + truth, 8 metrics) and opens it from the
file system in headless Chromium: until the load event, until the status line is written, a
re-sort, and a scroll to the end.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def photo_folder(n: int, where: Path) -> Path:
    """``where`` with val/ (n photos) and train/ (48), made once."""
    from PIL import Image, ImageOps

    val, train = where / "val", where / "train"
    if val.is_dir() and len(list(val.iterdir())) == n:
        return where
    shutil.rmtree(where, ignore_errors=True)
    val.mkdir(parents=True)
    train.mkdir()
    photos = sorted((SHARED / "val").glob("*.jpg")) + sorted((SHARED / "train").glob("*.jpg"))
    for i in range(n):
        src = photos[i % len(photos)]
        if i < len(photos):
            (val / src.name).symlink_to(src)
        else:  # mirrored: other pixels, so not a copy of a photo already there
            ImageOps.mirror(Image.open(src).convert("RGB")).save(val / f"m{i // len(photos)}_{src.name}", quality=92)
    for src in photos[:48]:
        ImageOps.flip(Image.open(src).convert("RGB")).save(train / f"f_{src.name}", quality=92)
    return where


def folder_bytes(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def use_tree(tree: Path) -> None:
    """Import (and run) Colorbench from ``tree``: its own datasets/ as colorbench_datasets."""
    if tree != ROOT and not (tree / "colorbench_datasets").exists():
        (tree / "colorbench_datasets").symlink_to("datasets")
    sys.path.insert(0, str(tree))


def images(photos: Path, size: int) -> dict:
    import torch
    from colorbench_datasets import load_data

    from bench.score.images import GalleryImages
    from bench.score.scorer import Scorer
    from models import build_generator

    torch.set_num_threads(2)
    started = time.perf_counter()
    data = load_data(str(photos), None, None, size, workers=2)
    loaded = time.perf_counter() - started
    scorer = Scorer.for_split(data.val)
    gallery = GalleryImages(scorer, None, dict(data.sources.val))
    out = Path(tempfile.mkdtemp(prefix="gallery-images-"))
    result = {"photos": len(scorer), "size": size, "load_seconds": round(loaded, 1)}
    started = time.perf_counter()
    gallery.write_baselines(out / "gray", out / "ground-truth")
    result["baselines_seconds"] = round(time.perf_counter() - started, 1)
    G = build_generator("unet", size=size, width=32).eval()
    started = time.perf_counter()
    gallery.write_model(out / "model", G, size)
    result["model_seconds"] = round(time.perf_counter() - started, 1)
    for name in ("gray", "ground-truth", "model"):
        files, size_bytes = folder_bytes(out / name)
        result[f"{name}_files"], result[f"{name}_MB"] = files, round(size_bytes / 1e6, 1)
        for kind in ("webp", "full.jpg"):
            result[f"{name}_{kind}_MB"] = round(sum(p.stat().st_size for p in (out / name).glob(f"*.{kind}")) / 1e6, 1)
    shutil.rmtree(out)
    return result


def run(photos: Path, gallery_photos: str | None, tree: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix="gallery-run-")) / "run"
    args = [sys.executable, "-m", "bench", "run", "--data", str(photos), "--out", str(out), "--losses", "l1",
            "--seeds", "0", "--steps", "1", "-q"]
    if gallery_photos is not None:
        args += ["--gallery-photos", gallery_photos]
    progress = out / "cells" / "l1" / "seed0" / "progress.json"
    started = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.Popen(args, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = None
    while proc.poll() is None:
        if first is None and progress.is_file():
            first = time.perf_counter() - started
        time.sleep(0.05)
    total = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"bench run failed:\n{proc.stderr.read()[-3000:]}")
    files, size_bytes = folder_bytes(out / "gallery") if (out / "gallery").is_dir() else (0, 0)
    cell_files, cell_bytes = folder_bytes(out / "cells" / "l1" / "seed0" / "gallery") if (
        out / "cells" / "l1" / "seed0" / "gallery").is_dir() else (0, 0)
    shutil.rmtree(out.parent)
    return {"gallery_photos": gallery_photos or "all", "until_training_s": round(first, 1) if first else None,
            "total_s": round(total, 1), "baseline_files": files, "baseline_MB": round(size_bytes / 1e6, 1),
            "cell_files": cell_files, "cell_MB": round(cell_bytes / 1e6, 1)}


def synthetic_data(n: int, models: int = 5, size: int = 256, seed: int = 0) -> dict:
    """gallery.html's data for ``n`` photos: gray, ``models`` combinations, the truth; no images."""
    rng = random.Random(seed)
    metrics = ["psnr", "ssim", "de00", "lpips", "cf", "dcf", "colorfulness", "sat"]
    direction = {"psnr": "higher", "ssim": "higher", "de00": "lower", "lpips": "lower"}

    def scores() -> dict:
        return {m: [round(rng.uniform(0, 40), 4) if rng.random() > 0.01 else None for _ in range(n)] for m in metrics}

    names = [f"photo_{i:05d}.jpg" for i in range(n)]
    columns = [{"key": "gray", "label": "grayscale input", "combination": "gray", "seed": None, "kind": "gray",
                "images": None, "scores": scores()}]
    choices = [{"label": "gray", "seeds": 1, "column": 0}]
    for k in range(models):
        col = {"key": f"m{k}\u00000", "label": f"model{k}", "combination": f"model{k}", "seed": 0, "kind": "model",
               "images": None, "scores": scores()}
        columns.append(col)
        choices.append({"label": f"model{k}", "seeds": 1, "column": len(columns) - 1})
    columns.append({"key": "ground-truth", "label": "ground truth", "combination": "ground-truth", "seed": None,
                    "kind": "ground-truth", "images": None, "scores": scores()})
    return {"run": "synthetic", "size": size, "photos": names,
            "metrics": [{"name": m, "direction": direction.get(m, "descriptive"), "description": m} for m in metrics],
            "columns": columns, "choices": choices}


def page(rows: list[int]) -> list[dict]:
    from playwright.sync_api import sync_playwright

    from bench.report import gallery

    results = []
    folder = Path(tempfile.mkdtemp(prefix="gallery-page-"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for n in rows:
            path = folder / f"gallery-{n}.html"
            data = synthetic_data(n)
            if hasattr(gallery, "render_page"):
                path.write_text(gallery.render_page(data))
            else:  # a tree from before the pages: every choice carries its scores
                for c in data["choices"]:
                    c["scores"] = data["columns"][c.pop("column")]["scores"]
                path.write_text(gallery.PAGE.replace("__DATA__", gallery._json_for_script(data))
                                .replace("__TITLE__", "Colorbench gallery"))
            pg = browser.new_page(viewport={"width": 1400, "height": 900})
            pg.set_default_timeout(600_000)
            started = time.perf_counter()
            pg.goto(path.as_uri(), wait_until="load", timeout=600_000)
            loaded = time.perf_counter() - started
            pg.wait_for_function("document.getElementById('status').textContent.length > 0", timeout=600_000)
            ready = time.perf_counter() - started
            nodes = pg.evaluate("document.getElementsByTagName('*').length")
            started = time.perf_counter()
            pg.select_option("#order", "asc")
            pg.wait_for_function("document.getElementById('status').textContent.includes('smallest first')",
                                 timeout=600_000)
            pg.evaluate("() => new Promise(requestAnimationFrame)")
            resort = time.perf_counter() - started
            started = time.perf_counter()
            pg.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            pg.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
            scrolled = time.perf_counter() - started
            results.append({"rows": n, "html_MB": round(path.stat().st_size / 1e6, 1), "load_s": round(loaded, 2),
                            "ready_s": round(ready, 2), "dom_nodes": nodes, "resort_s": round(resort, 2),
                            "scroll_to_end_s": round(scrolled, 2)})
            pg.close()
        browser.close()
    shutil.rmtree(folder)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["images", "run", "page", "all"])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rows", default="2000,10000", help="page: the row counts to open")
    parser.add_argument("--where", default=f"/tmp/colorbench-val{os.getuid()}")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the Colorbench tree to measure (default: this one)")
    args = parser.parse_args()
    tree = args.tree.resolve()
    use_tree(tree)
    photos = None if args.what == "page" else photo_folder(args.photos, Path(f"{args.where}-{args.photos}"))
    if args.what in ("images", "all"):
        print(json.dumps({"images": images(photos, args.size)}), flush=True)
    if args.what in ("run", "all"):
        for gallery_photos in (None, "0"):
            print(json.dumps({"run": run(photos, gallery_photos, tree)}), flush=True)
    if args.what in ("page", "all"):
        for result in page([int(n) for n in args.rows.split(",")]):
            print(json.dumps({"page": result}), flush=True)


if __name__ == "__main__":
    main()
