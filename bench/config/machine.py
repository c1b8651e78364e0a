"""What the options resolve to on this machine: the device, the precision, torch's threads per
cell, determinism, the job this process belongs to, and the package versions recorded with
every run."""
from __future__ import annotations

import os
import platform
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from bench.config.options import PRECISIONS, LaunchConfig, max_parallel


def cores() -> int:
    """The cores this process may use (its affinity mask: taskset, a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# torch's intra-op threads as this process started (the physical cores, or OMP_NUM_THREADS),
# read once: a library call that changes them later must not change the next run's numbers.
STARTING_THREADS = torch.get_num_threads()


def cell_threads(launch: LaunchConfig) -> int:
    """Intra-op threads for one CPU cell (per process of a data-parallel cell). A CPU splits a
    reduction's work by thread, so the thread count changes a cell's last bits: it follows
    from --max-parallel alone, never from the launcher, and the serial run of a command
    repeats its parallel run exactly (a 2-core machine: 1 thread each for --max-parallel 2)."""
    return max(1, min(cores(), STARTING_THREADS) // (max_parallel(launch) or 1) // launch.gpus_per_cell)


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA GPU is visible to torch; use --device cpu or auto")
    if requested not in ("cpu",) and not requested.startswith("cuda"):
        raise ValueError(f"unknown --device {requested!r}; use auto, cpu or cuda[:N]")
    device = torch.device(requested)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {requested}: {visible_gpus()}")
    return device


def visible_gpus() -> str:
    """Which GPUs this process sees, for a message refusing one that is not there."""
    n = torch.cuda.device_count()
    if not n:
        return "this machine shows no GPU (CUDA_VISIBLE_DEVICES, or a node without one)"
    return f"this machine shows {n} GPU(s), cuda:0 to cuda:{n - 1}"


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16: the CPUs where bf16 convolutions beat fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def gpu_has_native_bf16(device: torch.device) -> bool:
    """Whether the GPU ``device`` (cuda:N, not the current one) runs bf16 in hardware:
    compute capability 8.0 (Ampere) and later. torch.cuda.is_bf16_supported() also counts
    emulation, which V100, T4 and P100 run slower than fp32."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def gpu_capability(device: torch.device) -> str | None:
    """``sm_80`` and the like, for config.json: what a precision was chosen on."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"


def resolve_precision(requested: str, device: torch.device) -> str:
    if requested not in PRECISIONS:
        raise ValueError(f"unknown --precision {requested!r}; use auto, fp32, bf16 or fp16")
    if requested == "fp16" and device.type != "cuda":
        raise ValueError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if gpu_has_native_bf16(device) else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast_dtype(precision: str):
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def set_determinism(deterministic: bool, device: torch.device) -> None:
    """``--deterministic``: bitwise-repeatable GPU runs at some speed cost. CPU runs are
    repeatable either way; on GPU, cuDNN autotuning and atomics-based kernels otherwise
    make results vary in the last bits."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def package_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def package_versions() -> dict[str, str]:
    packages = ("torch", "torchvision", "lpips", "pytorch-fid", "scikit-image", "numpy", "pandas", "colorbench")
    return {"python": platform.python_version(), **{pkg: package_version(pkg) for pkg in packages}}


def job_device(requested: str) -> torch.device:
    """The device of a SLURM job's cells, decided on a login node that may have no GPU:
    ``auto`` and ``cuda`` are a GPU (the jobs ask SLURM for one), ``cpu`` is a CPU."""
    return torch.device("cpu" if requested == "cpu" else requested if requested.startswith("cuda") else "cuda")


def job_precision(requested: str, device: torch.device) -> str:
    """``--precision auto`` for jobs on another machine: bf16 on a GPU (every GPU since
    Ampere runs it natively; a job on an older one refuses to start and names --precision
    fp16), the CPU rule otherwise. Each cell records what it trained in."""
    if requested == "auto" and device.type == "cuda":
        return "bf16"
    return resolve_precision(requested, device) if device.type == "cpu" else requested


@contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to ``n`` for a block (a library call leaves them as it
    found them)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def job_name() -> str:
    """The scheduler's name for the job this process belongs to ("slurm job 1234_5", "local
    job 987"), or "" outside one: shown by `bench status` and recorded with each cell."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID"):
        return f"slurm job {env['SLURM_ARRAY_JOB_ID']}_{env.get('SLURM_ARRAY_TASK_ID', '')}"
    if env.get("SLURM_JOB_ID"):
        return f"slurm job {env['SLURM_JOB_ID']}"
    if env.get("SUBMITIT_LOCAL_JOB_ID"):
        return f"local job {env['SUBMITIT_LOCAL_JOB_ID']}"
    return ""
