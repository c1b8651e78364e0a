import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bench.score.metrics import METRICS, psnr, ssim
from conftest import real_photos


def _pairs():
    rng = np.random.default_rng(0)
    out = []
    for img in real_photos()[:4]:
        gt = img[:96, :128].astype(np.float64) / 255
        pred = np.clip(gt + rng.normal(0, 0.05, gt.shape) + [0.03, -0.02, 0.0], 0, 1)
        out.append((pred, gt))
    return out


def _batch(arrays):
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()


def test_psnr_and_ssim_equal_skimage_on_real_photos():
    pairs = _pairs()
    pred, gt = _batch([p for p, _ in pairs]), _batch([g for _, g in pairs])
    ours_psnr, ours_ssim = psnr(pred, gt), ssim(pred, gt)
    for i, (p, g) in enumerate(pairs):
        p32, g32 = pred[i].permute(1, 2, 0).double().numpy(), gt[i].permute(1, 2, 0).double().numpy()
        ref_psnr = peak_signal_noise_ratio(g32, p32, data_range=1)
        ref_ssim = structural_similarity(
            g32, p32, data_range=1, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert ours_psnr[i].item() == pytest.approx(ref_psnr, abs=1e-4)
        assert ours_ssim[i].item() == pytest.approx(ref_ssim, abs=1e-4)


def test_identical_images_score_perfectly_and_metrics_declare_direction():
    x = _batch([g for _, g in _pairs()])
    assert torch.isinf(psnr(x, x)).all()
    assert ssim(x, x).tolist() == pytest.approx([1.0] * len(x))
    assert METRICS["psnr"].higher_is_better and METRICS["ssim"].higher_is_better


# --- colour metrics against skimage and plain numpy ------------------------------------

def _np_colorfulness(rgb):
    """Hasler & Suesstrunk (2003) straight from the paper, on 0-255 values."""
    r, g, b = (rgb.astype(np.float64) * 255).transpose(2, 0, 1)
    rg, yb = r - g, 0.5 * (r + g) - b
    return np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())


def _np_auc(pred, gt):
    """Zhang et al.'s AuC the long way: a threshold at a time, trapezoid area / 150."""
    from skimage.color import rgb2lab

    err = np.linalg.norm(rgb2lab(pred)[..., 1:] - rgb2lab(gt)[..., 1:], axis=-1)
    thresholds = np.arange(0, 151)
    cdf = np.array([(err <= t).mean() for t in thresholds])
    return 100 * np.trapezoid(cdf, thresholds) / 150


def _gray(gt):
    from skimage.color import lab2rgb, rgb2lab

    lab = rgb2lab(gt)
    lab[..., 1:] = 0
    return lab2rgb(lab)


def _colour_pairs():
    """Real photos against predictions with the errors colorizers make: a hue shift, a
    washed-out copy, a gray one, noise."""
    rng = np.random.default_rng(1)
    out = []
    for i, img in enumerate(real_photos()[:5]):
        gt = img[:80, :112].astype(np.float64) / 255
        kind = i % 4
        if kind == 0:
            pred = gt[..., [1, 2, 0]]
        elif kind == 1:
            pred = 0.6 * gt + 0.4 * gt.mean(-1, keepdims=True)
        elif kind == 2:
            pred = _gray(gt)
        else:
            pred = np.clip(gt + rng.normal(0, 0.08, gt.shape), 0, 1)
        out.append((pred, gt))
    return out


def test_de00_equals_skimage_ciede2000_on_real_photos():
    from skimage.color import deltaE_ciede2000, rgb2lab

    from bench.score.metrics import de00

    pairs = _colour_pairs()
    ours = de00(_batch([p for p, _ in pairs]), _batch([g for _, g in pairs]))
    for i, (p, g) in enumerate(pairs):
        # float32 batch, as the metric sees it
        p32, g32 = (_batch([a])[0].permute(1, 2, 0).double().numpy() for a in (p, g))
        ref = deltaE_ciede2000(rgb2lab(g32), rgb2lab(p32)).mean()
        assert ours[i].item() == pytest.approx(ref, abs=1e-4)
    assert ours.min() > 0.5  # every pair really differs


