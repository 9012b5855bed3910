"""Shared fixtures: the shipped offline model and a slice of the embedded test split."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def standard_model():
    from robench.models import create_model

    return create_model("mnist_cnn_standard")


@pytest.fixture(scope="session")
def mnist_test():
    from robench.datasets import load_tensors

    return load_tensors("mnist5k", "test", 200)


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
