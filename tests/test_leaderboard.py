"""End-to-end board builds from records in a temporary tree with its own ``configs/``.

The tests never read the repository's configs: ``ROBENCH_CONFIGS`` points at a tmp tree holding a few
threat files and one board, so they keep passing while the real threat files change.
"""

import argparse
import hashlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from robench import leaderboard, record
from robench.boards import load_board
from robench.errors import RobenchError, UsageError

REPO = Path(__file__).resolve().parent.parent

THREATS = {
    "clean": "family: clean\n",
    "pgd_linf": textwrap.dedent(
        """\
        family: pgd
        params: {norm: linf, steps: 20, step_size: 2/255, restarts: 1}
        per_dataset:
          mnist: {eps: 0.3, steps: 100, step_size: 0.01}
          cifar: {eps: 8/255}
        """
    ),
    "autoattack_linf": (
        "family: autoattack\nparams: {norm: linf, version: standard}\nper_dataset: {mnist: {eps: 0.3}}\n"
    ),
    "spatial": "family: spatial_grid\nparams: {max_angle: 30, n_angles: 31, max_shift: 3, n_shifts: 5}\n",
    "pgd_l2": "family: pgd\nparams: {norm: l2, eps: 2.0}\n",
    "consistency": "family: consistency\nparams: {max_shift: 3}\n",
}

BOARD = textwrap.dedent(
    """\
    title: "Test board"
    dataset: mnist5k
    split: test
    n_examples: 100
    seed: 0
    require: [clean, pgd_linf, spatial]
    x: {threat: spatial, label: Spatial grid, note: "Worst case, unlike Kamath et al."}
    y:
      label: Linf robust
      prefer:
        - {threat: autoattack_linf, label: AutoAttack}
        - {threat: pgd_linf, label: PGD}
    columns:
      - {threat: clean, label: Clean}
      - {threat: not_written_yet, label: Future threat}
      - {threat: pgd_l2, label: PGD l2}
    """
)


