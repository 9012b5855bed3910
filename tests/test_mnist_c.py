"""MNIST-C: range, shape, dtype, seeding, what each corruption does, errors, engine run (threats/mnist_c*)."""

from __future__ import annotations

import pytest
import torch

from robench.core.errors import UsageError
from robench.threats import BatchContext, create_threat
from robench.threats.ops.mnist_c_ops import CORRUPTIONS, SEVERITY, corrupt

NAMES = list(CORRUPTIONS)


@pytest.fixture(scope="module")
def digits(mnist_test):
    return mnist_test[0][:8]


@pytest.mark.parametrize("name", NAMES)
def test_range_shape_dtype_and_seed(digits, name):
    y = corrupt(digits, name, torch.Generator().manual_seed(0))
    assert y.shape == digits.shape and y.dtype == digits.dtype
    assert y.min() >= 0 and y.max() <= 1
    assert torch.equal((y * 255).round() / 255, y)  # 8-bit levels, as the published set
    assert not torch.equal(y, digits), f"{name} left the digits unchanged"
    assert torch.equal(y, corrupt(digits, name, torch.Generator().manual_seed(0)))  # same seed, same images


DETERMINISTIC = ("scale", "stripe", "canny_edges", "brightness")


@pytest.mark.parametrize("name", [n for n in NAMES if n not in DETERMINISTIC])
def test_random_corruptions_differ_by_seed(digits, name):
    a = corrupt(digits, name, torch.Generator().manual_seed(0))
    assert not torch.equal(a, corrupt(digits, name, torch.Generator().manual_seed(1)))


def test_the_deterministic_ones_do_what_the_paper_says(digits):
    stripe = corrupt(digits, "stripe", None)
    assert torch.allclose(stripe[..., :7], 1 - digits[..., :7], atol=1 / 255)
    assert torch.equal(stripe[..., 7:21], digits[..., 7:21])
    edges = corrupt(digits, "canny_edges", None)
    assert set(edges.unique().tolist()) == {0.0, 1.0} and edges[..., 0, :].sum() == 0  # no edge on the border
    scaled = corrupt(digits, "scale", None)  # shrunk to 0.7 about the centre: less ink, none near the border
    assert scaled.sum() < 0.7 * digits.sum() and scaled[..., :4, :].sum() == 0
    # brightness: V + 0.5 on a grey image is x + 0.5, clipped
    assert torch.allclose(corrupt(digits, "brightness", None), (digits + 0.5).clamp(0, 1), atol=1.5 / 255)


def test_translate_moves_by_three_pixels(digits):
    moved = corrupt(digits, "translate", torch.Generator().manual_seed(0))
    shifts = [(dy, dx) for dy in (-3, 3) for dx in (-3, 3)]
    for img, out in zip(digits, moved, strict=True):  # away from the wrapped border, a roll is the shift
        rolled = [img.roll(shift, (-2, -1))[:, 3:-3, 3:-3] for shift in shifts]
        assert any(torch.equal(r, out[:, 3:-3, 3:-3]) for r in rolled)


def test_severities_are_the_authors():
    assert SEVERITY["rotate"] == 2 and SEVERITY["shot_noise"] == 5 and SEVERITY["stripe"] == 0


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"corruptions": ["gaussian_noise"]}, "corruptions"),
        ({"corruptions": []}, "at least one"),
        ({"corruptions": ["fog", "fog"]}, "listed twice"),
    ],
)
def test_bad_parameters_fail_in_one_line(overrides, needle):
    with pytest.raises(UsageError) as e:
        create_threat("mnist_c", "mnist5k", **overrides)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_runs_through_the_engine(standard_model):
    from robench.engine import evaluate

    threat = create_threat("mnist_c", "mnist5k", corruptions=["stripe", "rotate", "canny_edges"])
    record = evaluate(standard_model, threat, "mnist5k", n_examples=16, batch_size=8, progress=False)
    d = record.details
    assert d["source"] == "computed" and d["suite"] == "MNIST-C"
    assert d["accuracy_by_corruption_and_severity"]["rotate"].keys() == {"2"}
    assert record.robust_acc <= min(d["accuracy_by_corruption"].values())
    assert d["mean_corruption_accuracy"] == pytest.approx(sum(d["accuracy_by_corruption"].values()) / 3)


def test_refuses_images_that_are_not_mnist(standard_model):
    threat = create_threat("mnist_c", "mnist5k", corruptions=["fog"])
    ctx = BatchContext(generator=torch.Generator(), batch_size=4)
    x, y = torch.zeros(2, 3, 32, 32), torch.zeros(2).long()
    with pytest.raises(UsageError, match="grey 28x28"):
        threat.run_batch(standard_model, x, y, torch.ones(2).bool(), ctx)


def _skimage_centred(image, **affine):
    """The authors' warp: skimage's AffineTransform with the translation that keeps (13.5, 13.5) fixed."""
    from skimage import transform

    a = transform.AffineTransform(**affine).params
    t = [13.5 * (1 - a[0, 0] - a[0, 1]), 13.5 * (1 - a[1, 0] - a[1, 1])]
    return transform.warp(image, inverse_map=transform.AffineTransform(translation=t, **affine))


def test_matches_scikit_image_where_it_is_deterministic(digits, monkeypatch):
    """canny_edges, scale and rotate (its sign fixed) against scikit-image itself, as the authors call it."""
    pytest.importorskip("skimage")
    from skimage import feature

    from robench.threats.ops import mnist_c_ops

    images = [im[0].double().numpy() for im in digits]
    edges = torch.stack([torch.from_numpy(feature.canny(im)).float() for im in images])
    assert torch.equal(corrupt(digits, "canny_edges", None)[:, 0], edges)
    scaled = torch.stack([torch.from_numpy(_skimage_centred(im, scale=(1 / 0.7, 1 / 0.7))) for im in images])
    assert (corrupt(digits, "scale", None)[:, 0] - scaled).abs().max() <= 1 / 255 + 1e-6  # 8-bit truncation
    monkeypatch.setattr(mnist_c_ops, "_signs", lambda n, gen, k=1: torch.ones(n, k, dtype=torch.float64))
    rotated = torch.stack([torch.from_numpy(_skimage_centred(im, rotation=0.4)) for im in images])
    assert (corrupt(digits, "rotate", None)[:, 0] - rotated.clamp(0, 1)).abs().max() <= 1 / 255 + 1e-6
