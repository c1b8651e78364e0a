"""Pretrained files: what `bench weights` lists and imports, how LPIPS/FID networks are built
from them, and what a run records with and without them. No test touches the network."""
import hashlib

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from bench.cli import main
from conftest import logged_warnings, place_in_cache
from models import metric_nets, pretrained
from bench.score import networks
from models.pretrained import WeightsFile, WeightsUnavailable, known_weights

TINY = ["--size", "32", "--width", "8", "--epochs", "1", "--batch-size", "4", "-q"]


def test_known_weights_are_the_files_torchvision_and_pytorch_fid_download():
    from pytorch_fid.inception import FID_WEIGHTS_URL
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    known = known_weights()
    assert set(known) == {"vgg16", "alexnet", "inception", "inception-torchvision"}
    assert known["alexnet"].url == AlexNet_Weights.IMAGENET1K_V1.url
    assert known["vgg16"].url == VGG16_Weights.IMAGENET1K_V1.url
    assert known["inception"].url == FID_WEIGHTS_URL
    assert [w.filename for w in known.values()] == [
        "vgg16-397923af.pth", "alexnet-owt-7be5be79.pth", "pt_inception-2015-12-05-6726825d.pth",
        "inception_v3_google-0cc3c7bd.pth",
    ]
    # the hash prefix torch.hub itself would check
    for w in known.values():
        assert w.hash_prefix == torch.hub.HASH_REGEX.search(w.filename).group(1)
    assert known["inception"].hash_prefix == "6726825d"


def test_bench_weights_lists_every_file_where_it_is_looked_for_and_its_url():
    res = CliRunner().invoke(main, ["weights"])
    assert res.exit_code == 0, res.output
    assert str(pretrained.checkpoint_dir()) in res.output
    for w in known_weights().values():
        line = next(l for l in res.output.splitlines() if w.filename in l)
        assert "MISSING" in line and w.key in line
        assert w.url in res.output
    assert "bench weights import" in res.output


