"""docs/architecture.md states the public API's shape; these tests hold it to the code, so it stays true."""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path

import robench
from robench.cli import build_parser

ARCHITECTURE = (Path(__file__).resolve().parent.parent / "docs" / "architecture.md").read_text()


def _as_documented(name: str, function) -> str:
    """``evaluate(model, threat, dataset="mnist5k", **options)``: names, defaults and the catch-alls of
    the signature, as the page writes them (annotations are the code's business)."""
    parts = []
    for p in inspect.signature(function).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
        elif p.default is p.empty:
            parts.append(p.name)
        else:
            default = f'"{p.default}"' if isinstance(p.default, str) else repr(p.default)
            parts.append(f"{p.name}={default}")
    return f"{name}({', '.join(parts)})"


def test_the_documented_evaluate_signature_is_the_code_s():
    assert f"`{_as_documented('evaluate', robench.evaluate)} ->" in ARCHITECTURE


def test_the_documented_command_list_is_the_parser_s():
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    documented = re.search(r"CLI \(`robench/cli.py`\): `robench ([^`]+)`", ARCHITECTURE).group(1)
    assert documented.split(" | ") == list(commands.choices)
