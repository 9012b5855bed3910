"""Models named where they live (#11): timm:, torchvision:, robustbench: and card files, offline.

Weights are random tensors the tests save themselves, placed where a hub download would leave them (the
Hugging Face cache for timm, ``$TORCH_HOME/hub/checkpoints`` for torchvision) or given with ``--weights``,
so the loading code is the one a real download goes through.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import put_in_hf_cache
from safetensors.torch import save_file

from robench.cli import main
from robench.core import config
from robench.core.errors import CheckpointError, UsageError
from robench.models import create_model, load_card, sha256_file


def _save(net: torch.nn.Module, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def test_timm_spec_takes_the_pretrained_config():
    card = load_card("timm:test_resnet")
    assert (card.arch, card.dataset, card.num_classes, card.name) == (
        "test_resnet.r160_in1k",
        "imagenet",
        1000,
        "timm-test_resnet",
    )
    assert card.normalization == {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    # input_size 160, crop_pct 0.95: timm resizes the shorter side to floor(160 / 0.95) = 168
    assert (card.preprocessing.resize, card.preprocessing.crop, card.preprocessing.interpolation) == (
        168,
        160,
        "bilinear",
    )
    assert load_card("timm:resnet10t.c3_in1k").preprocessing.interpolation == "bicubic"


def test_timm_weights_come_from_the_hub_cache(tmp_path, hf_cache):
    torch.manual_seed(0)
    import timm

    net = timm.create_model("test_resnet.r160_in1k")
    weights = _save(net, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError) as err:  # not there yet: one line naming the file and the place
        create_model("timm:test_resnet")
    message = str(err.value)
    assert (
        "\n" not in message
        and "timm/test_resnet.r160_in1k model.safetensors" in message
        and str(hf_cache) in message
    )
    put_in_hf_cache(hf_cache, "timm/test_resnet.r160_in1k", weights)
    model = create_model("timm:test_resnet")
    x = torch.rand(2, 3, 160, 160)
    mean = std = torch.full((1, 3, 1, 1), 0.5)
    assert torch.allclose(model(x), net.eval()((x - mean) / std), atol=1e-5)
    meta = model.card.meta()
    assert meta["weights_sha256"] == sha256_file(weights) and meta["spec"] == "timm:test_resnet"


def test_a_timm_hub_spec_reads_its_config_and_weights_from_the_cache(tmp_path, hf_cache):
    """``timm:hf-hub:ORG/NAME`` (#21): config.json and weights from the local cache, offline; a repository
    that is not there is one line naming the cache and the command that fills it."""
    import json

    import timm

    with pytest.raises(CheckpointError, match="hf download someone/tiny config.json"):
        load_card("timm:hf-hub:someone/tiny")
    torch.manual_seed(1)
    net = timm.create_model("test_resnet")
    put_in_hf_cache(hf_cache, "someone/tiny", _save(net, tmp_path / "w.safetensors"))
    config = {
        "architecture": "test_resnet",
        "num_classes": 1000,
        "pretrained_cfg": {
            "input_size": [3, 160, 160],
            "mean": [0.5] * 3,
            "std": [0.25] * 3,
            "crop_pct": 0.95,
            "interpolation": "bicubic",
        },
    }
    snapshot = next((hf_cache / "models--someone--tiny" / "snapshots").iterdir())
    (snapshot / "config.json").write_text(json.dumps(config))
    model = create_model("timm:hf-hub:someone/tiny")
    x = torch.rand(2, 3, 160, 160)
    assert torch.allclose(model(x), net.eval()((x - 0.5) / 0.25), atol=1e-5)
    meta = model.card.meta()
    assert (meta["arch"], meta["weights_pretrained"]) == ("test_resnet", "hf-hub:someone/tiny")
    assert meta["preprocessing"] == {"resize": 168, "crop": 160, "interpolation": "bicubic"}


def test_torchvision_spec_reads_the_torch_hub_cache_and_local_weights(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    card = load_card("torchvision:resnet18")
    assert (card.preprocessing.resize, card.preprocessing.crop, card.weights.pretrained) == (
        256,
        224,
        "IMAGENET1K_V1",
    )
    torch.manual_seed(1)
    net = torchvision.models.resnet18()
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(net.state_dict(), cached)  # torchvision's own format: a pickle, read with weights_only=True
    x = torch.rand(1, 3, 64, 64)
    from_hub = create_model("torchvision:resnet18")
    local = create_model(load_card("torchvision:resnet18", weights=_save(net, tmp_path / "r18.safetensors")))
    assert torch.allclose(from_hub(x), local(x))
    assert from_hub.card.meta()["weights_sha256"] == sha256_file(cached)
    assert local.card.meta()["weights_sha256"] == sha256_file(tmp_path / "r18.safetensors")
    assert load_card("torchvision:resnet50:IMAGENET1K_V2").preprocessing.resize == 232


def test_eval_record_names_spec_weights_and_preprocessing(tmp_path, imagenet_images, capsys):
    import timm

    imagenet_images(tmp_path / "data" / "val", per_class=1, class_folders=True)
    weights = _save(timm.create_model("test_resnet.r160_in1k"), tmp_path / "w.safetensors")
    out = tmp_path / "runs"
    assert (
        main(
            [
                "eval",
                "--model",
                "timm:test_resnet",
                "--weights",
                str(weights),
                "--threat",
                "clean",
                "--data-dir",
                str(tmp_path / "data"),
                "--runs",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    record = json.loads(capsys.readouterr().out)
    assert record["model"] == "timm-test_resnet" and record["n_examples"] == 3
    meta = record["model_meta"]
    assert meta["spec"] == "timm:test_resnet" and meta["weights_sha256"] == sha256_file(weights)
    assert meta["preprocessing"] == {"resize": 168, "crop": 160, "interpolation": "bilinear"}


def test_card_file_resolves_weights_from_its_folder(tmp_path, capsys):
    shipped = config.BUILTIN / "models" / "mnist_cnn_standard.yaml"
    data = yaml.safe_load(shipped.read_text())
    folder = tmp_path / "cards"
    folder.mkdir()
    (folder / "mine.safetensors").write_bytes((shipped.parent / data["weights"]["path"]).read_bytes())
    data["weights"]["path"] = "mine.safetensors"
    (folder / "mine.yaml").write_text(yaml.safe_dump(data))
    assert (
        main(
            [
                "eval",
                "--model",
                str(folder / "mine.yaml"),
                "--threat",
                "clean",
                "--n-examples",
                "20",
                "--runs",
                str(tmp_path / "runs"),
                "--json",
            ]
        )
        == 0
    )
    record = json.loads(capsys.readouterr().out)
    assert record["model"] == "mine" and record["model_meta"]["spec"] == str(folder / "mine.yaml")
    assert record["clean_acc"] > 0.9


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == "", captured.err
    return lines[0]


@pytest.mark.parametrize(
    "model, extra, code, message",
    [
        ("timm:resnet10x", [], 2, "unknown timm model 'resnet10x'; did you mean 'resnet10t'"),
        ("timm:resnet10t.c3_in1", [], 2, "did you mean 'resnet10t.c3_in1k'?"),
        ("torchvision:resnet19", [], 2, "did you mean 'resnet18'"),
        ("torchvision:resnet18:IMAGENET1K_V3", [], 2, "did you mean 'IMAGENET1K_V1'?"),
        ("no/such/card.yaml", [], 2, "model card file no/such/card.yaml does not exist"),
        ("mnist_cnn_standard", ["--weights", "W"], 2, "--weights goes with a timm: or torchvision: spec"),
        (
            "torchvision:resnet18",
            ["--weights", "W"],
            1,
            "weights of 'torchvision-resnet18' do not match resnet18",
        ),
        ("timm:", [], 2, "names no model"),
    ],
)
def test_bad_specs_are_one_line_and_write_nothing(
    tmp_path, imagenet_images, capsys, model, extra, code, message
):
    import timm

    imagenet_images(tmp_path / "data" / "val", per_class=1, class_folders=True)
    weights = _save(timm.create_model("test_resnet"), tmp_path / "w.safetensors")  # fits no resnet18
    extra = [str(weights) if a == "W" else a for a in extra]
    out = tmp_path / "runs"
    assert (
        main(
            [
                "eval",
                "--model",
                model,
                *extra,
                "--threat",
                "clean",
                "--data-dir",
                str(tmp_path / "data"),
                "--runs",
                str(out),
            ]
        )
        == code
    )
    assert message in _one_line(capsys)
    assert not list(out.rglob("*.json"))


def test_robustbench_spec_fails_in_one_line_without_a_working_package_or_network(tmp_path, monkeypatch):
    import sys
    import types

    card = load_card("robustbench:Carmon2019Unlabeled")
    assert (card.dataset, card.num_classes, card.weights.pretrained) == ("cifar10", 10, "cifar10/Linf")
    with pytest.raises(UsageError, match="unknown RobustBench threat model 'Linff'; did you mean 'Linf'"):
        load_card("robustbench:X:cifar10:Linff")
    monkeypatch.setitem(sys.modules, "robustbench.utils", None)  # as when robustbench cannot be imported
    with pytest.raises(UsageError, match="needs a working robustbench"):
        create_model(card)

    def offline(**kwargs):
        raise ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setitem(sys.modules, "robustbench.utils", types.SimpleNamespace(load_model=offline))
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path))
    with pytest.raises(CheckpointError) as err:
        create_model(card)
    expected = tmp_path / "robustbench" / "cifar10" / "Linf" / "Carmon2019Unlabeled.pt"
    assert str(err.value).endswith(f"put it at {expected}") and "\n" not in str(err.value)


def test_ls_shows_one_line_per_entry_and_the_spec_forms(tmp_path, capsys, monkeypatch):
    from robench.core import config

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine.yaml").write_text(
        "arch: resnet18\nlibrary: torchvision\ndataset: imagenet\n"
    )
    monkeypatch.setattr(config, "_cli_dirs", [])
    assert main(["--config-dir", str(tmp_path), "ls", "models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(config.names("models")) + 1
    assert lines[-1].startswith(
        "--model also takes: path/to/card.yaml, timm:NAME[.TAG], timm:hf-hub:ORG/NAME, "
        "torchvision:NAME[:WEIGHTS]"
    )
    assert next(line for line in lines if line.startswith("mnist_cnn_standard ")).split()[1:] == [
        "mnist_cnn",
        "(timm)",
        "mnist5k",
        "98.2%",
    ]
    assert next(line for line in lines if line.startswith("mine ")).split()[1:] == [
        "resnet18",
        "(torchvision)",
        "imagenet",
        "—",
    ]
    assert main(["ls", "threats"]) == 0
    pgd = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("pgd_linf "))
    assert pgd.split(None, 2)[1:] == [
        "pgd",
        "mnist: norm=linf eps=0.3 | cifar: norm=linf eps=8/255 | imagenet: norm=linf eps=4/255",
    ]
