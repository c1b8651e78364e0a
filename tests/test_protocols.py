"""Scoring protocols: every variant of a setting against an independent implementation, the
presets recorded and told apart, and docs/protocols.md kept equal to the presets."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.score import metrics as M
from bench.score.presets import PRESETS, ScoringProtocol, protocol_table, sources_list
from bench.score.scorer import Scorer, prepared_truth
from colorbench_datasets.tensors import resize_and_crop, resize_exact, rgb_uint8_to_split
from conftest import real_photos

ROOT = Path(__file__).resolve().parents[1]


def _cf_reference(rgb_uint8: np.ndarray, absolute: bool) -> float:
    """Hasler & Süsstrunk as the papers' numpy code writes it (HxWx3, 0-255)."""
    r, g, b = (rgb_uint8[..., i].astype(float) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    if absolute:  # DDColor's and CT2's image_colorfulness
        rg, yb = np.absolute(rg), np.absolute(yb)
    return np.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)


def _images():
    rng = np.random.default_rng(0)
    photos = [p[:48, :48] for p in real_photos()]
    return photos + [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(3)]


@pytest.mark.parametrize("absolute", [False, True])
def test_both_colourfulness_formulas_equal_the_numpy_code_on_random_and_real_photos(absolute):
    images = _images()
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).double() / 255
    ours = M.colorfulness(batch, absolute=absolute).double().numpy()
    ref = np.array([_cf_reference(im, absolute) for im in images])
    np.testing.assert_allclose(ours, ref, rtol=1e-5)
    # the two formulas differ exactly where a photo's opponent colours change sign
    if absolute:
        signed = M.colorfulness(batch).double().numpy()
        x = batch * 255
        rg, yb = x[:, 0] - x[:, 1], 0.5 * (x[:, 0] + x[:, 1]) - x[:, 2]
        one_sign = [bool(((r >= 0).all() or (r <= 0).all()) and ((y >= 0).all() or (y <= 0).all()))
                    for r, y in zip(rg, yb)]
        for same, a, s in zip(one_sign, ours, signed):
            assert (a == pytest.approx(s, rel=1e-9)) if same else abs(a - s) > 1e-3
        assert not all(one_sign) and sum(abs(ours - signed) > 1) >= 4


def test_both_delta_cf_aggregations_equal_their_definitions_and_their_resamples():
    rng = np.random.default_rng(1)
    pred, truth = rng.uniform(0, 60, 40), rng.uniform(0, 60, 40)
    means = M.delta_cf(torch.tensor(pred), torch.tensor(truth)).item()
    per_image = M.delta_cf(torch.tensor(pred), torch.tensor(truth), per_image=True).item()
    assert means == pytest.approx(abs(pred.mean() - truth.mean()), rel=1e-6)
    assert per_image == pytest.approx(np.abs(pred - truth).mean(), rel=1e-6)
    assert per_image > means  # a mean of distances is never below the distance of means
    metric = M.METRICS["delta_cf"]
    counts = rng.multinomial(40, np.full(40, 1 / 40), size=7).astype(float)
    for protocol in (PRESETS["colorbench"], PRESETS["colorbench"].with_settings(delta_cf="per-image")):
        fast = metric.resampled({"cf": pred[None]}, {"cf": truth}, counts, protocol)
        for b, row in enumerate(counts):  # each resample recomputed from its photos
            take = np.repeat(np.arange(40), row.astype(int))
            direct = metric.derive({"cf": torch.tensor(pred[take])}, {"cf": torch.tensor(truth[take])}, protocol)
            assert fast[b, 0] == pytest.approx(float(direct), rel=1e-6)


def test_the_crop_and_squash_geometries_equal_pil_and_torchvision():
    from torchvision.transforms import functional as TF
    from torchvision.transforms import InterpolationMode

    rng = np.random.default_rng(2)
    img = Image.fromarray(rng.integers(0, 256, (72, 96, 3), dtype=np.uint8))  # 96x72: a 4:3 photo
    # shorter side to 48 (a scale above 1/3: PIL's reducing gap does not apply), centre crop
    ref = TF.center_crop(TF.resize(img, 48, InterpolationMode.BICUBIC, antialias=True), [48, 48])
    np.testing.assert_array_equal(resize_and_crop(img, 48, 48), np.asarray(ref))
    np.testing.assert_array_equal(resize_exact(img, 40), np.asarray(img.resize((40, 40), Image.BICUBIC)))


