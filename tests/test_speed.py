"""The engine's data and forward paths (#12): streamed batches, the fp32-checked fast path, OOM halving.

Each test compares against the plain path, so it fails if a speed feature changed a value or a verdict.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from robench import datasets
from robench.cli import main
from robench.core import record
from robench.core.errors import UsageError
from robench.engine import RunOptions, evaluate, resolve, run_chunk
from robench.engine.forward import Checked, Forward, Search, Speed
from robench.models import create_model
from robench.runtime import distributed
from robench.threats import BatchContext, create_threat

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


def test_out_of_memory_halving_reaches_the_forwards_of_eot_and_autoattacks_sampled_vote():
    """A vote's gradient attacks call its network themselves (EOT's samples, AutoAttack's ``Sampled``);
    after an out-of-memory they keep to the engine's rows per call too, instead of failing at one example
    per forward."""
    from robench.threats.ops.eot import EOT, Sampled

    vote = create_model("mnist_cnn_worst_of_10_vote", device="cpu")
    squeezed = copy.deepcopy(vote)
    squeezed.model = _FakeOOM(squeezed.model, 20)  # the network: 2 images x 10 transforms at most
    kwargs = dict(n_examples=8, batch_size=8, progress=False, model_name="m", dataset="mnist")
    plain = evaluate(vote, "pgd_linf", **kwargs)
    halved = evaluate(squeezed, "pgd_linf", **kwargs)
    _same_verdicts(plain, halved)
    assert halved.execution == {"forward_batch": 2} and plain.execution == {}  # 8 -> 4 -> 2 images
    squeezed.model.rows = 4  # now 4 images per call of the network
    x = torch.rand(8, 1, 28, 28)
    whole = Sampled(EOT(vote, 10), torch.Generator().manual_seed(1))(x)
    parts = Sampled(EOT(squeezed, 10, max_rows=4), torch.Generator().manual_seed(1))(x)
    assert torch.allclose(whole, parts, atol=1e-5)  # the same draws, four rows a call


def test_fast_path_keeps_grid_verdicts_and_is_recorded():
    model = create_model("mnist_cnn_aug30", device="cpu")
    kwargs = dict(n_examples=30, batch_size=128, progress=False, model_name="m")
    plain = evaluate(model, "spatial", **kwargs)
    fast = evaluate(model, "spatial", speed=Speed("bf16", True), **kwargs)
    _same_verdicts(plain, fast)
    assert fast.execution == {
        "precision": "bf16",
        "memory_format": "channels_last",
        "compile": False,
        "verdicts": "fp32-checked",
    }


def test_auto_precision_takes_bf16_only_where_records_equal_fp32_s_and_only_on_cuda():
    """``--precision auto`` (the CLI's default): bf16 for argmax families on CUDA; PGD (whose bf16 search is
    another protocol), the other gradient families and every CPU run stay fp32."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    auto = Speed("auto", channels_last=True)
    for name, on_cuda in [
        ("clean", "bf16"),
        ("spatial", "bf16"),
        ("pgd_linf", "fp32"),
        ("spatial_pgd", "fp32"),
    ]:
        threat = create_threat(name, "mnist5k")
        assert auto.resolve(cuda, threat) == Speed(on_cuda, channels_last=True), name
        assert auto.resolve(cpu, threat) == Speed("fp32", channels_last=True), name
        assert Speed("bf16").resolve(cpu, threat) == Speed("bf16")  # asked for: as asked


@pytest.mark.parametrize("threat", ["spatial_rotation", "pgd_linf"])
def test_auto_precision_on_the_cpu_writes_the_fp32_record(tmp_path, threat):
    """Byte for byte but the timings: hash, verdicts, details and no ``execution`` at all."""
    kwargs = dict(n_examples=20, progress=False, device="cpu")
    plain = evaluate("mnist_cnn_standard", threat, out_dir=tmp_path / "fp32", **kwargs)
    auto = evaluate("mnist_cnn_standard", threat, out_dir=tmp_path / "auto", speed=Speed("auto"), **kwargs)
    timings = ("started_at", "duration_s", "examples_per_s")
    same = [{k: v for k, v in json.loads(r.to_json()).items() if k not in timings} for r in (plain, auto)]
    assert same[0] == same[1] and auto.execution == {}
    assert auto.config_hash == plain.config_hash


def test_gradient_attacks_without_fast_search_stay_fp32_whatever_is_asked():
    model = create_model("mnist_cnn_standard", device="cpu")
    kwargs = dict(n_examples=20, progress=False, model_name="m")
    plain, asked = (
        evaluate(model, "spatial_pgd", **kwargs),
        evaluate(model, "spatial_pgd", speed=Speed("bf16", True), **kwargs),
    )
    _same_verdicts(plain, asked)
    assert asked.execution == {}


