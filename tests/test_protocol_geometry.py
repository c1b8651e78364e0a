"""The papers' val geometries, truths and formulas (issue #32, class 9), each against an
independent re-implementation of the authors' step written from its semantics, or the very
library call the authors' file makes (torchvision, skimage; OpenCV where installed)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bench.cli import main
from bench.config.options import IDENTITY_FIELDS, RunConfig
from bench.score import metrics as M
from bench.score.external import prepare
from bench.score.presets import GEOMETRIES, PRESETS, ScoringProtocol
from bench.score.protocol import val_preparation
from bench.score.scorer import Scorer, as_predictions
from colorbench_datasets import load_data, load_val_photos
from colorbench_datasets.tensors import (
    GEOMETRIES as DATASET_GEOMETRIES,
)
from colorbench_datasets.tensors import (
    crop_bilinear,
    prepare_photo,
    resize_and_crop,
    rgb_uint8_to_split,
    squash_linear,
    val_mode,
)


def _photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """A colourful photo-like image: smooth gradients plus noise, so resizing has work to do."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(w + h - 2, 1)], -1)
    arr = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def _cv2_linear_reference(arr: np.ndarray, size: int) -> np.ndarray:
    """OpenCV's INTER_LINEAR as its resize.cpp writes it, one output pixel at a time:
    fx = (dx + 0.5) * scale - 0.5, sx = floor(fx), fx -= sx; sx < 0 -> (0, fx 0);
    sx >= width - 1 -> (width - 1, fx 0); value = (1 - fx) src[sx] + fx src[sx + 1]."""
    h, w = arr.shape[:2]

    def tap(d, n_in):
        f = (d + 0.5) * (n_in / size) - 0.5
        s = int(np.floor(f))
        f -= s
        if s < 0:
            s, f = 0, 0.0
        if s >= n_in - 1:
            s, f = n_in - 1, 0.0
        return s, min(s + 1, n_in - 1), f

    out = np.zeros((size, size, 3))
    src = arr.astype(np.float64)
    for dy in range(size):
        y0, y1, fy = tap(dy, h)
        for dx in range(size):
            x0, x1, fx = tap(dx, w)
            top = (1 - fx) * src[y0, x0] + fx * src[y0, x1]
            bottom = (1 - fx) * src[y1, x0] + fx * src[y1, x1]
            out[dy, dx] = (1 - fy) * top + fy * bottom
    return out


# shrinks by 1.5 and 2.5 and an enlargement: every weight is a multiple of 1/16, exact in binary
@pytest.mark.parametrize("w,h", [(12, 12), (20, 12), (12, 20), (5, 20)])
def test_cv2_squash_is_opencvs_inter_linear(w, h):
    img = _photo(w, h)
    ref = _cv2_linear_reference(np.asarray(img), 8)
    np.testing.assert_array_equal(squash_linear(img, 8), np.clip(np.rint(ref), 0, 255).astype(np.uint8))
    # no antialias: a 2.5x shrink samples two source pixels per axis, it does not average five
    assert not np.array_equal(squash_linear(img, 8), np.asarray(img.resize((8, 8), Image.BILINEAR)))


def test_cv2_squash_equals_opencv_itself_where_installed():
    cv2 = pytest.importorskip("cv2")
    for (w, h), seed in (((97, 61), 1), ((61, 97), 2), ((384, 256), 3), ((40, 40), 4), ((23, 31), 5)):
        img = _photo(w, h, seed)
        # DDColor: imfrombytes(float32=True) is x / 255 in float32, then cv2.resize(img, (S, S))
        ref = cv2.resize(np.asarray(img).astype(np.float32) / 255.0, (32, 32)).astype(np.float64) * 255
        ours = squash_linear(img, 32).astype(np.float64)
        assert np.abs(ours - ref).max() <= 0.5 + 1e-3  # the 8-bit rounding of OpenCV's float, no more
        clear = np.abs(ref - np.floor(ref) - 0.5) > 1e-3  # away from exact half levels: the same 8 bits
        np.testing.assert_array_equal(ours[clear], np.rint(ref[clear]))


