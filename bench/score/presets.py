"""Scoring protocols: the settings on which colorization papers' numbers differ, as one
dataclass, and the published protocols as named bundles of them (``--protocol``).

The same predictions give another FID under torchvision's Inception than under
pytorch-fid's, another colourfulness with absolute opponent channels than with signed ones,
another ΔCF as a difference of means than as a mean of differences. A number is only
comparable with another made under the same settings, so every run records its protocol
(config.json's ``scoring``) and the report names it. docs/protocols.md tables the presets,
each setting with the source file it is pinned to (``SOURCES``); ``protocol_table`` writes
that table and a test keeps the two equal.

Nothing here imports torch: ``bench protocols`` lists them without loading it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


def setting(default, choices: tuple, help: str, flag: str = "", min=None):
    return field(default=default, metadata={"choices": choices, "help": help, "flag": flag, "min": min})


# --val-geometry: how the val photos are brought to --size x --size (datasets/tensors.py
# prepares them, ``val_mode`` resolving bicubic to the dataset's own crop or squash).
GEOMETRIES = ("bicubic", "cv2-squash", "crop-bilinear")


@dataclass(frozen=True)
class ScoringProtocol:
    """How a run's val photos and predictions are turned into numbers. ``name`` is the
    preset it started from; ``changed`` the settings given on top of it (by option)."""

    name: str = "colorbench"
    cf_formula: str = setting("signed", ("signed", "absolute"),
                      "Colourfulness's opponent channels: Hasler & Süsstrunk's signed rg = R - G, yb = (R + G)/2 - B, "
                      "or the widely copied variant that takes their absolute values first.")
    delta_cf: str = setting("of-means", ("of-means", "per-image"),
                            "ΔCF: |mean CF of the predictions - mean CF of the photos|, or the mean over photos of "
                            "|CF(prediction) - CF(photo)|.")
    fid_features: str = setting("pytorch-fid", ("pytorch-fid", "torchvision"),
                                "FID/KID's Inception: pytorch-fid's TF-ported FID network, or torchvision's ImageNet "
                                "Inception v3 cut at its average pool (as DDColor's and CT2's custom_fid code).")
    fid_input: str = setting("[0,1]", ("[0,1]", "[-1,1]"),
                             "torchvision features only: the range the images are handed to that wrapper in, which "
                             "maps x -> x/2 + 1/2 and then re-normalises (DDColor passes [0, 1], CT2 [-1, 1]).")
    lpips_net: str = setting("alex", ("alex", "vgg"), "LPIPS's trunk network (lpips v0.1 linear layers).")
    ssim_window: str = setting("gaussian", ("gaussian", "uniform"),
                        "SSIM's window: Gaussian sigma 1.5, population covariance (Wang et al.), or skimage's "
                        "default 7x7 uniform window with sample covariance.")
    ssim_range: float = setting(1.0, (), "SSIM's data range on the [0, 1] scale (CT2 passes data_range=225 on 0-255: "
                                         "225/255).")
    psnr_crop_border: int = setting(0, (), "PSNR leaves out this many pixels at each edge of the image (basicsr's "
                                           "calculate_psnr crop_border; DDColor's config gives 4).", min=0)
    val_geometry: str = setting("bicubic", GEOMETRIES,
                                "How the val photos become --size x --size: bicubic (PIL, antialiased; the dataset's own "
                                "crop: shorter side then centre crop, or squash), cv2-squash (DDColor: cv2.resize "
                                "INTER_LINEAR to size x size, no antialias, aspect ratio ignored) or crop-bilinear (CT2: "
                                "centre crop to the shorter side, then torchvision Resize, PIL bilinear).")
    ground_truth: str = setting("photo", ("photo", "lab-float", "lab-uint8"),
                         "The ground truth: the prepared photo; or its Lab round trip (sRGB -> Lab -> sRGB) kept in "
                         "float (DDColor), or through float32 Lab, clipped and truncated to 8 bits by skimage itself "
                         "(CT2's astype(uint8)).")
    predictions_as: str = setting("float", ("float", "uint8", "uint8-trunc"),
                               "Predictions scored as float, or made 8-bit as a saved PNG holds them: rounded "
                               "(DDColor's tensor2img) or truncated (CT2's save_imgs: astype(uint8)); outside "
                               "colorizers' files are 8-bit already.")
    metrics: tuple[str, ...] = setting((), (), "The metrics scored; empty: every registered one (a preset's alone, "
                                                "not an option).", "metrics")
    changed: tuple[str, ...] = ()

    def with_settings(self, **values) -> "ScoringProtocol":
        """This protocol with some settings changed (None: left as they are); the changed ones are recorded."""
        given = {k: v for k, v in values.items() if v is not None and getattr(self, k) != v}
        for key, value in given.items():
            choices, least = SETTINGS[key].metadata["choices"], SETTINGS[key].metadata.get("min")
            if choices and value not in choices:
                raise ValueError(f"{flag(key)} {value!r}: expected one of {', '.join(choices)}")
            if least is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
                raise ValueError(f"{flag(key)} {value!r}: expected an integer of at least {least}")
        return dataclasses.replace(self, **given, changed=tuple(sorted({*self.changed, *given})))

    def scores(self, metric: str) -> bool:
        return not self.metrics or metric in self.metrics

    @property
    def label(self) -> str:
        """The protocol's name as a table says it: ``ddcolor`` or ``ddcolor + --lpips-net vgg``."""
        extra = " ".join(f"{flag(k)} {getattr(self, k)}" for k in self.changed)
        return f"{self.name} + {extra}" if extra else self.name

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["metrics"], d["changed"] = list(self.metrics), list(self.changed)
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "ScoringProtocol":
        """A recorded protocol; a run made before protocols were recorded was scored under colorbench's."""
        if not isinstance(d, dict):
            return PRESETS["colorbench"]
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        return cls(**values)

    def settings(self) -> dict:
        """Every setting but the bookkeeping: what two protocols must share to be comparable."""
        return {k: getattr(self, k) for k in SETTINGS}


