"""YAML configuration: named threats, model cards, boards and recipes.

Families are Python, instances are YAML: ``configs/threats/pgd_linf.yaml`` names the family ``pgd`` and
its parameters, with per-dataset budgets. This module resolves a named threat for a dataset into the
flat, fully explicit parameter dict that is recorded with every result. It imports no torch, so the
leaderboard can check that a record still matches the current configuration.

Conventions:
- a file may start from another with ``base: other_name`` (same folder); keys then override;
- numbers may be written as fractions, ``8/255``, since budgets are published that way;
- ``per_dataset`` maps a budget family (``mnist``, ``cifar``, ``imagenet``) to parameter overrides.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from robench import schema
from robench.errors import UsageError
from robench.registry import unknown_name

#: Which published budget row (docs/protocols.md) a dataset falls under.
BUDGET_FAMILY = {
    "mnist": "mnist",
    "mnist5k": "mnist",
    "cifar10": "cifar",
    "cifar100": "cifar",
    "svhn": "cifar",
    "imagenet": "imagenet",
}


def config_root() -> Path:
    """The ``configs/`` folder: ``$ROBENCH_CONFIGS`` or the one beside the package in the checkout."""
    root = Path(os.environ.get("ROBENCH_CONFIGS", Path(__file__).resolve().parent.parent / "configs"))
    if not root.is_dir():
        raise UsageError(
            f"configuration folder {root} not found: install robench from its checkout "
            "(pip install -e .) or set ROBENCH_CONFIGS"
        )
    return root


def budget_family(dataset: str) -> str:
    try:
        return BUDGET_FAMILY[dataset]
    except KeyError:
        raise unknown_name("dataset", dataset, BUDGET_FAMILY) from None


def parse_number(value: Any) -> Any:
    """``"8/255"`` -> 0.03137..., other strings and non-strings unchanged."""
    if isinstance(value, str) and "/" in value:
        try:
            return float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            return value
    return value


def _numbers(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_numbers(v) for v in obj]
    return parse_number(obj)


def read_yaml(path: Path) -> dict:
    """Parse one YAML mapping, with one-line errors for unreadable or malformed files."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not UTF-8 text (byte {e.start})") from None
    except RecursionError:
        raise UsageError(f"malformed YAML in {path}: nested too deeply") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())  # one line, whatever it says
        raise UsageError(f"malformed YAML in {path}{where}: {problem}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a YAML mapping")
    return data


def load_named(kind: str, name: str, folder: str, _chain: tuple[str, ...] = ()) -> dict:
    """Load ``configs/<folder>/<name>.yaml`` with ``base:`` inheritance and fraction parsing."""
    directory = config_root() / folder
    known = names(folder)
    if not isinstance(name, str):
        raise UsageError(f"{kind} config {_chain[-1]!r}: base must be the name of another {kind}, "
                         f"got a {type(name).__name__}")
    if name in _chain:
        cycle = " -> ".join((*_chain, name))
        raise UsageError(f"{kind} config {name!r}: base inherits from itself ({cycle})")
    if name not in known:
        raise unknown_name(kind, name, known)
    data = read_yaml(directory / f"{name}.yaml")
    base = data.pop("base", None)
    if base is not None:
        merged = load_named(kind, base, folder, (*_chain, name))
        merged = _deep_merge(merged, data)
        data = merged
    return _numbers(data)


def names(folder: str) -> list[str]:
    return sorted(p.stem for p in (config_root() / folder).glob("*.yaml"))


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["eps=8/255", "steps=10"]`` -> ``{"eps": 0.0313..., "steps": 10}``; malformed -> UsageError."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").isalnum():
            raise UsageError(f"malformed --set {item!r}: expected key=value, e.g. --set eps=8/255")
        out[key] = parse_value(raw.strip())
    return out


def parse_value(raw: str) -> Any:
    """A ``--set`` value: a fraction, a Python/YAML literal (number, bool, list), else the string."""
    number = parse_number(raw)
    if number is not raw:
        return number
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


@dataclasses.dataclass(frozen=True)
class ThreatSpec:
    """A named threat's YAML: its family, shared parameters, and overrides per budget family.

    Parameters are checked against the family's own fields only once resolved for a dataset
    (:func:`robench.threats.create_threat`), because a key may be given in ``params`` or per dataset.
    """

    family: str
    description: str = ""
    params: dict[str, Any] | None = None
    per_dataset: dict[str, dict[str, Any] | None] | None = None

    def __post_init__(self):
        budgets = sorted(set(BUDGET_FAMILY.values()))
        for key in self.per_dataset or {}:
            if key not in budgets:
                raise UsageError(f"per_dataset: unknown budget family {key!r}{schema.did_you_mean(key, budgets)}")


def threat_spec(name: str) -> ThreatSpec:
    """The named threat's YAML, validated (unknown or missing keys are one-line errors)."""
    return schema.load(ThreatSpec, load_named("threat", name, "threats"), f"threat config {name!r}")


def threat_config(name: str, dataset: str, overrides: dict | None = None) -> dict:
    """Fully resolved parameters of threat ``name`` on ``dataset``: params < per_dataset < overrides."""
    spec = threat_spec(name)
    params = dict(spec.params or {})
    params.update((spec.per_dataset or {}).get(budget_family(dataset)) or {})
    params.update(overrides or {})
    return params
