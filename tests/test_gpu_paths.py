"""The CUDA-only branches, exercised on the CPU with stand-ins: a non-CPU device for the
checkpoint's map location, submitit's executors inspected without running, fp16 autocast
on the CPU. benchmarks/gpu_check.sh runs the same paths on a real GPU."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from colorbench_datasets import load_data

from bench.config.options import TrainSettings
from bench.train.checkpoint import CHECKPOINT_FORMAT, CorruptCheckpoint, load_checkpoint
from bench.train.loop import Interrupted, build_cell, train_cell
from losses import LossOptions, parse_losses

SETTINGS = TrainSettings(size=32, width=4, steps=4, batch_size=4)


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    from conftest import write_photos

    folder = tmp_path_factory.mktemp("photos")
    write_photos(folder, 12, size=40)
    return load_data(folder, size=32).train


def _interrupted_checkpoint(train, path: Path, losses: str = "l1+gan") -> None:
    (combo,) = parse_losses(losses)
    calls = iter([False, False, True])  # two steps, then a stop
    with pytest.raises(Interrupted):
        train_cell(combo, 0, train, SETTINGS, LossOptions(disc_width=4), torch.device("cpu"),
                   checkpoint=path, progress=False, should_stop=lambda: next(calls))


def test_a_checkpoint_loads_onto_the_cpu_whatever_the_device(train, tmp_path, monkeypatch):
    """On a GPU, torch.load(map_location=cuda) moved the RNG states and the batch queue to the
    device and Generator.set_state raised TypeError on every resume. The loader now always
    reads onto the CPU; torch.load is made to honour a non-CPU map location ("meta" standing
    in for the GPU) to show that none is asked for."""
    path = tmp_path / "checkpoint.pt"
    _interrupted_checkpoint(train, path)
    real_load, asked = torch.load, []

    def load(*args, map_location=None, **kwargs):
        asked.append(map_location)
        return real_load(*args, map_location=map_location, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    (combo,) = parse_losses("l1+gan")
    cell = build_cell(combo, 0, train, SETTINGS, LossOptions(disc_width=4), torch.device("cpu"), torch.contiguous_format)
    cell.restore(path, torch.device("meta"), train)  # the device of a GPU run, as train_cell passes it
    assert asked == ["cpu"] and cell.step == 2
    assert cell.stream.rng.device.type == "cpu" and cell.stream.queue.device.type == "cpu"
    # what the old loader did: the states on the device, where set_state refuses them
    on_device = real_load(path, map_location="meta", weights_only=True)
    with pytest.raises(TypeError, match="RNG state must be a torch.ByteTensor"):
        torch.Generator().set_state(on_device["stream"]["rng"])


@pytest.mark.slow
def test_resuming_from_the_cpu_loaded_state_continues_exactly(train, tmp_path):
    (combo,) = parse_losses("l1+gan")
    whole = train_cell(combo, 0, train, SETTINGS, LossOptions(disc_width=4), torch.device("cpu"), progress=False)
    path = tmp_path / "checkpoint.pt"
    _interrupted_checkpoint(train, path)
    resumed = train_cell(combo, 0, train, SETTINGS, LossOptions(disc_width=4), torch.device("cpu"),
                         checkpoint=path, progress=False)
    for a, b in zip(whole.generator.state_dict().values(), resumed.generator.state_dict().values()):
        assert torch.equal(a, b)


def test_a_newer_checkpoint_is_called_newer_and_another_rng_size_is_named(train, tmp_path):
    path = tmp_path / "checkpoint.pt"
    _interrupted_checkpoint(train, path, "l1")
    state = torch.load(path, weights_only=True)
    torch.save({**state, "format": CHECKPOINT_FORMAT + 1}, path)
    with pytest.raises(CorruptCheckpoint, match="newer Colorbench"):
        load_checkpoint(path)
    torch.save({**state, "format": CHECKPOINT_FORMAT - 1}, path)
    with pytest.raises(CorruptCheckpoint, match="older Colorbench"):
        load_checkpoint(path)
    # a generator state of another size (another torch build): named, never a traceback
    # from torch.set_rng_state
    torch.save({**state, "torch_rng": torch.cat([state["torch_rng"], torch.zeros(8, dtype=torch.uint8)])}, path)
    (combo,) = parse_losses("l1")
    with pytest.raises(CorruptCheckpoint, match="random generator state has .* bytes .* another torch build"):
        train_cell(combo, 0, train, SETTINGS, LossOptions(), torch.device("cpu"), checkpoint=path, progress=False)


class _Executor:
    """submitit's executor interface, recording what a launch asks of it."""

    def __init__(self):
        self.parameters, self.jobs = [], []

    def update_parameters(self, **kwargs):
        self.parameters.append(kwargs)

    def submit(self, job):
        self.jobs.append((job, dict(self.parameters[-1]) if self.parameters else {}))
        return job