def test_pgd_fast_search_is_recorded_with_its_own_identity(tmp_path):
    """A bf16-searched PGD number may differ from fp32's: the record says so, its hash (and so its chunk
    folder) differs from the fp32 run's, and the record still checks out as self-consistent."""
    model = create_model("mnist_cnn_pgd_linf", device="cpu")
    kwargs = dict(n_examples=24, batch_size=24, progress=False, model_name="m")
    plain = evaluate(model, "pgd_linf", **kwargs)
    fast = evaluate(model, "pgd_linf", speed=Speed("bf16", True), **kwargs)
    assert fast.execution == {
        "precision": "bf16",
        "memory_format": "channels_last",
        "compile": False,
        "verdicts": "fp32-checked",
        "search": "bf16+channels_last",
    }
    assert fast.config_hash != plain.config_hash and record.problem(fast) is None
    assert fast.clean_per_example == plain.clean_per_example  # clean verdicts are fp32's too
    plans = [
        resolve(
            model,
            "pgd_linf",
            RunOptions(
                "mnist",  # what evaluate() chose above: the card's judged dataset
                n_examples=24,
                batch_size=24,
                device="cpu",
                speed=speed,
                model_name="m",
                out_dir=tmp_path,
            ),
        )
        for speed in (Speed(), Speed("bf16", True))
    ]
    assert plans[0].partial_dir() != plans[1].partial_dir()
    assert plans[0].config_hash == plain.config_hash and plans[1].config_hash == fast.config_hash


class _Zero(nn.Module):
    """An exact model that says class 0 whatever the input: no perturbation can fool it on label 0."""

    def forward(self, x):
        return torch.nn.functional.one_hot(torch.zeros(len(x)).long(), 10).float() + x.flatten(1)[:, :10] * 0


class _Liar(_Zero):
    """A 'fast' model exact on its first call (so the bound calibrates to 0), then saying class 1 by a
    wide margin: only the re-check of every fast 'fooled' can catch it."""

    calls = 0

    def forward(self, x):
        self.calls += 1
        lie = torch.nn.functional.one_hot(torch.ones(len(x)).long(), 10) * 50.0
        return super().forward(x) + (lie if self.calls > 1 else 0)


@pytest.mark.parametrize("limit", [None, 4])  # 4: forwards split as after an out-of-memory
def test_pgd_never_claims_a_fooling_the_fp32_model_does_not_make(limit):
    x, y = torch.rand(12, 1, 28, 28), torch.zeros(12, dtype=torch.long)
    pgd = create_threat("pgd_linf", "mnist5k", steps=5)
    search = Search(_Zero(), _Liar(), Speed("bf16"))
    forward = Forward(_Zero(), search, Speed("bf16"))
    forward.limit = limit
    stats = run_chunk(forward, pgd, x, y, 6, 0, 10, "zero")
    assert stats["clean_correct"].all() and stats["robust"].all() and (stats["fooled_at"] == -1).all()
    assert search.rechecked == search.rows and search.bound > 0  # every lie went back to fp32


def test_every_fast_pgd_fooling_is_an_fp32_fooling_at_its_iterate():
    """Each example attacked alone on a Search that logs its iterates: at the iterate the record names,
    the plain fp32 model misclassifies it, and every verdict on the way was the fp32 argmax."""
    model = create_model("mnist_cnn_standard", device="cpu")
    x, y = datasets.load_tensors("mnist5k", "test", 24)
    pgd = create_threat("pgd_linf", "mnist5k", eps=0.1, steps=10, step_size=0.02)

    class Logged(Search):
        def labels(self, xs, logits, ys):
            got = super().labels(xs, logits, ys)
            self.seen.append((xs.detach().clone(), got))
            return got

    search = Logged(model, copy.deepcopy(model).to(memory_format=torch.channels_last), Speed("bf16", True))
    fooled = 0
    for i in range(len(x)):
        search.seen = []
        out = pgd.run_batch(search, x[i : i + 1], y[i : i + 1], torch.ones(1, dtype=torch.bool), _ctx())
        with torch.no_grad():
            exact = [model(xs).argmax(1) for xs, _ in search.seen]
        assert all(torch.equal(e, got) for e, (_, got) in zip(exact, search.seen, strict=True))
        at = int(out["fooled_at"][0])
        if at >= 0:
            fooled += 1
            assert exact[at].item() != y[i].item()
        else:
            assert all(e.item() == y[i].item() for e in exact)
    assert 0 < fooled < len(x)  # the case has both outcomes


def _ctx():
    return BatchContext(torch.Generator().manual_seed(0), 1)


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
        evaluate("mnist_cnn_standard", "spatial", n_examples=5, speed=Speed(compile=True), progress=False)


def test_cpu_ranks_share_the_cores(monkeypatch):
    monkeypatch.delenv("ROBENCH_THREADS", raising=False)
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert distributed.cpu_threads() == 4
    monkeypatch.setenv("ROBENCH_THREADS", "3")
    assert distributed.cpu_threads() == 3
