"""Shared fixtures: the shipped offline model, a slice of the embedded test split, and for board tests a
temporary config tree and a reader for a page's table."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped, not failed, where CUDA is absent."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def standard_model():
    from robench.models import create_model

    return create_model("mnist_cnn_standard")


@pytest.fixture(scope="session")
def mnist_test():
    from robench.datasets import load_tensors

    return load_tensors("mnist5k", "test", 200)


@pytest.fixture
def config_tree(monkeypatch):
    """Make ``root/configs/<folder>/<name>.yaml`` from ``{folder: {name: text}}``, use it instead of the
    shipped configs, and work in ``root`` (a checkout with ``leaderboards/``), so board and submit tests
    never read or write the repository's configs or boards."""

    def make(root, **folders: dict[str, str]):
        configs = root / "configs"
        for folder, files in folders.items():
            (configs / folder).mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                (configs / folder / f"{name}.yaml").write_text(text)
        from robench.core import config

        monkeypatch.setattr(config, "BUILTIN", configs)
        monkeypatch.delenv("ROBENCH_CONFIGS", raising=False)
        (root / "leaderboards").mkdir(parents=True, exist_ok=True)
        monkeypatch.chdir(root)
        return root

    return make


def _cells(row: str) -> list[str]:
    """Split a pipe-table row on unescaped pipes, as GitHub does."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]


@pytest.fixture
def page_table():
    """A board page's main table as lists of cells: the header, the alignment row, then one list per model
    (the detail tables below it are left out)."""
    return lambda md: [_cells(line) for line in md.split("\n\n## ")[0].splitlines() if line.startswith("|")]


@pytest.fixture(scope="session")
def batch(standard_model, mnist_test):
    """The first 64 test images, their labels and the standard model's clean verdicts."""
    x, y = mnist_test[0][:64], mnist_test[1][:64]
    with torch.inference_mode():
        clean = standard_model(x).argmax(1) == y
    return x, y, clean


@pytest.fixture
def ctx():
    """``ctx(seed, batch_size)``: a fresh :class:`BatchContext`, so a seed means the same draws every call."""
    from robench.threats import BatchContext

    def make(seed=0, batch_size=256):
        return BatchContext(generator=torch.Generator().manual_seed(seed), batch_size=batch_size)

    return make


#: The first three ILSVRC2012 classes, labels 0, 1, 2 (sorted wnids).
IMAGENET_WNIDS = ["n01440764", "n01443537", "n01484850"]


@pytest.fixture
def imagenet_images():
    """``write(folder, per_class)`` -> ``{file name: wnid}``: random JPEGs of varied sizes named as in the
    ILSVRC2012 val set (``ILSVRC2012_val_<n:08d>.JPEG``, n from 1, classes interleaved), written flat
    into ``folder`` or, with ``class_folders=True``, into ``folder/<wnid>/``."""
    import numpy as np
    from PIL import Image

    def write(folder, per_class: int = 2, class_folders: bool = False) -> dict[str, str]:
        rng = np.random.RandomState(0)
        labels = {}
        for n in range(1, per_class * len(IMAGENET_WNIDS) + 1):
            wnid = IMAGENET_WNIDS[(n - 1) % len(IMAGENET_WNIDS)]
            name = f"ILSVRC2012_val_{n:08d}.JPEG"
            target = folder / wnid if class_folders else folder
            target.mkdir(parents=True, exist_ok=True)
            height, width = (200, 260) if n % 2 else (300, 240)
            Image.fromarray(rng.randint(0, 256, (height, width, 3), dtype=np.uint8)).save(target / name)
            labels[name] = wnid
        return labels

    return write


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline (a miss fails at once instead of retrying for 25 s)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hf"


def put_in_hf_cache(cache: Path, repo: str, weights: Path) -> None:
    """Lay the file out as huggingface_hub's own download does (refs/main -> snapshots/<commit>/)."""
    commit = "0" * 40
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(weights.read_bytes())


def idx_bytes(array) -> bytes:
    """``array`` (uint8 numpy) as an uncompressed idx file, MNIST's format: type code 8, the dimensions
    big-endian, the data."""
    return struct.pack(f">4B{array.ndim}I", 0, 0, 8, array.ndim, *array.shape) + array.tobytes()
