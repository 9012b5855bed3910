"""Which device a run uses and how a record names it (device, machine class and library versions); below the
engine, so training (which does not evaluate) can name its device the same way."""

from __future__ import annotations

import platform
from importlib import metadata

import torch

from robench.core.errors import UsageError


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None -> CUDA when present, else CPU; an explicit CUDA request without CUDA is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                "CUDA was requested but no CUDA device is available here: use --device cpu (or auto)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"{dev} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type != "cpu":
        raise UsageError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    return dev


def describe_device(dev: torch.device) -> str:
    """The record's ``device``: the GPU's name, or the CPU thread count (both can change float results)."""
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({torch.get_num_threads()} threads)"


#: CPU features that choose which kernels torch and oneDNN run (and so the float summation order), beyond
#: what ATen's dispatch level says: bf16 dot products and AMX tiles.
CPU_FEATURES = ("avx512_bf16", "amx_bf16")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as f:
            block = f.read().split("\n\n", 1)[0]
    except OSError:
        return {}
    pairs = (line.split(":", 1) for line in block.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def machine(dev: torch.device) -> dict:
    """The machine class a run's float results belong to (docs/reliability.md, "Reproducible"): the GPU's
    name, or the CPU's model name with the instruction sets torch dispatches on (a hypervisor may show
    one model name for Xeons with and without AMX), plus the torch build and the thread count. Two runs
    of one class give the same bits; across classes only the same statistics."""
    if dev.type == "cuda":
        chip = {"gpu": torch.cuda.get_device_name(dev)}
    else:
        info = _cpuinfo()
        flags = set(info.get("flags", "").split())
        isa = [torch.backends.cpu.get_cpu_capability()] + [f for f in CPU_FEATURES if f in flags]
        name = info.get("model name") or platform.processor() or platform.machine()
        chip = {"cpu": name, "isa": " ".join(isa)}
    return {**chip, "torch": torch.__version__, "threads": torch.get_num_threads()}


def versions(dev: torch.device) -> dict:
    """The record's ``versions``: the libraries, and the machine class of a run on ``dev``."""
    out = {"python": platform.python_version(), "platform": platform.platform(), "machine": machine(dev)}
    for package in ("robench", "torch", "torchvision", "timm", "numpy", "torchattacks", "pyautoattack"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    out["torch"] = torch.__version__  # with its build tag (+cu130, +cpu): CPU and CUDA builds can differ
    out["torch_cuda"] = torch.version.cuda
    return out