@pytest.mark.slow
def test_the_torchvision_inception_path_equals_a_direct_torchvision_forward():
    import torchvision

    from models.metric_nets import torchvision_inception

    torch.manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)
    state = net.state_dict()
    rgb = torch.rand(2, 3, 64, 48)
    direct = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
    direct.load_state_dict(state)
    direct.fc = torch.nn.Identity()  # its output is then the average pool's 2048 features
    direct.eval()
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    for given, x in (("[0,1]", rgb), ("[-1,1]", rgb * 2 - 1)):  # DDColor hands [0, 1], CT2 [-1, 1]
        # the papers' INCEPTION_V3_FID.forward, step by step: resize, x/2 + 1/2, re-normalise
        y = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear") * 0.5 + 0.5
        y = y * (std / 0.5) + (mean - 0.5) / 0.5
        with torch.inference_mode():
            ours = torchvision_inception(state, given)(rgb)
            ref = direct(y)
        assert ours.shape == (2, 2048)
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    with torch.inference_mode():  # the two input ranges are different features
        assert not torch.allclose(torchvision_inception(state, "[0,1]")(rgb), torchvision_inception(state, "[-1,1]")(rgb))


def test_the_lab_round_trip_truths_equal_skimage():
    from skimage import color

    images = _images()
    rgb = np.stack(images)
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).double() / 255
    floats = prepared_truth(x, "lab-float").permute(0, 2, 3, 1).numpy()
    ref = np.stack([np.clip(color.lab2rgb(color.rgb2lab(im)), 0, 1) for im in images])
    np.testing.assert_allclose(floats, ref, atol=1e-6)
    # CT2: (255 * clip(lab2rgb(rgb2lab(img).astype(float32)))).astype(uint8). Truncation is a
    # discontinuity: a level the round trip lands a hair below drops by one, and whether it
    # does depends on float32's last bits, so the truth is skimage's own: equal value for value
    # (from float32 photos too, as the Scorer reads them)
    ct2 = np.stack([(255 * np.clip(color.lab2rgb(color.rgb2lab(im).astype(np.float32)), 0, 1)).astype(np.uint8)
                    for im in images])
    for given in (x, x.float()):
        ours = (prepared_truth(given, "lab-uint8").double() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(ours, ct2)
    assert (ct2.astype(int) - rgb.astype(int)).min() == -1  # the truncation CT2's truth carries: real
    assert prepared_truth(x, "photo") is x


def test_the_uniform_ssim_window_equals_skimage_defaults_with_ct2s_data_range():
    from skimage.metrics import structural_similarity

    images = _images()
    a = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).double() / 255
    b = (a + 0.05 * torch.randn(a.shape, generator=torch.Generator().manual_seed(3), dtype=a.dtype)).clamp(0, 1)
    ours = M.ssim(b, a, 225 / 255, window="uniform").double().numpy()
    ref = [structural_similarity(a[i].permute(1, 2, 0).numpy(), b[i].permute(1, 2, 0).numpy(), channel_axis=2,
                                 data_range=225 / 255) for i in range(len(a))]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    gaussian = M.ssim(b, a).double().numpy()
    assert np.abs(gaussian - ours).max() > 1e-3  # the two windows are different numbers


@pytest.mark.slow
def test_lpips_vgg_is_built_from_the_vgg16_file_and_equals_the_lpips_package(monkeypatch):
    import lpips
    import torchvision

    from models.metric_nets import lpips_net

    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None)
    monkeypatch.setattr(lpips.pretrained_networks.tv, "vgg16", lambda **_: vgg)
    reference = lpips.LPIPS(net="vgg", version="0.1", verbose=False).eval()  # its own linear layers, our trunk
    from models.pretrained import load_lpips_linear

    ours = lpips_net(vgg.state_dict(), load_lpips_linear("vgg"), "vgg")
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        torch.testing.assert_close(ours(x, y), reference(x, y))


