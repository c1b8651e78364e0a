"""How close is each paper's preset to that paper's own evaluation code? Runs the same
val photos through Colorbench (``load_val_photos`` at the preset's ``--val-geometry``, the
``Scorer`` under the preset) and through an independent re-implementation of the
authors' steps, and prints the largest per-photo differences.

    .venv/bin/python benchmarks/protocol_fidelity.py                     # ../shared/data/val
    .venv/bin/python benchmarks/protocol_fidelity.py --photos DIR --limit 40

The authors' steps, as their files write them (OpenCV for DDColor's, which the project does
not depend on: ``pip install opencv-python-headless`` first):

* **ddcolor** (piddnad/DDColor): basicsr/data/lab_dataset.py ``imfrombytes(float32=True)``
  (cv2.imdecode, /255) then ``cv2.resize(img, (256, 256))`` and BGR->RGB; skimage
  ``rgb2lab`` of the float32 image; color_model.py ``gt_rgb = tensor_lab2rgb(L, ab)`` and
  ``tensor2img`` ((x * 255).round() to uint8) for the truth and the prediction;
  psnr_ssim.py ``calculate_psnr(crop_border=4)``; colorfulness.py ``calculate_cf`` on the
  prediction, and on the photo at that geometry (DDColor's float32 resize x 255) for the
  truth. DDColor's code computes no SSIM.
* **ct2** (shuchenweng/CT2): segm/data/coco.py ``CenterCrop(min(w, h))`` then
  ``Resize(256)`` on ``Image.open(p).convert("RGB")``; metrics.py ``rgb_to_lab`` /
  ``lab_to_rgb`` (skimage, float32 Lab, ``astype(uint8)``) for the truth; engine.py
  ``save_imgs``: the prediction through the same ``lab_to_rgb`` (truncated to 8 bits; CT2
  then saves it under its photo's ``.JPEG`` name, a JPEG compression neither side
  reproduces); ``compare_psnr(gt_rgb, pred, 255)``, ``compare_ssim(gt_rgb, pred,
  data_range=225, multichannel=True)``; eval_colorfullness.py's CF on ``cv2.imread`` (BGR) of
  the predictions and of the photos.

Predictions: a randomly initialised U-Net (seed 0) on each pipeline's own L, so both
colourise the same way; only the steps around it differ. "truth px" compares the 8-bit
truths (Colorbench's ``lab-float`` truth rounded as ``tensor2img`` does); "photo px" the
photos at the geometry before any Lab round trip (for ddcolor: DDColor's float32 resize
rounded to 8 bits), also under Colorbench's own geometry (``bicubic``) for comparison.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def tensor_lab2rgb(labs: torch.Tensor) -> torch.Tensor:
    """DDColor's basicsr/utils/img_util.py tensor_lab2rgb (D65, 2 degrees), step by step."""
    xyz_ref_white = (0.95047, 1.0, 1.08883)
    rgb_from_xyz = np.array([[3.240481340, -0.96925495, 0.055646640], [-1.53715152, 1.875990000, -0.20404134],
                             [-0.49853633, 0.041555930, 1.057311070]])
    B, C, H, W = labs.shape
    arrs = labs.permute((0, 2, 3, 1)).contiguous()
    L, a, b = arrs[:, :, :, 0:1], arrs[:, :, :, 1:2], arrs[:, :, :, 2:]
    y = (L + 16.0) / 116.0
    x = (a / 500.0) + y
    z = y - (b / 200.0)
    z[z < 0] = 0
    xyz = torch.cat([x, y, z], dim=3)
    mask = xyz > 0.2068966
    out = xyz.clone()
    out[mask] = torch.pow(xyz[mask], 3.0)
    out[~mask] = (xyz[~mask] - 16.0 / 116.0) / 7.787
    for i in range(C):
        out[:, :, :, i] = out[:, :, :, i] * xyz_ref_white[i]
    rgb = torch.mm(out.view(-1, 3), torch.from_numpy(rgb_from_xyz).type_as(xyz)).view(B, H, W, C).permute(0, 3, 1, 2)
    mask = rgb > 0.0031308
    res = rgb.clone()
    res[mask] = 1.055 * torch.pow(rgb[mask], 1 / 2.4) - 0.055
    res[~mask] = rgb[~mask] * 12.92
    return res.clamp(0, 1)


