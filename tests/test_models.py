"""Model cards and untrusted checkpoints: validated, hash-pinned, never unpickled."""

import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from robench.core.errors import CheckpointError, UsageError
from robench.models import create_model, load_card, load_card_file, sha256_file

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "configs" / "weights" / "mnist_cnn_standard.safetensors"


def _card(tmp_path: Path, weights_file: Path, **changes) -> Path:
    data = yaml.safe_load((ROOT / "configs" / "models" / "mnist_cnn_standard.yaml").read_text())
    data["weights"] = {"path": str(weights_file), "sha256": sha256_file(weights_file)}
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_model_takes_pixels_and_is_frozen(standard_model):
    assert not standard_model.training
    assert not any(p.requires_grad for p in standard_model.parameters())
    assert standard_model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert load_card("mnist_cnn_standard").weights.sha256 == sha256_file(WEIGHTS)


def test_unknown_model_suggests():
    with pytest.raises(UsageError, match="did you mean 'mnist_cnn_standard'"):
        load_card("mnist_cnn_standart")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"arch": None}, "missing key 'arch'"),
        ({"dataset": "mnist6k"}, "did you mean"),
        ({"normalization": "imagenett"}, "normalization"),
        ({"normalization": {"mean": [0.1], "std": [0.0]}}, "positive std"),
        (
            {"normalization": {"mean": [float("nan")], "std": [0.3]}},
            r"normalization: mean\[0\] must be a finite number",
        ),
        ({"weights": {"path": "x.safetensors"}}, "sha256"),
        ({"weights": {"pathh": "x.safetensors", "sha256": "0"}}, "unknown key 'pathh'; did you mean 'path'"),
        ({"weights": {"path": "x.safetensors", "sha256": "0", "format": "pickel"}}, "format must be one of"),
        ({"num_classes": True}, "num_classes must be an integer, got True"),
        ({"library": "keras"}, "library must be one of 'timm', 'torchvision'"),
    ],
)
def test_bad_cards_are_refused_in_one_line(tmp_path, changes, message):
    with pytest.raises(UsageError, match=message) as info:
        load_card_file(_card(tmp_path, WEIGHTS, **changes))
    assert "\n" not in str(info.value) and str(info.value).startswith("model card")


def test_tampered_weights_are_refused(tmp_path):
    weights = tmp_path / "w.safetensors"
    shutil.copy(WEIGHTS, weights)
    card = load_card_file(_card(tmp_path, weights))
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        create_model(card)


def test_truncated_and_missing_weights(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(WEIGHTS.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        create_model(load_card_file(_card(tmp_path, weights)))
    card = load_card_file(_card(tmp_path, weights))
    weights.unlink()
    with pytest.raises(CheckpointError, match="not found"):
        create_model(card)


def test_weights_that_do_not_match_the_architecture(tmp_path):
    with pytest.raises(CheckpointError, match="shape of"):
        create_model(load_card_file(_card(tmp_path, WEIGHTS, arch_kwargs={"width": 8})))


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {_Payload.marker}",))


def test_pickle_payload_is_never_executed(tmp_path):
    _Payload.marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pt"
    weights.write_bytes(pickle.dumps({"net": _Payload()}))
    card_data = yaml.safe_load(_card(tmp_path, weights).read_text())
    card_data["weights"]["format"] = "pickle"
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(card_data))
    card = load_card_file(tmp_path / "card.yaml")
    with pytest.raises(CheckpointError, match="pickle"):
        create_model(card)  # refused outright without allow_pickle
    with pytest.raises(CheckpointError, match="weights_only"):
        create_model(card, allow_pickle=True)  # weights_only=True refuses the payload
    assert not _Payload.marker.exists()


def test_pickle_state_dict_loads_when_allowed(tmp_path, standard_model):
    weights = tmp_path / "plain.pt"
    torch.save(standard_model.net.state_dict(), weights)
    path = _card(tmp_path, weights)
    data = yaml.safe_load(path.read_text())
    data["weights"]["format"] = "pickle"
    path.write_text(yaml.safe_dump(data))
    model = create_model(load_card_file(path), allow_pickle=True)
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(model(x), standard_model(x))


def test_url_weights_are_downloaded_once_and_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    path = _card(tmp_path, WEIGHTS)
    data = yaml.safe_load(path.read_text())
    data["weights"] = {"url": WEIGHTS.as_uri(), "sha256": data["weights"]["sha256"]}
    path.write_text(yaml.safe_dump(data))
    create_model(load_card_file(path))
    assert (tmp_path / "cache" / "weights" / f"{data['weights']['sha256']}.safetensors").is_file()
    data["weights"]["url"] = (tmp_path / "absent.safetensors").as_uri()
    data["weights"]["sha256"] = "0" * 64
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match="could not download"):
        create_model(load_card_file(path))


def test_pretrained_without_network_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(
        CheckpointError, match="put it at .*/torch/hub/checkpoints/resnet50-0676ba61.pth$"
    ) as err:
        create_model("resnet50")
    assert "\n" not in str(err.value)
