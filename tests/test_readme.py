"""The README's and the docs' numbers are the committed records' numbers (issue #15: "every number the README
states comes from a committed record or from a script whose command is given"), and the README's three
commands are the ones CI runs.

The zoo table, the quick start's output and the submit timings are text a person edits; these tests re-read
them and hold every cell against the records they name. Which records is read from the text itself (the
zoo table's caption names ``leaderboards/runs/<dataset>/…``, the output's rows their dataset, the timings
paragraph its board), so moving a block to another board means editing the text, not these tests.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from robench.boards import load_board
from robench.core.stats import successes, wilson
from robench.models import load_card

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
BOARDS_PAGE = (REPO / "docs" / "boards.md").read_text()
RECORDS = REPO / "leaderboards" / "runs"

#: the zoo table's columns after model and epochs: one threat, or (AutoAttack, PGD) for "AA (PGD)" cells
COLUMNS = (
    "clean",
    ("autoattack_linf", "pgd_linf"),
    ("autoattack_l2", "pgd_l2"),
    "spatial",
    "spatial_rotation",
    "spatial_translation",
    "translation_sweep",
    "consistency",
)


def section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section of ``text``, up to the next ``## `` heading."""
    assert f"\n## {heading}\n" in text, f"no section '## {heading}'"
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```\w*\n(.*?)^```$", text, flags=re.M | re.S)


def zoo_runs() -> Path:
    """The records folder that the zoo table's caption names: ``leaderboards/runs/<dataset>/…``."""
    m = re.search(r"`leaderboards/runs/([\w-]+)/<model>/<threat>\.json`", section(README, "Model zoo"))
    assert m, "the zoo table's caption must name the records it shows"
    return RECORDS / m.group(1)


def zoo_rows() -> list[list[str]]:
    body = section(README, "Model zoo")
    header = next(line for line in body.splitlines() if line.startswith("| model | epochs |"))
    table = body.split(header, 1)[1].strip().splitlines()[1:]  # after the |---| rule
    rows = []
    for line in table:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def record(runs: Path, model: str, threat: str) -> dict | None:
    path = runs / model / f"{threat}.json"
    return json.loads(path.read_text()) if path.exists() else None


def pct(cell: str) -> float:
    return float(cell.replace("⚠", "").replace("%", "").strip())


def same(cell_pct: float, acc: float) -> bool:
    return abs(cell_pct - 100 * acc) <= 0.05 + 1e-9  # one decimal, either rounding of a half


def test_zoo_table_lists_every_zoo_model_once():
    runs = zoo_runs()
    names = [row[0] for row in zoo_rows()]
    on_disk = sorted(p.name for p in runs.iterdir() if (p / "clean.json").exists())
    assert sorted(names) == on_disk


@pytest.mark.parametrize("row", zoo_rows(), ids=lambda row: row[0])
def test_zoo_table_cells_are_the_records(row):
    runs = zoo_runs()
    model, epochs, cells = row[0], row[1], row[2:]
    assert int(epochs) == load_card(model).training["epochs"]
    assert len(cells) == len(COLUMNS)
    for cell, column in zip(cells, COLUMNS, strict=True):
        if isinstance(column, str):
            rec = record(runs, model, column)
            if cell == "—":  # a record not yet run, as the caption says
                assert rec is None, f"{model}: {column} has a record; the README still shows —"
                continue
            assert rec is not None, f"{model}: the README shows {column} {cell} but there is no record"
            assert same(pct(cell), rec["robust_acc"]), (model, column, cell)
            continue
        aa_name, pgd_name = column
        m = re.fullmatch(r"(—|[\d.]+( ⚠)?) \(([\d.]+)\)", cell)
        assert m, f"{model}: cell {cell!r} is not 'AA (PGD)'"
        aa, pgd = record(runs, model, aa_name), record(runs, model, pgd_name)
        assert same(float(m.group(3)), pgd["robust_acc"]), (model, pgd_name, cell)
        if m.group(1) == "—":
            assert aa is None, f"{model}: {aa_name} has a record; the README still shows —"
            continue
        assert aa is not None, f"{model}: the README shows {aa_name} {m.group(1)} but there is no record"
        assert same(pct(m.group(1)), aa["robust_acc"]), (model, aa_name, cell)
        assert bool(m.group(2)) == bool(aa["flags"]), f"{model}: ⚠ must mark exactly the flagged records"


