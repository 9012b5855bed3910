"""Union over threats (issue #23, part 1): a threat set's value comes from its members' committed verdicts,
held here against counts made by hand, on the page, on the site's data and in ``robench compare``; a
record that is not about the same examples is refused in one line; and on the committed mnist board the
set's value is the number of examples robust in both committed records, read straight from the files.
"""

import json
import math
import re
from pathlib import Path

import pytest
from test_leaderboard import BOARD, THREATS, put, section_table

from robench import boards
from robench.boards import site, unions
from robench.boards.details import UNION_TEXT
from robench.boards.render import ranked
from robench.boards.schema import load_board
from robench.cli import main
from robench.core.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
SETS = (
    "  - {threat: spatial+pgd_linf, label: Grid and PGD}\n"
    "  - {threat: spatial+autoattack_linf, label: Grid and AA}\n"
)

# Model a, 100 examples: spatial robust on 0-29, PGD on 20-59, AutoAttack on 25-54; flagged spatial record.
# Model b: spatial robust on 0-49, PGD on 50-89 (disjoint: none survives both); no AutoAttack record.
A = {
    "spatial": "1" * 30 + "0" * 70,
    "pgd_linf": "0" * 20 + "1" * 40 + "0" * 40,
    "autoattack_linf": "0" * 25 + "1" * 30 + "0" * 45,
}
B = {"spatial": "1" * 50 + "0" * 50, "pgd_linf": "0" * 50 + "1" * 40 + "0" * 10}


def union_table(md: str) -> list[list[str]]:
    """The page's threat-set table (under its heading and one paragraph), as lists of cells."""
    return section_table(md.replace(f"\n\n{UNION_TEXT}\n", "", 1), "### Union over threats")


