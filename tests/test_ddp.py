"""One cell trained by two processes (torchrun, gloo on CPUs) means what one process
training it means: the same global batches, the same weights on every rank, rank 0 alone
writing a checkpoint either process count resumes, stops agreed, a clean exit every time.

The two-process runs are tests/ddp_worker.py under torchrun, launched once for the cells
(module fixture) and three times more for the exits."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
from torch import nn

import ddp_worker as worker
from bench.train.distributed import SINGLE, DistContext, any_rank, check_batch, check_device, from_env, mean_over_ranks, process_group, rank_noise, same_on_all_ranks, shard
from bench.train.loop import Interrupted

ROOT = Path(__file__).resolve().parents[1]


def torchrun(photos: Path, out: Path, mode: str) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(Path(worker.__file__)), str(photos), str(out), mode]
    env = dict(os.environ, OMP_NUM_THREADS="1", COLORBENCH_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)


def assert_clean(done: subprocess.CompletedProcess) -> None:
    # What a gloo group torn down without a barrier did in 2 of 5 runs (bench/train/distributed.py)
    assert "terminate called" not in done.stderr, done.stderr[-3000:]


@pytest.fixture(scope="module")
def split_and_photos(tmp_path_factory):
    from conftest import write_photo_folder
    from colorbench_datasets import load_data

    photos = write_photo_folder(tmp_path_factory.mktemp("ddp"))
    return load_data(photos, size=32, workers=1).train, photos


@pytest.fixture(scope="module")
def toy_generator():
    worker.register_toy()
    yield
    worker.unregister_toy()


@pytest.fixture(scope="module")
def single_stopped(split_and_photos, tmp_path_factory):
    """A one-process run of the GAN cell stopped before step STOP_AT: its checkpoint and log."""
    split, _ = split_and_photos
    path = tmp_path_factory.mktemp("single") / "checkpoint.pt"
    calls = iter(range(10**6))
    with pytest.raises(Interrupted):
        worker.train("full", split, checkpoint=path, stop=lambda: next(calls) == worker.STOP_AT)
    return path, torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def ranks(split_and_photos, single_stopped, tmp_path_factory):
    """Both ranks' results of ``ddp_worker.py all``, the folder it wrote in, and the launch."""
    _, photos = split_and_photos
    out = tmp_path_factory.mktemp("two")
    out.mkdir(exist_ok=True)
    shutil.copy(single_stopped[0], out / "single_stopped.pt")
    done = torchrun(photos, out, "all")
    assert done.returncode == 0, done.stderr[-5000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)], out, done


def params(state: dict) -> dict:
    """A state dict less BatchNorm's running statistics (per rank on CPUs, and no part of a step)."""
    return {k: v for k, v in state.items() if "running_" not in k and "num_batches_tracked" not in k}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def rows(log: list[dict]) -> list[dict]:
    """A log without its wall times, NaN (no D) made comparable."""
    return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items() if k != "seconds"}
            for r in log]


# ---------------------------------------------------------------- helpers, no processes