def _scorer(protocol):
    crops = [p[:40, :40] for p in real_photos()] + [p[-40:, -40:] for p in real_photos()]
    val = rgb_uint8_to_split(torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous(), [f"p{i}" for i in range(len(crops))])
    return val, Scorer.for_split(val, None, protocol=protocol)


@pytest.mark.slow
def test_the_same_predictions_score_under_each_preset_exactly_as_its_formulas_say():
    val, _ = _scorer(PRESETS["colorbench"])
    rng = torch.Generator().manual_seed(4)
    ab = 0.6 * val.ab + 0.05 * torch.randn(val.ab.shape, generator=rng)
    from colorbench_datasets import model_to_rgb

    pred = model_to_rgb(val.L, ab)  # float32, as the Scorer makes them
    out = {}
    for name in ("colorbench", "ddcolor", "ct2"):
        protocol = PRESETS[name]
        _, scorer = _scorer(protocol)
        means = scorer.ab_scores(ab).means
        # 8 bits as DDColor's tensor2img rounds them, or as CT2's save_imgs truncates them
        shown = {"uint8": (pred * 255).round(), "uint8-trunc": (pred * 255).floor()}.get(
            protocol.predictions_as, pred * 255).double()
        # the truth as the Scorer prepares it (float32 in, as it reads the photos)
        truth = prepared_truth(val.rgb.float() / 255, protocol.ground_truth).double() * 255
        absolute = protocol.cf_formula == "absolute"
        cf_pred = [_cf_reference(p.permute(1, 2, 0).numpy(), absolute) for p in shown]
        # ΔCF reads the photos' own CF (CT2's eval_colorfullness on the photos' folder), never
        # the CF of a Lab round trip of them
        cf_photos = [_cf_reference(t.permute(1, 2, 0).numpy(), absolute) for t in val.rgb]
        assert means["cf"] == pytest.approx(np.mean(cf_pred), rel=1e-5)
        assert means["delta_cf"] == pytest.approx(abs(np.mean(cf_pred) - np.mean(cf_photos)), rel=1e-4, abs=1e-4)
        assert scorer.ground_truth()["cf"] == pytest.approx(np.mean(cf_photos), rel=1e-5)
        # PSNR as basicsr's calculate_psnr: 20 log10(255 / sqrt(mse)) without crop_border px at each edge
        b = protocol.psnr_crop_border
        inner = (slice(None), slice(None), slice(b, -b or None), slice(b, -b or None))
        mse = ((shown - truth)[inner] ** 2).flatten(1).mean(1).numpy()
        assert means["psnr"] == pytest.approx(np.mean(20 * np.log10(255 / np.sqrt(mse))), rel=1e-5)
        out[name] = means
    assert PRESETS["ddcolor"].psnr_crop_border == 4 and out["ddcolor"]["psnr"] != out["colorbench"]["psnr"]
    assert out["ddcolor"]["cf"] != pytest.approx(out["colorbench"]["cf"], rel=1e-3)
    assert out["ct2"]["ssim"] != pytest.approx(out["colorbench"]["ssim"], rel=1e-3)
    # the zhang preset scores AuC alone
    _, scorer = _scorer(PRESETS["zhang"])
    assert set(scorer.ab_scores(ab).means) == {"auc", "auc_rebal"}


def test_a_protocol_is_a_preset_with_settings_changed_and_reads_back_from_its_record():
    p = PRESETS["ct2"].with_settings(lpips_net="alex", cf_formula=None)
    assert p.label == "ct2 + --lpips-net alex" and p.changed == ("lpips_net",)
    assert ScoringProtocol.from_dict(p.to_dict()) == p
    assert ScoringProtocol.from_dict(None) == PRESETS["colorbench"]  # a run made before protocols were recorded
    with pytest.raises(ValueError, match="--cf-formula 'signd': expected one of signed, absolute"):
        PRESETS["colorbench"].with_settings(cf_formula="signd")


def test_docs_protocols_tables_every_preset_as_the_code_defines_it():
    doc = (ROOT / "docs" / "protocols.md").read_text()
    table = re.search(r"<!-- protocol-table[^>]*-->\n(.*?)\n<!-- /protocol-table -->", doc, re.S).group(1)
    assert table == protocol_table()
    assert sources_list() in doc
    for name in PRESETS:
        assert f"`{name}`" in table
