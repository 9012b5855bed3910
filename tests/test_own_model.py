"""Your own model, from a file of your own to a record and to a board (issue #21).

The network here is a small class that robench does not ship, written into a temporary folder: by file
path (``file.py:Class``), by import path with ``--code-dir`` (``module:Class``), from a card, and from
Python with :func:`robench.write_card` and :func:`robench.submit`. Bad input is one line, a non-zero exit
and nothing written.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import textwrap

import pytest
import torch
import yaml
from safetensors.torch import save_file

import robench
from robench.cli import main
from robench.core.errors import UsageError

NET = textwrap.dedent(
    """\
    import torch
    from torch import nn


    class TinyLeNet(nn.Module):
        def __init__(self, num_classes=10, width=4):
            super().__init__()
            self.conv = nn.Conv2d(1, width, 5)
            self.fc = nn.Linear(width * 12 * 12, num_classes)

        def forward(self, x):
            return self.fc(torch.flatten(torch.max_pool2d(torch.relu(self.conv(x)), 2), 1))


    def not_a_net(**kwargs):
        return "a string"
    """
)
N = ["--n-examples", "20"]


@pytest.fixture
def own(tmp_path):
    """(folder with lenet.py, its weights file)."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "lenet.py").write_text(NET)
    namespace: dict = {}
    exec(compile(NET, "lenet.py", "exec"), namespace)  # the same class, to make its weights
    torch.manual_seed(0)
    save_file(namespace["TinyLeNet"]().state_dict(), folder / "w.safetensors")
    return folder, folder / "w.safetensors"


