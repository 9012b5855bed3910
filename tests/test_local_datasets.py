"""MNIST's train split, CIFAR-10/100 and SVHN from a user's folder (#21 item 6): torchvision's layout, the
files as distributed, one ``.npz``; CIFAR's pickles read without running code; one-line errors naming the
expected paths. Every fixture is a few images written here (idx with numpy, CIFAR batches with pickle, SVHN's
``.mat`` with scipy), and torchvision's download is replaced by a stub, so nothing touches the network."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from conftest import idx_bytes

from robench import datasets
from robench.cli import main
from robench.core.errors import DataError
from robench.datasets import local

N = 10  # images per split: 5 CIFAR-10 training batches of 2


@pytest.fixture(autouse=True)
def fetches(monkeypatch) -> list[tuple[str, str, Path]]:
    """No test reaches the network: the download fails as it does offline, and records what was asked."""
    calls = []

    def offline(name: str, split: str, root: Path) -> None:
        calls.append((name, split, root))
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(local, "fetch", offline)
    monkeypatch.delenv("ROBENCH_DATA", raising=False)
    return calls


def _arrays(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``N`` random uint8 [N, C, H, W] images and labels covering the dataset's last class."""
    shape = local.SHAPES[name]
    rng = np.random.RandomState(seed)
    x = rng.randint(0, 256, (N, shape.channels, shape.size, shape.size), dtype=np.uint8)
    y = (np.arange(N) * 7 + seed) % shape.num_classes
    y[-1] = shape.num_classes - 1
    return x, y


def _cifar_batch(x: np.ndarray, y: np.ndarray, label_key: str, protocol: int = 4) -> bytes:
    """A CIFAR python batch as the originals hold it: a dict of a uint8 [N, 3072] array, a list of labels
    and strings."""
    batch = {"batch_label": "a test batch", "data": x.reshape(len(x), -1), label_key: y.tolist()}
    return pickle.dumps(batch, protocol=protocol)


def _write(name: str, layout: str, root: Path, split: str, x: np.ndarray, y: np.ndarray) -> None:
    """``split`` of ``name`` written in ``layout`` under ``root``."""
    if layout in ("npz", "npz NHWC"):
        images = x.transpose(0, 2, 3, 1) if layout == "npz NHWC" else x
        np.savez(
            root / f"{name}.npz",
            **{f"{split}_x": images[:, 0] if name == "mnist" else images, f"{split}_y": y},
        )
    elif layout == "keras npz":
        np.savez(root / f"{name}.npz", **{f"x_{split}": x[:, 0], f"y_{split}": y})
    elif name == "mnist":
        prefix = {"train": "train", "test": "t10k"}[split]
        folder, sep, gz = {
            "torchvision": (root / "MNIST" / "raw", "-", ""),
            "distributed": (root, "-", ".gz"),
            "sdist names": (root, ".", ""),
        }[layout]
        folder.mkdir(parents=True, exist_ok=True)
        for kind, ext, array in (("images", "idx3", x[:, 0]), ("labels", "idx1", y.astype(np.uint8))):
            data = idx_bytes(array)
            (folder / f"{prefix}-{kind}{sep}{ext}-ubyte{gz}").write_bytes(gzip.compress(data) if gz else data)
    elif name == "svhn":
        import scipy.io

        labels = np.where(y == 0, 10, y).astype(np.uint8)[:, None]  # SVHN writes the digit 0 as 10
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": labels})
    else:
        batches, folder = {
            "cifar10": (
                [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"],
                "cifar-10-batches-py",
            ),
            "cifar100": ([split], "cifar-100-python"),
        }[name]
        folder = root / folder if layout == "torchvision" else root
        folder.mkdir(parents=True, exist_ok=True)
        label_key = "labels" if name == "cifar10" else "fine_labels"
        for batch, xs, ys in zip(
            batches, np.array_split(x, len(batches)), np.array_split(y, len(batches)), strict=True
        ):
            (folder / batch).write_bytes(_cifar_batch(xs, ys, label_key))


LAYOUTS = [
    ("mnist", "torchvision"),
    ("mnist", "distributed"),
    ("mnist", "sdist names"),
    ("mnist", "npz"),
    ("mnist", "keras npz"),
    ("cifar10", "torchvision"),
    ("cifar10", "distributed"),
    ("cifar10", "npz NHWC"),
    ("cifar100", "torchvision"),
    ("cifar100", "distributed"),
    ("cifar100", "npz"),
    ("svhn", "torchvision"),
    ("svhn", "npz NHWC"),
]


@pytest.mark.parametrize(("name", "layout"), LAYOUTS)
def test_every_layout_reads_the_images_and_labels_written(tmp_path, fetches, name, layout):
    if layout == "torchvision" and name == "svhn":
        pytest.importorskip("scipy.io")
    splits = ["train"] if name == "mnist" else ["train", "test"]  # mnist's test split is embedded
    for seed, split in enumerate(splits):
        x, y = _arrays(name, seed)
        _write(name, layout, tmp_path, split, x, y)
        xs, ys = datasets.load_tensors(name, split, data_dir=tmp_path)
        assert xs.dtype == torch.float32 and ys.dtype == torch.int64
        assert torch.equal(xs, torch.from_numpy(x).float() / 255)
        assert ys.tolist() == y.tolist()
    assert not fetches


def test_the_env_var_is_the_folder_without_data_dir(tmp_path, monkeypatch):
    x, y = _arrays("cifar10", 0)
    _write("cifar10", "npz", tmp_path, "test", x, y)
    monkeypatch.setenv("ROBENCH_DATA", str(tmp_path))
    assert datasets.example_labels(datasets.create_dataset("cifar10")).tolist() == y.tolist()


def test_mnist_test_stays_the_embedded_split(tmp_path):
    """A folder's t10k files do not replace the embedded official test split (boards stay reproducible)."""
    x, y = _arrays("mnist", 1)
    _write("mnist", "torchvision", tmp_path, "test", x, y)
    assert len(datasets.create_dataset("mnist", "test", data_dir=tmp_path)) == 10000
    images, labels = local.read("mnist", "test", tmp_path)  # the reader itself takes the t10k files
    assert np.array_equal(images, x) and labels.tolist() == y.tolist()


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "svhn"])
def test_the_test_split_never_opens_the_training_files(tmp_path, name):
    """Damaged training files beside intact test files: test reads, train fails on the damage."""
    layout = "torchvision"
    if name == "svhn":
        pytest.importorskip("scipy.io")
    x, y = _arrays(name, 2)
    _write(name, layout, tmp_path, "train", x, y)
    _write(name, layout, tmp_path, "test", x, y)
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name.startswith(("train", "data_batch")):
            path.write_bytes(b"garbage")
    images, labels = local.read(name, "test", tmp_path)
    assert np.array_equal(images, x) and labels.tolist() == y.tolist()
    with pytest.raises(DataError) as err:
        local.read(name, "train", tmp_path)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