def test_submit_timings_are_the_records_durations():
    """The "Measured here" paragraph of docs/boards.md "Submit a checkpoint" quotes each record's
    ``duration_s``, in s, for the model and board it names."""
    paragraph = section(BOARDS_PAGE, "Submit a checkpoint").split("Measured here", 1)[1].split("\n\n")[0]
    model = re.search(r"the shipped `(\w+)`", paragraph).group(1)
    board = re.search(r"the `(\w+)`\s+board's protocol", paragraph).group(1)
    runs = RECORDS / load_board(board).dataset
    quoted = dict(re.findall(r"`(\w+)` (\d+) s", paragraph))
    assert len(quoted) >= 7, quoted
    for threat, seconds in quoted.items():
        assert int(seconds) == round(record(runs, model, threat)["duration_s"]), threat


# --- the quick start: three commands, and the output the main job prints


def quick_start_commands() -> list[str]:
    """The first fenced block of the README: install, the main job, the tests."""
    return fenced_blocks(README)[0].strip().splitlines()


def example_output() -> tuple[list[list[str]], list[str]]:
    """The quick start's example output: the table's rows (split on runs of spaces) and the record paths."""
    block = next(b for b in fenced_blocks(section(README, "Quick start")) if b.startswith("model "))
    table, paths = block.split("records:\n", 1)
    rows = [line.split() for line in table.strip().splitlines()]
    return rows, paths.split()


def test_the_readme_s_test_command_is_the_one_ci_runs():
    install, _main, tests = quick_start_commands()
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert tests in ci, f"the README's test command {tests!r} is not what .ci/run runs"
    extra = re.search(r'pip install -e "\.\[(\w+)\]"', install).group(1)
    assert extra in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_the_example_output_is_the_committed_records():
    """Each row the quick start shows (n, clean, robust, interval, flags) is the committed record of the
    board protocol the main job runs (its first N test images, seed 0), and the paths are where it writes."""
    rows, paths = example_output()
    header, rows = rows[0], rows[1:]
    assert header[:4] == ["model", "dataset", "threat", "n"], header
    assert [Path(p).parts for p in paths] == [("runs", r[1], r[0], f"{r[2]}.json") for r in rows]
    for model, dataset, threat, n, clean, robust, low, high, _speed, flags in rows:
        rec = record(RECORDS / dataset, model, threat)
        assert rec is not None, f"no committed record {dataset}/{model}/{threat}"
        ci = wilson(successes(rec["per_example"], rec["n_examples"], rec["robust_acc"]), rec["n_examples"])
        shown = (int(n), clean, robust, f"{low} {high}", int(flags))
        expected = (
            rec["n_examples"],
            f"{rec['clean_acc']:.1%}",
            f"{rec['robust_acc']:.1%}",
            f"[{ci[0]:.1%}, {ci[1]:.1%}]",
            len(rec["flags"]),
        )
        assert shown == expected, (threat, shown, expected)


@pytest.mark.slow
def test_the_main_job_prints_what_the_quick_start_shows(tmp_path):
    """The second command, as typed, in a fresh folder: the same rows (all but ex/s) and record paths."""
    command = shlex.split(quick_start_commands()[1])
    assert command[0] == "robench"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "robench", *command[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows, paths = example_output()
    table, printed_paths = proc.stdout.split("records:\n", 1)
    printed = [line.split() for line in table.strip().splitlines()]

    def without_speed(rows: list[list[str]]) -> list[list[str]]:
        return rows[:1] + [row[:8] + row[9:] for row in rows[1:]]  # ex/s depends on the machine

    assert without_speed(printed) == without_speed(rows)
    assert printed_paths.split() == paths
