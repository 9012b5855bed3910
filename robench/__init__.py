"""robench: adversarial and spatial robustness benchmark for image classifiers.

The public API (docs/architecture.md) is re-exported here lazily, so that ``import robench`` stays cheap and
torch-free code (the leaderboard) can import submodules without pulling torch in.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "create_model": "robench.models",
    "list_models": "robench.models",
    "create_dataset": "robench.datasets",
    "list_datasets": "robench.datasets",
    "create_threat": "robench.threats",
    "list_threats": "robench.threats",
    "evaluate": "robench.engine",
    "write_card": "robench.models",
    "submit": "robench.submission.api",
    "RunRecord": "robench.core.record",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'robench' has no attribute {name!r}")