@pytest.mark.parametrize("w,h", [(97, 60), (60, 97), (101, 60), (100, 61), (64, 64), (33, 70)])
def test_crop_bilinear_is_ct2s_center_crop_then_resize(w, h):
    from torchvision import transforms

    img = _photo(w, h, w + h)
    # segm/data/coco.py, the val branch, on Image.open(...).convert("RGB")
    ref = transforms.Compose([transforms.CenterCrop(min(w, h)), transforms.Resize(32)])(img)
    np.testing.assert_array_equal(crop_bilinear(img, 32), np.asarray(ref))
    # the same from PIL alone: torchvision's offset is Python's round of half the margin
    side = min(w, h)
    top, left = int(round((h - side) / 2)), int(round((w - side) / 2))
    square = img.crop((left, top, left + side, top + side)).resize((32, 32), Image.BILINEAR)
    np.testing.assert_array_equal(crop_bilinear(img, 32), np.asarray(square))


def test_the_three_geometries_give_other_pixels_for_a_photo_not_at_the_size():
    img = _photo(96, 64, 7)
    crops = {g: prepare_photo(img, 32, val_mode("crop", g)) for g in GEOMETRIES}
    np.testing.assert_array_equal(crops["bicubic"], resize_and_crop(img, 32, 32))
    for a in GEOMETRIES:
        for b in GEOMETRIES:
            assert a == b or np.abs(crops[a].astype(int) - crops[b].astype(int)).max() > 0


def test_val_geometry_and_psnr_crop_border_are_protocol_settings_the_presets_pin():
    assert GEOMETRIES == DATASET_GEOMETRIES
    assert (PRESETS["colorbench"].val_geometry, PRESETS["colorbench"].psnr_crop_border) == ("bicubic", 0)
    assert (PRESETS["ddcolor"].val_geometry, PRESETS["ddcolor"].psnr_crop_border) == ("cv2-squash", 4)
    assert (PRESETS["ct2"].val_geometry, PRESETS["ct2"].predictions_as) == ("crop-bilinear", "uint8-trunc")
    assert val_mode("squash", "bicubic") == "squash" and val_mode("crop", "cv2-squash") == "cv2-squash"
    with pytest.raises(ValueError, match="--val-geometry 'nearest'"):
        val_mode("crop", "nearest")
    # recorded, changed one by one, identity options of `bench run`, options of `bench score`
    p = PRESETS["ct2"].with_settings(val_geometry="bicubic", psnr_crop_border=2)
    assert p.label == "ct2 + --psnr-crop-border 2 --val-geometry bicubic"
    assert ScoringProtocol.from_dict(p.to_dict()) == p
    old = {k: v for k, v in PRESETS["ct2"].to_dict().items() if k not in ("val_geometry", "psnr_crop_border")}
    assert ScoringProtocol.from_dict(old).val_geometry == "bicubic"  # a run recorded before: Colorbench's
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="--psnr-crop-border"):
            PRESETS["colorbench"].with_settings(psnr_crop_border=bad)
    assert RunConfig(protocol="ddcolor").scoring().val_geometry == "cv2-squash"
    assert RunConfig(protocol="ddcolor", psnr_crop_border=0).scoring().changed == ("psnr_crop_border",)
    assert {"val_geometry", "psnr_crop_border"} <= set(IDENTITY_FIELDS)
    for command in ("run", "score"):
        out = CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
        assert "--val-geometry" in out and "--psnr-crop-border" in out and "uint8-trunc" in out


def _folder(tmp_path, sizes):
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        _photo(w, h, 10 + i).save(tmp_path / f"p{i}.png")
    return tmp_path


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_val_photos_are_prepared_with_the_protocols_geometry(tmp_path, geometry):
    folder = _folder(tmp_path / "val", [(90, 60), (60, 90), (64, 64)])
    mode = val_mode("crop", geometry)
    data = load_val_photos(folder, 32, mode)
    fn = {"bicubic": lambda im: resize_and_crop(im, 32, 32), "cv2-squash": lambda im: squash_linear(im, 32),
          "crop-bilinear": lambda im: crop_bilinear(im, 32)}[geometry]
    for name, rgb in zip(data.val.names, data.val.rgb):
        np.testing.assert_array_equal(rgb.permute(1, 2, 0).numpy(), fn(Image.open(folder / name).convert("RGB")))
    assert data.manifest["val_resize"] == mode
    # a run: the val split takes the geometry, the train split stays the dataset's
    _folder(tmp_path / "run" / "train", [(90, 60)] * 3)
    _folder(tmp_path / "run" / "val", [(90, 60), (60, 90)])
    run = load_data(tmp_path / "run", size=32, val_geometry=geometry)
    bicubic = load_data(tmp_path / "run", size=32)
    assert torch.equal(run.train.rgb, bicubic.train.rgb) and run.manifest["val_resize"] == mode
    assert torch.equal(run.val.rgb, bicubic.val.rgb) == (geometry == "bicubic")
    assert "bicubic" in val_preparation("crop", 32) and "INTER_LINEAR" in val_preparation("cv2-squash", 32)
    assert "CenterCrop" in val_preparation("crop-bilinear", 32)


