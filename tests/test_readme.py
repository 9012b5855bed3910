"""The README's numbers are the committed records' numbers (issue #15: "every number the README states comes
from a committed record or from a script whose command is given").

The zoo table and the submit timings are prose a person edits; these tests re-read them and hold every cell
against ``leaderboards/runs/mnist5k/<model>/<threat>.json`` (and the card's epochs), so a re-run that moves a
record, or a record that lands for a cell still showing "—", fails here until the README says the same.
"""

import json
import re
from pathlib import Path

import pytest

from robench.models import load_card

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
RUNS = REPO / "leaderboards" / "runs" / "mnist5k"

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


def zoo_rows() -> list[list[str]]:
    section = README.split("## Model zoo", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in section.splitlines() if line.startswith("| model | epochs |"))
    table = section.split(header, 1)[1].strip().splitlines()[1:]  # after the |---| rule
    rows = []
    for line in table:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def record(model: str, threat: str) -> dict | None:
    path = RUNS / model / f"{threat}.json"
    return json.loads(path.read_text()) if path.exists() else None


def pct(cell: str) -> float:
    return float(cell.replace("⚠", "").strip())


def same(cell_pct: float, acc: float) -> bool:
    return abs(cell_pct - 100 * acc) <= 0.05 + 1e-9  # one decimal, either rounding of a half


def test_zoo_table_lists_every_zoo_model_once():
    names = [row[0] for row in zoo_rows()]
    on_disk = sorted(p.name for p in RUNS.iterdir() if (p / "clean.json").exists())
    assert sorted(names) == on_disk


@pytest.mark.parametrize("row", zoo_rows(), ids=lambda row: row[0])
def test_zoo_table_cells_are_the_records(row):
    model, epochs, cells = row[0], row[1], row[2:]
    assert int(epochs) == load_card(model).training["epochs"]
    assert len(cells) == len(COLUMNS)
    for cell, column in zip(cells, COLUMNS, strict=True):
        if isinstance(column, str):
            assert same(pct(cell), record(model, column)["robust_acc"]), (model, column, cell)
            continue
        aa_name, pgd_name = column
        m = re.fullmatch(r"(—|[\d.]+( ⚠)?) \(([\d.]+)\)", cell)
        assert m, f"{model}: cell {cell!r} is not 'AA (PGD)'"
        aa, pgd = record(model, aa_name), record(model, pgd_name)
        assert same(float(m.group(3)), pgd["robust_acc"]), (model, pgd_name, cell)
        if m.group(1) == "—":
            assert aa is None, f"{model}: {aa_name} has a record; the README still shows —"
            continue
        assert aa is not None, f"{model}: the README shows {aa_name} {m.group(1)} but there is no record"
        assert same(pct(m.group(1)), aa["robust_acc"]), (model, aa_name, cell)
        assert bool(m.group(2)) == bool(aa["flags"]), f"{model}: ⚠ must mark exactly the flagged records"


def test_submit_timings_are_the_records_durations():
    """The "Measured here" paragraph of "Submit a checkpoint" quotes each record's ``duration_s``, in s."""
    section = README.split("## Submit a checkpoint", 1)[1].split("\n## ", 1)[0]
    quoted = dict(re.findall(r"`(\w+)` (\d+) s", section.split("Measured here", 1)[1].split("\n\n")[0]))
    assert len(quoted) >= 7, quoted
    for threat, seconds in quoted.items():
        assert int(seconds) == round(record("mnist_cnn_standard", threat)["duration_s"]), threat