def _fake(monkeypatch, tmp_path, key: str, state: dict, used_for: str = "a test") -> tuple[WeightsFile, object]:
    """A small weights file standing in for ``key``: saved, hashed, and named the way
    torchvision names files (``-<sha256 prefix>.pth``), with ``known_weights()`` pointing at it."""
    raw = tmp_path / f"{key}.raw"
    torch.save(state, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    entry = WeightsFile(key, f"{key}-fake-{digest[:8]}.pth", f"https://example.invalid/{key}-fake-{digest[:8]}.pth", used_for)
    path = tmp_path / entry.filename
    raw.rename(path)
    monkeypatch.setattr(pretrained, f"_{key}", lambda: entry)
    return entry, path


def test_import_checks_the_hash_and_puts_the_file_where_it_is_looked_for(monkeypatch, tmp_path):
    entry, path = _fake(monkeypatch, tmp_path, "alexnet", {"features.0.weight": torch.randn(4, 3, 3, 3)})
    res = CliRunner().invoke(main, ["weights", "import", str(path)])
    assert res.exit_code == 0, res.output
    dest = pretrained.checkpoint_dir() / entry.filename
    assert dest.read_bytes() == path.read_bytes() and "imported as" in res.output
    listing = CliRunner().invoke(main, ["weights"]).output
    assert "present" in next(l for l in listing.splitlines() if entry.filename in l)
    again = CliRunner().invoke(main, ["weights", "import", str(path)])
    assert again.exit_code == 0 and "already in place" in again.output
    # a download saved under another name is recognised by its hash
    renamed = tmp_path / "download (1).pth"
    renamed.write_bytes(path.read_bytes())
    dest.unlink()
    res = CliRunner().invoke(main, ["weights", "import", str(renamed)])
    assert res.exit_code == 0 and dest.read_bytes() == path.read_bytes()


def test_import_refuses_a_wrong_file_clearly_and_writes_nothing(tmp_path):
    truncated = tmp_path / "alexnet-owt-7be5be79.pth"
    truncated.write_bytes(b"half a download")
    stranger = tmp_path / "resnet50.pth"
    stranger.write_bytes(b"something else")
    res = CliRunner().invoke(main, ["weights", "import", str(truncated), str(stranger), str(tmp_path / "gone.pth")])
    assert res.exit_code != 0
    assert "refused" in res.output and "must start 7be5be79" in res.output
    assert known_weights()["alexnet"].url in res.output
    assert "not a file Colorbench uses" in res.output and "gone.pth: no such file" in res.output
    assert "3 of 3 file(s) refused" in res.output
    assert not pretrained.checkpoint_dir().exists() or not any(pretrained.checkpoint_dir().iterdir())


def test_offline_without_files_the_networks_are_missing_with_the_file_named():
    with logged_warnings("recorded as missing"):
        nets = networks.load_metric_nets("cpu")
    assert nets.lpips is None and nets.inception is None
    assert {m: w.filename for m, w in nets.missing.items()} == {
        "lpips": "alexnet-owt-7be5be79.pth",
        "fid": "pt_inception-2015-12-05-6726825d.pth",
        "kid": "pt_inception-2015-12-05-6726825d.pth",
    }
    with pytest.raises(WeightsUnavailable, match="bench weights import alexnet-owt-7be5be79.pth"):
        networks.load_metric_nets("cpu", strict=True)


def _spy_loads(monkeypatch, provide=None) -> list[str]:
    """Record the file of every pretrained.load_state_dict call; ``provide`` may answer a
    call instead of the real loader (key -> state dict)."""
    calls, real = [], pretrained.load_state_dict

    def spy(weights):
        calls.append(weights.filename)
        if provide and weights.key in provide:
            return provide[weights.key]
        return real(weights)

    monkeypatch.setattr(pretrained, "load_state_dict", spy)
    return calls


def test_lpips_is_built_from_the_alexnet_file_and_equals_the_lpips_package(monkeypatch, tmp_path):
    """The AlexNet file goes into lpips' trunk, the package's v0.1 linear layers on top: the
    same numbers as lpips.LPIPS(net='alex') with that AlexNet."""
    import lpips
    import torchvision

    alex = torchvision.models.alexnet()
    features = {k: v for k, v in alex.state_dict().items() if k.startswith("features.")}
    place_in_cache("alexnet", features)  # what a real (features-only here) file holds, at the real name
    calls = _spy_loads(monkeypatch)
    with logged_warnings("."):  # the inception file is still missing
        nets = networks.load_metric_nets("cpu")
    assert calls == ["alexnet-owt-7be5be79.pth", "pt_inception-2015-12-05-6726825d.pth"]

    monkeypatch.setattr(lpips.pretrained_networks.tv, "alexnet", lambda **_: alex)
    reference = lpips.LPIPS(net="alex", version="0.1", verbose=False)  # its own linear layers
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 3, 48, 48, generator=g), torch.rand(3, 3, 48, 48, generator=g)
    from bench.score.metrics import lpips as lpips_metric

    ours = lpips_metric(a, b, nets.lpips)
    assert torch.allclose(ours, reference(a * 2 - 1, b * 2 - 1).flatten(), atol=1e-6)
    assert ours.min() > 0 and lpips_metric(a, a, nets.lpips).abs().max() < 1e-6


def test_fid_network_is_pytorch_fids_inception_built_from_the_inception_file(monkeypatch):
    import torchvision

    # pytorch-fid's FID blocks keep torchvision's parameter names and shapes, so a random
    # torchvision Inception (1008 classes, no aux head) is a state dict in the file's format.
    state = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False).state_dict()
    calls = _spy_loads(monkeypatch, provide={"inception": state})
    with logged_warnings("."):  # AlexNet missing
        nets = networks.load_metric_nets("cpu")
    assert "pt_inception-2015-12-05-6726825d.pth" in calls and nets.inception is not None
    mixed_7c = nets.inception.net.blocks[3][2]  # pytorch-fid's last block before the pool
    assert torch.equal(mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])
    feats = nets.inception(torch.rand(2, 3, 32, 32))
    assert feats.shape == (2, 2048) and (feats >= 0).all()


