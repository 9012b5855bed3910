"""Shared fixtures: the shipped offline model and a slice of the embedded test split."""

from __future__ import annotations

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
