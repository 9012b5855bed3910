"""The zoo architectures are timm models: built by name, shaped for 28x28 grey digits, strict about kwargs."""

from __future__ import annotations

import pytest
import timm
import torch

from robench.core.errors import UsageError
from robench.models import (
    archs,  # registers the architectures
    build_network,
    card_from_dict,
)

ZOO_ARCHS = ["mnist_cnn", "mnist_cnn_aa", "mnist_mlp", "mnist_vit"]


@pytest.mark.parametrize("arch", ZOO_ARCHS)
def test_registered_in_timm_and_maps_digits_to_logits(arch):
    net = timm.create_model(arch, num_classes=10)
    assert arch in timm.list_models("mnist_*")
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in net.parameters()) < 1_000_000  # "a few MB at most" of float32 weights


@pytest.mark.parametrize("arch", ZOO_ARCHS)
def test_no_pretrained_tag(arch):
    with pytest.raises(ValueError, match="model card"):
        timm.create_model(arch, pretrained=True)


def test_antialiased_cnn_has_the_plain_cnns_parameters_and_blurs_before_subsampling():
    plain = timm.create_model("mnist_cnn", num_classes=10)
    aa = timm.create_model("mnist_cnn_aa", num_classes=10)
    aa.load_state_dict(plain.state_dict())  # same learned tensors; the blur kernel is not saved
    assert [type(m).__name__ for m in aa.features] == [
        "Conv2d",
        "ReLU",
        "MaxBlurPool",
        "Conv2d",
        "ReLU",
        "MaxBlurPool",
    ]
    pool = archs.MaxBlurPool(1)
    assert torch.allclose(pool(torch.full((1, 1, 28, 28), 0.7)), torch.full((1, 1, 14, 14), 0.7))
    # a one-pixel shift of the input: the blurred pooling changes less than a stride-2 max-pool does
    x = torch.rand(64, 1, 28, 29, generator=torch.Generator().manual_seed(0))
    a, b = x[..., :28], x[..., 1:]
    change = {
        name: (f(a) - f(b)).norm() / f(a).norm()
        for name, f in {"max": torch.nn.MaxPool2d(2), "blur": pool}.items()
    }
    assert change["blur"] < 0.5 * change["max"]


def test_vit_kwargs_override_the_defaults():
    net = timm.create_model("mnist_vit", num_classes=10, patch_size=4, depth=2)
    assert net.patch_embed.num_patches == 49 and len(net.blocks) == 2
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_arch_kwarg_is_a_usage_error():
    card = card_from_dict(
        "m",
        {
            "arch": "mnist_mlp",
            "dataset": "mnist5k",
            "num_classes": 10,
            "arch_kwargs": {"widht": 3},
            "normalization": "none",
            "weights": {"path": "w", "sha256": "0" * 64},
        },
    )
    with pytest.raises(UsageError, match="cannot build 'mnist_mlp'"):
        build_network(card)