def tensor2img(t: torch.Tensor) -> np.ndarray:
    """basicsr tensor2img: clamp, (x * 255).round(), uint8, HWC (RGB kept here)."""
    return (t.squeeze(0).float().clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def calculate_psnr(img, img2, crop_border):
    img, img2 = img.astype(np.float64), img2.astype(np.float64)
    if crop_border != 0:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border, ...]
    mse = np.mean((img - img2) ** 2)
    return float("inf") if mse == 0 else 20.0 * np.log10(255.0 / np.sqrt(mse))


def colorfulness_bgr(image) -> float:
    """DDColor's calculate_cf and CT2's image_colorfulness: (B, G, R) = cv2.split(image.astype('float'))."""
    B, G, R = (image[..., i].astype(float) for i in range(3))
    rg, yb = np.absolute(R - G), np.absolute(0.5 * (R + G) - B)
    return np.sqrt(np.std(rg) ** 2 + np.std(yb) ** 2) + 0.3 * np.sqrt(np.mean(rg) ** 2 + np.mean(yb) ** 2)


def predict(G, L: np.ndarray) -> np.ndarray:
    """The network's ab (float32, HxWx2) for Lab L (HxW, 0-100), on Colorbench's scale."""
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(L, dtype=np.float32))[None, None] / 50 - 1
        return (G(x)[0] * 110).permute(1, 2, 0).numpy().astype(np.float32)


def ddcolor_source(path: Path, G, size: int) -> dict:
    import cv2
    from skimage import color

    img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR).astype(np.float32) / 255.0
    img = cv2.cvtColor(cv2.resize(img, (size, size)), cv2.COLOR_BGR2RGB)
    lab = color.rgb2lab(img)
    L = torch.from_numpy(lab[..., :1].transpose(2, 0, 1).copy()).float()[None]
    ab = torch.from_numpy(lab[..., 1:].transpose(2, 0, 1).copy()).float()[None]
    gt = tensor2img(tensor_lab2rgb(torch.cat([L, ab], 1)))
    ab_pred = torch.from_numpy(predict(G, lab[..., 0]).transpose(2, 0, 1).copy())[None]
    sr = tensor2img(tensor_lab2rgb(torch.cat([L, ab_pred], 1)))
    return {"photo": np.rint(img * 255).astype(np.uint8), "truth": gt, "psnr": calculate_psnr(sr, gt, 4),
            "ssim": np.nan, "cf": colorfulness_bgr(sr[..., ::-1]), "cf_truth": colorfulness_bgr((img * 255)[..., ::-1])}


def ct2_source(path: Path, G, size: int) -> dict:
    from PIL import Image
    from skimage import color
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    from torchvision import transforms

    img = Image.open(path).convert("RGB")
    w, h = img.size
    gt = np.array(transforms.Compose([transforms.CenterCrop(min(w, h)), transforms.Resize(size)])(img)).astype(np.uint8)
    lab = color.rgb2lab(gt).astype(np.float32)  # rgb_to_lab
    gt_rgb = (255 * np.clip(color.lab2rgb(lab), 0, 1)).astype(np.uint8)  # lab_to_rgb
    fake_lab = np.concatenate([lab[..., :1], predict(G, lab[..., 0])], -1).astype(np.float32)
    fake = (255 * np.clip(color.lab2rgb(fake_lab), 0, 1)).astype(np.uint8)  # save_imgs (before its JPEG file)
    return {"photo": gt, "truth": gt_rgb, "psnr": peak_signal_noise_ratio(gt_rgb, fake, data_range=255),
            "ssim": structural_similarity(gt_rgb, fake, data_range=225, channel_axis=2),
            "cf": colorfulness_bgr(fake[..., ::-1]), "cf_truth": colorfulness_bgr(gt[..., ::-1])}