def test_strict_weights_fails_before_training_naming_the_file(photo_dir, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--losses", "l1", "--out", str(out), "--strict-weights", *TINY])
    assert res.exit_code != 0
    assert "--strict-weights" in res.output and "alexnet-owt-7be5be79.pth" in res.output
    assert not (out / "cells").exists()


class TinyTrunk(nn.Module):
    """A small stand-in network whose weights come from the imported fake file."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.conv = nn.Conv2d(3, weight.shape[0], 3, bias=False)
        self.conv.weight.data.copy_(weight)

    def features(self, x):
        return torch.relu(self.conv(x))


class TinyLPIPS(TinyTrunk):
    def forward(self, a, b):
        return (self.features(a) - self.features(b)).pow(2).mean((1, 2, 3), keepdim=True)


class TinyInception(TinyTrunk):
    def forward(self, rgb):
        return self.features(rgb).mean((2, 3))


def test_with_weights_imported_a_run_computes_lpips_fid_and_kid(monkeypatch, photo_dir, tmp_path):
    alex_w, incep_w = torch.randn(4, 3, 3, 3), torch.randn(6, 3, 3, 3)
    alex, alex_path = _fake(monkeypatch, tmp_path, "alexnet", {"features.0.weight": alex_w})
    incep, incep_path = _fake(monkeypatch, tmp_path, "inception", {"conv.weight": incep_w})
    assert CliRunner().invoke(main, ["weights", "import", str(alex_path), str(incep_path)]).exit_code == 0

    built = []

    def tiny_lpips(trunk, linear):
        assert torch.equal(trunk["features.0.weight"], alex_w)  # the imported file's tensors
        assert "lin0.model.1.weight" in linear  # lpips' own v0.1 linear layers
        built.append("lpips")
        return TinyLPIPS(trunk["features.0.weight"])

    def tiny_inception(state):
        assert torch.equal(state["conv.weight"], incep_w)
        built.append("inception")
        return TinyInception(state["conv.weight"])

    monkeypatch.setattr(metric_nets, "lpips_alex", tiny_lpips)
    monkeypatch.setattr(metric_nets, "fid_inception", tiny_inception)
    calls = _spy_loads(monkeypatch)
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", "--data", str(photo_dir), "--losses", "l1,mse", "--out", str(out), *TINY])
    assert res.exit_code == 0, res.output
    assert sorted(calls) == sorted([alex.filename, incep.filename]) and sorted(built) == ["inception", "lpips"]  # once per run

    frame = pd.read_csv(out / "metrics.csv", dtype={"note": str}).fillna({"note": ""})
    models = frame[frame.combination != "ground-truth"]
    assert set(models.combination) == {"gray", "l1", "mse"}
    assert models["value"].notna().all() and len(models) == 3 * 10
    # per-image LPIPS and FID/KID bootstrap replicates are kept for the paired statistics
    per_image = pd.read_csv(out / "cells" / "l1" / "seed0" / "per_image.csv.gz")
    assert per_image[per_image.metric == "lpips"]["value"].notna().sum() == 6
    replicates = pd.read_csv(out / "cells" / "l1" / "seed0" / "set_replicates.csv.gz")
    assert set(replicates.metric) == {"fid", "kid"} and replicates["value"].notna().all()
    fid = models[models.metric == "fid"]
    assert (fid["note"] == "n=6").all() and (fid["value"] > 0).all()
    assert (models[models.metric == "kid"]["note"] == "n=6").all()
    assert (models[models.metric == "lpips"]["note"] == "").all()
