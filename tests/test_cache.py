"""The uint8 Lab memory-mapped split: same pixels (to quantisation), same training and scores."""
import pytest
import torch

from bench.score.scorer import Scorer
from bench.config.options import TrainSettings
from bench.train.loop import train_cell
from colorbench_datasets import resolve_sources
from colorbench_datasets.cache import MappedLabSplit, build_cache, dequantize_L, dequantize_ab, quantize_lab
from colorbench_datasets.lab import L_SCALE, AB_SCALE, rgb_to_lab
from colorbench_datasets.tensors import build_split
from losses import LossOptions, parse_losses


def test_quantisation_round_trip_is_within_half_a_step():
    rgb = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    lab = rgb_to_lab(rgb)
    q = quantize_lab(lab)
    assert q.dtype == torch.uint8
    L_err = (dequantize_L(q[:, :1]).double() - (lab[:, :1] / L_SCALE - 1)).abs().max()
    ab_err = (dequantize_ab(q[:, 1:]).double() - lab[:, 1:] / AB_SCALE).abs().max()
    # Half a quantisation step in the model's scale, plus float32 rounding.
    assert L_err <= (100 / 255 / 2) / L_SCALE + 1e-6
    assert ab_err <= 0.5 / AB_SCALE + 1e-6


@pytest.fixture
def splits(photo_dir, tmp_path):
    sources = resolve_sources(photo_dir)
    mem_train, _ = build_split(sources.train, 32, True)
    mem_val, _ = build_split(sources.val, 32, False)
    map_train, _ = build_cache(sources.train, 32, True, tmp_path / "cache")
    map_val, _ = build_cache(sources.val, 32, False, tmp_path / "cache")
    return mem_train, mem_val, map_train, map_val


def test_mapped_split_matches_the_in_memory_one(splits):
    mem_train, mem_val, map_train, map_val = splits
    assert isinstance(map_train, MappedLabSplit) and map_train.names == mem_train.names
    idx = torch.tensor([5, 0, 11, 5])  # unsorted, repeated: batch order must be kept
    assert (map_train.L[idx] - mem_train.L[idx]).abs().max() <= 1 / 255 + 1e-5
    assert (map_train.ab[idx] - mem_train.ab[idx]).abs().max() <= 0.5 / 110 + 1e-5
    assert torch.equal(map_val.rgb[0:6], mem_val.rgb)  # metrics compare against exact RGB
    assert map_train.L.shape == mem_train.L.shape


def test_training_and_scoring_run_on_a_mapped_split(splits):
    mem_train, mem_val, map_train, map_val = splits
    settings = TrainSettings(size=32, width=8, epochs=1, batch_size=4)
    (combo,) = parse_losses("l1")
    result = train_cell(combo, 0, map_train.to("cpu"), settings, LossOptions(), torch.device("cpu"), progress=False)
    assert len(result.log) == len(mem_train) // 4
    mapped, memory = (Scorer.for_split(v).generator_scores(result.generator).means for v in (map_val, mem_val))
    assert mapped.keys() == memory.keys()
    # Same model, inputs equal to within 8-bit Lab steps: scores agree closely, not bit for bit.
    for k in mapped:
        assert mapped[k] == pytest.approx(memory[k], rel=0.05, abs=0.02), k
    assert Scorer.for_split(map_val).gray_scores().means.keys() == memory.keys()


def test_an_interrupted_build_is_redone(photo_dir, tmp_path, monkeypatch):
    from colorbench_datasets import cache as cache_mod

    sources = resolve_sources(photo_dir)
    calls = []
    real = cache_mod.prepare_image

    def flaky(item, stored, resize):
        calls.append(item[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(item, stored, resize)

    monkeypatch.setattr(cache_mod, "prepare_image", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_cache(sources.val, 32, False, tmp_path / "cache", workers=1)
    monkeypatch.setattr(cache_mod, "prepare_image", real)
    split, _ = build_cache(sources.val, 32, False, tmp_path / "cache")
    assert len(split) == len(sources.val)


@pytest.mark.parametrize("damage", ["meta.json cut short", "lab.u8 cut short", "rgb.u8 missing"])
def test_a_damaged_cache_is_named_with_the_fix(photo_dir, tmp_path, damage):
    from colorbench_datasets import DataError

    sources = resolve_sources(photo_dir)
    build_cache(sources.val, 32, False, tmp_path / "cache")
    (where,) = (tmp_path / "cache").iterdir()
    if damage == "meta.json cut short":
        (where / "meta.json").write_text((where / "meta.json").read_text()[:30])
    elif damage == "lab.u8 cut short":
        (where / "lab.u8").write_bytes((where / "lab.u8").read_bytes()[:1000])
    else:
        (where / "rgb.u8").unlink()
    with pytest.raises(DataError, match=f"the uint8 Lab cache in {where} is damaged .*delete that folder to rebuild it"):
        build_cache(sources.val, 32, False, tmp_path / "cache")


def test_mapped_splits_keep_their_pixel_digests(splits):
    mem_train, _, map_train, _ = splits
    from colorbench_datasets.manifest import split_print

    assert map_train.digests == mem_train.digests  # same photos, same stored pixels
    assert split_print(map_train) == split_print(mem_train)