@pytest.mark.parametrize("gpus_per_cell", [1, 2])
def test_a_local_launch_without_devices_gives_each_worker_the_visible_gpus(monkeypatch, tmp_path, gpus_per_cell):
    """Without --devices, submitit's local executor sets CUDA_VISIBLE_DEVICES="" for every
    job, and every cell of a GPU run failed. Two GPUs are made visible to the launch."""
    from bench.config.options import LaunchConfig
    from bench.run import launch as launch_mod
    from bench.rundir.layout import RunFolder

    executor = _Executor()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(launch_mod, "make_executor", lambda *a, **k: executor)
    config = {"device": "cuda"}
    launch = LaunchConfig(launcher="local", max_parallel=2, gpus_per_cell=gpus_per_cell)
    cells = [("l1", 0), ("l1", 1)]
    launch_mod.submit(RunFolder(tmp_path), config, launch, cells, "test")
    workers = len(executor.jobs)
    assert workers == 2
    seen = [params["visible_gpus"] for _, params in executor.jobs]
    assert seen == ([[0], [1]] if gpus_per_cell == 1 else [[0, 1], [0, 1]])
    assert all(job.device == "cuda" for job, _ in executor.jobs)
    # a CPU run still hides the GPUs: its cells must not train on them
    assert launch_mod.local_devices(launch, {"device": "cpu"}) == []


def test_gpus_asked_for_and_not_visible_are_refused_before_any_work(monkeypatch):
    from bench.config.machine import resolve_device
    from bench.config.options import LaunchConfig, make_config
    from bench.config.validate import OptionError, _check_visible_gpus

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = make_config("quick", device="cuda")
    with pytest.raises(OptionError, match="--devices cuda:2: this machine shows 2 GPU"):
        _check_visible_gpus(LaunchConfig(launcher="local"), cfg, ["cuda:0", "cuda:2"])
    with pytest.raises(OptionError, match="--gpus-per-cell 4: this machine shows 2 GPU"):
        _check_visible_gpus(LaunchConfig(launcher="local", gpus_per_cell=4), cfg, [])
    _check_visible_gpus(LaunchConfig(launcher="slurm", gpus_per_cell=4), cfg, [])  # SLURM's nodes decide
    with pytest.raises(ValueError, match="--device cuda:3: this machine shows 2 GPU"):
        resolve_device("cuda:3")


def _critic_mixes_samples(D: torch.nn.Module) -> float:
    """How much one sample's critic value moves when another sample of the batch changes."""
    D.train()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[1:] += 1.0  # every sample but the first
    return (D(x)[0] - D(y)[0]).abs().max().item()


def test_the_wgangp_critic_has_no_batch_statistics_and_its_penalty_double_backwards():
    """Gulrajani et al. use no batch norm in the critic: the penalty is per sample. With
    BatchNorm, one sample's score depends on the batch, and SyncBatchNorm (several GPUs per
    cell) has no double backward, so the first D step crashed."""
    from losses.adversarial import gradient_penalty
    from losses import LOSSES

    D = LOSSES["gan"].factory(LossOptions(gan_mode="wgangp", disc_width=8)).discriminator
    pix2pix = LOSSES["gan"].factory(LossOptions(gan_mode="vanilla", disc_width=8)).discriminator
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in D.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) and m.num_groups == 1 for m in D.modules())
    assert _critic_mixes_samples(D) < 1e-6 < _critic_mixes_samples(pix2pix)  # the check can see mixing
    # the conversion a multi-GPU cell applies finds nothing to convert, and the penalty's
    # double backward runs through the converted critic
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(D)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules())
    L, real, fake = (torch.randn(2, c, 32, 32) for c in (1, 2, 2))
    gradient_penalty(converted, L, real, fake).backward()
    weights = [p for p in converted.parameters() if p.ndim > 1]  # a bias never moves the input gradient
    assert weights and all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
                           for p in weights)


