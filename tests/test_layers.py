"""The import layers of docs/architecture.md, enforced by reading the source (ast, nothing imported).

Imports flow downward only: a module may import modules of its own layer or a lower one, never a higher
one. On top of that, a few rooms have stricter rules that say what they must stay independent of and
why. Both are written in the two tables below and nowhere else; docs/architecture.md ("Layers") is the
same table in words, so change them together.

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

#: Layer of every room (docs/architecture.md, "Layers"). A module belongs to the room of its longest
#: listed dotted prefix (``robench.threats.pgd`` -> ``robench.threats``).
LAYERS = {
    "robench.errors": 1,
    "robench.registry": 1,
    "robench.schema": 1,
    "robench.config": 1,
    "robench.record": 1,
    "robench.stats": 1,
    "robench.corruption_report": 1,
    "robench.locks": 1,
    "robench.datasets": 2,
    "robench.corruption_sets": 2,
    "robench.archs": 2,
    "robench.models": 2,
    "robench.distributed": 2,
    "robench.devices": 2,
    "robench.imagenet": 2,
    "robench.specs": 2,
    "robench.threats": 3,
    "robench.perturbations": 4,
    "robench.train": 4,
    "robench.engine": 5,
    "robench.boards": 6,
    "robench.cli": 7,
}
#: Flat modules on their way into a package, placed in their future room until they move. An entry must be
#: deleted once its file is gone (test_in_motion_modules_still_exist says so).
IN_MOTION: dict[str, int] = {}
#: Upward imports found when these tables were written, each with the fix it waits for. Marked as strict
#: expected failures, so the test fails once the fix lands until the entry is deleted here.
KNOWN_UPWARD: dict[str, str] = {}
#: The facade re-exports the API lazily (import_module by string) and ``python -m robench`` enters the
#: CLI: both sit outside the layers by design.
OUTSIDE = {"robench", "robench.__main__"}

#: torch and the libraries that import it as soon as they are imported.
TORCH_STACK = ("torch", "torchvision", "timm", "torchattacks", "pyautoattack")
L1 = (
    "robench.errors",
    "robench.registry",
    "robench.schema",
    "robench.config",
    "robench.record",
    "robench.stats",
    "robench.corruption_report",
    "robench.locks",
)
EVALUATION_STACK = (
    "robench.datasets",
    "robench.corruption_sets",
    "robench.imagenet",
    "robench.archs",
    "robench.models",
    "robench.specs",
    "robench.distributed",
    "robench.devices",
    "robench.threats",
    "robench.perturbations",
    "robench.train",
    "robench.engine",
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
        "L1 is torch-free",
        L1,
        TORCH_STACK,
        "any",
        "config and records are read by the boards and by CI without the evaluation stack",
    ),
    Rule(
        "threats do not drive evaluation",
        ("robench.threats",),
        ("robench.engine", "robench.cli", "robench.boards"),
        "any",
        "a threat turns (model, batch) into verdicts; the engine decides what runs, where and when",
    ),
    Rule(
        "threats get their data from the engine",
        ("robench.threats",),
        ("robench.datasets", "robench.corruption_sets", "robench.distributed"),
        "any",
        "the engine hands fitting threats their fit data and owns ranks, so a threat runs anywhere",
    ),
    Rule(
        "nothing imports the CLI",
        ("robench",),
        ("robench.cli",),
        "any",
        "the CLI only unpacks arguments into typed calls; everything it does is reachable from Python",
        except_=("robench.cli", "robench.__main__"),
    ),
    Rule(
        "boards are torch-free at import",
        ("robench.boards",),
        TORCH_STACK + EVALUATION_STACK,
        "module",
        "'robench leaderboard' and '--check' in CI build pages from records without torch",
        except_=("robench.boards.submit", "robench.boards.submit_list"),
    ),
    Rule(
        "submit loads the engine lazily",
        ("robench.boards.submit",),
        ("robench.engine",),
        "module",
        "importing the boards package must not start the evaluation stack; a submission does, when it runs",
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
    rooms = {**LAYERS, **IN_MOTION}
    owners = [p for p in rooms if within(module, [p])]
    return rooms[max(owners, key=len)] if owners else None


# --- the rules -----------------------------------------------------------------------------------------


def test_the_reader_sees_both_scopes():
    """The checks below mean something only if the reader finds lazy imports as well as eager ones."""
    found = {(target, scope) for target, scope, _ in imports("robench.cli")}
    assert ("robench.errors", "module") in found
    assert ("robench.engine.request", "function") in found
    assert ("robench.threats.base", "module") in {(t, s) for t, s, _ in imports("robench.threats.pgd")}


def test_every_module_has_a_room():
    unplaced = [m for m in MODULES if m not in OUTSIDE and layer(m) is None]
    assert not unplaced, f"modules in no room of LAYERS (docs/architecture.md): {unplaced}"


def test_in_motion_modules_still_exist():
    moved = [m for m in IN_MOTION if m not in MODULES]
    assert not moved, f"{moved} moved into robench/boards/: delete them from IN_MOTION"


@pytest.mark.parametrize(
    "module",
    [
        pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=KNOWN_UPWARD[m]))
        if m in KNOWN_UPWARD
        else m
        for m in MODULES
        if m not in OUTSIDE
    ],
)
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
