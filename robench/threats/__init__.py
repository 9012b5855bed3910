"""Threat families (Python) and named threats (``configs/threats/*.yaml``).

Importing this package registers every family; :func:`create_threat` turns a name and a dataset into a
configured instance with the dataset's published budgets (docs/protocols.md) and any overrides.
"""

from __future__ import annotations

from robench.core import config, schema
from robench.threats import (  # noqa: F401  (register the families)  # noqa: F401  # noqa: F401
    autoattack,
    clean,
    consistency,
    corruptions,
    mnist_c,
    pgd,
    spatial,
    spatial_and_pgd,
    spatial_pgd,
    spatial_random,
    translation,
    uap,
)
from robench.threats.base import FAMILIES, BatchContext, PrepareContext, Threat


def list_threats() -> list[str]:
    return config.names("threats")


def create_threat(name: str, dataset: str = "mnist5k", **overrides) -> Threat:
    """Named threat -> configured :class:`Threat` for ``dataset`` (budgets from the threat's YAML)."""
    spec = config.threat_spec(name)
    family = FAMILIES.get(spec.family)
    params = config.threat_config(name, dataset, overrides)
    threat = schema.load(family, params, f"threat {name!r} (family {spec.family}) on {dataset!r}")
    threat.name = name
    return threat


__all__ = ["FAMILIES", "BatchContext", "PrepareContext", "Threat", "create_threat", "list_threats"]
