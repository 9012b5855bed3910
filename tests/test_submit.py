"""``robench submit`` end to end on a tiny model, in a temporary tree with its own configs/ and board.

The tree's threats are cheap versions of the board's (3 PGD steps, 7 rotations) on 50 examples, so a whole
submission takes about a second; the repository's own configs and boards are never read or written.
"""

import json
import os
import re
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from robench import boards
from robench.boards import files
from robench.cli import main
from robench.core import record
from robench.core.errors import WriteError
from robench.models import build_network, card_from_dict, create_model, load_card, sha256_file

REPO = Path(__file__).resolve().parent.parent

THREATS = {
    "clean": "family: clean\n",
    "pgd_linf": (
        "family: pgd\nparams: {norm: linf, restarts: 1}\n"
        "per_dataset: {mnist: {eps: 0.3, steps: 3, step_size: 0.1}}\n"
    ),
    "spatial_rotation": (
        "family: spatial_grid\n"
        "params: {max_rotation: 30, n_rotations: 7, max_translation: 0, n_translations: 1,"
        " align_corners: false, axis_curves: false}\n"
    ),
}
BOARD = textwrap.dedent(
    """\
    title: Tiny board
    dataset: mnist
    split: test
    n_examples: 50
    seed: 0
    require: [clean, pgd_linf, spatial_rotation]
    x: {threat: spatial_rotation, label: Rotations}
    y:
      label: Linf robust
      prefer:
        - {threat: autoattack_linf, label: AutoAttack}
        - {threat: pgd_linf, label: PGD}
    columns:
      - {threat: clean, label: Clean}
    """
)
QUICK = "description: One epoch.\nepochs: 1\nbatch_size: 128\nlr: 0.01\nweight_decay: 0\nperturbation: none\n"
CARD = {
    "arch": "mnist_cnn",
    "arch_kwargs": {"width": 4, "hidden": 32},
    "dataset": "mnist5k",
    "num_classes": 10,
    "normalization": {"mean": [0.1307], "std": [0.3081]},
}


@pytest.fixture
def root(tmp_path, config_tree):
    return config_tree(
        tmp_path / "repo", threats=THREATS, boards={"tiny": BOARD}, models={}, recipes={"quick": QUICK}
    )