@pytest.fixture
def tree(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    (configs / "threats").mkdir(parents=True)
    (configs / "boards").mkdir()
    for name, text in THREATS.items():
        (configs / "threats" / f"{name}.yaml").write_text(text)
    (configs / "boards" / "x.yaml").write_text(BOARD)
    monkeypatch.setenv("ROBENCH_CONFIGS", str(configs))
    return tmp_path


def current_config(threat):
    from robench import config

    return config.threat_config(threat, "mnist5k")


def put(root, model, threat, acc, *, meta=None, flags=(), **fields):
    """Write one record as the engine would; ``fields`` override any record field."""
    family = {"autoattack_linf": "autoattack", "pgd_linf": "pgd", "pgd_l2": "pgd", "spatial": "spatial_grid"}
    values = {
        "model": model,
        "dataset": "mnist5k",
        "threat": threat,
        "family": family.get(threat, threat),
        "threat_config": current_config(threat) if threat in THREATS else {},
        "config_hash": "0" * 16,
        "n_examples": 100,
        "clean_acc": 0.99,
        "robust_acc": acc,
        "per_example": "",
        "clean_per_example": "",
        "indices": {"split": "test", "start": 0, "stop": 100},
        "details": {},
        "flags": list(flags),
        "seed": 0,
        "device": "cpu",
        "batch_size": 100,
        "chunk_size": 100,
        "model_meta": {"arch": "tiny", "weights_sha256": "ab" * 32, **(meta or {})},
        "versions": {},
        "started_at": "2024-01-01T00:00:00",
        "duration_s": 1.0,
        "examples_per_s": 100.0,
    }
    values.update(fields)
    return record.save(record.RunRecord(**values), root / "leaderboards" / "runs")


def put_model(root, model, clean, pgd, spatial, **kw):
    put(root, model, "clean", clean, **kw)
    put(root, model, "pgd_linf", pgd, **kw)
    put(root, model, "spatial", spatial, **kw)


def table_rows(md):
    return [line for line in md.splitlines() if line.startswith("|")][2:]


def cells(row):
    """Split a pipe-table row on unescaped pipes, as GitHub does."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]


def test_board_ranks_marks_front_and_lists_what_it_leaves_out(tree):
    put_model(tree, "spatial_aug", 0.98, 0.02, 0.80, meta={"recipe": {"recipe": "aug_30", "epochs": 3}})
    put_model(tree, "madry", 0.98, 0.90, 0.10)  # front: best y
    put_model(tree, "plain", 0.99, 0.01, 0.05)  # dominated by spatial_aug
    put(tree, "half", "clean", 0.97)  # incomplete
    put_model(tree, "old", 0.9, 0.5, 0.5)
    put(tree, "old", "pgd_linf", 0.6, threat_config={**current_config("pgd_linf"), "steps": 40})
    put_model(tree, "fewer", 0.9, 0.5, 0.5, n_examples=50)
    put(tree, "madry", "consistency", 0.95)  # evaluated, but not listed by the board

    md, svg = leaderboard.build("x", tree)

    rows = [cells(r) for r in table_rows(md)]
    assert [r[1] for r in rows] == ["madry", "spatial\\_aug", "plain"]  # y descending
    assert [r[0] for r in rows] == ["★", "★", ""]
    assert rows[0][2:5] == ["10.0", "90.0", "PGD"]
    assert rows[0][5] == "98.0"  # the Clean column
    assert rows[1][7] == "aug\\_30"  # a card's training mapping shows as its recipe name
    header = cells(next(line for line in md.splitlines() if line.startswith("|")))
    assert header[5:] == ["Clean", "consistency", "Recipe", "Paper"]
    assert "Future threat" not in md  # listed, but its threat has no config yet
    assert "PGD l2" not in md  # listed, but no shown model has a record for it
    assert [r[6] for r in rows] == ["95.0", "—", "—"]
    assert "- half: missing `pgd_linf`, `spatial`" in md
    assert "- old: missing `pgd_linf`" in md
    stale = md.split("## Stale records (not shown)")[1]
    assert "old / pgd\\_linf: threat config changed (steps: 40 → 100)" in stale
    assert stale.count("fewer /") == 3 and "n\\_examples 50 ≠ 100" in stale
    assert "PGD ℓ∞ ε=0.3, 100 steps, step 0.01, 1 restart" in md  # derived from the resolved config
    assert "unlike Kamath" in md
    assert "![Spatial grid vs Linf robust](x.svg)" in md
    assert svg.startswith(b"<?xml") and b"spatial_aug" in svg


def test_autoattack_preferred_where_present_and_named_per_row(tree):
    put_model(tree, "a", 0.9, 0.5, 0.2)
    put_model(tree, "b", 0.9, 0.6, 0.1)
    put(tree, "a", "autoattack_linf", 0.45)
    rows = {r[1]: r for r in map(cells, table_rows(leaderboard.build("x", tree).markdown))}
    assert rows["a"][3:5] == ["45.0", "AutoAttack"]
    assert rows["b"][3:5] == ["60.0", "PGD"]
    assert rows["a"][0] == rows["b"][0] == "★"


def test_flagged_record_is_marked_and_its_flags_listed(tree):
    put_model(tree, "m", 0.9, 0.5, 0.2)
    put(tree, "m", "pgd_linf", 0.95, flags=["robust_acc > clean_acc"])
    md = leaderboard.build("x", tree).markdown
    (row,) = map(cells, table_rows(md))
    assert row[1] == "m ⚠" and row[3] == "95.0 ⚠"
    assert "## Flags\n\n- ⚠ m / pgd\\_linf: robust\\_acc &gt; clean\\_acc" in md


def test_records_on_different_weights_are_not_mixed(tree):
    put_model(tree, "m", 0.9, 0.5, 0.2)
    put(tree, "m", "spatial", 0.3, meta={"weights_sha256": "cd" * 32})
    md = leaderboard.build("x", tree).markdown
    assert table_rows(md) == []
    assert md.count("run on different weights") == 3


def test_empty_board_says_so_and_writes_no_plot(tree):
    page = leaderboard.build("x", tree)
    assert "No complete, current run records" in page.markdown and page.svg is None
    put_model(tree, "a", 0.9, 0.5, 0.2)
    leaderboard.write(["x"], tree)
    assert (tree / "leaderboards" / "x.svg").exists()
    (tree / "leaderboards" / "runs" / "mnist5k" / "a" / "spatial.json").unlink()
    assert leaderboard.write(["x"], tree) == [tree / "leaderboards" / "x.md", tree / "leaderboards" / "x.svg"]
    assert not (tree / "leaderboards" / "x.svg").exists()  # a plot the page no longer shows is removed
    assert "- a: missing `spatial`" in (tree / "leaderboards" / "x.md").read_text()


def test_check_passes_after_write_and_fails_after_a_record_changes(tree, capsys):
    put_model(tree, "a", 0.9, 0.5, 0.2)
    args = argparse.Namespace(boards=None, check=True, root=tree)
    assert leaderboard.check(root=tree) == ["leaderboards/x.md", "leaderboards/x.svg"]
    assert leaderboard.main(argparse.Namespace(boards=["x"], check=False, root=tree)) == 0
    assert leaderboard.main(args) == 0 and leaderboard.write(root=tree) == []

    put(tree, "a", "spatial", 0.25)
    assert leaderboard.main(args) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [
        "leaderboards/x.md: stale; run 'robench leaderboard' and commit the result",
        "leaderboards/x.svg: stale; run 'robench leaderboard' and commit the result",
    ]
    (tree / "leaderboards" / "x.md").write_text("hand edit\n")
    leaderboard.write(root=tree)
    assert leaderboard.check(root=tree) == []


def unescaped(text, chars="*_`$[]|<>"):
    """The markdown/HTML-significant characters in ``text`` that are not backslash-escaped."""
    text = text.replace("\\\\", "")  # an escaped backslash escapes nothing after it
    return re.findall(rf"(?<!\\)[{re.escape(chars)}]", text)


def test_card_strings_cannot_inject_markdown_or_html(tree):
    evil = "<script>alert(1)</script> | [x](javascript:alert(1)) *b* _i_ `c` $m$ & ![i](http://t/p.png)\nrow"
    meta = {
        "display_name": evil,
        "recipe": evil,
        "paper": {"title": evil, "url": "javascript:alert(1)", "year": "2020|x"},
    }
    put_model(tree, "evil", 0.9, 0.5, 0.2, meta=meta, flags=[evil])
    put_model(tree, "good", 0.9, 0.4, 0.1, meta={"paper": {"title": "T", "url": "https://ex.org/p?a=1&b=2"}})
    bad = put(tree, "tmp", "clean", 0.5)  # a record in a folder whose name would break the page
    bad_dir = bad.parent.parent / "x|<script>"
    bad_dir.mkdir()
    (bad_dir / "clean.json").write_text(bad.read_text().replace('"tmp"', '"x|<script>"'))
    bad.unlink()

    md = leaderboard.build("x", tree).markdown
    header, _, *rows = [line for line in md.splitlines() if line.startswith("|")]
    assert len(rows) == 2 and all(len(cells(r)) == len(cells(header)) for r in rows)
    evil_row = next(cells(r) for r in rows if "evil" in r)
    assert all(unescaped(c) == [] for c in evil_row)  # display name, values, recipe, paper title
    flags = md.split("## Flags")[1].split("## Evaluation")[0]
    assert unescaped(flags) == []
    assert "<script" not in md and "<img" not in md
    assert not re.search(r"(?<!\\)\]\((javascript|http://t)", md)  # no link or image made of card text
    assert "[T](https://ex.org/p?a=1&b=2)" in md  # a plain https url is still a link
    invalid = md.split("## Invalid records (not shown)")[1]
    assert "- x\\|&lt;script&gt; / clean: invalid model or threat name" in invalid


def test_build_is_byte_deterministic_and_imports_no_torch(tree):
    put_model(tree, "a", 0.9, 0.5, 0.2)
    put_model(tree, "b", 0.9, 0.6, 0.1, meta={"display_name": "B", "recipe": "PGD-AT"})
    first = leaderboard.build("x", tree)
    assert first == leaderboard.build("x", tree)
    # A fresh interpreter gives the same bytes (nothing depends on process state such as hash seeds),
    # and neither importing the module nor building a board pulls torch in.
    script = (
        "import sys, hashlib; import robench.leaderboard as lb; from pathlib import Path\n"
        "imported = 'torch' in sys.modules\n"
        f"page = lb.build('x', Path({str(tree)!r}))\n"
        "print(imported, 'torch' in sys.modules, hashlib.sha256(page.markdown.encode() + page.svg).hexdigest())"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    expected = hashlib.sha256(first.markdown.encode() + first.svg).hexdigest()
    assert result.stdout.split() == ["False", "False", expected]


def test_protocol_numbers_are_written_as_published():
    params = {"norm": "linf", "eps": 8 / 255, "steps": 20, "step_size": 2 / 255, "restarts": 2}
    text = leaderboard.protocol_text("pgd", params)
    assert text == "PGD ℓ∞ ε=8/255, 20 steps, step 2/255, 2 restarts"
    assert leaderboard.protocol_text("clean", {}) == "Clean accuracy, no perturbation"
    assert leaderboard.protocol_text("new_family", {"k": [1, 0.5]}) == "new_family: k=[1, 0.5]"


CLEAN_COLUMN = "  - {threat: clean, label: Clean}\n"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda b: b + "colour: red\n", "unknown keys ['colour']"),
        (lambda b: b.replace("seed: 0\n", ""), "missing keys ['seed']"),
        (lambda b: b.replace("[clean, pgd_linf, spatial]", "[clean, pgd_lnf]"), "did you mean 'pgd_linf'"),
        (lambda b: b.replace("n_examples: 100", "n_examples: -1"), "n_examples must be a positive integer"),
        (lambda b: b.replace(CLEAN_COLUMN, CLEAN_COLUMN * 2), "more than once"),
        (lambda b: b.replace(CLEAN_COLUMN, CLEAN_COLUMN.replace("label", "lable")), "unknown keys ['lable']"),
    ],
)
def test_bad_board_is_a_one_line_usage_error(tree, edit, message):
    path = tree / "configs" / "boards" / "x.yaml"
    path.write_text(edit(BOARD))
    with pytest.raises(UsageError) as info:
        load_board("x")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unreadable_record_is_a_one_line_error(tree):
    path = put(tree, "a", "clean", 0.5)
    path.write_text("{not json")
    with pytest.raises(RobenchError, match="cannot read run record"):
        leaderboard.build("x", tree)
