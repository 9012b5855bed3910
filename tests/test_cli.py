"""The command line: records on stdout with --json, one-line errors with the documented exit codes,
and nothing on disk changed by a failing command."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robench.cli import main
from robench.core.record import load
from robench.core.stats import wilson
from robench.engine import evaluate


def _snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}


def test_eval_json_prints_only_records(tmp_path, capsys):
    code = main(
        [
            "eval",
            "--model",
            "mnist_cnn_standard",
            "--threat",
            "clean,spatial_rotation",
            "--n-examples",
            "40",
            "--runs",
            str(tmp_path),
            "--json",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["threat"] for r in records] == ["clean", "spatial_rotation"]
    assert records[1]["robust_acc"] <= records[0]["clean_acc"]
    assert (tmp_path / "mnist" / "mnist_cnn_standard" / "spatial_rotation.json").is_file()


def test_eval_table_shows_the_records_numbers(tmp_path, capsys):
    assert (
        main(
            [
                "eval",
                "--model",
                "mnist_cnn_standard",
                "--threat",
                "clean,spatial_rotation",
                "--n-examples",
                "40",
                "--runs",
                str(tmp_path),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    header = ["model", "dataset", "threat", "n", "clean", "robust", "95%", "CI", "(Wilson)", "ex/s", "flags"]
    assert lines[0].split() == header
    for line, threat in zip(lines[1:3], ["clean", "spatial_rotation"], strict=True):
        record = load(tmp_path / "mnist" / "mnist_cnn_standard" / f"{threat}.json")
        model, dataset, name, n, clean, robust, low, high, _, flags = line.split()
        assert (model, dataset, name, int(n), int(flags)) == ("mnist_cnn_standard", "mnist", threat, 40, 0)
        assert (clean, robust) == (f"{record.clean_acc:.1%}", f"{record.robust_acc:.1%}")
        interval = wilson(record.per_example.count("1"), 40)
        assert (low, high) == (f"[{interval[0]:.1%},", f"{interval[1]:.1%}]")
    assert lines[1].split()[5] != lines[2].split()[5]  # the rows are not one record printed twice
    written = [tmp_path / "mnist" / "mnist_cnn_standard" / f"{t}.json" for t in ("clean", "spatial_rotation")]
    assert lines[3:] == ["records:", *(f"  {path}" for path in written)]


def test_eval_reports_each_threat_as_it_finishes(tmp_path, capsys, monkeypatch):
    """The first threat's line is on stderr before the second threat starts, naming the file written."""
    from robench.engine import request

    seen = []
    real = request.execute

    def execute(spec, started):
        seen.append(capsys.readouterr().err)  # stderr so far, as this threat starts
        return real(spec, started)

    monkeypatch.setattr(request, "execute", execute)
    args = [
        "--threat",
        "clean",
        "--threat",
        "spatial_rotation",
        "--n-examples",
        "20",
        "--runs",
        str(tmp_path),
    ]
    assert main(["eval", "--model", "mnist_cnn_standard", *args]) == 0
    path = tmp_path / "mnist" / "mnist_cnn_standard" / "clean.json"
    record = load(path)
    line = (
        f"robench: mnist_cnn_standard | clean: clean {record.clean_acc:.1%}, robust {record.robust_acc:.1%} "
        f"of 20, "
    )
    assert seen[0] == "" and line in seen[1] and seen[1].rstrip().endswith(f" -> {path}"), seen


def test_table_speeds_below_one_example_per_second_and_resumed_runs(tmp_path):
    """AutoAttack runs at 0.3 ex/s on robust models: the table said 0. A run whose every chunk was read back
    computed nothing (examples_per_s 0): "resumed", not a speed."""
    from robench.cli import _table

    record = evaluate("mnist_cnn_standard", "clean", n_examples=5, progress=False)
    cells = []
    for speed in (0.312, 0.0, 1297.7):
        text = _table([(dataclasses.replace(record, examples_per_s=speed), tmp_path / "r.json")])
        cells.append(text.splitlines()[1].split()[-2])
    assert cells == ["0.31", "resumed", "1298"]


