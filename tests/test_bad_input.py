"""One test per row of docs/robustness.md: every bad input gets a clear message or a
documented, safe handling."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bench.cli import main
from colorbench_datasets import DataError, load_data, load_rgb
from conftest import place_in_cache, real_photos, write_photos

TINY = ["--size", "32", "--width", "8", "--epochs", "1", "--batch-size", "4", "-q"]


def _photo(size=(60, 40)) -> Image.Image:
    return Image.fromarray(real_photos()[1]).resize(size)


def _folder_with(tmp_path, name: str, writer) -> tuple:
    """A train/val folder of good photos plus one special file in train/."""
    root = tmp_path / "d"
    write_photos(root / "train", 6)
    write_photos(root / "val", 3, seed=9)
    path = root / "train" / name
    writer(path)
    return root, path


# ---- images that are skipped, with the reason recorded --------------------------------

def _corrupt(path):
    good = io.BytesIO()
    _photo().save(good, "JPEG")
    data = bytearray(good.getvalue())
    data[200:] = os.urandom(len(data) - 200)
    path.write_bytes(bytes(data))


def _strip(path):
    # 1x400000 px, 1.6 KB: passes the decompression-bomb check (few source pixels) but its
    # short side resized to --size would make a 72x28,800,000 image.
    Image.new("RGB", (1, 400_000), (200, 30, 30)).save(path)


SKIPPED = {
    "corrupt jpeg": ("corrupt.jpg", _corrupt, "not a readable image"),
    "truncated jpeg": ("trunc.jpg", lambda p: (_photo().save(p, "JPEG"), p.write_bytes(p.read_bytes()[:300])), "not a readable image"),
    "zero-byte file": ("empty.png", lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "not an image with an image extension": ("notes.jpg", lambda p: p.write_text("hello"), "not a readable image"),
    "greyscale photo": ("grey.png", lambda p: _photo().convert("L").save(p), "greyscale"),
    "1x400000 strip (absurd aspect ratio)": ("strip.png", _strip, "aspect ratio 400000:1 is beyond 32:1"),
    "400000x1 strip": ("wide.png", lambda p: Image.new("RGB", (400_000, 1), "red").save(p), "aspect ratio 400000:1"),
}


@pytest.mark.parametrize("case", SKIPPED)
def test_unusable_images_are_skipped_and_listed(tmp_path, case):
    name, writer, reason = SKIPPED[case]
    root, _ = _folder_with(tmp_path, name, writer)
    data = load_data(root, size=32)
    assert len(data.train) == 6
    (skip,) = data.manifest["skipped"]
    assert skip["file"] == name and reason in skip["reason"]


# ---- images that are converted and used -----------------------------------------------

def _rgba(path):
    img = _photo().convert("RGBA")
    px = np.asarray(img).copy()
    px[:10, :10, 3] = 0  # a transparent corner
    Image.fromarray(px).save(path)


def _exif_rotated(path):
    img = _photo((60, 40))
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise on display
    img.save(path, "JPEG", exif=exif.tobytes())


def _sixteen_bit(path):
    import tifffile

    tifffile.imwrite(path, (np.asarray(_photo()).astype(np.uint16) * 257), photometric="rgb")


def _twelve_bit(path):
    """A 12-bit-per-channel colour scan stored in 16 bits (values 0..4095), as scanners and
    raw converters write them; Pillow alone keeps the high byte (0..15): nearly black."""
    import tifffile

    tifffile.imwrite(path, (np.asarray(_photo()).astype(np.uint32) * 4095 // 255).astype(np.uint16), photometric="rgb")


def _animated_gif(path):
    frames = [_photo().quantize(64), _photo().transpose(Image.FLIP_LEFT_RIGHT).quantize(64)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


USED = {
    "CMYK jpeg": ("cmyk.jpg", lambda p: _photo().convert("CMYK").save(p, "JPEG"), (60, 40)),
    "16-bit RGB tiff": ("deep.tif", _sixteen_bit, (60, 40)),
    "12-bit RGB tiff in 16 bits": ("scan.tif", _twelve_bit, (60, 40)),
    "palette png": ("pal.png", lambda p: _photo().quantize(64).save(p), (60, 40)),
    "RGBA png": ("alpha.png", _rgba, (60, 40)),
    "EXIF-rotated jpeg": ("rotated.jpg", _exif_rotated, (40, 60)),
    "animated gif (first frame)": ("anim.gif", _animated_gif, (60, 40)),
    "smaller than --size (upscaled)": ("tiny.png", lambda p: _photo((20, 12)).save(p), (20, 12)),
}


@pytest.mark.parametrize("case", USED)
def test_unusual_images_are_converted_and_used(tmp_path, case):
    name, writer, size = USED[case]
    root, path = _folder_with(tmp_path, name, writer)
    img = load_rgb(path)
    assert img.mode == "RGB" and img.size == size
    if case == "RGBA png":
        assert np.asarray(img)[:10, :10].min() == 255  # composited on white
    if case in ("12-bit RGB tiff in 16 bits", "16-bit RGB tiff"):  # the full 8-bit range, within rounding
        assert np.abs(np.asarray(img, dtype=int) - np.asarray(_photo(), dtype=int)).max() <= 1
    data = load_data(root, size=32)
    assert len(data.train) == 7 and data.manifest["skipped"] == []


def test_too_few_usable_images_fails_with_counts_and_reasons(tmp_path):
    root = tmp_path / "d"
    (root / "train").mkdir(parents=True)
    write_photos(root / "val", 2)
    for i in range(3):
        (root / "train" / f"bad{i}.jpg").write_text("not an image")
    with pytest.raises(DataError, match=r"no usable train images: 3 found, all skipped \(not a readable image"):
        load_data(root, size=32)


# ---- folders ---------------------------------------------------------------------------

def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"data folder .*nope does not exist"):
        load_data(tmp_path / "nope")


def test_empty_folder(tmp_path):
    (tmp_path / "e").mkdir()
    with pytest.raises(DataError, match=r"no photos .* found in .*e for the train split; check --data"):
        load_data(tmp_path / "e")


def test_a_run_that_fails_on_its_data_leaves_no_run_folder(tmp_path):
    (tmp_path / "e").mkdir()
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", "--data", str(tmp_path / "e"), "--out", str(out), "-q"])
    assert res.exit_code != 0 and "no photos" in res.output
    assert not out.exists()


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "photo.jpg"
    _photo().save(f)
    with pytest.raises(DataError, match="is a file, not a folder"):
        load_data(f)


def test_unreadable_folder(tmp_path, monkeypatch):
    # Tests run as root in CI, where chmod cannot take read access away: simulate it.
    write_photos(tmp_path / "locked", 3)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p).endswith("locked") else real_access(p, m))
    with pytest.raises(DataError, match="no permission to read folder .*locked; fix its permissions"):
        load_data(tmp_path / "locked")


def test_overlapping_train_and_val_warn_with_count(tmp_path, caplog):
    write_photos(tmp_path / "a", 8, seed=3)
    write_photos(tmp_path / "b", 4, seed=3)
    with caplog.at_level("WARNING", logger="colorbench"):
        load_data(tmp_path / "a", tmp_path / "b", size=32)
    assert "4 photo(s) appear in both" in caplog.text


def _latin1(folder, name: bytes, seed: int = 0):
    """A photo whose file name is not UTF-8 (e.g. Latin-1 ``caf\\xe9.jpg``)."""
    src = write_photos(folder / ".tmp", 1, seed=seed)[0]
    os.rename(src, os.fsencode(folder) + b"/" + name)
    os.rmdir(folder / ".tmp")


def test_file_names_that_are_not_utf8_are_used_and_shown_escaped(tmp_path):
    root = tmp_path / "d"
    write_photos(root / "train", 6)
    write_photos(root / "val", 3, seed=9)
    _latin1(root / "train", b"caf\xe9.jpg")
    _latin1(root / "val", b"cr\xe8me.jpg", seed=4)
    data = load_data(root, size=32)
    assert len(data.train) == 7 and len(data.val) == 4 and data.manifest["skipped"] == []
    assert "caf\\xe9.jpg" in data.train.names and "cr\\xe8me.jpg" in data.val.names
    json.dumps(data.manifest).encode()  # config.json can hold it
    # a folder split by file-name hash, and the duplicate check of --val-data, too
    _latin1(tmp_path / "flat", b"\xff\xfe.png")
    write_photos(tmp_path / "flat", 20)
    assert len(load_data(tmp_path / "flat", size=32).train) + len(load_data(tmp_path / "flat", size=32).val) == 21
    assert len(load_data(root / "train", root / "val", size=32).val) == 4


@pytest.mark.slow
def test_a_run_and_its_report_with_non_utf8_names(tmp_path):
    root = tmp_path / "d"
    write_photos(root / "train", 8)
    _latin1(root / "val", b"caf\xe9.jpg")
    write_photos(root / "val", 2, seed=9)
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["run", "--data", str(root), "--losses", "l1", "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["report", str(out), "--samples", "3", "--display-size", "32", "--device", "cpu"])
    assert res.exit_code == 0, res.output


def _with_timeout(fn, seconds: float = 60):
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it does not return."""
    import threading

    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "hung: a file was opened that never delivers data"
    return result["value"]


