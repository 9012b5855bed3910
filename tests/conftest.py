"""Shared fixtures: the shipped offline model, a slice of the embedded test split, and for board tests a
temporary config tree and a reader for a page's table."""

from __future__ import annotations

import re

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
    """Make ``root/configs/<folder>/<name>.yaml`` from ``{folder: {name: text}}`` and point
    ``ROBENCH_CONFIGS`` there, so board and submit tests never read or write the repository's configs."""

    def make(root, **folders: dict[str, str]):
        configs = root / "configs"
        for folder, files in folders.items():
            (configs / folder).mkdir(parents=True, exist_ok=True)
            for name, text in files.items():
                (configs / folder / f"{name}.yaml").write_text(text)
        monkeypatch.setenv("ROBENCH_CONFIGS", str(configs))
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
