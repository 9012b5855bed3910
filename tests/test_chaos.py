"""scripts/chaos.py as a (slow) test: two kill rounds under torchrun, then the record must equal an
undisturbed single-process run. docs/reliability.md quotes longer runs of the same script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "chaos.py"


@pytest.mark.slow
def test_the_record_survives_killed_ranks(capsys):
    spec = importlib.util.spec_from_file_location("chaos", SCRIPT)
    chaos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chaos)
    assert chaos.main(["--rounds", "2", "--n-examples", "100", "--seed", "3"]) == 0
    assert "the record equals the uninterrupted one" in capsys.readouterr().out.splitlines()[-1]