@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_are_disjoint_contiguous_and_cover_the_global_batch(world):
    batch = 12
    parts = [shard(batch, DistContext(r, world, r)) for r in range(world)]
    taken = [i for p in parts for i in range(batch)[p]]
    assert taken == list(range(batch))  # in rank order, each index once
    assert {len(range(batch)[p]) for p in parts} == {batch // world}


def test_an_uneven_batch_is_refused_naming_the_option_and_the_fix(split_and_photos):
    with pytest.raises(ValueError, match=r"--batch-size 6 does not split evenly over 4 processes.*--batch-size 4 or 8"):
        check_batch(6, DistContext(0, 4, 0))
    split, _ = split_and_photos
    # refused before any collective: no process group is needed to see it
    with pytest.raises(ValueError, match="--batch-size 3 does not split evenly over 2"):
        worker.train("full", split, DistContext(1, 2, 1), batch_size=3)


def test_one_process_needs_no_group_and_its_collectives_are_identities(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert from_env() == SINGLE and SINGLE.is_main
    with process_group(torch.device("cpu")) as ctx:
        assert ctx == SINGLE and not torch_dist.is_initialized()
    values = torch.tensor([1.0, float("nan")])
    assert mean_over_ranks(values, SINGLE) is values
    assert any_rank(True, SINGLE) and not any_rank(False, SINGLE) and same_on_all_ranks(3, SINGLE)
    monkeypatch.setenv("RANK", "3"), monkeypatch.setenv("WORLD_SIZE", "4"), monkeypatch.setenv("LOCAL_RANK", "1")
    assert from_env() == DistContext(3, 4, 1) and not from_env().is_main


def test_each_gpu_process_takes_its_local_rank_s_gpu():
    assert check_device(torch.device("cuda"), DistContext(3, 4, 1)) == torch.device("cuda", 1)
    assert check_device(torch.device("cpu"), DistContext(3, 4, 1)) == torch.device("cpu")
    with pytest.raises(ValueError, match="--device cuda:0 would put every one of the 4 processes on one GPU"):
        check_device(torch.device("cuda", 0), DistContext(3, 4, 1))


def test_ranks_draw_their_own_dropout_masks_and_keep_one_shared_rng_state():
    drop, x = nn.Dropout(0.5), torch.ones(64)
    masks, states = [], []
    for rank in (0, 1):
        torch.manual_seed(0)
        with rank_noise(DistContext(rank, 2, rank), torch.device("cpu")):
            masks.append(drop(x))
        states.append(torch.get_rng_state())
    assert not torch.equal(*masks)  # one process never gives two photos one mask
    assert torch.equal(*states)  # what rank 0's checkpoint saves is every rank's state
    torch.manual_seed(0)
    with rank_noise(SINGLE, torch.device("cpu")):
        alone = drop(x)
    torch.manual_seed(0)
    assert torch.equal(alone, drop(x))  # one process: untouched


class Calls:
    """torch.distributed's group calls, recorded instead of made."""

    def __init__(self, monkeypatch):
        import bench.train.distributed as module

        self.order = []
        for name in ("init_process_group", "new_group", "barrier", "destroy_process_group"):
            monkeypatch.setattr(module.dist, name, lambda *a, _name=name, **k: self.order.append(_name))
        monkeypatch.setenv("RANK", "1"), monkeypatch.setenv("WORLD_SIZE", "2"), monkeypatch.setenv("LOCAL_RANK", "1")


def test_the_group_is_destroyed_only_after_every_rank_arrives(monkeypatch):
    calls = Calls(monkeypatch)
    with process_group(torch.device("cpu")) as ctx:
        assert ctx == DistContext(1, 2, 1)
    assert calls.order == ["init_process_group", "barrier", "destroy_process_group"]
    # leaving on an exception (perhaps this rank's alone): no barrier the others may never reach
    calls.order.clear()
    with pytest.raises(KeyError), process_group(torch.device("cpu")):
        raise KeyError("boom")
    assert calls.order == ["init_process_group", "destroy_process_group"]


# ---------------------------------------------------------------- two processes

@pytest.mark.parametrize("kind", ["full", "wgangp"])
@pytest.mark.slow
def test_two_ranks_end_with_the_same_weights_and_logs_and_only_rank_0_writes(ranks, split_and_photos, kind):
    (r0, r1), out, _ = ranks
    a, b = r0[kind], r1[kind]
    assert same(a["G"], b["G"])  # buffers too: rank 0's are copied to every rank at the end
    assert same(params(a["D"]), params(b["D"]))  # D was reduced in its own step
    assert rows(a["log"]) == rows(b["log"]) and len(a["log"]) == worker.STEPS
    assert all(math.isfinite(r["total"]) and math.isfinite(r["d_loss"]) for r in a["log"])
    assert a["saves"] == worker.STEPS and b["saves"] == 0  # --checkpoint-seconds 0: one per step, the last kept
    # the checkpoint is a one-process run's: the plain modules' keys, nothing else
    split, _ = split_and_photos
    with pytest.raises(Interrupted):
        worker.train(kind, split, checkpoint=out / f"single_{kind}.pt", stop=lambda: True)
    mine, one = (torch.load(p, weights_only=True) for p in (out / f"{kind}.pt", out / f"single_{kind}.pt"))
    assert mine.keys() == one.keys()
    assert all(mine[k].keys() == one[k].keys() for k in ("G", "D"))


@pytest.mark.slow
def test_wgangp_s_double_backward_is_reduced_like_plain_gradients(ranks):
    (r0, r1), _, _ = ranks
    # Each rank's plain gradient, averaged by hand, against what D's DDP wrapper reduced
    # with the penalty's create_graph backward in the graph. Measured: 0.0 on both ranks
    # (each element is (a + b) / 2 either way, and halving is exact).
    assert r0["gp_gap"] <= 1e-7 and r1["gp_gap"] <= 1e-7


@pytest.mark.slow
def test_a_stop_asked_by_one_rank_stops_both_and_resumes_to_the_uninterrupted_weights(ranks):
    (r0, r1), _, _ = ranks
    assert r0["stopped"] == r1["stopped"] == worker.STOP_AT
    # Bitwise: the same global batches and shared RNG state come back from the checkpoint,
    # and a gloo sum of two addends is the same in either order.
    for r in (r0, r1):
        assert same(r["resumed"]["G"], r0["full"]["G"]) and same(params(r["resumed"]["D"]), params(r0["full"]["D"]))
        assert rows(r["resumed"]["log"]) == rows(r0["full"]["log"])


@pytest.mark.slow
def test_one_process_resumes_a_two_process_checkpoint_and_two_resume_a_one_process_one(ranks, split_and_photos,
                                                                                     single_stopped, tmp_path):
    (r0, r1), out, _ = ranks
    split, _ = split_and_photos
    shutil.copy(out / "stopped.pt", tmp_path / "checkpoint.pt")
    resumed = worker.train("full", split, checkpoint=tmp_path / "checkpoint.pt")
    assert rows(resumed["log"])[: worker.STOP_AT] == rows(r0["full"]["log"])[: worker.STOP_AT]
    assert len(resumed["log"]) == worker.STEPS
    _, state = single_stopped
    for r in (r0, r1):
        assert rows(r["from_single"]["log"])[: worker.STOP_AT] == rows(state["log"])
        assert len(r["from_single"]["log"]) == worker.STEPS
    assert same(r0["from_single"]["G"], r1["from_single"]["G"])


@pytest.mark.slow
def test_two_processes_compute_what_one_does_on_the_same_global_batch(ranks, split_and_photos, toy_generator):
    (r0, _), _, _ = ranks
    split, _ = split_and_photos
    # Without BatchNorm or dropout (the toy generator) two processes compute the same
    # function of each global batch; only the order of float sums differs (the gradient of
    # a batch of 4 against the mean of two of 2). Measured: 1.5e-8 at most over the weights.
    one = worker.train("toy", split)
    assert all(torch.allclose(one["G"][k], r0["toy"]["G"][k], rtol=0, atol=1e-6) for k in one["G"])
    assert [r["l1"] for r in one["log"]] == pytest.approx([r["l1"] for r in r0["toy"]["log"]], rel=1e-5)
    # The U-Net's BatchNorm normalises each rank's shard of 2 by its own statistics on CPUs,
    # so its losses are close, not equal: measured 1.1% at most per step for l1 (1.7% for the
    # total with the GAN term), over 10 steps. Its weights are no test: Adam's steps are
    # +-lr whatever the gradient's size, so any two runs differ by about one update.
    one = worker.train("full", split)
    assert [r["l1"] for r in one["log"]] == pytest.approx([r["l1"] for r in r0["full"]["log"]], rel=0.03)


@pytest.mark.slow
def test_under_torchrun_an_uneven_batch_is_refused_naming_the_option(ranks):
    (r0, r1), _, _ = ranks
    for r in (r0, r1):
        assert r["odd_batch"].startswith("--batch-size 3 does not split evenly over 2 processes")


@pytest.mark.slow
def test_the_process_group_ends_cleanly_normally_on_a_stop_and_on_one_rank_s_failure(ranks, split_and_photos,
                                                                                     tmp_path):
    _, _, first = ranks
    assert_clean(first)  # a normal end
    _, photos = split_and_photos
    # An agreed stop leaves the process group by its exception path: every rank says why,
    # rank 0's state is saved, and none hangs or aborts.
    done = torchrun(photos, tmp_path / "stop", "interrupt")
    assert done.returncode != 0
    assert_clean(done)
    assert [len(torch.load(tmp_path / "stop" / f"rank{r}.pt", weights_only=False)["toy"]["log"]) for r in (0, 1)] == [2, 2]
    assert done.stderr.count("bench.train.loop.Interrupted: interrupted; state saved to") == 2, done.stderr[-5000:]
    assert torch.load(tmp_path / "stop" / "toy.pt", weights_only=True)["step"] == 0
    # One rank fails while the other waits for it in a collective: the failed one leaves
    # without waiting and torchrun ends the other (a hang would time out here).
    done = torchrun(photos, tmp_path / "alone", "alone")
    assert done.returncode != 0
    assert_clean(done)
    assert "RuntimeError: rank 1 fails alone" in done.stderr