def _grads(precision: str, scaled: bool, losses: str = "l1+gan") -> dict[str, torch.Tensor]:
    """G's and D's gradients after one step of a small cell, fp32 or under fp16 autocast (on
    the CPU, standing in for a GPU without bf16), with or without the loss scaler."""
    from bench.train.loop import autocast_context, train_step

    (combo,) = parse_losses(losses)
    data = torch.Generator().manual_seed(0)
    L, ab = torch.rand(4, 1, 32, 32, generator=data) * 2 - 1, torch.rand(4, 2, 32, 32, generator=data) - 0.5
    settings = TrainSettings(size=32, width=16, batch_size=4, precision=precision)
    cell = build_cell(combo, 0, _Split(L, ab), settings, LossOptions(disc_width=8, gan_mode="wgangp"),
                      torch.device("cpu"), torch.contiguous_format)
    got = {}
    # the gradients as each optimizer would see them: its step is replaced by a recorder
    for tag, net, opt in (("G", cell.G, cell.opt_G), ("D", cell.D, cell.opt_D)):
        def record(*_, tag=tag, net=net, opt=opt):
            # fused Adam unscales inside its step: the scaler hands it the scale as attributes
            grad_scale, found_inf = getattr(opt, "grad_scale", None), getattr(opt, "found_inf", None)
            assert found_inf is None or found_inf.item() == 0, "a step skipped: the scale overflowed"
            scale = 1.0 if grad_scale is None else grad_scale.item()
            got.update({f"{tag}.{k}": p.grad.detach().float() / scale for k, p in net.named_parameters()
                        if p.grad is not None})
        opt.step = record
    # 2^10 rather than the scaler's first 2^16, which overflows (the first steps of an fp16
    # run are skipped while the scaler backs off: AMP's usual start)
    scalers = tuple(torch.amp.GradScaler("cpu", init_scale=2.0**10) for _ in "GD") if scaled else (None, None)
    train_step(cell.G, cell.terms, cell.opt_G, cell.opt_D, L, ab, autocast_context(precision, torch.device("cpu")),
               scalers=scalers)
    return got


class _Split:
    def __init__(self, L, ab):
        self.L, self.ab, self.names = L, ab, [f"p{i}" for i in range(len(L))]

    def __len__(self):
        return len(self.L)


@pytest.mark.slow
def test_fp16_trains_with_a_loss_scaler_whose_gradients_match_fp32():
    """fp16 without loss scaling lost small gradients (59 % off fp32 on a paper-size step).
    With the scaler, G's and D's gradients (the penalty's included) are fp32's within fp16's
    precision."""
    from bench.train.loop import loss_scaler

    assert loss_scaler("fp16", torch.device("cpu")) is not None
    assert loss_scaler("bf16", torch.device("cpu")) is None and loss_scaler("fp32", torch.device("cpu")) is None
    ref, half = _grads("fp32", False), _grads("fp16", True)
    assert ref.keys() == half.keys()

    def gap(got):
        a, b = (torch.cat([g[k].flatten() for k in ref]) for g in (ref, got))
        return ((a - b).norm() / a.norm()).item()

    print(f"fp16 + scaler: {gap(half):.4f} of fp32's gradient norm")
    assert gap(half) < 0.05


@pytest.mark.parametrize("capability, expected", [((7, 0), "fp32"), ((7, 5), "fp32"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_precision_auto_asks_the_chosen_gpu_for_native_bf16(monkeypatch, capability, expected):
    """V100 (7.0) and T4 (7.5) emulate bf16, slower than fp32; is_bf16_supported() counted
    them, and asked the current device instead of --device cuda:N."""
    from bench.config.machine import resolve_precision

    asked = []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: pytest.fail("counts emulation"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: asked.append(d) or capability)
    assert resolve_precision("auto", torch.device("cuda", 1)) == expected
    assert asked == [torch.device("cuda", 1)]

