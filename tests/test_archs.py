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

ZOO_ARCHS = ["mnist_cnn", "mnist_cnn_aa", "mnist_mlp", "mnist_p4cnn", "mnist_vit"]


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


def quarter_turn(x, k=1):
    return torch.rot90(x, k, dims=(-2, -1))


def test_p4_layers_rotate_the_maps_and_shift_the_orientations_exactly():
    """A quarter turn of the input rotates every feature map a quarter turn and moves orientation r to r+1,
    through the lifting layer, two group convolutions and the max-pools (the whole feature stack)."""
    torch.manual_seed(0)
    net = timm.create_model("mnist_p4cnn", num_classes=10).eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        f, f_turned = net.features(x), net.features(quarter_turn(x))
    assert f.shape == (4, 32 * 4, 7, 7)
    expected = torch.roll(quarter_turn(f.unflatten(1, (-1, 4))), 1, dims=2).flatten(1, 2)
    assert torch.allclose(f_turned, expected, atol=1e-5)
    assert not torch.allclose(f_turned, f, atol=1e-3)  # the maps do move: the check above can fail


def test_p4_logits_are_invariant_to_quarter_turns_and_not_to_other_rotations():
    torch.manual_seed(0)
    net = timm.create_model("mnist_p4cnn", num_classes=10).eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        logits = net(x)
        for k in (1, 2, 3):
            assert torch.allclose(net(quarter_turn(x, k)), logits, atol=1e-5)
        flipped = net(x.flip(-1))  # a reflection is not in p4
        plain = timm.create_model("mnist_cnn", num_classes=10).eval()
        plain_turned = plain(quarter_turn(x))
    assert not torch.allclose(flipped, logits, atol=1e-3)
    assert not torch.allclose(plain_turned, plain(x), atol=1e-3)  # the plain CNN has no such invariance


def test_p4_conv_refuses_an_even_kernel():
    with pytest.raises(ValueError, match="odd kernel_size"):
        archs.P4Conv(1, 4, kernel_size=4, lifting=True)


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
