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


def setting(default, choices: tuple, help: str, flag: str = ""):
    return field(default=default, metadata={"choices": choices, "help": help, "flag": flag})


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
    ground_truth: str = setting("photo", ("photo", "lab-float", "lab-uint8"),
                         "The ground truth: the prepared photo; or its Lab round trip (sRGB -> Lab -> sRGB) kept in "
                         "float (DDColor), or clipped and truncated to 8 bits (CT2's astype(uint8)).")
    predictions_as: str = setting("float", ("float", "uint8"),
                               "Predictions scored as float, or rounded to 8 bits as a saved PNG holds them "
                               "(outside colorizers' files are 8-bit already).")
    metrics: tuple[str, ...] = setting((), (), "The metrics scored; empty: every registered one (a preset's alone, "
                                                "not an option).", "metrics")
    changed: tuple[str, ...] = ()

    def with_settings(self, **values) -> "ScoringProtocol":
        """This protocol with some settings changed (None: left as they are); the changed ones are recorded."""
        given = {k: v for k, v in values.items() if v is not None and getattr(self, k) != v}
        for key, value in given.items():
            choices = SETTINGS[key].metadata["choices"]
            if choices and value not in choices:
                raise ValueError(f"{flag(key)} {value!r}: expected one of {', '.join(choices)}")
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
        "ddcolor", cf_formula="absolute", fid_features="torchvision", fid_input="[0,1]", ground_truth="lab-float",
        predictions_as="uint8"),
    "ct2": ScoringProtocol(
        "ct2", cf_formula="absolute", fid_features="torchvision", fid_input="[-1,1]", lpips_net="vgg", ssim_window="uniform",
        ssim_range=225 / 255, ground_truth="lab-uint8", predictions_as="uint8"),
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
                    "ΔCF of those means",
        "fid_features": "basicsr/metrics/custom_fid.py INCEPTION_V3_FID: torchvision inception_v3 blocks to the "
                        "average pool, weights inception_v3_google",
        "fid_input": "color_model.py feeds tensor_lab2rgb's [0, 1] floats to a forward that assumes [-1, 1]",
        "lpips_net": "not computed by DDColor's code: the lpips package's default (alex)",
        "ssim": "not computed by DDColor's code: Colorbench's",
        "ground_truth": "color_model.py: gt_rgb = tensor_lab2rgb(cat(L, gt ab)), float",
        "predictions_as": "color_model.py: CF and PSNR on tensor2img (x * 255).round() uint8; its FID used the floats",
    },
    "ct2": {
        "cf_formula": "shuchenweng/CT2 segm/eval_colorfullness.py: np.absolute of rg and yb on cv2.imread's BGR",
        "delta_cf": "eval_colorfullness.py: the mean CF of a folder; ΔCF of the two folders' means",
        "fid_features": "segm/metrics.py INCEPTION_V3_FID, torchvision inception_v3 (inception_v3_google)",
        "fid_input": "metrics.py vip_dataset: ToTensor + Normalize((0.5,)*3, (0.5,)*3), i.e. [-1, 1]",
        "lpips_net": "metrics.py avg_lpips: lpips.LPIPS(net='vgg')",
        "ssim_window": "metrics.py avg_ssim_psnr: measure.compare_ssim(..., data_range=225, multichannel=True), skimage's "
                "defaults (7x7 uniform window, sample covariance)",
        "ssim_range": "metrics.py avg_ssim_psnr: data_range=225 on 0-255 images",
        "ground_truth": "metrics.py: rgb_to_lab then lab_to_rgb = (255 * clip(lab2rgb)).astype(uint8), the '_convert' scores",
        "predictions_as": "metrics.py: the predictions are PNG files read back (8 bits)",
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