def test_a_cifar_pickle_naming_os_system_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    evil = pickle.dumps({"data": Payload(), "labels": [0]})
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(evil)
    with pytest.raises(DataError) as err:
        datasets.create_dataset("cifar10", "test", data_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message and f"{folder / 'test_batch'}: not a CIFAR python batch" in message
    assert f"refused to load {os.system.__module__}.system" in message
    assert not marker.exists()
    pickle.loads(evil)  # the payload is real: a plain unpickler runs it
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_batches_of_every_pickle_protocol_with_arrays(tmp_path, protocol):
    """Protocol 5 rebuilds arrays with another numpy global than 0-4; both are allowed. Protocol 2 from
    Python 3 names ``_codecs.encode`` for bytes, which is refused (the original Python 2 files need none)."""
    x, y = _arrays("cifar10", 3)
    (tmp_path / "test_batch").write_bytes(_cifar_batch(x, np.asarray(y), "labels", protocol))
    if protocol == 2:
        with pytest.raises(DataError, match="refused to load _codecs.encode"):
            local.read("cifar10", "test", tmp_path)
        return
    images, labels = local.read("cifar10", "test", tmp_path)
    assert np.array_equal(images, x) and labels.tolist() == y.tolist()


def test_the_array_unpickler_rebuilds_python2_strings_as_numpy_does():
    """The original batches are Python 2 pickles: their array data arrives as a latin-1 str, which numpy's
    ``__setstate__`` takes back to bytes."""
    array = np.ndarray.__new__(np.ndarray, (0,), np.uint8)
    array.__setstate__((1, (3,), np.dtype(np.uint8), False, bytes([1, 2, 255]).decode("latin1")))
    assert array.tolist() == [1, 2, 255]


EXPECTED = {
    ("mnist", "train"): [
        "{d}/MNIST/raw/train-images-idx3-ubyte (+ train-labels-idx1-ubyte)",
        "{d}/train-images-idx3-ubyte[.gz] (+ train-labels-idx1-ubyte[.gz])",
        "{d}/mnist.npz with train_x, train_y",
    ],
    ("cifar10", "test"): [
        "{d}/cifar-10-batches-py/test_batch",
        "{d}/test_batch",
        "{d}/cifar10.npz with test_x, test_y",
    ],
    ("cifar10", "train"): [
        "{d}/cifar-10-batches-py/data_batch_1 … data_batch_5",
        "{d}/data_batch_1 … data_batch_5",
        "{d}/cifar10.npz with train_x, train_y",
    ],
    ("cifar100", "train"): [
        "{d}/cifar-100-python/train",
        "{d}/train",
        "{d}/cifar100.npz with train_x, train_y",
    ],
    ("svhn", "test"): ["{d}/test_32x32.mat", "{d}/svhn.npz with test_x, test_y"],
}


@pytest.mark.parametrize(("name", "split"), list(EXPECTED))
def test_missing_files_name_every_expected_path_in_one_line(tmp_path, fetches, name, split):
    with pytest.raises(DataError) as err:
        datasets.create_dataset(name, split, data_dir=tmp_path)
    message = str(err.value)
    assert message.startswith(f"{name} {split} not found in {tmp_path}: expected one of ")
    assert "; ".join(e.format(d=tmp_path) for e in EXPECTED[(name, split)]) in message
    assert "\n" not in message and "URLError" in message and "--data-dir" in message
    assert fetches == [(name, split, tmp_path)]  # the download was the last resort


def test_a_layout_present_in_part_says_which_file_is_missing(tmp_path):
    x, y = _arrays("mnist", 4)
    _write("mnist", "torchvision", tmp_path, "train", x, y)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(
        DataError, match=f"{raw}/train-images-idx3-ubyte is there but {raw}/train-labels-idx1-ubyte is not"
    ):
        datasets.create_dataset("mnist", "train", data_dir=tmp_path)


def test_the_download_is_read_when_it_succeeds(tmp_path, monkeypatch):
    monkeypatch.setattr(local, "fetch", lambda name, split, root: None)  # "succeeds", leaves nothing
    with pytest.raises(DataError, match=f"cifar100 test: the download into {tmp_path} left none of: "):
        local.read("cifar100", "test", tmp_path)
    x, y = _arrays("cifar100", 5)

    def fetch(name, split, root):  # what torchvision's download leaves: its layout
        _write(name, "torchvision", root, split, x, y)

    monkeypatch.setattr(local, "fetch", fetch)
    images, labels = local.read("cifar100", "test", tmp_path)
    assert np.array_equal(images, x) and labels.tolist() == y.tolist()


def _damage(name: str, root: Path) -> str:
    """Damages one file of a written ``train`` split; returns what the error must say."""
    if name == "idx truncated":
        path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:-1])
        return r"header says \(10, 28, 28\), but 7839 data bytes follow it"
    if name == "idx magic":
        path = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
        path.write_bytes(b"\0\0\x0d\x01" + path.read_bytes()[4:])
        return "not an idx file of unsigned bytes"
    if name == "idx counts":
        path = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
        path.write_bytes(idx_bytes(np.zeros(9, np.uint8)))
        return r"labels are uint8 \[9\], mnist needs 10 integers"
    if name == "label range":
        path = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
        path.write_bytes(idx_bytes(np.full(10, 10, np.uint8)))
        return r"labels range 10\.\.10, mnist has classes 0\.\.9"
    if name == "gz":
        (root / "MNIST").rename(root / "moved")
        (root / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
        (root / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
        return "train-images-idx3-ubyte.gz: cannot read it"
    if name == "npz shape":
        (root / "MNIST").rename(root / "moved")
        np.savez(root / "mnist.npz", train_x=np.zeros((10, 32, 32), np.uint8), train_y=np.zeros(10, np.uint8))
        return r"images are uint8 \[10, 1, 32, 32\], mnist needs uint8 \[N, 1, 28, 28\]"
    (root / "MNIST").rename(root / "moved")
    np.savez(root / "mnist.npz", test_x=np.zeros((10, 28, 28), np.uint8), test_y=np.zeros(10, np.uint8))
    return "mnist.npz has no train_x/train_y \\(it has: test_x, test_y\\)"


@pytest.mark.parametrize(
    "damage", ["idx truncated", "idx magic", "idx counts", "label range", "gz", "npz shape", "npz keys"]
)
def test_damaged_files_fail_in_one_line(tmp_path, damage):
    x, y = _arrays("mnist", 6)
    _write("mnist", "torchvision", tmp_path, "train", x, y)
    expected = _damage(damage, tmp_path)
    with pytest.raises(DataError, match=expected) as err:
        datasets.create_dataset("mnist", "train", data_dir=tmp_path)
    assert "\n" not in str(err.value)


def test_svhn_mat_with_labels_outside_1_to_10_fails(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    x, _ = _arrays("svhn", 7)
    scipy_io.savemat(
        tmp_path / "test_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": np.zeros((N, 1), np.uint8)}
    )
    with pytest.raises(DataError, match="test_32x32.mat: not SVHN's .mat file"):
        datasets.create_dataset("svhn", "test", data_dir=tmp_path)


def test_cli_says_in_one_line_where_the_files_go(tmp_path, capsys):
    code = main(
        [
            "eval",
            "--model",
            "mnist_cnn_standard",
            "--dataset",
            "mnist",
            "--split",
            "train",
            "--threat",
            "clean",
            "--data-dir",
            str(tmp_path),
            "--runs",
            str(tmp_path / "runs"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert err.startswith(
        f"robench: error: mnist train not found in {tmp_path}: expected one of {tmp_path}/MNIST/raw/"
    )
