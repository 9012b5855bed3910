"""The import layers of docs/architecture.md, enforced by reading the source (ast, nothing imported).

A room is a folder of ``robench/`` (``core``, ``models``, ``engine``, ...): every module belongs to the
folder it lives in, so a new module needs no entry here, and a new top-level module (outside the rooms
and the entry points) fails :func:`test_every_module_lives_in_a_room`. Imports flow downward only: a module
may import modules of its own layer or a lower one, never a higher one. On top of that, a few rooms have
stricter rules that say what they must stay independent of and why. Both are written in the two tables
below and nowhere else; docs/architecture.md ("Layers") is the same table in words, so change them
together.

Module-level and function-level imports are told apart: a function-level import runs only when its
function is called, which is how the CLI and ``robench submit`` keep torch out of commands that do not
need it. Rules with ``scope="module"`` allow lazy imports; ``scope="any"`` forbids both.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "robench"

#: Layer of every room (docs/architecture.md, "Layers"): the folders of robench/, plus the CLI module.
LAYERS = {
    "core": 1,
    "boards": 2,
    "datasets": 2,
    "models": 2,
    "runtime": 2,
    "threats": 3,
    "training": 4,
    "engine": 5,
    "submission": 6,
    "cli": 7,
}
#: The API facade re-exports lazily (import_module by string) and ``python -m robench`` enters the CLI:
#: both sit outside the layers by design.
OUTSIDE = {"robench", "robench.__main__"}

#: torch and the libraries that import it as soon as they are imported.
TORCH_STACK = ("torch", "torchvision", "timm", "torchattacks", "pyautoattack")


def room(name: str) -> str:
    return f"robench.{name}"


EVALUATION_STACK = tuple(
    room(r) for r in ("datasets", "models", "runtime", "threats", "training", "engine", "submission")
)


@dataclasses.dataclass(frozen=True)
class Rule:
    """``subjects`` (dotted prefixes, minus ``except_``) must not import ``forbidden`` in ``scope``."""

    name: str
    subjects: tuple[str, ...]
    forbidden: tuple[str, ...]
    scope: str  # "module": module-level imports only; "any": function-level ones too
    why: str
    except_: tuple[str, ...] = ()


RULES = [
    Rule(
        "core and boards never import torch",
        (room("core"), room("boards")),
        TORCH_STACK,
        "any",
        "config, records and pages are read and built by CI without the evaluation stack",
    ),
    Rule(
        "core imports only core",
        (room("core"),),
        tuple(room(r) for r in LAYERS if r != "core"),
        "any",
        "the torch-free core is what every other room stands on; it knows none of them",
    ),
    Rule(
        "boards read records, never evaluate",
        (room("boards"),),
        EVALUATION_STACK,
        "any",
        "'robench leaderboard' and '--check' build pages from records alone; re-runs belong to submission",
    ),
    Rule(
        "threats do not drive evaluation",
        (room("threats"),),
        (room("engine"), room("cli"), room("boards"), room("submission"), room("training")),
        "any",
        "a threat turns (model, batch) into verdicts; the engine decides what runs, where and when",
    ),
    Rule(
        "threats get their data from the engine",
        (room("threats"),),
        (room("datasets"), room("runtime.distributed")),
        "any",
        "the engine hands fitting threats their fit data and owns ranks, so a threat runs anywhere",
    ),
    Rule(
        "nothing imports the CLI",
        ("robench",),
        (room("cli"),),
        "any",
        "the CLI only unpacks arguments into typed calls; everything it does is reachable from Python",
        except_=(room("cli"), "robench.__main__"),
    ),
    Rule(
        "submission loads the engine lazily",
        (room("submission"),),
        (room("engine"),) + TORCH_STACK,
        "module",
        "'robench submit --help' and a refused submission must not start the evaluation stack",
    ),
]


# --- reading the source --------------------------------------------------------------------------------


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Targets of ``from X import a, b``: ``X.a`` where that is a module of ours, else ``X``."""
    if node.level:
        base = module.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source for a in node.names]
    return list(dict.fromkeys(targets))  # `from robench.boards import A, B` is one import of one module


class _Imports(ast.NodeVisitor):
    """Collects (target, scope) for every import; scope is "function" inside a def, else "module"."""

    def __init__(self, module: str, is_package: bool):
        self.module, self.is_package = module, is_package
        self.depth = 0
        self.found: list[tuple[str, str, int]] = []

    def _scope(self) -> str:
        return "function" if self.depth else "module"

    def visit_FunctionDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node):
        self.found += [(a.name, self._scope(), node.lineno) for a in node.names]

    def visit_ImportFrom(self, node):
        targets = _resolve_from(node, self.module, self.is_package)
        self.found += [(t, self._scope(), node.lineno) for t in targets]


def imports(module: str) -> list[tuple[str, str, int]]:
    """(imported module, "module" or "function", line) for every import statement of ``module``."""
    path = MODULES[module]
    visitor = _Imports(module, path.name == "__init__.py")
    visitor.visit(ast.parse(path.read_text(), filename=str(path)))
    return visitor.found


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layer(module: str) -> int | None:
    """The layer of the room (folder of robench/) that holds ``module``; None outside every room."""
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 and parts[0] == "robench" else None


# --- the rules -----------------------------------------------------------------------------------------


def test_the_reader_sees_both_scopes():
    """The checks below mean something only if the reader finds lazy imports as well as eager ones."""
    found = {(target, scope) for target, scope, _ in imports("robench.cli")}
    assert ("robench.core.errors", "module") in found
    assert ("robench.engine.request", "function") in found
    assert ("robench.threats.base", "module") in {(t, s) for t, s, _ in imports("robench.threats.pgd")}


def test_every_module_lives_in_a_room():
    """Every module but the entry points sits in a room folder, and every room folder has a layer."""
    unplaced = [m for m in MODULES if m not in OUTSIDE and layer(m) is None]
    assert not unplaced, f"modules outside the rooms of LAYERS (docs/architecture.md): {unplaced}"
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == set(LAYERS) - {"cli"}, "a folder of robench/ without a layer, or a layer without one"


def test_no_module_imports_a_private_name_of_another():
    """Across modules only public names travel: a ``_name`` import is a promise nobody made."""
    found = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("robench"):
                found += [f"{module}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not found, found


@pytest.mark.parametrize("module", [m for m in MODULES if m not in OUTSIDE])
def test_imports_flow_downward(module):
    """A module imports its own layer or lower ones, lazily or not."""
    own = layer(module)
    upward = [
        f"line {line}: {target} (L{layer(target)}, {scope}-level)"
        for target, scope, line in imports(module)
        if within(target, ["robench"]) and target not in OUTSIDE and (layer(target) or 0) > own
    ]
    assert not upward, f"{module} (L{own}) imports upward: {upward}"


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_room_rule(rule):
    subjects = [m for m in MODULES if within(m, rule.subjects) and not within(m, rule.except_)]
    assert subjects, f"rule {rule.name!r} names no existing module: {rule.subjects}"
    broken = [
        f"{m} line {line}: {target} ({scope}-level)"
        for m in subjects
        for target, scope, line in imports(m)
        if within(target, rule.forbidden) and (rule.scope == "any" or scope == "module")
    ]
    assert not broken, f"{rule.name} ({rule.why}): {broken}"


def test_building_a_board_loads_no_torch():
    """Transitively too: what the package imports must not pull torch in through a side door."""
    script = (
        "import sys, robench.boards\n"
        "robench.boards.build('mnist5k')\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {TORCH_STACK!r}))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"building a board imported {result.stdout.strip()}"