def _json_records(capsys, *args: str) -> list[dict]:
    assert main(["eval", "--model", "mnist_cnn_standard", "--json", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_seed_option_reaches_the_random_draws(tmp_path, capsys):
    weak = ["--threat", "pgd_linf", "--n-examples", "200", "--set", "eps=0.15", "--set", "steps=10"]
    (a,) = _json_records(capsys, *weak, "--seed", "1", "--runs", str(tmp_path / "a"))
    (b,) = _json_records(capsys, *weak, "--seed", "2", "--runs", str(tmp_path / "b"))
    assert (a["seed"], b["seed"]) == (1, 2)
    assert a["per_example"] != b["per_example"] and a["clean_per_example"] == b["clean_per_example"]
    api = evaluate(
        "mnist_cnn_standard",
        "pgd_linf",
        n_examples=200,
        seed=2,
        progress=False,
        overrides={"eps": 0.15, "steps": 10},
    )
    assert api.per_example == b["per_example"]


def test_batch_size_changes_no_verdict(tmp_path, capsys):
    common = ["--threat", "clean,spatial_rotation", "--n-examples", "60"]
    small = _json_records(capsys, *common, "--batch-size", "7", "--runs", str(tmp_path / "small"))
    large = _json_records(capsys, *common, "--runs", str(tmp_path / "large"))
    for s, big in zip(small, large, strict=True):
        assert (s["batch_size"], big["batch_size"]) == (7, 256)
        assert s["config_hash"] != big["config_hash"]  # the batch size is part of the run's identity
        for key in ("per_example", "clean_per_example", "details", "flags"):
            assert s[key] == big[key], (s["threat"], key)


BAD = [
    (["--model", "mnist_cnn_standart", "--threat", "clean"], 2, "did you mean 'mnist_cnn_standard'"),
    (["--model", "mnist_cnn_standard", "--threat", "clean,spatail"], 2, "did you mean 'spatial"),
    (["--model", "mnist_cnn_standard", "--threat", "pgd_linf", "--set", "eps"], 2, "malformed --set"),
    (["--model", "mnist_cnn_standard", "--threat", "pgd_linf", "--set", "eps=-0.1"], 2, "eps must be > 0"),
    (["--model", "mnist_cnn_standard", "--threat", "pgd_linf", "--set", "eps=5"], 2, "exceeds"),
    (["--model", "mnist_cnn_standard", "--threat", "pgd_linf", "--set", "epz=0.1"], 2, "did you mean 'eps'"),
    (["--model", "mnist_cnn_standard", "--threat", "clean", "--dataset", "cifar100"], 2, "classes"),
    (["--model", "mnist_cnn_standard", "--threat", "clean", "--split", "validation"], 2, "split"),
    (["--model", "mnist_cnn_standard", "--threat", "clean", "--device", "tpu"], 2, "device"),
    (
        ["--model", "mnist_cnn_standard", "--threat", "spatial", "--set", "warp=tf"],
        2,
        "warp must be one of 'robench', 'madrylab', got 'tf'",
    ),
    (
        ["--model", "mnist_cnn_standard", "--threat", "spatial_madrylab", "--set", "align_corners=true"],
        2,
        "align_corners applies to the robench warp only",
    ),
]


@pytest.mark.parametrize("args, code, message", BAD)
def test_bad_input_is_one_line_and_changes_nothing(tmp_path, capsys, args, code, message):
    out = tmp_path / "out"
    main(
        [
            "eval",
            "--model",
            "mnist_cnn_standard",
            "--threat",
            "clean",
            "--n-examples",
            "5",
            "--runs",
            str(out),
        ]
    )
    before = _snapshot(out)
    capsys.readouterr()
    assert main(["eval", *args, "--runs", str(out)]) == code
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert _snapshot(out) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_requested_but_absent(tmp_path, capsys):
    assert (
        main(
            [
                "eval",
                "--model",
                "mnist_cnn_standard",
                "--threat",
                "clean",
                "--device",
                "cuda",
                "--runs",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "CUDA was requested" in capsys.readouterr().err


def test_missing_data_dir_and_unwritable_out(tmp_path, capsys):
    assert (
        main(
            [
                "eval",
                "--model",
                "resnet50",
                "--threat",
                "spatial",
                "--data-dir",
                str(tmp_path / "nope"),
                "--runs",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )
    assert "--data-dir" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert (
        main(["eval", "--model", "mnist_cnn_standard", "--threat", "clean", "--runs", str(blocker / "sub")])
        == 2
    )
    assert "output directory" in capsys.readouterr().err


def test_tampered_checkpoint_from_the_shell(tmp_path):
    """End to end in a subprocess: exit status 1, one line, no traceback, record dir untouched."""
    root = Path(__file__).resolve().parent.parent
    weights = tmp_path / "w.safetensors"
    data = bytearray((root / "configs" / "weights" / "mnist_cnn_standard.safetensors").read_bytes())
    card = (root / "configs" / "models" / "mnist_cnn_standard.yaml").read_text()
    data[-3] ^= 1
    weights.write_bytes(bytes(data))
    configs = tmp_path / "configs"
    (configs / "models").mkdir(parents=True)
    (configs / "models" / "tampered.yaml").write_text(
        card.replace("../weights/mnist_cnn_standard.safetensors", str(weights))
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "robench",
            "eval",
            "--model",
            "tampered",
            "--threat",
            "clean",
            "--runs",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env={"ROBENCH_CONFIGS": str(configs), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1, proc.stderr
    assert (
        proc.stderr.strip().startswith("robench: error: sha256 mismatch") and "Traceback" not in proc.stderr
    )
    assert proc.stdout == "" and not any((tmp_path / "o").rglob("*.json"))


def test_ls(capsys):
    assert main(["ls", "threats"]) == 0
    names = capsys.readouterr().out.split()
    assert {"clean", "pgd_linf", "pgd_l2", "spatial", "spatial_rotation", "spatial_translation"} <= set(names)
    assert main(["ls", "models"]) == 0
    assert "mnist_cnn_standard" in capsys.readouterr().out.split()
    assert main(["ls", "datasets"]) == 0
    datasets = [line.split()[0] for line in capsys.readouterr().out.splitlines()]  # one line per entry
    assert {"mnist5k", "mnist", "cifar10", "imagenet"} <= set(datasets) and datasets == sorted(datasets)
    assert main(["ls", "boards"]) == 0
    boards = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"mnist5k", "cifar10", "imagenet"} <= set(boards) and boards == sorted(boards)


def test_ls_and_show_json(capsys):
    assert main(["ls", "boards", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"name": "mnist5k", "dataset": "mnist5k"}.items() <= listed[
        [b["name"] for b in listed].index("mnist5k")
    ].items()
    assert main(["show", "threat", "pgd_linf", "--dataset", "mnist5k", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["family"] == "pgd" and list(shown["parameters"]) == ["mnist5k"]


def test_compare_help_prints_one_percent(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    out = capsys.readouterr().out
    assert "Wilson 95% intervals" in " ".join(out.split()) and "%%" not in out
