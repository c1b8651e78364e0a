"""One cell trained data-parallel by several processes (``torchrun``): the process group
and the few collectives the training loop needs. bench/train/loop.py uses them; with one
process every function here is a no-op, so a single-process run is untouched.

Every rank draws the same global batch and trains on its own contiguous shard of it, so
``--batch-size`` keeps its meaning (the global batch) whatever the number of processes.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """This process's place among the ``world_size`` processes training one cell."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints and files, and shows progress."""
        return self.rank == 0


SINGLE = DistContext(0, 1, 0)


def from_env() -> DistContext:
    """The context torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (SINGLE without it)."""
    if "WORLD_SIZE" not in os.environ:
        return SINGLE
    return DistContext(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))


# The host-side (gloo) group for flags and barriers: the default group itself on CPUs; on
# GPUs a gloo group beside NCCL's, so agreeing on a stop flag every step is a CPU message
# and never a host-device sync that would drain the GPU's queue.
_host_group = None


# How long a rank may wait in a collective for the others. Rank 0 scores a cell alone
# (the caller's business) while the others wait at the next cell's first barrier.
WAIT = timedelta(hours=2)


@contextlib.contextmanager
def process_group(device: torch.device, timeout: timedelta = WAIT):
    """The process group of a torchrun launch, for the duration of the block; yields this
    process's DistContext (SINGLE, and no group, when run as one process).

    NCCL on GPUs (each process on the GPU of its LOCAL_RANK), gloo on CPUs.
    """
    global _host_group
    ctx = from_env()
    if ctx.world_size == 1:
        yield ctx
        return
    if device.type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    _host_group = dist.new_group(backend="gloo", timeout=timeout) if device.type == "cuda" else None
    try:
        yield ctx
    except BaseException:
        # No barrier: a rank that failed alone would wait in it forever for ranks stuck in
        # a collective that waits for it (gloo's monitored_barrier hung the same way: its
        # timeout does not bound its send). torchrun ends the others once this one exits.
        # An agreed stop (Interrupted) has met the others in train_cell already.
        _close()
        raise
    # A gloo group torn down without a barrier first aborted at exit ("terminate called
    # without an active exception") in 2 of 5 runs on the project's machines (with torch
    # 2.14.1 on a 2-core VM it did not, in 5 runs): all ranks meet before it goes.
    dist.barrier()
    _close()


def _close() -> None:
    global _host_group
    _host_group = None
    dist.destroy_process_group()


def check_batch(batch_size: int, ctx: DistContext) -> None:
    """The global batch must split evenly: every rank's shard the same size."""
    if batch_size % ctx.world_size:
        lower = batch_size // ctx.world_size * ctx.world_size
        raise ValueError(
            f"--batch-size {batch_size} does not split evenly over {ctx.world_size} processes; use a multiple "
            f"of {ctx.world_size} (e.g. --batch-size {lower or ctx.world_size} or {lower + ctx.world_size}), "
            "or another number of processes"
        )


def shard(batch_size: int, ctx: DistContext) -> slice:
    """This rank's contiguous part ``[rank*b/W, (rank+1)*b/W)`` of a global batch of ``batch_size``."""
    check_batch(batch_size, ctx)
    part = batch_size // ctx.world_size
    return slice(ctx.rank * part, (ctx.rank + 1) * part)


def mean_over_ranks(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The mean of ``values`` over the ranks (itself with one process). gloo has no AVG,
    hence the sum."""
    if ctx.world_size == 1:
        return values
    total = values.clone()
    dist.all_reduce(total, dist.ReduceOp.SUM)
    return total / ctx.world_size


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank if ``flag`` is true on any: ranks that stop or save together never
    wait in a collective for one that went on."""
    if ctx.world_size == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, dist.ReduceOp.MAX, group=_host_group)
    return bool(t.item())