def by_hand(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval written out (z = 1.959964, the normal's 0.975 quantile)."""
    z, p = 1.959964, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def cell(k: int, n: int = 100) -> str:
    low, high = by_hand(k, n)
    return f"{100 * k / n:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


@pytest.fixture
def tree(tmp_path, config_tree):
    return config_tree(tmp_path, threats=THREATS, boards={"x": BOARD + SETS})


def put_ab(root):
    for threat, verdicts in A.items():
        flags = ["grid found a weaker optimum"] if threat == "spatial" else []
        put(root, "a", threat, verdicts.count("1") / 100, per_example=verdicts, flags=flags)
    for threat, verdicts in B.items():
        put(root, "b", threat, verdicts.count("1") / 100, per_example=verdicts)
    for model in "ab":
        put(root, model, "clean", 0.99)


def test_set_value_is_the_hand_count_with_its_wilson_interval(tree):
    put_ab(tree)
    md = boards.build("x", tree).markdown
    table = union_table(md)
    assert table[0] == [
        "Model",
        "Spatial grid [95% CI]",
        "PGD [95% CI]",
        "Grid and PGD [95% CI]",
        "AutoAttack [95% CI]",
        "Grid and AA [95% CI]",
    ]
    rows = {r[0]: r[1:] for r in table[2:]}
    # a: spatial ∩ PGD = 20-29 (10 examples); spatial ∩ AA = 25-29 (5); flagged, as its spatial record is
    assert rows["a"] == [f"{cell(30)} ⚠", cell(40), f"{cell(10)} ⚠", cell(30), f"{cell(5)} ⚠"]
    # b: disjoint, so 0 although each marginal is at least 40%; without AutoAttack no value, not a guess
    assert rows["b"] == [cell(50), cell(40), cell(0), "—", "—"]
    assert cell(10) == "10.0 [5.5, 17.4]" and cell(0) == "0.0 [0.0, 3.7]"
    assert "- ⚠ a / spatial+pgd\\_linf: spatial: grid found a weaker optimum" in md
    assert "- **Grid and PGD** (`spatial+pgd_linf`): robust only where robust under each of spatial" in md

    r = ranked("x", tree).records.set_index(["model", "threat"])
    union = r.loc[("a", "spatial+pgd_linf")]
    assert (union["hits"], union["n"], union["acc"]) == (10, 100, 0.1)
    assert union["verdicts"] == "0" * 20 + "1" * 10 + "0" * 70
    assert ("b", "spatial+autoattack_linf") not in r.index


def test_site_offers_the_set_as_an_axis_and_carries_its_values(tree):
    put_ab(tree)
    files = site.build_site(["x"], tree)
    html = files["x/index.html"].decode()
    data = json.loads(re.search(r'id="board-data">(.*?)</script>', html, re.S).group(1))
    for axes in ("xs", "ys"):
        offered = {a["id"]: a["label"] for a in data[axes]}
        assert offered["spatial+pgd_linf"] == "Grid and PGD"
        assert offered["spatial+autoattack_linf"] == "Grid and AA"
    models = {m["model"]: m for m in data["models"]}
    value, low, high = models["a"]["acc"]["spatial+pgd_linf"]
    assert value == 0.1 and (low, high) == pytest.approx(by_hand(10, 100), abs=1e-6)
    assert models["a"]["acc"]["spatial+autoattack_linf"][0] == 0.05
    assert "spatial+autoattack_linf" not in models["b"]["acc"]  # no member record, no value
    assert "spatial+pgd_linf" in models["a"]["flags"]  # its members' flags
    header = files["x/board.csv"].decode().splitlines()[0].split(",")
    assert "spatial+pgd_linf" in header and "spatial+pgd_linf_ci_high" in header
    page = files["x/models/a.html"].decode()
    assert "<code>spatial+pgd_linf</code>" in page and "--threat spatial+pgd_linf" not in page


def test_compare_takes_a_set_wherever_it_takes_a_threat(tree, capsys):
    put_ab(tree)
    where = ["--board", "x", "--root", str(tree), "--json"]
    assert main(["compare", "a", "b", "--threat", "spatial+pgd_linf,pgd_linf+spatial", *where]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for line in lines:  # the order of the members does not matter
        paired = line["paired"]
        # a survives both on 10 examples, b on none: 10 discordant pairs, all for a
        assert (paired["acc_a"], paired["acc_b"], paired["only_a"], paired["only_b"]) == (0.1, 0.0, 10, 0)
        assert paired["p"] == 2 / 2**10
    # a three-threat set, on every committed record of the dataset (no board)
    assert main(["compare", "a", "b", "--dataset", "mnist5k", "--root", str(tree), "--json"]) == 0
    default = [json.loads(line)["threat"] for line in capsys.readouterr().out.splitlines()]
    assert default == ["clean", "pgd_linf", "spatial"]  # by default the threats both have, no set
    three = "spatial+pgd_linf+autoattack_linf"
    assert main(["compare", "a", "b", "--threat", three, "--dataset", "mnist5k", "--root", str(tree)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].split()[0] == three and "no record of autoattack_linf for b" in out[2]
    assert main(["compare", "a", "a", "--threat", three, "--dataset", "mnist5k", "--root", str(tree)]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[1:3] == ["5.0", "[2.2,"]  # 25-29 survive all three


def test_records_on_other_examples_are_refused_in_one_line(tree, capsys):
    put_ab(tree)
    put(tree, "b", "pgd_linf", 0.4, n_examples=50, per_example="1" * 20 + "0" * 30)
    argv = ["compare", "a", "b", "--threat", "spatial+pgd_linf", "--dataset", "mnist5k", "--root", str(tree)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("robench: error: cannot form spatial+pgd_linf: mnist5k/b/spatial.json and ")
    assert "mnist5k/b/pgd_linf.json do not cover the same examples" in err
    assert "stop: 100}, n=100 vs mnist5k {split: test, start: 0, stop: 50}, n=50" in err


def test_a_board_lists_a_set_it_refuses_instead_of_guessing(tree):
    put_ab(tree)
    other = {"split": "test", "start": 0, "stop": 100, "order": "reversed"}  # same count, other examples
    put(tree, "a", "pgd_linf", 0.4, per_example=A["pgd_linf"], indices=other)
    md = boards.build("x", tree).markdown
    rows = {r[0]: r[1:] for r in union_table(md)[2:]}
    assert rows["a"][2] == "—" and rows["a"][4] == f"{cell(5)} ⚠"
    refused = md.split("## Threat sets refused (not shown)")[1].strip().splitlines()
    assert refused == [
        "- a / spatial+pgd\\_linf: cannot form spatial+pgd\\_linf: mnist5k/a/spatial.json and "
        "mnist5k/a/pgd\\_linf.json do not cover the same examples (mnist5k {split: test, start: 0, stop: "
        "100}, n=100 vs mnist5k {order: reversed, split: test, start: 0, stop: 100}, n=100)"
    ]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda b: b.replace("threat: spatial, label", "threat: spatial+pgd_linf, label"), "x names"),
        (lambda b: b.replace("threat: pgd_linf, label: PGD}", "threat: a+b, label: PGD}"), "y.prefer names"),
        (lambda b: b + "  - {threat: spatial+spatial, label: S}\n", "lists a threat twice"),
        (lambda b: b + "  - {threat: spatial+../x, label: S}\n", "invalid threat name '../x'"),
    ],
)
def test_bad_sets_are_one_line_usage_errors(tree, edit, message):
    (tree / "configs" / "boards" / "x.yaml").write_text(edit(BOARD + SETS))
    with pytest.raises(UsageError) as info:
        load_board("x")
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UsageError, match="lists a threat twice"):
        unions.check("pgd_linf+spatial+pgd_linf")


def test_a_set_with_a_member_not_yet_configured_is_skipped(tree):
    (tree / "configs" / "boards" / "x.yaml").write_text(BOARD + "  - {threat: spatial+not_yet, label: S}\n")
    assert load_board("x").sets == ()


def test_committed_mnist_board_counts_examples_robust_in_both_records():
    """The mnist board's sets against the committed files themselves: position by position, '1' in both."""
    runs = REPO / "leaderboards" / "runs" / "mnist"
    r = ranked("mnist", REPO)
    values = r.records.set_index(["model", "threat"])
    md = (REPO / "leaderboards" / "mnist.md").read_text()
    table = {row[0]: row[1:] for row in union_table(md)[2:]}
    header = union_table(md)[0][1:]
    checked = 0
    for name in r.board.sets:
        column = header.index(next(c.label for c in r.board.columns if c.threat == name) + " [95% CI]")
        for model in r.ranking["model"]:
            files = [runs / model / f"{t}.json" for t in name.split("+")]
            if not all(f.exists() for f in files):
                assert (model, name) not in values.index and table[model.replace("_", "\\_")][column] == "—"
                continue
            verdicts = [json.loads(f.read_text())["per_example"] for f in files]
            both = sum(all(v[i] == "1" for v in verdicts) for i in range(1000))
            assert values.loc[(model, name)]["hits"] == both
            assert table[model.replace("_", "\\_")][column].split()[0] == f"{100 * both / 1000:.1f}"
            checked += 1
    assert checked >= 17  # spatial+pgd_linf for every model, spatial+autoattack_linf where AA exists
