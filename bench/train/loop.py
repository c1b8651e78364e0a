"""Training one cell: a (loss combination, seed) pair. Reads top to bottom."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from colorbench_datasets import LabSplit, random_crop_flip
from colorbench_datasets.manifest import split_print
from torch import nn
from tqdm.auto import tqdm

from bench.config.machine import autocast_dtype
from bench.config.options import TrainSettings
from bench.rundir.write import atomic_torch_save
from bench.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CorruptCheckpoint,
    checkpoint_problem,
    load_checkpoint,
)
from bench.train.distributed import (
    SINGLE,
    DistContext,
    any_rank,
    barrier,
    broadcast_buffers,
    check_batch,
    check_device,
    discriminator_as,
    mean_over_ranks,
    rank_noise,
    replicate,
    same_on_all_ranks,
    shard,
    sync_batchnorm,
)
from losses import LOSSES, Combination, LossOptions, generator_head
from models import build_generator
from models.gemm_conv import with_gemm_convs


@dataclass
class TrainResult:
    generator: nn.Module
    log: list[dict] = field(default_factory=list)
    diverged_at: int | None = None
    seconds: float = 0.0
    curve: list[dict] = field(default_factory=list)  # the scores along training (Monitor.evaluate)


class Monitor:
    """What a cell does along its training besides training, on the main rank only; the
    default does nothing. ``every``: steps between two ``evaluate`` calls (0: never);
    ``evaluate(G, step)`` returns ``{metric: value}``, which the loop records in the cell's
    checkpointed curve, so a resumed cell's curve is an uninterrupted one's. It must leave
    training as it found it: no random numbers drawn, G's BatchNorm statistics untouched
    (``bench.score.scorer.predict_ab`` runs G in eval mode under inference mode).
    ``started(cell)`` is told where the cell starts (0, or the step it resumed at),
    ``logged(cell, rows)`` sees each newly synced stretch of the train log and
    ``evaluated(curve, step, values, G)`` each evaluation, with the curve so far."""

    every: int = 0

    def started(self, cell: "TrainState", total: int) -> None:
        pass

    def evaluate(self, G: nn.Module, step: int) -> dict[str, float]:
        return {}

    def logged(self, cell: "TrainState", rows: list[dict]) -> None:
        pass

    def evaluated(self, curve: list[dict], step: int, values: dict[str, float], G: nn.Module) -> None:
        pass

    def close(self) -> None:
        pass


def make_generator(settings: TrainSettings, seed: int, head: dict | None = None) -> nn.Module:
    """The generator every combination of this seed starts from: same seed, same weights
    (a ``head``, e.g. Zhang's class logits, changes only the output layer)."""
    torch.manual_seed(seed)
    return build_generator(settings.generator, settings.size, settings.width, settings.out_channels, head)


def build_terms(combo: Combination, options: LossOptions, seed: int) -> list[tuple[str, float, nn.Module]]:
    # Seeded apart from the generator, so adding a GAN term never changes G's init.
    torch.manual_seed(seed + 1_000_003)
    return [(t.name, t.weight, LOSSES[t.name].factory(options)) for t in combo.terms]


def adam(params, settings: TrainSettings, device: torch.device) -> torch.optim.Adam:
    # fused Adam runs one kernel for all parameters; foreach is the fallback.
    fused = device.type in ("cuda", "cpu")
    return torch.optim.Adam(params, lr=settings.lr, betas=settings.betas, fused=fused)


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """Backward and step; with a loss scaler (fp16), on the scaled loss, the gradients
    unscaled before Adam sees them and a step with inf/NaN gradients skipped."""
    if scaler is None:
        loss.backward()
        opt.step()
        return
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()


def train_step(G, terms, opt_G, opt_D, L, ab, autocast=contextlib.nullcontext, D_step: nn.Module | None = None,
               scalers: tuple = (None, None)) -> torch.Tensor:
    """One optimisation step: the discriminator (if a term is adversarial), then the generator.

    ``G`` may be a DistributedDataParallel wrapper, and ``D_step`` the discriminator's: D's
    own step runs through it, G's through the term's plain, frozen discriminator.

    Each term gets ``(L, fake_ab, real_ab)``, and a term that declares a generator head
    (classification) also the head's output of the same forward pass. Returns each term's
    value, the weighted total and the D loss as one detached tensor, left on the device so
    the caller decides when to sync. ``scalers``: G's and D's loss scalers (fp16), or None.
    """
    critic = next((t for name, _, t in terms if LOSSES[name].adversarial), None)
    reads_head = [LOSSES[name].generator_head is not None for name, _, _ in terms]
    with autocast():
        fake, head_out = G(L, head_output=True) if any(reads_head) else (G(L), None)
        fake = fake.float()

    d_loss = torch.zeros((), device=L.device)
    if critic is not None:
        critic.discriminator.requires_grad_(True)
        opt_D.zero_grad(set_to_none=True)
        with autocast(), discriminator_as(critic, D_step):
            d_loss = critic.discriminator_loss(L, fake, ab)
        optimizer_step(d_loss, opt_D, scalers[1])
        critic.discriminator.requires_grad_(False)  # G's step needs no D weight grads

    opt_G.zero_grad(set_to_none=True)
    with autocast():
        values = [
            (term(L, fake, ab, head_out) if head else term(L, fake, ab)).float()
            for (_, _, term), head in zip(terms, reads_head)
        ]
    total = sum(w * v for (_, w, _), v in zip(terms, values))
    optimizer_step(total, opt_G, scalers[0])
    return torch.stack([*values, total, d_loss.float()]).detach()


def default_channels_last(device: torch.device, precision: str) -> bool:
    """The memory format ``bench run`` trains in when not told (see TrainSettings)."""
    return device.type == "cuda" or precision != "fp32"


def autocast_context(precision: str, device: torch.device):
    """A factory of autocast contexts for ``precision`` (a no-op for fp32)."""
    dtype = autocast_dtype(precision)
    return (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext


class Interrupted(Exception):
    """Training stopped on request (Ctrl-C) after saving ``checkpoint``."""

    def __init__(self, checkpoint: Path | None):
        self.checkpoint = checkpoint
        super().__init__(f"interrupted; state saved to {checkpoint}")


def total_steps(settings: TrainSettings, n_images: int) -> int:
    """The cell's optimizer steps: ``steps`` if set, else enough for ``epochs`` passes over
    the photos (rounded up: every photo is seen ``epochs`` times)."""
    if settings.steps is not None:
        return settings.steps
    return math.ceil(settings.epochs * n_images / settings.batch_size)


class BatchStream:
    """Batches drawn from back-to-back random permutations of the split.

    A batch may span two permutations, so no photo is ever dropped at the end of an epoch
    and every photo is seen equally often (to within one pass), whatever the batch size.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, batch_size
        self.rng = torch.Generator().manual_seed(seed)  # also draws the crops and flips
        self.queue = torch.empty(0, dtype=torch.long)

    def next(self) -> torch.Tensor:
        while len(self.queue) < self.batch_size:
            self.queue = torch.cat([self.queue, torch.randperm(self.n, generator=self.rng)])
        idx, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size :]
        return idx

    def state_dict(self) -> dict:
        return {"rng": self.rng.get_state(), "queue": self.queue, "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        self.rng.set_state(state["rng"])
        self.queue = state["queue"]


@dataclass
class TrainState:
    """Everything a cell's training changes, saved and restored as one checkpoint."""

    G: nn.Module
    terms: list[tuple[str, float, nn.Module]]
    opt_G: torch.optim.Optimizer
    D: nn.Module | None
    opt_D: torch.optim.Optimizer | None
    stream: BatchStream
    step: int = 0
    log: list[dict] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)  # {"step", "metric", "value"} rows (Monitor)
    seconds: float = 0.0  # training time before this process resumed it
    # The train photos' fingerprint, hashed once: every save records it, a resume checks it.
    train_print: dict = field(default_factory=dict)
    # fp16 only: each optimizer's loss scale (torch.amp.GradScaler), so that small gradients
    # do not flush to zero in half precision; saved with the rest, so a resume scales alike.
    scaler_G: torch.amp.GradScaler | None = None
    scaler_D: torch.amp.GradScaler | None = None

    def save(self, path: Path | None, device: torch.device, seconds: float) -> None:
        if path is None:
            return
        state = {
            "format": CHECKPOINT_FORMAT, "G": self.G.state_dict(), "opt_G": self.opt_G.state_dict(),
            "step": self.step, "log": self.log, "curve": self.curve, "stream": self.stream.state_dict(),
            "torch_rng": torch.get_rng_state(), "seconds": seconds,
            "data": self.train_print,  # resumed only on the same train photos (bench/run/reuse.py)
        }
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        if self.D is not None:
            state |= {"D": self.D.state_dict(), "opt_D": self.opt_D.state_dict()}
        for name in ("scaler_G", "scaler_D"):
            if getattr(self, name) is not None:
                state[name] = getattr(self, name).state_dict()
        atomic_torch_save(path, state)

    def restore(self, path: Path, device: torch.device, train: LabSplit) -> None:
        state = load_checkpoint(path)
        # Checked before anything is loaded: other photos or options than it was saved with
        # get a message, not a size-mismatch traceback or an IndexError from the batch queue.
        if (problem := checkpoint_problem(state, self.G, self.D, train, self.train_print)) is not None:
            raise CorruptCheckpoint(f"cannot resume from {path}: {problem}. Delete it to restart this cell from scratch.")
        self.G.load_state_dict(state["G"])
        self.opt_G.load_state_dict(state["opt_G"])
        if self.D is not None:
            self.D.load_state_dict(state["D"])
            self.opt_D.load_state_dict(state["opt_D"])
        for name in ("scaler_G", "scaler_D"):
            if getattr(self, name) is not None and name in state:
                getattr(self, name).load_state_dict(state[name])
        self.stream.load_state_dict(state["stream"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        self.step, self.log, self.seconds = state["step"], state["log"], state["seconds"]
        self.curve = state.get("curve", [])  # saved before curves existed: none


def for_device(net: nn.Module, device: torch.device, memory_format) -> nn.Module:
    """A cell's network on ``device``. On a CPU its tiny-map convolutions (a U-Net's
    bottleneck) run as one GEMM over the batch, 1.3-7x faster than oneDNN's kernels there
    (models/gemm_conv.py); the parameters and numbers are torch's layers'."""
    if device.type == "cpu":
        with_gemm_convs(net)
    return net.to(device, memory_format=memory_format)


def build_cell(combo: Combination, seed: int, train: LabSplit, settings: TrainSettings, options: LossOptions,
               device: torch.device, memory_format, dist: DistContext = SINGLE) -> TrainState:
    G = for_device(make_generator(settings, seed, generator_head(combo)), device, memory_format)
    G = sync_batchnorm(G, device, dist)  # in place, before compile sees the layers
    if settings.compile:
        G.compile()  # in place: state_dict keys stay those of the plain module
    terms = build_terms(combo, options, seed)
    for name, _, term in terms:
        term.to(device, memory_format=memory_format)
        if LOSSES[name].needs_data:  # e.g. classification's colour prior
            term.prepare(train)
    critic = next((t for name, _, t in terms if LOSSES[name].adversarial), None)
    D = for_device(critic.discriminator, device, memory_format) if critic is not None else None
    D = sync_batchnorm(D, device, dist) if D is not None else None
    # The data order and crops come from their own generator, seeded alike for every
    # combination, so all combinations of a seed see identical batches.
    stream = BatchStream(len(train), settings.batch_size, seed)
    torch.manual_seed(seed)  # dropout
    return TrainState(G, terms, adam(G.parameters(), settings, device), D,
                      adam(D.parameters(), settings, device) if D is not None else None, stream,
                      train_print=split_print(train), scaler_G=loss_scaler(settings.precision, device),
                      scaler_D=loss_scaler(settings.precision, device) if D is not None else None)


def loss_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16's loss scaling (bf16 has fp32's range and needs none)."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def log_rows(cell: TrainState, losses: list[torch.Tensor], seconds: list[float], n_images: int, batch_size: int,
             dist: DistContext = SINGLE) -> int | None:
    """Append the pending steps' losses (one host sync) to ``cell.log``; returns the first
    step whose loss is not finite, if any. With several processes the losses are the mean
    over the ranks (one all-reduce), so every rank logs, and stops on, the same numbers."""
    names = [name for name, _, _ in cell.terms]
    rows = mean_over_ranks(torch.stack(losses), dist).cpu().tolist() if losses else []
    first = len(cell.log)
    for j, (row, sec) in enumerate(zip(rows, seconds)):
        step = first + j
        entry = {"step": step, "epoch": step * batch_size // n_images, **dict(zip(names, row[:-2])), "total": row[-2]}
        entry["d_loss"] = row[-1] if cell.D is not None else math.nan
        entry["seconds"] = sec
        cell.log.append(entry)
    return next((first + j for j, row in enumerate(rows) if not all(map(math.isfinite, row))), None)


def uses_channels_last(settings: TrainSettings, device: torch.device) -> bool:
    return default_channels_last(device, settings.precision) if settings.channels_last is None else settings.channels_last


def next_batch(stream: BatchStream, train: LabSplit, size: int, device: torch.device, memory_format,
               part: slice = slice(None)):
    """The stream's next batch, randomly cropped and flipped, on ``device``: its ``part``
    (a rank's shard), after the crops of the whole batch are drawn as one process draws them."""
    idx = stream.next().to(train.L.device)
    L, ab = random_crop_flip(train.L[idx], train.ab[idx], size, stream.rng)
    L, ab = L[part], ab[part]
    return (L.to(device, non_blocking=True).contiguous(memory_format=memory_format),
            ab.to(device, non_blocking=True).contiguous(memory_format=memory_format))


def save_due(since_save: float, pass_end: bool, checkpoint_seconds: float) -> bool:
    """Save every ``checkpoint_seconds``, and at the end of a pass once a fifth of that has
    gone by: a small set's passes take seconds, and saving G, D and both Adam states after
    each would cost more than the training (benchmarks/README.md)."""
    return since_save >= checkpoint_seconds or (pass_end and since_save >= checkpoint_seconds / 5)


def resume(cell: TrainState, checkpoint: Path | None, device: torch.device, train: LabSplit, dist: DistContext) -> None:
    """Restore ``cell`` from ``checkpoint`` if it exists; with several processes every rank
    reads the same file, and they check that they did."""
    # Rank 0 alone writes a cell's files: whatever it did to them before this call is done
    # before any rank looks. Within the cell it writes only after the first step's gradient
    # reduction, which no rank reaches before all have read.
    barrier(dist)
    if checkpoint is not None and checkpoint.is_file():
        cell.restore(checkpoint, device, train)
    if not same_on_all_ranks(cell.step, dist):
        raise CorruptCheckpoint(
            f"the {dist.world_size} processes found different states in {checkpoint}: put the run folder "
            "where every process sees the same files"
        )


def evaluate_along(cell: TrainState, monitor: Monitor) -> None:
    """Score the generator as it is at ``cell.step`` into the cell's curve; the pending
    losses stay on the device (nothing is synced for it but the scores)."""
    values = monitor.evaluate(cell.G, cell.step)
    if values:  # none: nothing to record (a diverged generator)
        cell.curve += [{"step": cell.step, "metric": name, "value": value} for name, value in values.items()]
        monitor.evaluated(cell.curve, cell.step, values, cell.G)


class Steps:
    """A cell's training steps, one per call. With several processes each runs through the
    networks' DDP wrappers, on this rank's shard of the global batch, with this rank's noise."""

    def __init__(self, cell: TrainState, train: LabSplit, settings: TrainSettings, device: torch.device, memory_format,
                 dist: DistContext):
        self.cell, self.train, self.size, self.dist = cell, train, settings.size, dist
        self.device, self.memory_format, self.part = device, memory_format, shard(settings.batch_size, dist)
        self.G = replicate(cell.G, device, dist)
        self.D = replicate(cell.D, device, dist) if cell.D is not None else None
        self.autocast = autocast_context(settings.precision, device)

    def __call__(self) -> torch.Tensor:
        cell = self.cell
        L, ab = next_batch(cell.stream, self.train, self.size, self.device, self.memory_format, self.part)
        with rank_noise(self.dist, self.device):
            return train_step(self.G, cell.terms, cell.opt_G, cell.opt_D, L, ab, self.autocast, self.D,
                              (cell.scaler_G, cell.scaler_D))


class LogSync:
    """A cell's step losses still on the device, synced into its log (one host sync, checked
    for divergence, shown to the monitor) and, when asked, saved with the rest of its state."""

    def __init__(self, cell: TrainState, train: LabSplit, settings: TrainSettings, checkpoint: Path | None,
                 device: torch.device, dist: DistContext, monitor: Monitor):
        self.cell, self.n_images, self.batch_size = cell, len(train), settings.batch_size
        self.checkpoint, self.device, self.dist, self.monitor = checkpoint, device, dist, monitor
        self.t0, self.last_save = time.perf_counter() - cell.seconds, time.perf_counter()
        self.losses, self.seconds = [], []

    def add(self, loss: torch.Tensor, seconds: float) -> None:
        self.losses.append(loss)
        self.seconds.append(seconds)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def sync(self, save: bool) -> int | None:
        """Log the pending steps; returns the first step whose loss is not finite, if any
        (then nothing is saved)."""
        cell, first = self.cell, len(self.cell.log)
        bad = log_rows(cell, self.losses, self.seconds, self.n_images, self.batch_size, self.dist)
        self.losses.clear(), self.seconds.clear()
        self.monitor.logged(cell, cell.log[first:])
        if bad is None and save:
            cell.save(self.checkpoint if self.dist.is_main else None, self.device, self.elapsed())
            self.last_save = time.perf_counter()
        return bad


def train_cell(
    combo: Combination, seed: int, train: LabSplit, settings: TrainSettings, options: LossOptions, device: torch.device,
    checkpoint: Path | None = None, progress: bool = True, desc: str = "",
    should_stop: Callable[[], bool] = lambda: False, dist: DistContext | None = None, monitor: Monitor | None = None,
) -> TrainResult:
    """Train a generator on ``train`` with ``combo`` for ``total_steps`` optimizer steps.

    State is saved to ``checkpoint`` every ``settings.checkpoint_seconds`` (and at the end of a pass
    once a fifth of that has passed), and training resumes from it bit for bit; the last state is
    saved too, so a larger budget can continue it. When ``should_stop()`` turns true the state is
    saved at the next step boundary and ``Interrupted`` is raised. Each step's wall time is logged
    (``seconds``): on a GPU it is the host's, which tracks the device's once its queue is full.

    With ``dist`` of several processes (torchrun, bench/train/distributed.py) every rank calls this
    alike, ``checkpoint`` included; rank 0 alone writes it (in a one-process run's format), all
    stop together and return the same plain generator. On CPUs BatchNorm is per rank.

    ``monitor`` (rank 0's; see ``Monitor``) scores the generator every ``monitor.every`` steps
    before the last (the caller scores the last) and sees the log as it is synced.
    """
    dist = dist or SINGLE
    monitor = monitor if monitor is not None and dist.is_main else Monitor()
    check_batch(settings.batch_size, dist)
    device = check_device(device, dist)
    memory_format = torch.channels_last if uses_channels_last(settings, device) else torch.contiguous_format
    cell = build_cell(combo, seed, train, settings, options, device, memory_format, dist)
    resume(cell, checkpoint, device, train, dist)
    total = total_steps(settings, len(train))
    monitor.started(cell, total)
    step = Steps(cell, train, settings, device, memory_format, dist)
    pass_steps = math.ceil(len(train) / settings.batch_size)  # one pass over the photos
    bar = tqdm(total=total, initial=cell.step, desc=desc, disable=not (progress and dist.is_main), leave=True,
               dynamic_ncols=True, unit="step")
    pending = LogSync(cell, train, settings, checkpoint, device, dist, monitor)
    cell.G.train()
    while cell.step < total:
        if any_rank(should_stop(), dist):
            pending.sync(save=True)
            barrier(dist)  # rank 0's save is whole before any rank leaves (and torchrun ends the rest)
            bar.close()
            raise Interrupted(checkpoint)
        started = time.perf_counter()
        loss = step()
        pending.add(loss, time.perf_counter() - started)
        cell.step += 1
        bar.update(1)
        if monitor.every and cell.step % monitor.every == 0 and cell.step < total:
            evaluate_along(cell, monitor)  # before a save at this step, which then holds it
        # The losses are synced (and checked for divergence) after every pass and at the end.
        pass_end = cell.step % pass_steps == 0 or cell.step == total
        save = checkpoint is not None and (cell.step == total or any_rank(save_due(
            time.perf_counter() - pending.last_save, pass_end, settings.checkpoint_seconds), dist))
        if pass_end or save:
            if (bad := pending.sync(save)) is not None:
                bar.close()
                return TrainResult(cell.G, cell.log, diverged_at=bad, seconds=pending.elapsed(), curve=cell.curve)
            shown = [name for name, _, _ in cell.terms] + (["d_loss"] if cell.D is not None else [])
            bar.set_postfix({k: f"{cell.log[-1][k]:.3g}" for k in shown}, refresh=False)
    bar.close()
    broadcast_buffers(cell.G, dist)  # every rank returns the generator rank 0 saves and scores
    return TrainResult(cell.G, cell.log, seconds=pending.elapsed(), curve=cell.curve)
