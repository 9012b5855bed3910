"""Hostile input, round three (issue #24): each test names its class from the issue and injects the
fault, then checks for one line on stderr, a non-zero exit and nothing lost."""

from __future__ import annotations

import shutil
from pathlib import Path

from robench.cli import main

REPO = Path(__file__).resolve().parent.parent
STANDARD_CARD = REPO / "configs" / "models" / "mnist_cnn_standard.yaml"

#: Half a kilobyte of nested aliases (a mapping's entries): ten levels of nine references each, 9**9
#: leaves once expanded.
ALIAS_BOMB = "".join(f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else '1'}]\n" for i in range(10))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("robench: error: "), err
    return err


def _card_copy(tmp_path: Path, extra: str = "") -> Path:
    """The standard card beside its weights in ``tmp_path``, plus ``extra`` text at its end."""
    (tmp_path / "weights").mkdir(exist_ok=True)
    shutil.copy(REPO / "configs" / "weights" / "mnist_cnn_standard.safetensors", tmp_path / "weights")
    text = STANDARD_CARD.read_text().replace("../weights/", "weights/")
    card = tmp_path / "card.yaml"
    card.write_text(text + extra)
    return card


def _eval(*args: str) -> int:
    return main(["eval", "--threat", "clean", "--n-examples", "8", *args])


def test_class_5c_duplicate_key_in_a_card_is_one_line_naming_file_and_key(tmp_path, capsys):
    """class 5c: a card with two ``weights:`` keys used to load silently with the second winning."""
    card = _card_copy(tmp_path, "weights:\n  path: other.safetensors\n  sha256: " + "0" * 64 + "\n")
    out = tmp_path / "out"
    assert _eval("--model", str(card), "--out", str(out)) == 2
    err = _one_error_line(capsys)
    assert str(card) in err and "duplicate key 'weights'" in err
    assert not out.exists()


def test_class_5c_duplicate_key_in_a_nested_threat_mapping_is_refused(tmp_path, capsys):
    """class 5c: the rule holds at every depth, here inside ``per_dataset.mnist`` of a threat file."""
    (tmp_path / "threats").mkdir()
    (tmp_path / "threats" / "twice.yaml").write_text(
        "family: pgd\nparams: {norm: linf, restarts: 1}\n"
        "per_dataset:\n  mnist: {eps: 0.3, steps: 5, step_size: 0.1, eps: 0.5}\n"
    )
    code = main(["--config-dir", str(tmp_path), "eval", "--model", "mnist_cnn_standard", "--threat", "twice"])
    assert code == 2
    assert "duplicate key 'eps'" in _one_error_line(capsys)


def test_class_6a_alias_bomb_threat_is_refused_before_expansion(tmp_path, capsys):
    """class 6a: a 728-byte alias bomb used to run for a minute and die as 'internal error: MemoryError'.
    Anchors and aliases are refused outright, so the message says so (no expansion ever starts)."""
    (tmp_path / "threats").mkdir()
    bomb = tmp_path / "threats" / "bomb.yaml"
    bomb.write_text("family: pgd\nparams:\n" + ALIAS_BOMB)
    code = main(["--config-dir", str(tmp_path), "eval", "--model", "mnist_cnn_standard", "--threat", "bomb"])
    assert code == 2
    err = _one_error_line(capsys)
    assert str(bomb) in err and "anchors and aliases" in err and "refused" in err


def test_class_6a_alias_bomb_card_is_refused(tmp_path, capsys):
    """class 6a: the same for a model card (``robench eval --model card.yaml``)."""
    card = _card_copy(tmp_path, "claimed:\n" + ALIAS_BOMB)
    assert _eval("--model", str(card), "--out", str(tmp_path / "out")) == 2
    assert "anchors and aliases" in _one_error_line(capsys)


def test_shipped_configs_use_no_anchors_and_no_repeated_keys():
    """Every shipped YAML file reads with the strict loader (robench's own files need neither feature)."""
    from robench.core import config

    for path in sorted(config.BUILTIN.rglob("*.yaml")):
        assert isinstance(config.read_yaml(path), dict), path
