"""End-to-end board builds, writes and checks from records in a temporary tree with its own ``configs/``.

The tests never read the repository's configs: ``ROBENCH_CONFIGS`` points at a tmp tree holding a few
threat files and one board, so they keep passing while the real threat files change.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from robench import boards
from robench.boards import load_board
from robench.boards import plot as plots
from robench.boards.text import pipe_table, protocol_text
from robench.cli import main
from robench.core import record
from robench.core.errors import RobenchError, UsageError

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
def tree(tmp_path, config_tree):
    return config_tree(tmp_path, threats=THREATS, boards={"x": BOARD})


def current_config(threat):
    from robench.core import config

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
        "per_example": "1" * round(acc * 100) + "0" * (100 - round(acc * 100)),
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
    _consistent(values)
    return record.save(record.RunRecord(**values), root / "leaderboards" / "runs")


def _consistent(values: dict) -> None:
    """Verdict strings and a config_hash that agree with the accuracies and protocol ``values`` state, as
    an engine-written record's do (record.problem checks them). Verdicts a test gave are kept; the clean
    verdicts are made a superset of them."""
    n, acc = values["n_examples"], values["robust_acc"]
    if not (isinstance(acc, float) and 0 <= acc <= 1 and isinstance(n, int) and n > 0):
        return  # a deliberately malformed record
    robust = values["per_example"]
    if len(robust) != n:
        robust = "1" * round(acc * n) + "0" * (n - round(acc * n))
    extra = max(0, round(values["clean_acc"] * n) - robust.count("1"))  # clean but not robust
    clean = "".join("1" if r == "1" or (extra := extra - 1) >= 0 else "0" for r in robust)
    values.update(
        per_example=robust,
        clean_per_example=clean,
        robust_acc=robust.count("1") / n,
        clean_acc=clean.count("1") / n,
    )
    values["indices"] = {**values["indices"], "stop": values["indices"]["start"] + n}
    values["config_hash"] = record.config_hash(record.stated_identity(record.RunRecord.from_dict(values)))


def put_model(root, model, clean, pgd, spatial, **kw):
    put(root, model, "clean", clean, **kw)
    put(root, model, "pgd_linf", pgd, **kw)
    put(root, model, "spatial", spatial, **kw)


def test_board_ranks_marks_front_and_lists_what_it_leaves_out(tree, page_table):
    put_model(tree, "spatial_aug", 0.98, 0.02, 0.80, meta={"recipe": {"recipe": "aug_30", "epochs": 3}})
    put_model(tree, "madry", 0.98, 0.90, 0.10)  # front: best y
    put_model(tree, "plain", 0.99, 0.01, 0.05)  # dominated by spatial_aug
    put(tree, "half", "clean", 0.97)  # incomplete
    put_model(tree, "old", 0.9, 0.5, 0.5)
    put(tree, "old", "pgd_linf", 0.6, threat_config={**current_config("pgd_linf"), "steps": 40})
    put_model(tree, "fewer", 0.9, 0.5, 0.5, n_examples=50)
    put(tree, "madry", "consistency", 0.95)  # evaluated, but not listed by the board

    md, plot = boards.build("x", tree)

    header, _, *rows = page_table(md)
    assert [r[1] for r in rows] == ["madry", "spatial\\_aug", "plain"]  # y descending
    assert [r[0] for r in rows] == ["★", "★", ""]
    assert rows[0][2:5] == ["10.0 [5.5, 17.4]", "90.0 [82.6, 94.5]", "PGD"]  # with 95% Wilson intervals
    assert rows[0][5] == "98.0 [93.0, 99.4]"  # the Clean column
    assert header == [
        "Front",
        "Model",
        "Spatial grid [95% CI]",
        "Linf robust [95% CI]",
        "y measured by",
        "Clean [95% CI]",
        "Flags",
    ]
    models = section_table(md, "### Models")
    assert models[3][:3] == ["spatial\\_aug", "tiny", "aug\\_30"]  # a card's training mapping: its recipe
    assert "Future threat" not in md  # listed, but its threat has no config yet
    assert "PGD l2" not in md  # listed, but no shown model has a record for it
    consistency = section_table(md, "### Translation and consistency")
    assert consistency[0] == ["Model", "consistency [95% CI]"]  # evaluated, so shown, though not listed
    assert [r[1] for r in consistency[2:]] == ["95.0 [88.8, 97.8]", "—", "—"]
    assert "- half: missing `pgd_linf`, `spatial`" in md
    assert "- old: missing `pgd_linf`" in md
    stale = md.split("## Stale records (not shown)")[1]
    assert "old / pgd\\_linf: threat config changed (steps: 40 → 100)" in stale
    assert stale.count("fewer /") == 3 and "n\\_examples 50 ≠ 100" in stale
    assert "PGD ℓ∞ ε=0.3, 100 steps, step 0.01, 1 restart" in md  # derived from the resolved config
    assert "unlike Kamath" in md
    assert "![Spatial grid vs Linf robust](x.svg)" in md
    assert (plot.x_label, plot.y_label) == ("Spatial grid", "Linf robust")
    assert [(p.label, round(p.x, 6), round(p.y, 6), p.front) for p in plot.points] == [
        ("madry", 10.0, 90.0, True),
        ("spatial_aug", 80.0, 2.0, True),
        ("plain", 5.0, 1.0, False),
    ]


def test_autoattack_preferred_where_present_and_named_per_row(tree, page_table):
    put_model(tree, "a", 0.9, 0.5, 0.2)
    put_model(tree, "b", 0.9, 0.6, 0.1)
    put(tree, "a", "autoattack_linf", 0.45)
    rows = {r[1]: r for r in page_table(boards.build("x", tree).markdown)[2:]}
    assert rows["a"][3:5] == ["45.0 [35.6, 54.8]", "AutoAttack"]
    assert rows["b"][3:5] == ["60.0 [50.2, 69.1]", "PGD"]
    assert rows["a"][0] == rows["b"][0] == "★"


def test_flagged_record_is_marked_and_its_flags_listed(tree, page_table):
    put_model(tree, "m", 0.9, 0.5, 0.2)
    put(tree, "m", "pgd_linf", 0.95, flags=["robust_acc > clean_acc"])
    md = boards.build("x", tree).markdown
    (row,) = page_table(md)[2:]
    assert row[1] == "m" and row[3] == "95.0 [88.8, 97.8] ⚠" and row[6] == "⚠ pgd\\_linf"
    assert "## Flags\n\n- ⚠ m / pgd\\_linf: robust\\_acc &gt; clean\\_acc" in md


def test_flags_column_names_only_the_records_the_row_shows(tree, page_table):
    """Flags per shown threat (#25.3): a model whose ℓ∞ record is unflagged showed ⚠ in the main table's
    Flags column because of its ℓ2 record, which the main table does not show. The column names only the
    row's x, y and clean records; the ℓ2 flag stays in its detail table and in the Flags section."""
    put_model(tree, "m", 0.9, 0.5, 0.2)
    put(tree, "m", "pgd_l2", 0.4, flags=["l2 warning"])
    md = boards.build("x", tree).markdown
    (row,) = page_table(md)[2:]
    assert row[6] == "" and "⚠" not in "".join(row)
    assert "40.0 [30.9, 49.8] ⚠" in md.split("### ℓp threats")[1] and "- ⚠ m / pgd\\_l2: l2 warning" in md


def test_records_on_different_weights_are_not_mixed(tree, page_table):
    put_model(tree, "m", 0.9, 0.5, 0.2)
    put(tree, "m", "spatial", 0.3, meta={"weights_sha256": "cd" * 32})
    md = boards.build("x", tree).markdown
    assert page_table(md) == []
    assert md.count("run on different weights") == 3


def test_bf16_searched_pgd_is_not_placed_in_a_column_but_argmax_fast_records_are(tree, page_table):
    """A bf16 PGD search has fp32-checked verdicts but not the fp32 trajectory: listed as stale, not shown.
    A fast argmax record equals the fp32 one, so it stays on the board."""
    fast = {
        "precision": "bf16",
        "memory_format": "channels_last",
        "compile": False,
        "verdicts": "fp32-checked",
    }
    put_model(tree, "m", 0.9, 0.5, 0.2)
    put(tree, "m", "spatial", 0.2, execution=fast)
    put(tree, "m", "pgd_linf", 0.45, execution={**fast, "search": "bf16+channels_last"})
    md = boards.build("x", tree).markdown
    assert page_table(md) == [] and "- m: missing `pgd_linf`" in md
    stale = md.split("## Stale records (not shown)")[1]
    assert "m / pgd\\_linf: searched in bf16+channels\\_last, not the fp32 protocol" in stale
    assert "m / spatial" not in stale


def test_empty_board_says_so_and_writes_no_plot(tree):
    page = boards.build("x", tree)
    assert "No complete, current run records" in page.markdown and page.plot is None
    put_model(tree, "a", 0.9, 0.5, 0.2)
    boards.write(["x"], tree)
    assert (tree / "leaderboards" / "x.svg").exists()
    (tree / "leaderboards" / "runs" / "mnist5k" / "a" / "spatial.json").unlink()
    assert boards.write(["x"], tree) == [tree / "leaderboards" / "x.md", tree / "leaderboards" / "x.svg"]
    assert not (tree / "leaderboards" / "x.svg").exists()  # a plot the page no longer shows is removed
    assert "- a: missing `spatial`" in (tree / "leaderboards" / "x.md").read_text()


def test_check_passes_after_write_and_fails_after_a_record_changes(tree, capsys):
    put_model(tree, "a", 0.9, 0.5, 0.2)
    check = ["leaderboard", "--check", "--root", str(tree)]
    assert boards.check(root=tree) == ["leaderboards/x.md", "leaderboards/x.svg"]
    assert main(["leaderboard", "--board", "x", "--root", str(tree)]) == 0
    assert capsys.readouterr().out.splitlines() == ["wrote leaderboards/x.md", "wrote leaderboards/x.svg"]
    assert main(check) == 0 and boards.write(root=tree) == []

    put(tree, "a", "spatial", 0.25)
    capsys.readouterr()
    assert main([*check, "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert "leaderboards/x.md" in summary["stale"] and summary["site_differs"] == []
    assert main(check) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [
        "leaderboards/x.md: stale; run 'robench leaderboard' and commit the result",
        "leaderboards/x.svg: stale; run 'robench leaderboard' and commit the result",
    ]
    (tree / "leaderboards" / "x.md").write_text("hand edit\n")
    boards.write(root=tree)
    assert boards.check(root=tree) == []
    (tree / "leaderboards" / "x.md").write_text("hand edit\n")
    assert boards.check(root=tree) == ["leaderboards/x.md"]


def other_renderer(monkeypatch):
    """Draw every plot as another matplotlib might: the same picture in other bytes."""
    draw = plots.draw
    monkeypatch.setattr(plots, "draw", lambda plot: draw(plot).replace(b"<g ", b"<g  "))


def test_check_compares_the_plot_data_not_the_renderer_bytes(tree, monkeypatch):
    put_model(tree, "a", 0.9, 0.5, 0.2)
    put_model(tree, "b", 0.9, 0.1, 0.6)
    boards.write(root=tree)
    svg = tree / "leaderboards" / "x.svg"
    committed = svg.read_bytes()
    other_renderer(monkeypatch)
    assert plots.to_svg(boards.build("x", tree).plot) != committed
    assert boards.check(root=tree) == [] and boards.write(root=tree) == []  # no churn on an upgrade
    assert svg.read_bytes() == committed

    put(tree, "b", "pgd_linf", 0.15)  # a point moves: the plot is redrawn by this renderer
    assert boards.write(root=tree) == [tree / "leaderboards" / "x.md", svg]
    assert b"<g  " in svg.read_bytes() and boards.check(root=tree) == []


def test_check_fails_on_edited_missing_or_dataless_plot(tree, monkeypatch):
    put_model(tree, "a", 0.9, 0.5, 0.2)
    boards.write(root=tree)
    svg = tree / "leaderboards" / "x.svg"
    good = svg.read_bytes()
    assert b'"y": 50.0' in good
    for broken in (
        good.replace(b'"y": 50.0', b'"y": 60.0'),  # a point's data edited
        good.replace(b'"front": true', b'"front": false'),
        re.sub(rb'<metadata id="robench-plot">[^<]*</metadata>', b"", good),  # a drawing without data
        good.replace(b'"y": 50.0', b'"y": 50.0,,'),  # data that is no longer JSON
    ):
        svg.write_bytes(broken)
        assert boards.check(root=tree) == ["leaderboards/x.svg"]
    svg.unlink()
    assert boards.check(root=tree) == ["leaderboards/x.svg"]
    assert boards.write(root=tree) == [svg] and svg.read_bytes() == good

    monkeypatch.setattr(plots, "STYLE", plots.STYLE + 1)  # the drawing code changed: every plot is redrawn
    assert boards.check(root=tree) == ["leaderboards/x.svg"]


# What tabulate 0.10 (pandas' to_markdown, which made the first pages) prints for TRICKY, with
# disable_numparse=True and colalign=ALIGNS; pipe_table must reproduce it byte for byte.
TRICKY = (
    ["Front", "Model", "ℓ∞ robust", "a\\|b", "é"],
    ["center", "left", "right", "right", "left"],
    [
        ["★", "mnist\\_cnn ⚠", "1.0", "", "x"],
        ["", "ab", "100.0 ⚠", "—", "日本語 text"],
        ["", "a", "2", "3", "éé"],
    ],
)
TABULATED = """\
|  Front  | Model        |   ℓ∞ robust |   a\\|b | é        |
|:-------:|:-------------|------------:|-------:|:---------|
|    ★    | mnist\\_cnn ⚠ |         1.0 |        | x        |
|         | ab           |     100.0 ⚠ |      — | 日本語 text |
|         | a            |           2 |      3 | éé       |"""


def test_table_layout_matches_tabulate_pipe_format():
    assert pipe_table(*TRICKY) == TABULATED
    tabulate = pytest.importorskip("tabulate").tabulate  # no longer a dependency; compare when present
    headers, aligns, rows = TRICKY
    assert tabulate(rows, headers, tablefmt="pipe", disable_numparse=True, colalign=aligns) == TABULATED


INTERVAL = r" \[\d+\.\d, \d+\.\d\]"  # the page's own 95% intervals, the only brackets it may leave bare


def section_table(md, heading):
    """The pipe table right under ``heading`` (e.g. ``### Models``), as lists of cells."""
    after = md.split(f"\n{heading}\n", 1)[1].lstrip("\n")
    lines = after.split("\n\n", 1)[0].splitlines()
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def unescaped(text, chars="*_`$[]|<>"):
    """The markdown/HTML-significant characters in ``text`` that are not backslash-escaped."""
    text = text.replace("\\\\", "")  # an escaped backslash escapes nothing after it
    return re.findall(rf"(?<!\\)[{re.escape(chars)}]", text)


def test_card_strings_cannot_inject_markdown_or_html(tree, page_table):
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

    md = boards.build("x", tree).markdown
    header, _, *rows = page_table(md)
    assert len(rows) == 2 and all(len(r) == len(header) for r in rows)
    evil_row = next(r for r in rows if any("evil" in c for c in r))
    assert all(unescaped(re.sub(INTERVAL, "", c)) == [] for c in evil_row)  # display name, values, flags
    models = section_table(md, "### Models")
    evil_card = next(r for r in models if r[0] == "evil")
    assert len(evil_card) == len(models[0])
    assert all(unescaped(c) == [] for c in evil_card[:4])  # architecture, recipe, paper
    flags = md.split("## Flags")[1].split("## Evaluation")[0]
    assert unescaped(flags) == []
    assert "<script" not in md and "<img" not in md
    assert not re.search(r"(?<!\\)\]\((javascript|http://t)", md)  # no link or image made of card text
    assert "[T](https://ex.org/p?a=1&b=2)" in md  # a plain https url is still a link
    invalid = md.split("## Invalid records (not shown)")[1]
    assert "- x\\|&lt;script&gt; / clean: invalid model or threat name" in invalid


def test_text_spoofing_names_with_urls_do_not_autolink_on_github(tree):
    """Text spoofing (#24.5a): GitHub's cmark-gfm autolinks ``www.``, ``scheme://`` and ``user@host`` in
    plain text, so an escaped display name could still become a link on the board. Each is broken by an
    entity (the text reads the same); cmark-gfm itself, where installed, renders no link."""
    from robench.boards.text import escape

    name = "www.evil.com WWW.x.org https://x.y ftp://f.g me@evil.com (www.a.b)"
    put_model(tree, "spoof", 0.9, 0.5, 0.2, meta={"display_name": name, "recipe": name})
    md = boards.build("x", tree).markdown
    assert "spoof" in md and "://" not in md and "www." not in md.lower()
    assert "me&#x2060;@evil.com" in md and escape("a@b.c") == "a&#x2060;@b.c"
    assert escape("www.a.b") == "www&#46;a.b" and escape("a://b") == "a&#58;//b"
    cmarkgfm = pytest.importorskip("cmarkgfm", reason="cmarkgfm (GitHub's renderer) is not installed")
    from cmarkgfm.cmark import Options

    html = cmarkgfm.github_flavored_markdown_to_html(md, options=Options.CMARK_OPT_UNSAFE)
    assert "<a " not in html and "evil.com" in html
    assert "<a " in cmarkgfm.github_flavored_markdown_to_html(name)  # what it would have done


def test_build_is_byte_deterministic_and_imports_no_torch(tree):
    put_model(tree, "a", 0.9, 0.5, 0.2)
    put_model(tree, "b", 0.9, 0.6, 0.1, meta={"display_name": "B", "recipe": "PGD-AT"})
    first = boards.build("x", tree)
    assert first == boards.build("x", tree)
    # A fresh interpreter gives the same bytes (nothing depends on process state such as hash seeds);
    # neither importing the package nor building and checking a board pulls torch in, and only drawing
    # the plot loads matplotlib.
    script = (
        "import sys, hashlib; from pathlib import Path; import robench.boards as b\n"
        "imported = 'torch' in sys.modules\n"
        f"root = Path({str(tree)!r}); import robench.core.config as c; c.BUILTIN = root / 'configs'\n"
        "page = b.build('x', root); b.check(root=root)\n"
        "built = 'torch' in sys.modules, 'matplotlib' in sys.modules\n"
        "from robench.boards import plot; svg = plot.to_svg(page.plot)\n"
        "digest = hashlib.sha256(page.markdown.encode() + svg).hexdigest()\n"
        "print(imported, *built, 'torch' in sys.modules, digest)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    expected = hashlib.sha256(first.markdown.encode() + plots.to_svg(first.plot)).hexdigest()
    assert result.stdout.split() == ["False", "False", "False", "False", expected]


def test_protocol_numbers_are_written_as_published():
    params = {"norm": "linf", "eps": 8 / 255, "steps": 20, "step_size": 2 / 255, "restarts": 2}
    text = protocol_text("pgd", params)
    assert text == "PGD ℓ∞ ε=8/255, 20 steps, step 2/255, 2 restarts"
    assert protocol_text("clean", {}) == "Clean accuracy, no perturbation"
    assert protocol_text("new_family", {"k": [1, 0.5]}) == "new_family: k=[1, 0.5]"


CLEAN_COLUMN = "  - {threat: clean, label: Clean}\n"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda b: b + "colour: red\n", "unknown key 'colour'"),
        (lambda b: b + "titel: x\n", "did you mean 'title'"),
        (lambda b: b.replace("seed: 0\n", ""), "missing key 'seed'"),
        (lambda b: b.replace("seed: 0\n", "seed: false\n"), "seed must be an integer, got False"),
        (lambda b: b.replace("[clean, pgd_linf, spatial]", "[clean, pgd_lnf]"), "did you mean 'pgd_linf'"),
        (lambda b: b.replace("n_examples: 100", "n_examples: -1"), "n_examples must be a positive integer"),
        (lambda b: b.replace(CLEAN_COLUMN, CLEAN_COLUMN * 2), "more than once"),
        (lambda b: b.replace(CLEAN_COLUMN, CLEAN_COLUMN.replace("label", "lable")), "unknown key 'lable'"),
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
        boards.build("x", tree)


def test_front_neighbours_that_the_paired_test_cannot_separate_are_marked(tree, page_table):
    # a and b trade off by 3 points on each axis: on 100 examples that is noise; c is far from b on both
    put_model(tree, "a", 0.9, 0.50, 0.20)
    put_model(tree, "b", 0.9, 0.47, 0.23)
    put_model(tree, "c", 0.9, 0.05, 0.90)
    md = boards.build("x", tree).markdown
    rows = {r[1]: r[0] for r in page_table(md)[2:]}
    assert rows == {"a": "★≈", "b": "★≈", "c": "★"}
    lines = md.split("## Front neighbours")[1].split("##")[0]
    assert "- a vs b: x -3.0 [" in lines and "McNemar p = 0.25" in lines
    assert "**not distinguishable** (≈)" in lines
    assert "- b vs c: x -67.0 [" in lines and lines.rstrip().endswith(": distinguishable")


def test_plot_labels_the_front_numbers_the_rest_and_never_overlaps(tree):
    from robench.boards import layout

    put_model(tree, "front_y", 0.9, 0.75, 0.0)
    put_model(tree, "front_x", 0.9, 0.0, 0.8)
    for i in range(7):  # seven models near (0, 0), as on the mnist5k board
        put_model(tree, f"crowd_{i}", 0.9, 0.0, 0.01 * (i % 3))
    plot = boards.build("x", tree).plot
    keys = plot.keys()
    assert sorted(keys.values()) == list(range(1, 8)) and "front_x" not in keys
    groups = layout.clusters([p for p in plot.points if not p.front])
    texts = [(p.label, [(p.x, p.y)]) for p in plot.points if p.front]
    texts += [(",".join(str(keys[p.label]) for p in g), [(p.x, p.y) for p in g]) for g in groups]
    labels = layout.place(texts, [(p.x, p.y) for p in plot.points], fontsize=8)
    assert sum(len(g) for g in groups) == 7 and len(groups) < 7  # touching markers share one label
    boxes = []
    for label in labels:
        x, y = layout.to_points(*label.anchor)
        w = 0.62 * 8 * len(label.text)
        left, bottom = x + label.offset[0], y + label.offset[1]
        boxes.append((left, bottom, left + w, bottom + 10.4))
    assert not any(layout._overlaps(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert all(b[0] >= 0 and b[1] >= 0 for b in boxes)
    svg = plots.to_svg(plot).decode()
    assert "Key: number" in svg and "crowd_0" in svg  # the key names every numbered model


def test_compare_prints_paired_differences_and_exact_mcnemar(tree, capsys):
    put_model(tree, "a", 0.9, 0.50, 0.20)
    put_model(tree, "b", 0.9, 0.40, 0.20)
    put(tree, "b", "pgd_linf", 0.4, per_example="0" * 10 + "1" * 40 + "0" * 50)
    args = ["--board", "x", "--threat", "pgd_linf,spatial", "--root", str(tree)]
    assert main(["compare", "a", "b", *args]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "A = a, B = b, on mnist5k (100 paired examples); accuracies in %"
    pgd = out[2].split()
    # a is right on examples 0-49, b on 10-49: 10 discordant, all for a; exact p = 2 / 2**10
    assert pgd[:3] == ["pgd_linf", "50.0", "[40.4,"]
    assert pgd[7:] == ["+10.0", "[+3.8,", "+16.0]", "10", "0", "0.002", "different", "at", "95%"]
    assert out[3].split()[0] == "spatial"
    assert out[3].endswith("0       0          1  not distinguishable at 95%")
    assert "Newcombe" in out[-1] and "McNemar" in out[-1]
    assert main(["compare", "a", "b", *args, "--json"]) == 0
    pgd, spatial = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (pgd["threat"], pgd["paired"]["only_a"], pgd["paired"]["n"], spatial["threat"]) == (
        "pgd_linf",
        10,
        100,
        "spatial",
    )
    assert main(["compare", "a", "nobody", "--root", str(tree)]) == 2
    assert "give --dataset or --board" in capsys.readouterr().err
