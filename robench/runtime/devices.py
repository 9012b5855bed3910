"""Which device a run uses and how a record names it (device and library versions); below the engine, so
training (which does not evaluate) can name its device the same way."""

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


def versions() -> dict:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("robench", "torch", "torchvision", "timm", "numpy", "torchattacks", "pyautoattack"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    out["torch"] = torch.__version__  # with its build tag (+cu130, +cpu): CPU and CUDA builds can differ
    out["torch_cuda"] = torch.version.cuda
    return out