def _hue_gap_from_pi(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """How far each pair's hue difference (in CIEDE2000's a-scaled coordinates) is from
    180 degrees, where the formula switches branch (the mean hue jumps by 180 degrees)."""
    c = 0.5 * (np.hypot(lab1[:, 1], lab1[:, 2]) + np.hypot(lab2[:, 1], lab2[:, 2]))
    scale = 1 + 0.5 * (1 - np.sqrt(c**7 / (c**7 + 25.0**7)))
    h1 = np.arctan2(lab1[:, 2], lab1[:, 1] * scale)
    h2 = np.arctan2(lab2[:, 2], lab2[:, 1] * scale)
    return np.abs(np.abs(np.mod(h2 - h1 + np.pi, 2 * np.pi) - np.pi) - np.pi)


def _rotate_ab(lab: np.ndarray, angle: float) -> np.ndarray:
    out = lab.copy()
    cos, sin = np.cos(angle), np.sin(angle)
    out[:, 1], out[:, 2] = cos * lab[:, 1] - sin * lab[:, 2], sin * lab[:, 1] + cos * lab[:, 2]
    return out


def test_ciede2000_matches_skimage_on_edge_colours():
    """Zero chroma, opposite hues and the 180-degree wrap are where ports go wrong.

    At exactly opposite hues CIEDE2000 is discontinuous: which side a pair lands on depends
    on the last bit of atan2, which differs between numpy's AVX2 and AVX-512 kernels and
    torch's. There, either one-sided limit is correct; everywhere else the port must agree
    with scikit-image to 1e-8.
    """
    from skimage.color import deltaE_ciede2000

    from bench.score.metrics import ciede2000

    rng = np.random.default_rng(2)
    lab1 = np.stack([rng.uniform(0, 100, 400), rng.uniform(-110, 110, 400), rng.uniform(-110, 110, 400)], -1)
    lab2 = lab1 + rng.normal(0, 20, lab1.shape)
    lab1[:50, 1:] = 0  # gray vs colour
    lab2[50:100, 1:] = -lab1[50:100, 1:]  # opposite hues: on the branch point
    lab2[100:120] = lab1[100:120]  # identical
    ref = deltaE_ciede2000(lab1, lab2)
    ours = ciede2000(torch.from_numpy(lab1.T[:, :, None]), torch.from_numpy(lab2.T[:, :, None]))[:, 0].numpy()

    chroma = np.hypot(lab1[:, 1], lab1[:, 2]) * np.hypot(lab2[:, 1], lab2[:, 2])
    branch = (chroma > 0) & (_hue_gap_from_pi(lab1, lab2) < 1e-9)
    assert branch[50:100].all() and branch.sum() < 60  # the planted pairs, and few others
    np.testing.assert_allclose(ours[~branch], ref[~branch], atol=1e-8)

    # Either side of the jump: skimage's value with lab2's hue turned a hair each way.
    sides = [deltaE_ciede2000(lab1[branch], _rotate_ab(lab2[branch], eps)) for eps in (-1e-7, 1e-7)]
    assert (np.abs(sides[0] - sides[1]) > 1e-3).any()  # the jump is real, so this test can fail
    near = np.minimum(np.abs(ours[branch] - sides[0]), np.abs(ours[branch] - sides[1]))
    assert near.max() < 1e-4


def test_colourfulness_and_delta_cf_equal_plain_numpy():
    from bench.score.metrics import cf, delta_cf

    pairs = _colour_pairs()
    pred, gt = _batch([p for p, _ in pairs]), _batch([g for _, g in pairs])
    ref_pred = [_np_colorfulness(p.permute(1, 2, 0).double().numpy()) for p in pred]
    ref_gt = [_np_colorfulness(g.permute(1, 2, 0).double().numpy()) for g in gt]
    assert cf(pred, gt).tolist() == pytest.approx(ref_pred, abs=1e-3)
    # difference of the means, not mean of the differences (see its docstring)
    assert delta_cf(cf(pred), cf(gt)).item() == pytest.approx(abs(np.mean(ref_pred) - np.mean(ref_gt)), abs=1e-3)
    assert cf(_batch([_gray(g) for _, g in pairs])).max() < 0.5  # gray has no colour


@pytest.mark.slow
def test_auc_equals_plain_numpy_and_gray_scores_as_zhang_reports():
    from bench.score.metrics import auc

    pairs = _colour_pairs()
    ours = auc(_batch([p for p, _ in pairs]), _batch([g for _, g in pairs]))
    for i, (p, g) in enumerate(pairs):
        p32, g32 = (_batch([a])[0].permute(1, 2, 0).double().numpy() for a in (p, g))
        assert ours[i].item() == pytest.approx(_np_auc(p32, g32), abs=1e-3)
    assert auc(_batch([pairs[0][1]]), _batch([pairs[0][1]])).item() == pytest.approx(100)
    # A gray prediction of whole natural photos: Zhang et al. report ~89% on ImageNet;
    # scikit-image's photos (one a plate of very colourful coffee) land a little lower.
    photos = [img.astype(np.float64) / 255 for img in real_photos()]
    gray = [auc(_batch([_gray(g)]), _batch([g])).item() for g in photos]
    assert 80 < np.mean(gray) < 93 and all(60 < v < 95 for v in gray)


def _np_auc_rebal(preds, gts):
    """Zhang et al.'s rebalanced AuC the long way, over all pixels of all images pooled:
    each pixel weighted by 1 / frequency of its true colour's 10-unit ab cell in the set."""
    from skimage.color import rgb2lab

    gt_ab = np.concatenate([rgb2lab(g)[..., 1:].reshape(-1, 2) for g in gts])
    err = np.concatenate([np.linalg.norm(rgb2lab(p)[..., 1:] - rgb2lab(g)[..., 1:], axis=-1).ravel() for p, g in zip(preds, gts)])
    cells = [tuple(c) for c in np.round(gt_ab / 10).astype(int)]
    freq = {c: n for c, n in zip(*np.unique(np.array(cells), axis=0, return_counts=True)) for c in [tuple(c)]}
    w = np.array([1.0 / freq[c] for c in cells])
    cdf = np.array([(w * (err <= t)).sum() / w.sum() for t in range(151)])
    return 100 * np.trapezoid(cdf, np.arange(151)) / 150


def test_auc_rebal_pools_pixels_weighted_by_the_rarity_of_their_colour():
    from bench.score.metrics import ab_cell_counts, ab_cell_weights, auc, auc_rebal, image_weight
    from colorbench_datasets.lab import rgb_to_lab

    pairs = _colour_pairs()
    preds = [_batch([p])[0].permute(1, 2, 0).double().numpy() for p, _ in pairs]
    gts = [_batch([g])[0].permute(1, 2, 0).double().numpy() for _, g in pairs]
    pred, gt = _batch(preds), _batch(gts)
    lab = rgb_to_lab(gt.double())
    weights = ab_cell_weights(ab_cell_counts(lab))
    per_image, share = auc_rebal(pred, gt, weights), image_weight(lab, weights)
    pooled = (per_image.double() * share).sum() / share.sum()
    assert pooled.item() == pytest.approx(_np_auc_rebal(preds, gts), abs=1e-3)
    assert share.mean().item() == pytest.approx(1.0)  # normalised: the mean pixel weight is 1
    assert auc_rebal(gt, gt, weights).tolist() == pytest.approx([100.0] * len(gt))
    # gray loses far more on the rebalanced curve (the paper: 89.1 plain, 58.0 rebalanced)
    grays = _batch([_gray(g) for g in gts])
    assert auc_rebal(grays, gt, weights).mean() < auc(grays, gt).mean() - 5


def test_lpips_feeds_the_network_images_in_minus_one_to_one():
    from bench.score.metrics import lpips

    seen = []

    def net(a, b):
        both = torch.cat([a.flatten(), b.flatten()])
        seen.append((both.min().item(), both.max().item()))
        return (a - b).abs().mean((1, 2, 3), keepdim=True)

    pred, gt = _batch([p for p, _ in _colour_pairs()]), _batch([g for _, g in _colour_pairs()])
    out = lpips(pred, gt, net)
    assert out.shape == (len(pred),)
    assert torch.allclose(out, 2 * (pred - gt).abs().mean((1, 2, 3)), atol=1e-6)
    lpips(torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8), net)  # black and white: the range's ends
    assert seen[-1] == (-1.0, 1.0)