def _eval(capsys, *argv, before=()) -> tuple[int, str, str]:
    code = main([*before, "eval", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_by_file_path_and_by_import_path_give_one_record_naming_the_code(own, tmp_path, capsys):
    folder, weights = own
    common = [
        "--weights",
        str(weights),
        "--dataset",
        "mnist5k",
        "--normalization",
        "none",
        "--threat",
        "clean",
    ]
    code, out, _ = _eval(
        capsys,
        "--model",
        f"{folder}/lenet.py:TinyLeNet",
        *common,
        *N,
        "--runs",
        str(tmp_path / "a"),
        "--json",
    )
    assert code == 0
    by_file = json.loads(out)
    code, out, _ = _eval(
        capsys,
        "--model",
        "lenet:TinyLeNet",
        *common,
        *N,
        "--runs",
        str(tmp_path / "b"),
        "--json",
        before=["--code-dir", str(folder)],
    )
    assert code == 0
    by_module = json.loads(out)
    assert by_file["per_example"] == by_module["per_example"]
    sha = hashlib.sha256((folder / "lenet.py").read_bytes()).hexdigest()
    assert by_file["model_meta"]["code"] == {"callable": "lenet.py:TinyLeNet", "file_sha256": sha}
    assert by_module["model_meta"]["code"] == {"callable": "lenet:TinyLeNet", "file_sha256": sha}
    assert by_file["model"].startswith("TinyLeNet-") and by_file["model_meta"]["normalization"] is None
    # an edit to the code is another model: another identity, so no chunk or record is shared
    (folder / "lenet.py").write_text(NET + "# edited\n")
    code, out, err = _eval(
        capsys,
        "--model",
        f"{folder}/lenet.py:TinyLeNet",
        *common,
        *N,
        "--runs",
        str(tmp_path / "c"),
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["config_hash"] != by_file["config_hash"]


@pytest.mark.parametrize(
    ("model", "extra", "status", "message"),
    [
        ("lenet.py:TinyLeNett", [], 2, "has no 'TinyLeNett'; did you mean 'TinyLeNet'"),
        ("lenet.py:not_a_net", [], 2, "returned a str, not a torch.nn.Module"),
        ("lenet.py:TinyLeNet", ["--arch-kwarg", "width=8"], 1, "do not match"),
        ("nowhere:TinyLeNet", [], 2, "cannot find module 'nowhere'"),
    ],
)
def test_bad_code_is_one_line_and_writes_nothing(own, tmp_path, capsys, model, extra, status, message):
    folder, weights = own
    model = f"{folder}/{model}" if model.startswith("lenet.py") else model
    out = tmp_path / "runs"
    code, _, err = _eval(
        capsys,
        "--model",
        model,
        "--weights",
        str(weights),
        "--dataset",
        "mnist5k",
        "--normalization",
        "none",
        "--threat",
        "clean",
        *N,
        *extra,
        "--runs",
        str(out),
    )
    assert code == status and err.count("\n") == 1 and message in err, err
    assert not list(out.rglob("*.json"))


def test_normalization_is_never_silent(own, tmp_path, capsys):
    folder, weights = own
    code, _, err = _eval(
        capsys,
        "--model",
        f"{folder}/lenet.py:TinyLeNet",
        "--weights",
        str(weights),
        "--dataset",
        "mnist5k",
        "--threat",
        "clean",
        *N,
    )
    assert code == 2 and "needs --normalization" in err
    card = {
        "arch": "lenet.py:TinyLeNet",
        "dataset": "mnist5k",
        "num_classes": 10,
        "weights": {"path": "w.safetensors", "sha256": "0" * 64},
    }
    (folder / "card.yaml").write_text(yaml.safe_dump(card))
    code, _, err = _eval(capsys, "--model", str(folder / "card.yaml"), "--threat", "clean", *N)
    assert code == 2 and "states no normalization" in err and err.count("\n") == 1


def test_from_python_to_a_board_in_three_lines(own, tmp_path, config_tree, capsys):
    """write_card, then submit into a checkout whose board takes only committed, pinned code."""
    from test_submit import BOARD, THREATS  # the tiny board of the submit tests

    folder, _ = own
    root = config_tree(tmp_path / "repo", threats=THREATS, boards={"tiny": BOARD}, models={})
    (root / "nets").mkdir()
    (root / "nets" / "lenet.py").write_text(NET)
    namespace: dict = {}
    exec(compile(NET, "lenet.py", "exec"), namespace)
    module = namespace["TinyLeNet"]()

    card = robench.write_card(
        module,
        root / "cards" / "tiny_lenet.yaml",
        arch="../nets/lenet.py:TinyLeNet",
        dataset="mnist5k",
        normalization="none",
    )
    with pytest.raises(UsageError, match="commit the file that defines TinyLeNet"):
        robench.submit(card, board="tiny")  # the code is only on this disk
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "nets/lenet.py"], check=True)
    robench.submit(card, board="tiny")

    registered = yaml.safe_load((root / "configs" / "models" / "tiny_lenet.yaml").read_text())
    assert registered["arch"] == "../../nets/lenet.py:TinyLeNet" and "sha256" in registered["code"]
    record = json.loads((root / "leaderboards" / "runs" / "mnist" / "tiny_lenet" / "clean.json").read_text())
    assert record["model_meta"]["code"]["callable"] == "lenet.py:TinyLeNet"
    page = (root / "leaderboards" / "tiny.md").read_text()
    assert "| tiny\\_lenet |" in page, page


def test_an_exported_program_runs_only_with_allow_pickle_and_gives_the_same_verdicts(own, tmp_path, capsys):
    """Its loader unpickles (torch.export.pt2_archive): refused by default, then the same verdicts as the
    source module; a static batch dimension or another input shape is one line."""
    folder, weights = own
    namespace: dict = {}
    exec(compile(NET, "lenet.py", "exec"), namespace)
    net = namespace["TinyLeNet"]()
    net.load_state_dict(__import__("safetensors.torch").torch.load_file(weights))
    x = torch.rand(2, 1, 28, 28)
    torch.export.save(
        torch.export.export(net, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}}),
        tmp_path / "n.pt2",
    )
    torch.export.save(torch.export.export(net, (x,)), tmp_path / "static.pt2")
    run = ["--dataset", "mnist5k", "--threat", "clean", *N, "--runs", str(tmp_path / "runs")]
    code, _, err = _eval(capsys, "--model", str(tmp_path / "n.pt2"), *run)
    assert code == 1 and "--allow-pickle" in err and not (tmp_path / "runs").exists()
    code, out, _ = _eval(capsys, "--model", str(tmp_path / "n.pt2"), "--allow-pickle", *run, "--json")
    exported = json.loads(out)
    code, out, _ = _eval(
        capsys,
        "--model",
        f"{folder}/lenet.py:TinyLeNet",
        "--weights",
        str(weights),
        "--normalization",
        "none",
        *run[:-2],
        "--json",
    )
    assert exported["per_example"] == json.loads(out)["per_example"]
    assert (
        exported["model_meta"]["exported_program"] == "n.pt2" and len(exported["model_meta"]["sha256"]) == 64
    )
    code, _, err = _eval(capsys, "--model", str(tmp_path / "static.pt2"), "--allow-pickle", *run)
    assert code == 2 and "exported for batches of exactly 2" in err
