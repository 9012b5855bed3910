"""The official corrupted sets, read from tiny stand-ins in RobustBench's layouts (corruption_sets.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from robench.core.errors import DataError, UsageError
from robench.datasets.corruption_sets import open_corrupted_set
from robench.threats import create_threat

M = 6  # images per severity in the stand-in (10,000 in CIFAR-10-C)
ALL = [1, 2, 3, 4, 5]


def _pairs(corruptions):
    return [(c, s) for c in corruptions for s in ALL]


def _cifar_c(root, corruptions=("gaussian_noise", "contrast")):
    """``root/CIFAR-10-C`` with labels 0..5 and, per corruption, rows of constant grey levels that differ
    by image, severity and corruption, so any misaligned row is seen."""
    folder = root / "CIFAR-10-C"
    folder.mkdir(parents=True)
    labels = np.arange(M) % 10
    np.save(folder / "labels.npy", np.tile(labels, 5))
    rng = np.random.default_rng(0)
    for name in corruptions:
        levels = rng.integers(0, 256, size=5 * M, dtype=np.uint8)
        images = np.broadcast_to(levels[:, None, None, None], (5 * M, 32, 32, 3))
        np.save(folder / f"{name}.npy", images.copy())
    return folder, torch.from_numpy(labels).long()


class GreyReader(nn.Module):
    """Predicts class floor(10 * mean pixel): the prediction depends on which row it was given."""

    def forward(self, x):
        logits = torch.zeros(len(x), 10)
        return logits.scatter(1, (x.mean((1, 2, 3)) * 9.99).long()[:, None], 1.0)


def test_cifar_rows_are_the_severity_blocks(tmp_path):
    folder, labels = _cifar_c(tmp_path)
    corrupted = open_corrupted_set("cifar10", "hendrycks", "test", labels[:4], _pairs(["contrast"]), tmp_path)
    rows = np.load(folder / "contrast.npy")
    got = corrupted.images("contrast", 3, 1, 4)
    assert corrupted.name == "CIFAR-10-C" and got.dtype == torch.float32 and got.shape == (3, 3, 32, 32)
    assert torch.equal(got, torch.from_numpy(rows[2 * M + 1 : 2 * M + 4]).permute(0, 3, 1, 2).float() / 255)


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda f: (f / "contrast.npy").unlink(), "contrast.npy is missing"),
        (lambda f: np.save(f / "contrast.npy", np.zeros((5 * M, 32, 32, 3), np.float32)), "is float32"),
        (lambda f: np.save(f / "contrast.npy", np.zeros((4 * M, 32, 32, 3), np.uint8)), "5 severities x 6"),
        (lambda f: (f / "contrast.npy").write_bytes(b"not numpy"), "contrast.npy is not a readable .npy"),
        (lambda f: np.save(f / "labels.npy", np.zeros(5 * M, np.int64)), "labels.npy does not match"),
        (lambda f: np.save(f / "labels.npy", np.zeros(7, np.int64)), "labels.npy has shape [7]"),
    ],
)
def test_bad_files_fail_in_one_line_naming_the_file(tmp_path, damage, needle):
    folder, labels = _cifar_c(tmp_path)
    damage(folder)
    with pytest.raises(DataError) as e:
        open_corrupted_set(
            "cifar10", "hendrycks", "test", labels, _pairs(["gaussian_noise", "contrast"]), tmp_path
        )
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "dataset, split, n, needle",
    [
        ("mnist5k", "test", 4, "has no official hendrycks corrupted set"),
        ("cifar10", "train", 4, "use --split test"),
        ("cifar10", "test", M + 1, f"evaluate at most {M} examples"),
    ],
)
def test_bad_requests_fail_in_one_line(tmp_path, dataset, split, n, needle):
    _cifar_c(tmp_path)
    with pytest.raises(UsageError) as e:
        open_corrupted_set(dataset, "hendrycks", split, torch.arange(n) % 10, _pairs(["contrast"]), tmp_path)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_read_threat_through_the_engine_matches_the_files(tmp_path, monkeypatch):
    """Chunks of 4 and batches of 3 put batches at rows 0, 3, 4: each must get its own rows."""
    from robench.engine import evaluate, spec

    folder, labels = _cifar_c(tmp_path)
    clean = torch.full((M, 3, 32, 32), 0.05)  # floor(10 * 0.05) = 0: clean-correct only for label 0
    monkeypatch.setattr(
        spec,
        "first_examples",
        lambda name, split, n, data_dir, **options: TensorDataset(clean[:n], labels[:n]),
    )
    threat = create_threat(
        "corruptions_read", "cifar10", corruptions=["gaussian_noise", "contrast"], robust_severity=5
    )
    record = evaluate(
        GreyReader(),
        threat,
        "cifar10",
        n_examples=M,
        batch_size=3,
        chunk_size=4,
        data_dir=str(tmp_path),
        progress=False,
    )
    d = record.details
    assert d["source"] == "read" and d["corrupted_set"] == "CIFAR-10-C"
    for name in ("gaussian_noise", "contrast"):
        rows = np.load(folder / f"{name}.npy")[:, 0, 0, 0].reshape(5, M) / 255
        expected = (np.floor(rows * 9.99) == labels.numpy()).mean(1)
        got = [d["accuracy_by_corruption_and_severity"][name][str(s)] for s in ALL]
        assert got == pytest.approx(expected)
    assert record.clean_acc == pytest.approx(1 / M)


def test_read_threat_refuses_a_dataset_without_a_set(standard_model):
    from robench.engine import evaluate

    with pytest.raises(UsageError, match="has no official hendrycks corrupted set"):
        evaluate(standard_model, "corruptions_read", "mnist5k", n_examples=4, progress=False)


def _jpeg(path, value):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((224, 224, 3), value, np.uint8)).save(path, quality=95)


def test_imagenet_c_copies_follow_the_evaluated_file_names(tmp_path):
    wnids = ("n01440764", "n01443537")  # classes 0 and 1 of ILSVRC2012
    for k, wnid in enumerate(wnids):
        for j in range(2):
            _jpeg(tmp_path / "val" / wnid / f"v{j}.JPEG", 100)
            _jpeg(tmp_path / "ImageNet-C" / "fog" / "2" / wnid / f"v{j}.JPEG", 40 * (2 * k + j + 1))
    labels = torch.tensor([0, 1, 0, 1])  # ordered by (rank within class, label)
    corrupted = open_corrupted_set("imagenet", "hendrycks", "test", labels, [("fog", 2)], tmp_path)
    got = corrupted.images("fog", 2, 0, 4)
    assert corrupted.name == "ImageNet-C" and got.shape == (4, 3, 224, 224)
    # rows: (n01440764, v0), (n01443537, v0), (n01440764, v1), (n01443537, v1)
    assert got.mean((1, 2, 3)).mul(255).round().tolist() == pytest.approx([40, 120, 80, 160], abs=2)
    with pytest.raises(DataError, match="not the evaluated ones"):
        open_corrupted_set(
            "imagenet", "hendrycks", "test", torch.tensor([1, 0, 0, 1]), [("fog", 2)], tmp_path
        )
    with pytest.raises(DataError, match="ImageNet-C/fog/3 is missing"):
        open_corrupted_set("imagenet", "hendrycks", "test", labels, [("fog", 2), ("fog", 3)], tmp_path)
    (tmp_path / "ImageNet-C" / "fog" / "2" / wnids[1] / "v1.JPEG").unlink()
    with pytest.raises(DataError, match=r"n01443537/v1\.JPEG"):
        corrupted.images("fog", 2, 0, 4)


def _mnist_c(root, corruptions=("fog", "stripe")):
    """``root/mnist_c/<corruption>/test_{images,labels}.npy``, grey levels that differ by image and
    corruption."""
    labels = np.arange(M) % 10
    rng = np.random.default_rng(1)
    for name in corruptions:
        folder = root / "mnist_c" / name
        folder.mkdir(parents=True)
        levels = rng.integers(0, 256, size=M, dtype=np.uint8)
        images = np.broadcast_to(levels[:, None, None, None], (M, 28, 28, 1))
        np.save(folder / "test_images.npy", images.copy())
        np.save(folder / "test_labels.npy", labels)
    return torch.from_numpy(labels).long()


def test_mnist_c_read_through_the_engine_matches_the_files(tmp_path, monkeypatch):
    from robench.engine import evaluate, spec

    labels = _mnist_c(tmp_path)
    clean = torch.full((M, 1, 28, 28), 0.05)
    monkeypatch.setattr(
        spec,
        "first_examples",
        lambda name, split, n, data_dir, **options: TensorDataset(clean[:n], labels[:n]),
    )
    threat = create_threat("mnist_c_read", "mnist", corruptions=["fog", "stripe"])
    record = evaluate(
        GreyReader(),
        threat,
        "mnist",
        n_examples=M,
        batch_size=4,
        chunk_size=5,
        data_dir=str(tmp_path),
        progress=False,
    )
    d = record.details
    assert d["source"] == "read" and d["corrupted_set"] == "mnist_c" and d["suite"] == "MNIST-C"
    for name, severity in (("fog", "5"), ("stripe", "0")):
        rows = np.load(tmp_path / "mnist_c" / name / "test_images.npy")[:, 0, 0, 0] / 255
        expected = (np.floor(rows * 9.99) == labels.numpy()).mean()
        assert d["accuracy_by_corruption_and_severity"][name][severity] == pytest.approx(expected)


@pytest.mark.parametrize(
    "damage, error, needle",
    [
        (
            lambda f: (f / "stripe" / "test_images.npy").unlink(),
            DataError,
            "stripe/test_images.npy is missing",
        ),
        (
            lambda f: np.save(f / "fog" / "test_labels.npy", np.zeros(M, np.int64)),
            DataError,
            "does not match",
        ),
        (
            lambda f: np.save(f / "fog" / "test_images.npy", np.zeros((M, 28, 28), np.uint8)),
            DataError,
            "not uint8 [6, 28, 28, 1]",
        ),
    ],
)
def test_bad_mnist_c_files_fail_in_one_line(tmp_path, damage, error, needle):
    labels = _mnist_c(tmp_path)
    damage(tmp_path / "mnist_c")
    with pytest.raises(error) as e:
        open_corrupted_set("mnist", "mnist_c", "test", labels, [("fog", 5), ("stripe", 0)], tmp_path)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_suite_reads_only_its_datasets(tmp_path):
    with pytest.raises(UsageError, match="no official mnist_c corrupted set: evaluate mnist"):
        open_corrupted_set("cifar10", "mnist_c", "test", torch.arange(4), [("fog", 5)], tmp_path)
