"""The engine's data and forward paths (#12): streamed batches, the fp32-checked fast path, OOM halving.

Each test compares against the plain path, so it fails if a speed feature changed a value or a verdict.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from robench import datasets, distributed
from robench.cli import main
from robench.engine import evaluate
from robench.engine.forward import Checked, Speed
from robench.errors import UsageError
from robench.models import create_model

ROOT = Path(__file__).resolve().parents[1]
VERDICTS = ("per_example", "clean_per_example", "robust_acc", "clean_acc", "details", "flags", "config_hash")


def _synthetic(root: Path, n: int) -> Path:
    spec = importlib.util.spec_from_file_location(
        "make_synthetic_imagenet", ROOT / "scripts" / "make_synthetic_imagenet.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make(root, n, seed=0, processes=1)
    return root


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return _synthetic(tmp_path_factory.mktemp("synth"), 20)


def _same_verdicts(a, b) -> None:
    for key in VERDICTS:
        assert getattr(a, key) == getattr(b, key), key


def test_synthetic_folder_is_deterministic_and_imagenet_shaped(synth, tmp_path):
    files = sorted(synth.glob("val/*/*.JPEG"))
    assert len(files) == 20 and len({f.parent.name for f in files}) == 20
    again = sorted(_synthetic(tmp_path, 3).glob("val/*/*.JPEG"))
    assert [f.read_bytes() for f in again] == [f.read_bytes() for f in files[:3]]
    from PIL import Image

    with Image.open(files[0]) as image:
        assert image.format == "JPEG" and all(375 <= side <= 500 for side in image.size)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_equal_the_decoded_tensors(synth, workers):
    x, y = datasets.load_tensors("imagenet", "test", 12, synth)
    examples = datasets.first_examples("imagenet", "test", 12, synth)
    batches = list(datasets.stream_batches(examples, 2, 12, 4, torch.device("cpu"), workers))
    assert [len(b) for b, _ in batches] == [4, 4, 2]  # the chunk's own batch boundaries
    assert torch.equal(torch.cat([b for b, _ in batches]), x[2:12]) and torch.equal(
        torch.cat([c for _, c in batches]), y[2:12]
    )
    assert datasets.default_workers(examples) >= 1


def test_in_memory_data_streams_without_workers():
    examples = datasets.first_examples("mnist5k", "test", 50)
    x, y = datasets.load_tensors("mnist5k", "test", 50)
    assert datasets.default_workers(examples) == 0
    got = list(datasets.stream_batches(examples, 10, 50, 16, torch.device("cpu")))
    assert torch.equal(torch.cat([b for b, _ in got]), x[10:]) and torch.equal(
        torch.cat([c for _, c in got]), y[10:]
    )


def test_streamed_evaluation_with_workers_gives_the_same_record(synth):
    torch.manual_seed(0)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 1000))
    runs = [
        evaluate(
            model,
            "spatial_random",
            "imagenet",
            data_dir=str(synth),
            batch_size=8,
            chunk_size=8,
            workers=w,
            model_name="tiny",
            progress=False,
        )
        for w in (0, 2)
    ]
    _same_verdicts(*runs)
    assert runs[0].n_examples == 20 and "execution" not in runs[0].to_json()


class _FakeOOM(nn.Module):
    """Raises CUDA's out-of-memory error (on the CPU) whenever a forward holds more than ``rows`` images."""

    def __init__(self, model: nn.Module, rows: int):
        super().__init__()
        self.model, self.rows, self.card = model, rows, model.card

    def forward(self, x):
        if len(x) > self.rows:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        return self.model(x)


@pytest.mark.parametrize(
    "card, threat", [("mnist_cnn_standard", "spatial"), ("mnist_cnn_worst_of_10", "pgd_linf")]
)
def test_out_of_memory_halves_the_forward_and_keeps_every_verdict(card, threat):
    model = create_model(card, device="cpu")
    kwargs = dict(n_examples=24, batch_size=24, progress=False, model_name="m")
    plain = evaluate(model, threat, **kwargs)
    squeezed = evaluate(_FakeOOM(model, 10), threat, **kwargs)
    _same_verdicts(plain, squeezed)
    assert squeezed.execution == {"forward_batch": 6} and plain.execution == {}  # 24 -> 12 -> 6


def test_fast_path_keeps_grid_verdicts_and_is_recorded():
    model = create_model("mnist_cnn_aug30", device="cpu")
    kwargs = dict(n_examples=30, batch_size=128, progress=False, model_name="m")
    plain = evaluate(model, "spatial", **kwargs)
    fast = evaluate(model, "spatial", precision="bf16", channels_last=True, **kwargs)
    _same_verdicts(plain, fast)
    assert fast.execution == {
        "precision": "bf16",
        "memory_format": "channels_last",
        "compile": False,
        "verdicts": "fp32-checked",
    }


def test_gradient_attacks_stay_fp32_whatever_is_asked():
    model = create_model("mnist_cnn_standard", device="cpu")
    kwargs = dict(n_examples=20, progress=False, model_name="m")
    plain, asked = (
        evaluate(model, "pgd_linf", **kwargs),
        evaluate(model, "pgd_linf", precision="bf16", **kwargs),
    )
    _same_verdicts(plain, asked)
    assert asked.execution == {}


def test_checked_forward_sends_close_margins_back_to_fp32():
    """A 'fast' model off by up to 0.01 per logit: rows with smaller margins must still argmax like fp32."""
    torch.manual_seed(0)
    exact = nn.Linear(8, 5)
    noise = torch.rand(400, 5) * 0.02 - 0.01

    class Noisy(nn.Module):
        def forward(self, x):
            return exact(x) + noise[: len(x)]

    x = torch.randn(400, 8)
    with torch.inference_mode():
        ref = exact(x)
        checked = Checked(exact, Noisy(), Speed(channels_last=True))
        checked(x[:50])  # calibrates the bound on every row
        got = checked(x)
    top = ref.topk(2, 1).values
    assert ((top[:, 0] - top[:, 1]) < 0.02).sum() > 0  # the test has rows a plain noisy argmax could flip
    assert torch.equal(got.argmax(1), ref.argmax(1))
    assert 0 < checked.rechecked < 450


def test_bad_speed_options_fail_in_one_line(capsys, monkeypatch):
    base = [
        "eval",
        "--model",
        "mnist_cnn_standard",
        "--threat",
        "clean",
        "--device",
        "cpu",
        "--n-examples",
        "5",
    ]
    for extra in (["--workers", "-1"], ["--precision", "fp8"]):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("robench: error:") and "\n" not in err

    def cannot(*args, **kwargs):
        raise RuntimeError("inductor needs a C++ compiler\nmore detail")

    monkeypatch.setattr(torch, "compile", lambda model, **kw: cannot)
    with pytest.raises(UsageError, match="--compile: torch cannot compile"):
        evaluate("mnist_cnn_standard", "spatial", n_examples=5, compile=True, progress=False)


def test_cpu_ranks_share_the_cores(monkeypatch):
    monkeypatch.delenv("ROBENCH_THREADS", raising=False)
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert distributed.cpu_threads() == 4
    monkeypatch.setenv("ROBENCH_THREADS", "3")
    assert distributed.cpu_threads() == 3
