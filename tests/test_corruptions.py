"""Common corruptions: range, shape and dtype, severity ordering, seeding, parameter errors, engine run."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from robench.core.errors import UsageError
from robench.threats import create_threat
from robench.threats.ops.corruption_ops import CORRUPTIONS, corrupt, table_for

NAMES = list(CORRUPTIONS)
HAS_FROST = importlib.util.find_spec("imagecorruptions") is not None


def _names():
    return [
        pytest.param(
            n,
            marks=pytest.mark.skipif(
                n == "frost" and not HAS_FROST, reason="frost pictures come with imagecorruptions"
            ),
        )
        for n in NAMES
    ]


def _images(n: int, channels: int, size: int) -> torch.Tensor:
    """Smooth structured images (a blob and a bar on a ramp) at 8-bit levels, so blurs have edges to blur."""
    g = torch.Generator().manual_seed(size + channels)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        cy, cx = torch.rand(2, generator=g) * 0.5 + 0.25
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < 0.04).float()
        bar = ((xx - cx).abs() < 0.05).float() * 0.5
        base = 0.2 + 0.3 * yy + blob * 0.5 + bar * 0.3
        out.append(torch.stack([base * (0.8 + 0.1 * c) for c in range(channels)]))
    return (torch.stack(out).clamp(0, 1) * 255).round() / 255


@pytest.mark.parametrize("name", _names())
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (3, 224)])
def test_range_shape_dtype_at_every_size(name, channels, size):
    x = _images(2, channels, size)
    severities = (1, 5) if size == 224 and name == "glass_blur" else (1, 3, 5)  # 224 px glass: a pixel loop
    for severity in severities:
        y = corrupt(x, name, severity, torch.Generator().manual_seed(0))
        assert y.shape == x.shape and y.dtype == x.dtype
        assert y.min() >= 0 and y.max() <= 1
        assert torch.equal((y * 255).round() / 255, y)  # 8-bit levels, as the published sets
        assert not torch.equal(y, x), f"{name} at severity {severity} left the image unchanged"


def _structure_loss(x, y):
    """1 - Pearson correlation of each corrupted image with its clean one."""
    a, b = (t.flatten(1) - t.flatten(1).mean(1, keepdim=True) for t in (x, y))
    return 1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


#: The measure each corruption is ordered by: mean |x' - x|, except frost, whose severities dim the image
#: while adding more frost (the two cancel in |x' - x|), and which is ordered by structure lost instead.
_MEASURES = {"frost": _structure_loss}

#: Published CIFAR rows that are not ordered in any simple distortion, so only "it distorts" is checked
#: for them (test above): elastic severity 1 is a pure random affine of spread 0.08 x size, which moves
#: pixels further than severity 5's (spread 0.03, small elastic field); glass blur 4 -> 5 raises the blur
#: sigma, which smooths away some of the shuffle, leaving |x' - x| flat.
_UNORDERED = {"elastic_transform": "all", "glass_blur": (4, 5)}


@pytest.mark.parametrize("name", _names())
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_severity_is_monotone_in_a_distortion(name, channels, size):
    if _UNORDERED.get(name) == "all":
        pytest.skip(f"{name}: published rows not ordered (see _UNORDERED)")
    x = _images(32, channels, size)
    measure = _MEASURES.get(name, lambda x, y: (y - x).abs().flatten(1).mean(1))
    dist = [
        float(measure(x, corrupt(x, name, s, torch.Generator().manual_seed(1))).mean()) for s in range(1, 6)
    ]
    for s in range(1, 5):
        if _UNORDERED.get(name) != (s, s + 1):
            assert dist[s] >= dist[s - 1] * 0.98, (s, dist)  # 2%: rows 3 -> 4 of frost and motion blur tie
    assert dist[4] > dist[0], dist


def test_same_seed_same_images_other_seed_other_noise():
    x = _images(4, 3, 32)
    for name in ("gaussian_noise", "snow", "fog", "elastic_transform", "glass_blur", "motion_blur"):
        a = corrupt(x, name, 3, torch.Generator().manual_seed(7))
        b = corrupt(x, name, 3, torch.Generator().manual_seed(7))
        c = corrupt(x, name, 3, torch.Generator().manual_seed(8))
        assert torch.equal(a, b), name
        assert not torch.equal(a, c), name


def test_tables_by_resolution():
    assert table_for(28, 28) == "cifar" and table_for(64, 64) == "cifar" and table_for(224, 224) == "imagenet"


def test_brightness_and_contrast_match_their_formulas():
    """Closed forms of the authors' HSV brightness and per-channel contrast at CIFAR severity 1."""
    x = _images(2, 3, 32)
    v = x.amax(1, keepdim=True)
    expected = torch.where(v > 0, x * (v + 0.05).clamp(max=1) / v, torch.full_like(v, 0.05))
    got = corrupt(x, "brightness", 1, torch.Generator())
    assert (got - expected.clamp(0, 1)).abs().max() <= 1 / 255 + 1e-6
    m = x.mean((2, 3), keepdim=True)
    got = corrupt(x, "contrast", 1, torch.Generator())
    assert (got - ((x - m) * 0.75 + m)).abs().max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize(
    "overrides,needle",
    [
        ({"corruptions": ["snowfall"]}, "must be one of"),
        ({"severities": [0, 1]}, "from 1 to 5"),
        ({"severities": [6]}, "from 1 to 5"),
        ({"robust_severity": 6}, "robust_severity"),
        ({"corruptions": []}, "at least one"),
    ],
)
def test_bad_parameters_fail_in_one_line(overrides, needle):
    with pytest.raises(UsageError) as e:
        create_threat("corruptions", "mnist5k", **overrides)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_runs_through_the_engine(standard_model):
    from robench.engine import evaluate

    threat = create_threat(
        "corruptions",
        "mnist5k",
        corruptions=["gaussian_noise", "contrast", "pixelate"],
        severities=[1, 5],
        robust_severity=1,
    )
    record = evaluate(standard_model, threat, "mnist5k", n_examples=16, batch_size=8, progress=False)
    d = record.details
    assert record.robust_acc <= record.clean_acc
    assert set(d["accuracy_by_corruption_and_severity"]) == {"gaussian_noise", "contrast", "pixelate"}
    per_pair = [a for v in d["accuracy_by_corruption_and_severity"].values() for a in v.values()]
    assert d["mean_corruption_accuracy"] == pytest.approx(sum(per_pair) / len(per_pair))
    assert d["parameter_table"] == "cifar"
    # robust needs every pair at severity 1, so it cannot exceed the worst severity-1 accuracy
    assert record.robust_acc <= min(v["1"] for v in d["accuracy_by_corruption_and_severity"].values())