NOT_FILES = {
    "FIFO named pipe.jpg": ("pipe.jpg", lambda p: os.mkfifo(p), "a FIFO (named pipe), not a photo file"),
    "dangling symlink": ("gone.jpg", lambda p: os.symlink(p.parent / "nowhere.jpg", p), "a broken symbolic link"),
    "link to a device": ("zero.jpg", lambda p: os.symlink("/dev/zero", p), "a character device, not a photo file"),
}


@pytest.mark.parametrize("case", NOT_FILES)
@pytest.mark.parametrize("split", ["train", "val"])
def test_only_regular_files_are_ever_opened(tmp_path, case, split):
    name, make, reason = NOT_FILES[case]
    write_photos(tmp_path / "train", 6)
    write_photos(tmp_path / "val", 3, seed=9)
    make(tmp_path / split / name)
    # --val-data: every file is hashed for the duplicate check before it is loaded
    data = _with_timeout(lambda: load_data(tmp_path / "train", tmp_path / "val", size=32))
    assert len(data.train) == 6 and len(data.val) == 3
    (skip,) = data.manifest["skipped"]
    assert skip["file"] == name and reason in skip["reason"]


def test_colorize_names_an_input_that_is_not_a_file(tmp_path):
    from bench.colorize import ColorizeError, plan_jobs

    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(ColorizeError, match="pipe.jpg is not a regular file"):
        plan_jobs([tmp_path / "pipe.jpg"], tmp_path / "out")