# --- FID and KID against closed forms ----------------------------------------------------

def _gaussians(d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu1, mu2 = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    a, b = torch.randn(d, d, generator=g, dtype=torch.float64), torch.randn(d, d, generator=g, dtype=torch.float64)
    return mu1, a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64), mu2, b @ b.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def _sample(mu, sigma, n, seed):
    g = torch.Generator().manual_seed(seed)
    return mu + torch.randn(n, len(mu), generator=g, dtype=torch.float64) @ torch.linalg.cholesky(sigma).T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> torch.Tensor:
    """The reference FID is read against: ||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrt(S1 S2)), with
    scipy's matrix square root."""
    from scipy.linalg import sqrtm

    mu1, mu2, sigma1, sigma2 = (torch.as_tensor(t).double() for t in (mu1, mu2, sigma1, sigma2))
    root = torch.from_numpy(np.asarray(sqrtm((sigma1 @ sigma2).numpy())).real)
    return (mu1 - mu2).pow(2).sum() + sigma1.trace() + sigma2.trace() - 2 * root.trace()


def test_frechet_distance_closed_forms():
    from scipy.linalg import sqrtm

    mu1, s1, mu2, s2 = _gaussians()
    assert frechet_distance(mu1, s1, mu1, s1).item() == pytest.approx(0, abs=1e-9)
    # commuting (diagonal) covariances: ||mu1-mu2||^2 + sum (sqrt a - sqrt b)^2
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 0.25])
    m1, m2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, -1.0])
    closed = ((m1 - m2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    assert frechet_distance(m1, a.diag(), m2, b.diag()).item() == pytest.approx(closed.item(), rel=1e-9)
    # general covariances: the textbook formula with scipy's matrix square root
    ref = ((mu1 - mu2) ** 2).sum().item() + np.trace(s1.numpy() + s2.numpy() - 2 * sqrtm(s1.numpy() @ s2.numpy()).real)
    assert frechet_distance(mu1, s1, mu2, s2).item() == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize("n, d", [(40, 64), (500, 6)])  # fewer images than dims (the SVD path), and more
def test_fid_of_features_equals_frechet_distance_of_their_statistics(n, d):
    from bench.score.metrics import fid

    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, d, generator=g, dtype=torch.float64).exp()  # skewed, non-negative, like pool features
    y = 1.3 * torch.randn(n + 7, d, generator=g, dtype=torch.float64).exp() + 0.2
    ref = frechet_distance(x.mean(0), torch.cov(x.T), y.mean(0), torch.cov(y.T)).item()
    assert fid(x, y).item() == pytest.approx(ref, rel=1e-4)
    assert fid(x, x).item() == pytest.approx(0, abs=1e-3)


def test_fid_of_samples_approaches_the_gaussians_closed_form():
    from bench.score.metrics import fid

    mu1, s1, mu2, s2 = _gaussians()
    x, y = _sample(mu1, s1, 20000, 1), _sample(mu2, s2, 20000, 2)
    assert fid(x, y).item() == pytest.approx(frechet_distance(mu1, s1, mu2, s2).item(), rel=0.03)


def _cubic_kernel_mean(mu_a, s_a, mu_b, s_b):
    """E k(a, b) for independent a ~ N(mu_a, S_a), b ~ N(mu_b, S_b), k = (a.b/d + 1)^3,
    from the Gaussian moments: E[a.b], E[(a.b)^2] = tr(M_a M_b), E[(a.b)^3] = <T_a, T_b>."""
    d = len(mu_a)

    def moments(mu, s):
        m2 = s + torch.outer(mu, mu)
        t3 = (torch.einsum("i,j,k->ijk", mu, mu, mu) + torch.einsum("i,jk->ijk", mu, s)
              + torch.einsum("j,ik->ijk", mu, s) + torch.einsum("k,ij->ijk", mu, s))
        return m2, t3

    (ma, ta), (mb, tb) = moments(mu_a, s_a), moments(mu_b, s_b)
    e1, e2, e3 = mu_a @ mu_b, (ma * mb).sum(), (ta * tb).sum()
    return 1 + 3 * e1 / d + 3 * e2 / d**2 + e3 / d**3


@pytest.mark.slow
def test_kid_is_unbiased_for_the_gaussians_closed_form():
    from bench.score.metrics import kid

    mu1, s1, mu2, s2 = _gaussians(d=4, seed=3)
    mu2 = mu1 + 0.5 * (mu2 - mu1)
    closed = (_cubic_kernel_mean(mu1, s1, mu1, s1) + _cubic_kernel_mean(mu2, s2, mu2, s2)
              - 2 * _cubic_kernel_mean(mu1, s1, mu2, s2)).item()
    estimates = [kid(_sample(mu1, s1, 1500, 10 + k), _sample(mu2, s2, 1500, 20 + k), subset_size=1500).item() for k in range(4)]
    assert np.mean(estimates) == pytest.approx(closed, rel=0.1)
    # two samples of one distribution: MMD^2 = 0, and the estimate is unbiased, so ~0
    same = [kid(_sample(mu1, s1, 1000, 30 + k), _sample(mu1, s1, 1000, 40 + k)).item() for k in range(4)]
    assert abs(np.mean(same)) < 0.05 * closed


@pytest.mark.slow
def test_kid_equals_the_unbiased_estimator_written_as_loops_and_subsets_agree():
    from bench.score.metrics import kid

    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(9, 5, generator=g).double(), torch.randn(7, 5, generator=g).double() + 0.4
    k = lambda a, b: (a @ b / 5 + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    yy = sum(k(y[i], y[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    xy = sum(k(x[i], y[j]) for i in range(9) for j in range(7)) / (9 * 7)
    assert kid(x, y).item() == pytest.approx((xx + yy - 2 * xy).item(), rel=1e-5)
    # above subset_size: the mean over random subsets estimates the same quantity
    big_x, big_y = torch.randn(600, 5, generator=g).double(), torch.randn(600, 5, generator=g).double() + 0.4
    whole, subsets = kid(big_x, big_y).item(), kid(big_x, big_y, subset_size=200, subsets=50).item()
    assert subsets == pytest.approx(whole, rel=0.15)
    assert kid(big_x, big_y, subset_size=200, subsets=50).item() == subsets  # seeded: reproducible


def test_the_published_metrics_are_registered_with_their_directions_and_kinds():
    published = {  # name: (higher_is_better, kind, network)
        "psnr": (True, "per_image", None), "ssim": (True, "per_image", None),
        "lpips": (False, "per_image", "lpips-net"), "fid": (False, "set", "inception"),
        "kid": (False, "set", "inception"), "de00": (False, "per_image", None),
        # colourfulness is descriptive: closeness to the photos' own (delta_cf) is what ranks
        "cf": (None, "per_image", None), "delta_cf": (False, "derived", None),
        "auc": (True, "per_image", None), "auc_rebal": (True, "per_image", None),
    }
    for name, (higher, kind, network) in published.items():
        m = METRICS[name]
        assert (m.higher_is_better, m.kind, m.network) == (higher, kind, network), name
    assert METRICS["delta_cf"].needs == ("cf",) and "val_ab" in METRICS["auc_rebal"].needs
    # registry order is metrics.csv's order: the published ones keep theirs
    assert [n for n in METRICS if n in published] == list(published)
