"""YAML configuration: named threats, model cards, boards and recipes.

Families are Python, instances are YAML: ``configs/threats/pgd_linf.yaml`` names the family ``pgd``
and its parameters, with per-dataset budgets. This module resolves a named threat for a dataset into the
flat, fully explicit parameter dict that is recorded with every result. It imports no torch, so the
leaderboard can check that a record still matches the current configuration.

The shipped configuration is the checkout's top-level ``configs/`` folder; the wheel carries it as the
package data folder ``robench/configs`` (pyproject's ``package-dir`` mapping), so an editable install reads
the checkout's files as they are edited and an installed one reads its own copy (:data:`BUILTIN`). User
folders are searched after it (:func:`search_path`), so ``configs/<folder>/<name>.yaml`` below means "on
the search path".

Conventions:
- a file may start from another with ``base: other_name`` (same folder); keys then override;
- numbers may be written as fractions, ``8/255``, since budgets are published that way;
- ``per_dataset`` maps a budget family (``mnist``, ``cifar``, ``imagenet``) to parameter overrides.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from robench.core import schema, yamlio
from robench.core.errors import UsageError
from robench.core.registry import did_you_mean, unknown_name

#: Which published budget row (docs/protocols.md) a dataset falls under.
BUDGET_FAMILY = {
    "mnist": "mnist",
    "mnist5k": "mnist",
    "cifar10": "cifar",
    "cifar100": "cifar",
    "svhn": "cifar",
    "imagenet": "imagenet",
}


def _shipped() -> Path:
    """``robench/configs`` inside an installed wheel, else the checkout's ``configs/`` beside ``robench/``
    (an editable install or a source tree): the one folder the wheel's copy is built from."""
    package = Path(__file__).resolve().parents[1]
    inside = package / "configs"
    return inside if inside.is_dir() else package.parent / "configs"


BUILTIN = _shipped()
"""The shipped configuration (zoo cards, their weights, threats, recipes, boards)."""

_cli_dirs: list[Path] = []
_reported: set[Path] = set()  # user files already reported as shadowing a shipped one


def config_root() -> Path:
    """The shipped ``configs/`` folder (never a user folder; see :func:`search_path`). The repository root
    is :func:`repo_root`, not this folder's parent, because an installed package has no checkout around it.
    """
    return BUILTIN


def set_user_dirs(dirs: list[str | os.PathLike] | None) -> None:
    """The ``--config-dir`` folders of this process (the CLI's global option), in the order given."""
    _cli_dirs[:] = [Path(d).expanduser() for d in dirs or []]


def search_path() -> list[Path]:
    """Configuration folders, lowest priority first: the shipped one, ``$ROBENCH_CONFIGS`` (an
    ``os.pathsep``-separated list), then ``--config-dir`` folders. A later folder's file wins, so a user
    can shadow a shipped threat or card without editing the package."""
    env = [Path(p).expanduser() for p in os.environ.get("ROBENCH_CONFIGS", "").split(os.pathsep) if p]
    for folder in env + _cli_dirs:
        if not folder.is_dir():
            source = "ROBENCH_CONFIGS" if folder in env else "--config-dir"
            raise UsageError(f"configuration folder {folder} ({source}) does not exist")
    return [BUILTIN, *env, *_cli_dirs]


def find(folder: str, name: str) -> Path | None:
    """The file that defines ``<folder>/<name>.yaml``: the last one on :func:`search_path`.

    A user file shadowing a shipped one is reported once per process on stderr, so a stale copy of a
    shipped threat cannot silently change a budget.
    """
    hits = [d / folder / f"{name}.yaml" for d in search_path() if (d / folder / f"{name}.yaml").is_file()]
    if not hits:
        return None
    winner = hits[-1]
    if len(hits) > 1 and hits[0].parent.parent == BUILTIN and winner not in _reported:
        _reported.add(winner)
        print(f"robench: {winner} shadows the shipped {folder}/{name}.yaml", file=sys.stderr)
    return winner


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The checkout whose ``leaderboards/`` the board commands read and write (their ``--root`` default).

    The nearest folder holding ``leaderboards/`` from ``start`` (default: the working directory) upward.
    Only the working directory counts, not where robench is installed: a board command run outside a
    checkout must not write into whichever checkout the package happens to come from.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "leaderboards").is_dir():
            return folder
    raise UsageError(f"no checkout with leaderboards/ in {here} or above: run from one or pass --root DIR")


def checkout_configs(root: str | os.PathLike) -> Path:
    """The configuration folder that belongs to checkout ``root`` and is in use, where a submission's card
    is registered: ``root/configs``, robench's own checkout's shipped folder or a board checkout of one's own
    added with ``--config-dir``/``$ROBENCH_CONFIGS``."""
    root = Path(root).resolve()
    folder = root / "configs"
    if folder.resolve() in {d.resolve() for d in search_path()}:
        return folder
    raise UsageError(
        f"--root {root} holds no configuration folder in use: pass --config-dir {root / 'configs'} (or add "
        "it to ROBENCH_CONFIGS) so the card, the threats and the boards come from one place"
    )


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
    """Parse one YAML mapping, with one-line errors for unreadable or malformed files (a repeated key or an
    alias among them: :mod:`robench.core.yamlio`)."""
    try:
        data = yamlio.parse(Path(path).read_text(encoding="utf-8"))
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
    """Load ``<folder>/<name>.yaml`` from the search path, with ``base:`` inheritance and fractions.

    ``base:`` is looked up on the whole search path, so a user threat may start from a shipped one.
    """
    if not isinstance(name, str):
        raise UsageError(
            f"{kind} config {_chain[-1]!r}: base must be the name of another {kind}, "
            f"got a {type(name).__name__}"
        )
    if name in _chain:
        raise UsageError(
            f"{kind} config {name!r}: base inherits from itself ({' -> '.join((*_chain, name))})"
        )
    path = find(folder, name)
    if path is None:
        raise unknown_name(kind, name, names(folder))
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is not None:
        data = _deep_merge(load_named(kind, base, folder, (*_chain, name)), data)
    return _numbers(data)


def names(folder: str) -> list[str]:
    """Every name defined in ``folder`` on the search path, sorted."""
    return sorted({p.stem for d in search_path() for p in (d / folder).glob("*.yaml")})


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
                raise UsageError(
                    f"per_dataset: unknown budget family {key!r}{did_you_mean(key, budgets, 'known keys')}"
                )


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