SETTINGS = {f.name: f for f in dataclasses.fields(ScoringProtocol) if f.name not in ("name", "changed")}


def flag(key: str) -> str:
    return SETTINGS[key].metadata["flag"] or "--" + key.replace("_", "-")


PRESETS: dict[str, ScoringProtocol] = {
    "colorbench": ScoringProtocol(),
    "ddcolor": ScoringProtocol(
        "ddcolor", cf_formula="absolute", fid_features="torchvision", fid_input="[0,1]", psnr_crop_border=4,
        val_geometry="cv2-squash", ground_truth="lab-float", predictions_as="uint8"),
    "ct2": ScoringProtocol(
        "ct2", cf_formula="absolute", fid_features="torchvision", fid_input="[-1,1]", lpips_net="vgg", ssim_window="uniform",
        ssim_range=225 / 255, val_geometry="crop-bilinear", ground_truth="lab-uint8", predictions_as="uint8-trunc"),
    "zhang": ScoringProtocol("zhang", metrics=("auc", "auc_rebal")),
}


# Where each preset's settings come from: (file or text, what it shows). A setting the
# authors' code does not decide (they never compute the metric) says so.
SOURCES: dict[str, dict[str, str]] = {
    "colorbench": {"*": "Colorbench's own choices (bench/score/metrics.py)"},
    "ddcolor": {
        "cf_formula": "piddnad/DDColor basicsr/metrics/colorfulness.py: np.absolute(R - G), np.absolute(0.5 (R + G) - B) "
              "on the cv2 BGR uint8 image",
        "delta_cf": "DDColor reports CF per method (the mean over images, color_model.py nondist_validation); "
                    "ΔCF of those means. Its code scores CF on predictions alone (color_model.py line 304): the "
                    "photos' CF is taken from the val photos at the protocol's geometry, as for every preset",
        "fid_features": "basicsr/metrics/custom_fid.py INCEPTION_V3_FID: torchvision inception_v3 blocks to the "
                        "average pool, weights inception_v3_google",
        "fid_input": "color_model.py feeds tensor_lab2rgb's [0, 1] floats to a forward that assumes [-1, 1]",
        "lpips_net": "not computed by DDColor's code: the lpips package's default (alex)",
        "ssim": "not computed by DDColor's code: Colorbench's",
        "psnr_crop_border": "options/train/train_ddcolor.yml lines 150-153 (the PSNR block, commented out): "
                            "calculate_psnr with crop_border: 4, test_y_channel: false; basicsr/metrics/psnr_ssim.py "
                            "line 9 gives crop_border no default and lines 35-37 drop that border, so 4 is the one "
                            "value DDColor's code has",
        "val_geometry": "basicsr/data/lab_dataset.py lines 74-75: imfrombytes(float32=True) then cv2.resize(img_gt, "
                        "(gt_size, gt_size)) (INTER_LINEAR: bilinear, no antialias, aspect ratio ignored); val gt_size "
                        "256 (options/train/train_ddcolor.yml line 46)",
        "ground_truth": "color_model.py: gt_rgb = tensor_lab2rgb(cat(L, gt ab)), float",
        "predictions_as": "color_model.py: CF and PSNR on tensor2img (x * 255).round() uint8; its FID used the floats",
    },
    "ct2": {
        "cf_formula": "shuchenweng/CT2 segm/eval_colorfullness.py: np.absolute of rg and yb on cv2.imread's BGR",
        "delta_cf": "eval_colorfullness.py lines 26-39: the mean CF of a folder (cv2.imread of each file); ΔCF of "
                    "the two folders' means, the photos' CF from the val photos themselves (not their Lab round trip)",
        "fid_features": "segm/metrics.py INCEPTION_V3_FID, torchvision inception_v3 (inception_v3_google)",
        "fid_input": "metrics.py vip_dataset: ToTensor + Normalize((0.5,)*3, (0.5,)*3), i.e. [-1, 1]",
        "lpips_net": "metrics.py avg_lpips: lpips.LPIPS(net='vgg')",
        "ssim_window": "metrics.py avg_ssim_psnr: measure.compare_ssim(..., data_range=225, multichannel=True), skimage's "
                "defaults (7x7 uniform window, sample covariance)",
        "ssim_range": "metrics.py avg_ssim_psnr: data_range=225 on 0-255 images",
        "psnr_crop_border": "metrics.py lines 473-474: measure.compare_psnr(gt_rgb, predicted, 255), the whole image",
        "val_geometry": "segm/data/coco.py lines 139-145: CenterCrop(min(w, h)) then Resize(crop_size) on the PIL "
                        "image (torchvision: PIL bilinear), crop_size 256 (segm/config.yml line 172); README: "
                        "'center cropped and resized into 256 x 256'",
        "ground_truth": "metrics.py lines 162-168 and 464-467: rgb_to_lab = rgb2lab(uint8).astype(float32), then "
                        "lab_to_rgb = (255 * clip(lab2rgb)).astype(uint8), the '_convert' scores; computed by skimage "
                        "itself, so value for value",
        "predictions_as": "segm/engine.py lines 238-255: save_imgs writes lab_to_rgb(cat(L, ab_pred)) = (255 * "
                          "clip(lab2rgb)).astype(uint8), truncated, as the files metrics.py reads back",
    },
    "zhang": {
        "metrics": "Zhang, Isola & Efros 2016, §3.1 and Table 1: AuC of the per-pixel ab error over thresholds "
                   "0-150, plain and class-rebalanced; its other columns (VGG classification, AMT) are not "
                   "image metrics",
        "*": "the rest: Colorbench's (Zhang et al. report no PSNR, LPIPS, FID or CF)",
    },
}


def describe(value) -> str:
    if isinstance(value, tuple):
        return ", ".join(value) if value else "all"
    if isinstance(value, float):
        return "225/255" if abs(value - 225 / 255) < 1e-12 else f"{value:g}"
    return str(value)


def protocol_table() -> str:
    """docs/protocols.md's table: a row per setting, a column per preset."""
    names = list(PRESETS)
    lines = ["| setting | " + " | ".join(f"`{n}`" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for key in SETTINGS:
        cells = []
        for n in names:
            value = describe(getattr(PRESETS[n], key))
            cells.append(f"`{value}`" if getattr(PRESETS[n], key) == getattr(PRESETS["colorbench"], key) or n == "colorbench"
                         else f"**`{value}`**")
        lines.append(f"| `{flag(key)}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sources_list() -> str:
    """docs/protocols.md's list of where each preset's settings come from."""
    out = []
    for name, sources in SOURCES.items():
        out.append(f"- **`{name}`**")
        out += [f"  - `{flag(k) if k in SETTINGS else k}`: {text}" if k != "*" else f"  - {text}"
                for k, text in sources.items()]
    return "\n".join(out)