def same_on_all_ranks(value: int, ctx: DistContext) -> bool:
    """Whether every rank holds the same ``value``."""
    if ctx.world_size == 1:
        return True
    t = torch.tensor([value, -value])
    dist.all_reduce(t, dist.ReduceOp.MAX, group=_host_group)
    return int(t[0]) == -int(t[1])


def barrier(ctx: DistContext) -> None:
    if ctx.world_size > 1:
        dist.barrier(_host_group)


def check_device(device: torch.device, ctx: DistContext) -> torch.device:
    """The device this rank trains on: with several processes on GPUs, its LOCAL_RANK's."""
    if ctx.world_size == 1 or device.type != "cuda":
        return device
    if device.index not in (None, ctx.local_rank):
        raise ValueError(
            f"--device {device} would put every one of the {ctx.world_size} processes on one GPU; "
            "use --device cuda: each torchrun process takes the GPU of its LOCAL_RANK"
        )
    return torch.device("cuda", ctx.local_rank)


def sync_batchnorm(net: nn.Module, device: torch.device, ctx: DistContext) -> nn.Module:
    """On GPUs, BatchNorm over the global batch (SyncBatchNorm), as one process computes it.
    On CPUs torch has no SyncBatchNorm: each rank normalises by its own shard's statistics,
    so a several-process CPU run is close to, not the same as, a one-process run."""
    if ctx.world_size == 1 or device.type != "cuda":
        return net
    # The layers are replaced but keep their Parameter objects: an optimizer built on the
    # network before still updates them, and the state_dict keys do not change.
    return nn.SyncBatchNorm.convert_sync_batchnorm(net)


def replicate(net: nn.Module, device: torch.device, ctx: DistContext) -> nn.Module:
    """``net`` averaging its gradients over the ranks (itself with one process).

    Buffers are not broadcast at each forward: BatchNorm's running statistics play no part
    in a training step, and rank 0's -- the ones saved and scored -- are its own either
    way; ``broadcast_buffers`` copies them to the others at the end."""
    if ctx.world_size == 1:
        return net
    ids = [device.index] if device.type == "cuda" else None
    return DDP(net, device_ids=ids, **_NO_FORWARD_BUFFER_SYNC)


DDP = nn.parallel.DistributedDataParallel


# Newer torch renamed ``broadcast_buffers`` (the old name warns); pyproject allows torch 2.2.
_NO_FORWARD_BUFFER_SYNC = (
    {"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
    else {"broadcast_buffers": False}
)


def broadcast_buffers(net: nn.Module, ctx: DistContext) -> None:
    """Rank 0's buffers (BatchNorm's running statistics) on every rank."""
    if ctx.world_size == 1:
        return
    for buf in net.buffers():
        dist.broadcast(buf, 0)


@contextlib.contextmanager
def rank_noise(ctx: DistContext, device: torch.device):
    """Dropout masks and other in-step noise of this rank's own, for one step.

    All ranks share one torch RNG state (the one a checkpoint saves), and their shards are
    the same size, so without this every rank would draw the same dropout masks for its
    different photos -- noise one process never correlates. Each step a seed is drawn from
    the shared state (alike on every rank, which keeps it shared and resumable) and the step
    runs on a generator seeded from it and the rank."""
    if ctx.world_size == 1:
        yield
        return
    seed = int(torch.randint(2**62, ())) + ctx.rank
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else [], device_type="cuda" if cuda else None):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed(seed)  # this process's GPU alone
        yield


@contextlib.contextmanager
def discriminator_as(critic: nn.Module, wrapper: nn.Module | None):
    """The adversarial term's ``discriminator_loss`` run through ``wrapper`` (D's DDP) for
    D's own step; G's step keeps the plain D, frozen, so D's gradient hooks never fire
    without the matching reduction on every rank."""
    if wrapper is None:
        yield
        return
    plain = critic.discriminator
    critic.discriminator = wrapper
    try:
        yield
    finally:
        critic.discriminator = plain