SOURCES = {"ddcolor": ddcolor_source, "ct2": ct2_source}


def measure(preset: str, folder: Path, names: list[str] | None, G, size: int) -> dict:
    from colorbench_datasets import load_val_photos
    from colorbench_datasets.tensors import val_mode

    from bench.score.presets import PRESETS
    from bench.score.scorer import Scorer, predict_ab

    protocol = PRESETS[preset]
    data = load_val_photos(folder, size, val_mode("crop", protocol.val_geometry), workers=2)
    bicubic = load_val_photos(folder, size, "crop", workers=2).val
    val = data.val
    keep = [i for i, n in enumerate(val.names) if names is None or n in names]
    val.L, val.ab, val.rgb, val.names = val.L[keep], val.ab[keep], val.rgb[keep], [val.names[i] for i in keep]
    scorer = Scorer.for_split(val, None, protocol=protocol)
    scores = scorer.ab_scores(predict_ab(G, val.L, 16))
    truth = torch.cat(list(scorer._targets()))
    ours_truth = (truth.double() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    worst = {k: 0.0 for k in ("photo_px", "photo_px_bicubic", "truth_px", "psnr", "ssim", "cf", "cf_truth")}
    differing = {"photo": 0, "truth": 0}
    values = 0
    bicubic_rows = {n: i for i, n in enumerate(bicubic.names)}
    for i, name in enumerate(val.names):
        src = SOURCES[preset](folder / name, G, size)
        photo = val.rgb[i].permute(1, 2, 0).numpy().astype(int)
        d_photo = np.abs(photo - src["photo"].astype(int))
        d_truth = np.abs(ours_truth[i].astype(int) - src["truth"].astype(int))
        old = bicubic.rgb[bicubic_rows[name]].permute(1, 2, 0).numpy().astype(int)
        worst["photo_px"] = max(worst["photo_px"], d_photo.max())
        worst["photo_px_bicubic"] = max(worst["photo_px_bicubic"], np.abs(old - src["photo"].astype(int)).max())
        worst["truth_px"] = max(worst["truth_px"], d_truth.max())
        differing["photo"] += int((d_photo > 0).sum())
        differing["truth"] += int((d_truth > 0).sum())
        values += d_truth.size
        for key in ("psnr", "ssim", "cf"):
            if not np.isnan(src[key]):
                worst[key] = max(worst[key], abs(float(scores.per_image[key][i]) - src[key]))
        worst["cf_truth"] = max(worst["cf_truth"], abs(float(scorer.truth["cf"][i]) - src["cf_truth"]))
    if preset == "ddcolor":
        worst["ssim"] = np.nan  # DDColor's code computes no SSIM
    return {"preset": preset, "photos": len(val.names), **worst,
            "photo_share": differing["photo"] / values, "truth_share": differing["truth"] / values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "val")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None, help="the first N photos only")
    parser.add_argument("--presets", default="ddcolor,ct2")
    args = parser.parse_args()
    torch.manual_seed(0)
    from colorbench_datasets import photo_items

    from models import build_generator

    G = build_generator("unet", args.size, 16).eval()
    names = None if args.limit is None else [n for n, _ in photo_items(args.photos)][: args.limit]
    rows = [measure(p, args.photos, names, G, args.size) for p in args.presets.split(",")]
    print("| preset | photos | photo px (max; share differing) | photo px under bicubic (max) | truth px (max; share "
          "differing) | PSNR (dB) | SSIM | CF of predictions | CF of the photos |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ssim = "n/a" if np.isnan(r["ssim"]) else f"{r['ssim']:.2g}"
        print(f"| `{r['preset']}` | {r['photos']} | {r['photo_px']:.0f}; {100 * r['photo_share']:.3g} % | "
              f"{r['photo_px_bicubic']:.0f} | {r['truth_px']:.0f}; {100 * r['truth_share']:.3g} % | {r['psnr']:.2g} | "
              f"{ssim} | {r['cf']:.2g} | {r['cf_truth']:.2g} |")


if __name__ == "__main__":
    main()