def checkpoint(path: Path, seed: int, fill: float | None = None) -> Path:
    """Random (or constant) weights for the tiny card's architecture, as safetensors."""
    torch.manual_seed(seed)
    net = build_network(card_from_dict("tiny", {**CARD, "weights": {"pretrained": "x"}}))
    state = {
        k: (torch.full_like(v, fill) if fill is not None else v).contiguous()
        for k, v in net.state_dict().items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def write_card(path: Path, weights: Path, **extra) -> Path:
    data = {
        **CARD,
        "weights": {"path": os.path.relpath(weights, path.parent), "sha256": sha256_file(weights)},
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def submit(root: Path, *args) -> int:
    return main(["submit", *map(str, args), "--root", str(root), "--device", "cpu"])


def snapshot(root: Path) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def page(root: Path) -> str:
    return (root / "leaderboards" / "tiny.md").read_text()


def records(root: Path, model: str) -> dict[str, record.RunRecord]:
    folder = root / "leaderboards" / "runs" / "mnist" / model
    return {p.stem: record.load(p) for p in sorted(folder.glob("*.json"))}


def test_freshly_trained_checkpoint_joins_the_board_in_one_command(root, tmp_path, capsys, page_table):
    from robench.training.train import train

    assert (
        submit(
            root,
            "--checkpoint",
            checkpoint(tmp_path / "rand.safetensors", 0),
            "--arch",
            "mnist_cnn",
            "--arch-kwarg",
            "width=4",
            "--arch-kwarg",
            "hidden=32",
            "--normalization",
            "none",
            "--dataset",
            "mnist5k",
            "--name",
            "random_init",
            "--normalization",
            "0.1307,0.3081",
        )
        == 0
    )
    card_path = train(
        "quick",
        "mnist_cnn",
        name="trained",
        out=tmp_path / "train",
        arch_kwargs={"width": 4, "hidden": 32},
        progress=False,
    )
    capsys.readouterr()

    assert submit(root, card_path) == 0
    out = capsys.readouterr().out

    card = load_card("trained")  # registered: the copied card's relative weights path still resolves
    assert card.source == root / "configs" / "models" / "trained.yaml"
    create_model(card)
    got = records(root, "trained")
    assert sorted(got) == ["clean", "pgd_linf", "spatial_rotation"]
    for r in got.values():
        assert (r.n_examples, r.seed, r.indices) == (50, 0, {"split": "test", "start": 0, "stop": 50})
        assert r.model_meta["weights_sha256"] == sha256_file(tmp_path / "train" / "trained.safetensors")
    clean, x, y = got["clean"].robust_acc, got["spatial_rotation"].robust_acc, got["pgd_linf"].robust_acc
    assert clean > 0.5 and y <= clean and x <= clean  # one epoch learns the digits; PGD and rotations cost

    rows = {r[1]: r for r in page_table(page(root))}
    assert set(rows) >= {"random\\_init", "mnist\\_cnn / quick (trained)"}  # the card's display name
    mine = rows["mnist\\_cnn / quick (trained)"]
    cells = [mine[2], mine[3], mine[4], mine[5]]  # values with their 95% intervals after them
    assert [c.split(" [")[0] for c in cells] == [
        f"{100 * x:.1f}",
        f"{100 * y:.1f}",
        "PGD",
        f"{100 * clean:.1f}",
    ]
    on_front = mine[0] == "★"
    assert f"clean {100 * clean:.1f}%" in out and f"Rotations: {100 * x:.1f}%" in out
    assert ("trained" in out) and (("not on the Pareto front" in out) != on_front)
    assert boards.check(["tiny"], root) == []  # the committed page is what the records produce
    assert not (root / "leaderboards" / ".submit").exists()


def test_claimed_numbers_are_ignored(root, tmp_path, capsys):
    weights = checkpoint(tmp_path / "w.safetensors", 1)
    claimed = {"clean": 0.987, "pgd_linf": 0.965, "spatial_rotation": 0.943}
    capsys.readouterr()
    assert submit(root, write_card(tmp_path / "bragger.yaml", weights, claimed=claimed), "--json") == 0
    report = json.loads(capsys.readouterr().out)  # --json: the report as one object, nothing else
    assert report["model"] == "bragger" and [b["board"] for b in report["boards"]] == ["tiny"]

    from robench.datasets import load_tensors

    x, y = load_tensors("mnist", "test", 50)
    with torch.inference_mode():
        measured = (create_model("bragger")(x).argmax(1) == y).float().mean().item()
    got = records(root, "bragger")
    assert got["clean"].robust_acc == pytest.approx(measured)
    assert all(r.robust_acc != claimed[t] and "claimed" not in r.model_meta for t, r in got.items())
    md = page(root)
    assert not any(f"{100 * v:.1f}" in md for v in claimed.values())


def test_card_fields_cannot_break_or_inject_into_the_page(root, tmp_path, page_table):
    weights = checkpoint(tmp_path / "w.safetensors", 2)
    card = write_card(
        tmp_path / "a__b__.yaml",
        weights,
        display_name="pwn | x <script>alert(1)</script> [x](javascript:alert(1))\n| injected | row |",
        description="<iframe src=x>",
        paper={
            "title": "<img src=x onerror=alert(1)> [t](javascript:alert(1))",
            "url": "javascript:alert(1)",
        },
    )
    assert submit(root, card) == 0
    md = page(root)
    assert "<script" not in md and "<img" not in md and "<iframe" not in md
    assert not re.search(r"(?<!\\)\]\(javascript:", md)  # brackets escaped: no link, whatever its target
    header, _, *rows = page_table(md)
    assert len(rows) == 1 and len(rows[0]) == len(header)  # no extra cell, no extra row
    assert rows[0][1].startswith("pwn \\| x &lt;script&gt;") and "a\\_\\_b\\_\\_" in rows[0][1]
    svg = (root / "leaderboards" / "tiny.svg").read_text()
    assert "<script" not in svg


@pytest.mark.parametrize(
    "url, linked",
    [("https://example.org/p?a=1&b=2", True), ("javascript:alert(1)", False), ("ex.org/p", False)],
)
def test_paper_options_reach_the_card_and_the_page_escaped(root, tmp_path, page_table, url, linked):
    weights = checkpoint(tmp_path / "w.safetensors", 22)
    title, display = "Robust *and* [spatial] | nets", "My_Net <b>"
    options = ["--display-name", display, "--paper-title", title, "--paper-url", url]
    tiny = ["--arch-kwarg", "width=4", "--arch-kwarg", "hidden=32", "--normalization", "0.1307,0.3081"]
    args = ["--checkpoint", weights, "--arch", "mnist_cnn", "--dataset", "mnist5k", "--name", "p", *tiny]
    assert submit(root, *args, *options) == 0

    card = yaml.safe_load((root / "configs" / "models" / "p.yaml").read_text())
    assert (card["display_name"], card["paper"]) == (display, {"title": title, "url": url})
    (row,) = page_table(page(root))[2:]
    assert row[1] == "My\\_Net &lt;b&gt; (p)"
    shown = "Robust \\*and\\* \\[spatial\\] \\| nets"
    paper = page(root).split("### Models")[1].strip().split("\n\n")[0].splitlines()[-1]  # its only row
    assert (f"| [{shown}]({url}) |" if linked else f"| {shown} |") in paper


@pytest.mark.parametrize("name", ["../evil", "..", ".hidden", "a/b", "..evil"])
def test_a_name_that_would_escape_the_records_is_refused(root, tmp_path, capsys, name):
    weights = checkpoint(tmp_path / "w.safetensors", 3)
    before = snapshot(root)
    assert (
        submit(
            root,
            "--checkpoint",
            weights,
            "--arch",
            "mnist_cnn",
            "--arch-kwarg",
            "width=2",
            "--arch-kwarg",
            "hidden=8",
            "--dataset",
            "mnist5k",
            "--name",
            name,
        )
        == 2
    )
    assert "invalid model name" in one_line_error(capsys)
    if "/" not in name:  # the same name as a card file's
        assert submit(root, write_card(tmp_path / "cards" / f"{name}.yaml", weights)) == 2
        assert "invalid model name" in one_line_error(capsys)
    assert snapshot(root) == before
    assert not list(tmp_path.rglob("evil*"))


class Payload:
    """Runs a shell command when unpickled: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("allow", [False, True])
def test_pickle_payload_is_never_executed(root, tmp_path, capsys, allow):
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload(marker)}, evil)
    before = snapshot(root)
    args = ["--checkpoint", evil, "--arch", "mnist_cnn", "--dataset", "mnist5k", "--name", "evil"]
    args += ["--normalization", "none"]
    assert submit(root, *args, *(["--allow-pickle"] if allow else [])) == 1
    err = one_line_error(capsys)
    assert ("weights_only=True" in err) if allow else ("--allow-pickle" in err)
    assert not marker.exists()
    assert snapshot(root) == before  # no card, no records, no board

    torch.load(evil, weights_only=False)  # the payload is live: plain unpickling would have run it
    assert marker.exists()


def test_tampered_checkpoint_is_refused_and_changes_nothing(root, tmp_path, capsys):
    assert (
        submit(root, write_card(tmp_path / "first.yaml", checkpoint(tmp_path / "first.safetensors", 4))) == 0
    )
    weights = checkpoint(tmp_path / "w.safetensors", 5)
    card = write_card(tmp_path / "victim.yaml", weights)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    before = snapshot(root)
    capsys.readouterr()
    assert submit(root, card) == 1
    assert "sha256 mismatch" in one_line_error(capsys)
    assert snapshot(root) == before


def test_a_different_card_under_a_taken_name_needs_force(root, tmp_path, capsys):
    first = checkpoint(tmp_path / "a" / "m.safetensors", 6)
    assert submit(root, write_card(tmp_path / "a" / "m.yaml", first)) == 0
    assert (
        submit(root, write_card(tmp_path / "a" / "m.yaml", first)) == 0
    )  # the same card again: re-evaluated
    second = checkpoint(tmp_path / "b" / "m.safetensors", 7)
    card = write_card(tmp_path / "b" / "m.yaml", second)
    before = snapshot(root)
    capsys.readouterr()
    assert submit(root, card) == 2
    assert "--force" in one_line_error(capsys)
    assert snapshot(root) == before

    assert submit(root, card, "--force") == 0
    assert {r.model_meta["weights_sha256"] for r in records(root, "m").values()} == {sha256_file(second)}
    assert load_card("m").weights.sha256 == sha256_file(second)
    assert boards.check(["tiny"], root) == []


def test_orphan_records_of_the_name_need_force(root, tmp_path, capsys):
    assert submit(root, write_card(tmp_path / "m.yaml", checkpoint(tmp_path / "m.safetensors", 8))) == 0
    (root / "configs" / "models" / "m.yaml").unlink()
    capsys.readouterr()
    assert submit(root, write_card(tmp_path / "m.yaml", checkpoint(tmp_path / "m.safetensors", 9))) == 2
    assert "run records with no card" in one_line_error(capsys)


def test_failing_evaluation_leaves_nothing_behind(root, tmp_path, capsys):
    assert submit(root, write_card(tmp_path / "ok.yaml", checkpoint(tmp_path / "ok.safetensors", 10))) == 0
    before = snapshot(root)
    capsys.readouterr()
    nan = checkpoint(tmp_path / "nan.safetensors", 11, fill=float("nan"))
    assert submit(root, write_card(tmp_path / "nan.yaml", nan)) == 1
    assert "non-finite logits" in one_line_error(capsys)
    assert snapshot(root) == before  # no card, no staging folder, board and records as they were


def watch_engine(monkeypatch, error=None):
    """The threats the engine is asked to run; with ``error``, the second one raises it (the first
    finishes into the staging folder)."""
    from robench.engine import request

    execute, calls = request.execute, []

    def watched(spec, *args, **kwargs):
        calls.append(spec.threat_name)
        if error is not None and len(calls) == 2:
            raise error
        return execute(spec, *args, **kwargs)

    monkeypatch.setattr(request, "execute", watched)
    return calls


def test_a_threat_failing_after_another_finished_leaves_nothing_behind(root, tmp_path, capsys, monkeypatch):
    from robench.core.errors import EvaluationError

    assert submit(root, write_card(tmp_path / "ok.yaml", checkpoint(tmp_path / "ok.safetensors", 16))) == 0
    before = snapshot(root)
    calls = watch_engine(monkeypatch, EvaluationError("model 'm' returned non-finite logits"))
    capsys.readouterr()
    assert submit(root, write_card(tmp_path / "m.yaml", checkpoint(tmp_path / "m.safetensors", 17))) == 1
    assert len(calls) == 2 and "non-finite" in one_line_error(capsys)
    assert snapshot(root) == before  # the first threat's staged record went with the staging folder


def test_an_interrupted_submission_changes_nothing_and_resumes(root, tmp_path, capsys, monkeypatch):
    assert submit(root, write_card(tmp_path / "ok.yaml", checkpoint(tmp_path / "ok.safetensors", 18))) == 0
    before = snapshot(root)
    card = write_card(tmp_path / "m.yaml", checkpoint(tmp_path / "m.safetensors", 19))
    with monkeypatch.context() as patch:
        watch_engine(patch, KeyboardInterrupt())
        assert submit(root, card) == 130
    staging = root / "leaderboards" / ".submit"
    staged = {p.relative_to(staging) for p in staging.rglob("*.json")}
    assert staged == {Path("m/leaderboards/runs/mnist/m/clean.json")}  # kept for the rerun
    assert {p: b for p, b in snapshot(root).items() if ".submit" not in p.parts} == before

    with monkeypatch.context() as patch:
        calls = watch_engine(patch)
        assert submit(root, card) == 0
    assert calls == ["pgd_linf", "spatial_rotation"]  # clean was kept from the interrupted run
    assert sorted(records(root, "m")) == ["clean", "pgd_linf", "spatial_rotation"]
    assert not staging.exists()
    assert boards.check(["tiny"], root) == []


@pytest.mark.parametrize("damage", ["truncated", "edited verdict"])
def test_a_damaged_staged_record_is_evaluated_again(root, tmp_path, capsys, monkeypatch, damage):
    card = write_card(tmp_path / "m.yaml", checkpoint(tmp_path / "m.safetensors", 22))
    with monkeypatch.context() as patch:
        watch_engine(patch, KeyboardInterrupt())
        assert submit(root, card) == 130
    staged = root / "leaderboards" / ".submit" / "m" / "leaderboards" / "runs" / "mnist" / "m"
    staged = staged / "clean.json"
    text = staged.read_text()
    staged.write_text(text[: len(text) // 2] if damage == "truncated" else text.replace('"1', '"0', 1))
    capsys.readouterr()
    with monkeypatch.context() as patch:
        calls = watch_engine(patch)
        assert submit(root, card) == 0
    assert calls == ["clean", "pgd_linf", "spatial_rotation"]
    [line] = [x for x in capsys.readouterr().err.splitlines() if "clean.json" in x]
    assert "evaluating that threat again" in line
    assert boards.check(["tiny"], root) == []


def test_a_rerun_with_other_weights_reuses_nothing_staged(root, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        watch_engine(patch, KeyboardInterrupt())
        assert (
            submit(root, write_card(tmp_path / "m.yaml", checkpoint(tmp_path / "m.safetensors", 20))) == 130
        )
    with monkeypatch.context() as patch:
        calls = watch_engine(patch)
        assert submit(root, write_card(tmp_path / "m.yaml", checkpoint(tmp_path / "m.safetensors", 21))) == 0
    assert calls == ["clean", "pgd_linf", "spatial_rotation"]
    assert {r.model_meta["weights_sha256"] for r in records(root, "m").values()} == {
        sha256_file(tmp_path / "m.safetensors")
    }


def test_failing_board_regeneration_puts_everything_back(root, tmp_path, capsys, monkeypatch):
    ok = checkpoint(tmp_path / "ok.safetensors", 12)
    assert submit(root, write_card(tmp_path / "ok.yaml", ok)) == 0
    before = snapshot(root)
    write = files.write

    def write_then_fail(boards, where):
        write(boards, where)  # the page and the plot are rewritten, then the disk fills up
        raise WriteError(root / "leaderboards" / "tiny.svg", "No space left on device", 28)

    monkeypatch.setattr(files, "write", write_then_fail)
    capsys.readouterr()
    other = checkpoint(tmp_path / "other" / "ok.safetensors", 13)
    assert submit(root, write_card(tmp_path / "other" / "ok.yaml", other), "--force") == 1
    # old card, old records, old page, and (a WriteError is the user's to fix) no staging folder
    assert snapshot(root) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["CARD", "--checkpoint", "W"], "not both"),
        (["CARD", "--arch", "mnist_cnn"], "only go with --checkpoint"),
        (["--checkpoint", "W", "--dataset", "mnist5k", "--name", "m"], "needs --arch"),
        (
            [
                "--checkpoint",
                "W",
                "--arch",
                "mnist_cnn",
                "--dataset",
                "mnist5k",
                "--name",
                "m",
                "--normalization",
                "0.5",
            ],
            "--normalization",
        ),
        (
            ["--checkpoint", "W", "--arch", "mnist_cnn", "--dataset", "mnist5k", "--name", "m"],
            "needs --normalization",
        ),
        (
            [
                "--checkpoint",
                "W",
                "--arch",
                "mnist_cnn",
                "--dataset",
                "cifar10",
                "--name",
                "m",
                "--normalization",
                "none",
            ],
            "no board",
        ),
        (["CARD", "--board", "nope"], "unknown board"),
        ([], "give a card file"),
    ],
)
def test_bad_usage_is_one_line_and_changes_nothing(root, tmp_path, capsys, args, message):
    weights = checkpoint(tmp_path / "w.safetensors", 14)
    card = write_card(tmp_path / "m.yaml", weights)
    before = snapshot(root)
    args = [str(card) if a == "CARD" else str(weights) if a == "W" else a for a in args]
    assert submit(root, *args) == 2
    assert message in one_line_error(capsys)
    assert snapshot(root) == before


def test_root_must_hold_the_configs_in_use(root, tmp_path, capsys):
    card = write_card(tmp_path / "m.yaml", checkpoint(tmp_path / "w.safetensors", 15))
    assert submit(tmp_path / "elsewhere", card) == 2
    assert f"--config-dir {tmp_path / 'elsewhere' / 'configs'}" in one_line_error(capsys)
    assert not (tmp_path / "elsewhere").exists()