# ---- options ---------------------------------------------------------------------------

OPTIONS = {
    "unknown loss": (["--losses", "l1,l3"], "unknown loss 'l3'"),
    "malformed spec: trailing +": (["--losses", "l1+"], "malformed term"),
    "malformed spec: missing weight": (["--losses", "*gan"], "no weight before it"),
    "malformed spec: zero weight": (["--losses", "0*l1"], "positive finite"),
    "malformed spec: negative weight": (["--losses", "-1*l1"], "positive finite"),
    "malformed spec: duplicated term": (["--losses", "l1+l1"], "appears twice"),
    "unknown generator": (["--generator", "vit"], "choose one of: resunet, unet"),
    "seeds garbage": (["--seeds", "0,x"], "not a comma-separated list of integers"),
    "impossible size": (["--size", "100"], "use one of the multiples of 32"),
    "batch larger than data": (["--batch-size", "64"], "larger than the 16 training images"),
    "cuda without a GPU": (["--device", "cuda"], "no CUDA GPU is visible"),
    "both --data and --dataset": (["--dataset", "sample"], "either --data DIR or --dataset NAME"),
}


@pytest.mark.parametrize("case", OPTIONS)
def test_bad_options_name_the_option_and_the_fix(photo_dir, tmp_path, case):
    if case == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    extra, message = OPTIONS[case]
    res = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--out", str(tmp_path / "r"), *TINY, *extra])
    assert res.exit_code != 0 and message in res.output, res.output


def test_val_data_without_data(tmp_path):
    res = CliRunner().invoke(main, ["run", "--val-data", str(tmp_path), "--out", str(tmp_path / "r"), *TINY])
    assert res.exit_code != 0 and "--val-data needs --data" in res.output


# ---- checkpoints and weights -------------------------------------------------------------

def test_truncated_checkpoint_is_refused_with_the_fix(photo_dir, tmp_path):
    out = tmp_path / "r"
    args = ["run", "--data", str(photo_dir), "--losses", "l1", "--out", str(out), *TINY]
    assert CliRunner().invoke(main, args).exit_code == 0
    cell = out / "cells" / "l1" / "seed0"
    (cell / "metrics.json").unlink()
    (cell / "checkpoint.pt").write_bytes((cell / "generator.pt").read_bytes()[:1000])
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0
    assert "cannot resume from" in res.output and "checkpoint.pt" in res.output and "Delete it" in res.output


def test_pickled_code_in_a_checkpoint_is_never_executed(photo_dir, tmp_path):
    out = tmp_path / "r"
    cell = out / "cells" / "l1" / "seed0"
    cell.mkdir(parents=True)
    torch.save({"G": os.system}, cell / "checkpoint.pt")  # a pickle that references code
    res = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--losses", "l1", "--out", str(out), *TINY])
    assert res.exit_code != 0 and "not a readable Colorbench checkpoint" in res.output


def test_truncated_weights_file_is_refused_with_the_fix(tmp_path):
    from models.pretrained import WeightsUnavailable, known_weights, load_state_dict

    place_in_cache("vgg16", b"PK\x03\x04 truncated")
    with pytest.raises(WeightsUnavailable, match="is unreadable.*delete it"):
        load_state_dict(known_weights()["vgg16"])


@pytest.mark.slow
def test_reusing_out_with_other_options_names_them(photo_dir, tmp_path):
    args = ["run", "--data", str(photo_dir), "--losses", "l1", "--out", str(tmp_path / "r"), *TINY]
    assert CliRunner().invoke(main, args).exit_code == 0
    res = CliRunner().invoke(main, [*args, "--width", "16"])
    assert res.exit_code != 0 and "--width: 8 -> 16" in res.output and "--overwrite" in res.output
    assert CliRunner().invoke(main, [*args, "--width", "16", "--overwrite"]).exit_code == 0


def test_a_run_from_before_disc_width_existed_is_read_as_a_64_wide_D(photo_dir, tmp_path):
    out = tmp_path / "r"
    args = ["run", "--data", str(photo_dir), "--losses", "l1", "--out", str(out), *TINY]
    assert CliRunner().invoke(main, args).exit_code == 0
    config = json.loads((out / "config.json").read_text())
    del config["options"]["disc_width"]  # as written before the option existed
    (out / "config.json").write_text(json.dumps(config))
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0 and "--disc-width: 64 (before the option existed) -> 8" in res.output
    assert CliRunner().invoke(main, [*args, "--disc-width", "64"]).exit_code == 0