@pytest.mark.parametrize("mode", ["crop", "cv2-squash", "crop-bilinear"])
def test_an_outside_prediction_at_the_photos_size_is_prepared_like_the_photo(mode):
    photo = _photo(90, 60, 3)
    arr, how = prepare(photo, photo.size, 32, mode)
    np.testing.assert_array_equal(arr, prepare_photo(photo, 32, mode))
    assert how in ("squashed like the photo", "resized and cropped like the photo")
    if mode == "cv2-squash":  # any size is squashed, as the photos were
        assert prepare(_photo(50, 70), (90, 60), 32, mode)[0] is not None


def _basicsr_psnr(img, img2, crop_border):
    """basicsr/metrics/psnr_ssim.py calculate_psnr on HWC 0-255 images."""
    img, img2 = img.astype(np.float64), img2.astype(np.float64)
    if crop_border != 0:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border, ...]
    return 20.0 * np.log10(255.0 / np.sqrt(np.mean((img - img2) ** 2)))


def test_psnr_crop_border_equals_basicsrs_calculate_psnr():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (3, 24, 20, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    b[:, :4] = 255 - a[:, :4]  # a bad border: cropping it changes the number
    ta, tb = (torch.from_numpy(x).permute(0, 3, 1, 2).double() / 255 for x in (a, b))
    for border in (0, 4):
        ours = M.psnr(tb, ta, crop_border=border).double().numpy()
        np.testing.assert_allclose(ours, [_basicsr_psnr(x, y, border) for x, y in zip(b, a)], rtol=1e-6)
    assert (M.psnr(tb, ta, crop_border=4) > M.psnr(tb, ta) + 1).all()
    with pytest.raises(ValueError, match="--psnr-crop-border 10 leaves no pixel of 24x20"):
        M.psnr(tb, ta, crop_border=10)


def _cf_abs(rgb_uint8: np.ndarray) -> float:
    """CT2's eval_colorfullness image_colorfulness (channel order does not change it)."""
    r, g, b = (rgb_uint8[..., i].astype(float) for i in range(3))
    rg, yb = np.absolute(r - g), np.absolute(0.5 * (r + g) - b)
    return np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)


def test_ct2s_truth_is_skimages_and_its_photo_cf_is_the_photos():
    from skimage import color

    photos = [np.asarray(_photo(24, 24, s)) for s in range(5)]
    val = rgb_uint8_to_split(torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).contiguous(),
                             [f"p{i}" for i in range(5)])
    scorer = Scorer.for_split(val, None, batch_size=2, protocol=PRESETS["ct2"])
    truth = (torch.cat(list(scorer._targets())).double() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    ct2 = [(255 * np.clip(color.lab2rgb(color.rgb2lab(p).astype(np.float32)), 0, 1)).astype(np.uint8) for p in photos]
    np.testing.assert_array_equal(truth, np.stack(ct2))
    cf_photos, cf_truth = [_cf_abs(p) for p in photos], [_cf_abs(t) for t in ct2]
    assert scorer.ground_truth()["cf"] == pytest.approx(np.mean(cf_photos), rel=1e-6)
    assert abs(np.mean(cf_photos) - np.mean(cf_truth)) > 1e-3  # the round trip's CF is another number
    # a model's predictions are truncated as CT2's save_imgs writes them; 8-bit files are taken as they are
    x = torch.tensor([0.2, 0.5 + 0.9 / 255, 254.6 / 255])
    assert torch.equal(as_predictions(x, "uint8-trunc") * 255, torch.tensor([51.0, 128.0, 254.0]))
    assert torch.equal(as_predictions(x, "uint8") * 255, torch.tensor([51.0, 128.0, 255.0]))
    photo_scorer = Scorer.for_split(val, None, protocol=PRESETS["ct2"].with_settings(ground_truth="photo"))
    assert photo_scorer.rgb_scores(val.rgb).means["psnr"] == float("inf")
