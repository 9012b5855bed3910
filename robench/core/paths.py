"""Where robench keeps things on the user's disk: the cache and the dataset folder, each decided once.

``$ROBENCH_CACHE`` (default ``~/.cache/robench``) holds downloaded weights, RobustBench checkpoints and fitted
results (a UAP); ``$ROBENCH_DATA`` (default ``~/.cache/robench/data``, torchvision's layout, so an existing
torchvision cache can be reused) holds datasets. A ``--data-dir`` given on the command line wins over both.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``$ROBENCH_CACHE/<parts...>``, by default under ``~/.cache/robench``."""
    return Path(os.environ.get("ROBENCH_CACHE", Path.home() / ".cache" / "robench")).joinpath(*parts)


def env_data_dir() -> Path | None:
    """``$ROBENCH_DATA`` when set (ImageNet has no default: it is never downloaded)."""
    value = os.environ.get("ROBENCH_DATA")
    return Path(value).expanduser() if value else None


def data_root(data_dir: str | os.PathLike | None) -> Path:
    """The dataset folder: ``data_dir``, else ``$ROBENCH_DATA``, else ``~/.cache/robench/data``."""
    return Path(data_dir) if data_dir else env_data_dir() or Path("~/.cache/robench/data").expanduser()
