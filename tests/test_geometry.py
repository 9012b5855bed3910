"""The shared geometry's conventions: warp and shift agree, content moves by -t, draws stay in the box;
MadryLab's warp is TF's two projective transforms, rotation first.

The warp goes through ``affine_grid``'s normalised coordinates, so at the identity and at integer
translations it reproduces pixels up to float rounding (~2e-6 on 28 x 28), not bit for bit; ``ATOL`` is
far below one 8-bit grey level. The integer shift only moves pixels and is compared exactly.
"""

import math

import pytest
import torch

from robench.core.errors import UsageError
from robench.models.affine import affine_thetas, box_half_widths, draw_transforms, warp
from robench.threats.ops.geometry import (
    check_box,
    check_warp,
    madrylab_warp,
    shift,
    warp_each,
    warp_transforms,
)

ATOL = 1e-5


def _warp_one(x, angle, tx, ty):
    """Every image of ``x`` under the one transform (angle, tx, ty)."""
    return warp_transforms(x, torch.tensor([[angle, tx, ty]], dtype=torch.float64).expand(len(x), 3))


def _rolled(img, tx, ty):
    """out(p) = in(p + t) with zero fill, by torch.roll and blanking what wrapped around."""
    h, w = img.shape[-2:]
    out = torch.roll(img, shifts=(-ty, -tx), dims=(-2, -1))
    if ty > 0:
        out[..., h - ty :, :] = 0
    elif ty < 0:
        out[..., :-ty, :] = 0
    if tx > 0:
        out[..., :, w - tx :] = 0
    elif tx < 0:
        out[..., :, :-tx] = 0
    return out


def _dot(h=9, w=7, row=4, col=3):
    """One image [1, 1, h, w] that is zero but for a single 1 at (row, col)."""
    x = torch.zeros(1, 1, h, w)
    x[0, 0, row, col] = 1.0
    return x


def test_shift_equals_roll_with_zero_fill():
    x = torch.rand(6, 2, 9, 7)
    t = torch.tensor([[0, 0], [1, 0], [0, -2], [3, 4], [-5, 2], [-1, -6]])
    out = shift(x, t)
    for n, (tx, ty) in enumerate(t.tolist()):
        assert torch.equal(out[n], _rolled(x[n], tx, ty)), (tx, ty)
    assert torch.equal(shift(x, torch.tensor([[9, 0]] * 6)), torch.zeros_like(x))  # shifted out entirely


def test_content_moves_by_minus_t_under_shift_and_warp():
    """The documented sign: t = (tx, ty) moves the content tx px left and ty px up (x right, y down)."""
    x = _dot(row=4, col=3)
    for tx, ty in [(1, 0), (0, 2), (-2, 1), (2, -3)]:
        expected = _dot(row=4 - ty, col=3 - tx)
        assert torch.equal(shift(x, torch.tensor([[tx, ty]])), expected), (tx, ty)
        assert torch.allclose(_warp_one(x, 0, tx, ty), expected, atol=ATOL), (tx, ty)
    # a caller that wants the content moved by d passes t = -d (UAP's "s px right and down")
    assert torch.equal(shift(x, torch.tensor([[-1, -1]])), _dot(row=5, col=4))


def test_shift_equals_the_warp_at_integer_translations(mnist_test):
    x = mnist_test[0][:6]
    t = torch.tensor([[2, -1], [-3, 3], [1, 0], [0, -2], [4, 4], [-1, -4]])
    transforms = torch.cat([torch.zeros(len(t), 1, dtype=torch.float64), t.double()], dim=1)
    assert torch.allclose(shift(x, t), warp_transforms(x, transforms, align_corners=False), atol=ATOL)


def test_identity_leaves_images_unchanged():
    x = torch.rand(3, 2, 9, 7)
    same = shift(x, torch.zeros(3, 2, dtype=torch.long))
    assert torch.equal(same, x) and same.data_ptr() != x.data_ptr()  # a copy: callers may write to it
    assert torch.allclose(warp_transforms(x, torch.zeros(3, 3, dtype=torch.float64)), x, atol=ATOL)
    assert torch.allclose(warp(x, torch.eye(2, 3).expand(3, 2, 3)), x, atol=ATOL)


def test_rotation_by_90_degrees_is_a_pixel_permutation():
    x = torch.rand(1, 1, 9, 9)
    out = _warp_one(x, 90, 0, 0)
    # x right, y down: a positive angle samples in(R p), which turns the content counter-clockwise on screen
    assert torch.allclose(out, torch.rot90(x, 1, dims=(-2, -1)), atol=ATOL)
    assert torch.allclose(_warp_one(out, -90, 0, 0), x, atol=ATOL)  # opposite angles are opposite rotations


def test_draws_are_uniform_in_the_box_and_seeded():
    half = box_half_widths(30.0, 3.0)
    assert half.tolist() == [30.0, 3.0, 3.0] and half.dtype == torch.float64
    draws = draw_transforms((500, 4), half, torch.Generator().manual_seed(1))
    assert draws.shape == (500, 4, 3) and draws.dtype == torch.float64
    assert (draws.abs() <= half).all()
    spread = draws.reshape(-1, 3)
    assert ((spread.amax(0) > 0.95 * half) & (spread.amin(0) < -0.95 * half)).all()  # fills the box
    assert spread.mean(0).abs().le(0.05 * half).all()  # centred
    assert torch.equal(draws, draw_transforms((500, 4), half, torch.Generator().manual_seed(1)))
    assert not draw_transforms((10,), box_half_widths(0.0, 0.0), torch.Generator()).any()


def test_check_box_returns_floats():
    assert check_box("fam", 30, 3) == (30.0, 3.0)
    assert check_box("fam", 180, 0.5) == (180.0, 0.5)
    assert all(type(v) is float for v in check_box("fam", 0, 0))


@pytest.mark.parametrize(
    "rotation, translation, match",
    [
        (True, 3, "fam: max_rotation must be a number >= 0"),
        (30, False, "fam: max_translation must be a number >= 0"),
        (-1, 3, "max_rotation must be"),
        (30, -0.5, "max_translation must be"),
        ("30", 3, "max_rotation must be"),
        (None, 3, "max_rotation must be"),
        (180.5, 3, "fam: max_rotation 180.5 exceeds 180 degrees"),
    ],
)
def test_check_box_rejects_bad_boxes(rotation, translation, match):
    with pytest.raises(UsageError, match=match):
        check_box("fam", rotation, translation)


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 17, 23)])
@pytest.mark.parametrize("align_corners", [False, True])
def test_warp_each_equals_warp_on_the_repeated_pairs(shape, align_corners):
    """The grid search warps images x transforms with one sampling grid per transform; its verdicts stay the
    committed ones only if that is bit-identical to warping every (image, transform) pair on its own."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(*shape, generator=g)
    k = 6
    transforms = torch.cat(
        [
            torch.rand(k, 1, generator=g, dtype=torch.float64) * 60 - 30,
            torch.rand(k, 2, generator=g, dtype=torch.float64) * 6 - 3,
        ],
        dim=1,
    )
    theta = affine_thetas(transforms, *shape[-2:])
    pairs = warp(x.repeat_interleave(k, 0), theta.repeat(shape[0], 1, 1), align_corners)
    each = warp_each(x, theta, align_corners)
    assert torch.equal(each, pairs)
    # image-major: row i * k + j is image i under transform j
    assert torch.equal(each[1 * k + 4], warp(x[1:2], theta[4:5], align_corners)[0])


# -- MadryLab's warp ----------------------------------------------------------------------------------
def _tf_projective(img, a0, a1, a2, b0, b1, b2):
    """TF 1's ImageProjectiveTransform on one [H, W] image, written from its kernel: output pixel (x, y)
    reads input (a0 x + a1 y + a2, b0 x + b1 y + b2) bilinearly, neighbours outside the image read 0."""
    h, w = img.shape
    y, x = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    sx, sy = a0 * x + a1 * y + a2, b0 * x + b1 * y + b2
    out = torch.zeros(h, w, dtype=torch.float64)
    for xi in (sx.floor(), sx.floor() + 1):
        for yi in (sy.floor(), sy.floor() + 1):
            weight = (1 - (sx - xi).abs()) * (1 - (sy - yi).abs())
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            value = img.double()[yi.clamp(0, h - 1).long(), xi.clamp(0, w - 1).long()]
            out += torch.where(inside, weight * value, 0.0)
    return out


def _tf_madrylab(img, angle, tx, ty, pad=16):
    """resnet.py's input block on one [H, W] image: tf.pad 16, tf.contrib.image.rotate (its
    angles_to_projective_transforms), tf.contrib.image.transform [1, 0, -tx, 0, 1, -ty], central crop."""
    h, w = img.shape
    padded = torch.nn.functional.pad(img.double(), (pad, pad, pad, pad))
    ph, pw = padded.shape
    rad = angle * math.pi / 180
    cos, sin = math.cos(rad), math.sin(rad)
    x_offset = ((pw - 1) - (cos * (pw - 1) - sin * (ph - 1))) / 2
    y_offset = ((ph - 1) - (sin * (pw - 1) + cos * (ph - 1))) / 2
    rotated = _tf_projective(padded, cos, -sin, x_offset, sin, cos, y_offset)
    shifted = _tf_projective(rotated, 1, 0, -tx, 0, 1, -ty)
    return shifted[pad : pad + h, pad : pad + w]


def _madry_one(x, angle, tx, ty):
    return madrylab_warp(x, torch.tensor([[angle, tx, ty]], dtype=torch.float64).expand(len(x), 3))


@pytest.mark.parametrize(
    "angle, tx, ty", [(0, 0, 0), (30, 1.5, -3), (-14, -0.4, 2.7), (90, 3, 0), (-173, 1, 1)]
)
def test_madrylab_warp_equals_tfs_projective_transforms(angle, tx, ty):
    x = torch.rand(1, 2, 7, 6, generator=torch.Generator().manual_seed(0))  # not square: axes not swapped
    got = _madry_one(x, angle, tx, ty)
    for c in range(2):
        assert torch.allclose(got[0, c].double(), _tf_madrylab(x[0, c], angle, tx, ty), atol=ATOL)


def test_madrylab_pads_large_images_by_half_their_side():
    """A 100-px square turned 45 degrees reaches 71 px from the centre; shifted 20 px, the crop reads it
    out to 70 px. With their 16-px pad the canvas ends at 66 px and cuts the corner; half a side keeps it."""
    x = torch.ones(1, 1, 100, 100)
    got = _madry_one(x, 45, 20, 0)[0, 0].double()
    assert torch.allclose(got, _tf_madrylab(x[0, 0], 45, 20, 0, pad=50), atol=ATOL)
    assert not torch.allclose(got, _tf_madrylab(x[0, 0], 45, 20, 0, pad=16), atol=1e-2)


def test_madrylab_rotation_and_integer_translation_by_hand():
    x = torch.rand(1, 1, 9, 9)
    # t = 0: one rotation about the centre, the same as robench's (same R, TF's "counter-clockwise")
    assert torch.allclose(_madry_one(x, 90, 0, 0), torch.rot90(x, 1, dims=(-2, -1)), atol=ATOL)
    assert torch.allclose(_madry_one(x, 20, 0, 0), _warp_one(x, 20, 0, 0), atol=ATOL)
    # angle 0: the content moves by +t (tf.contrib.image.transform [1, 0, -tx, 0, 1, -ty]), robench's by -t
    t = torch.tensor([[2, -1]])
    assert torch.allclose(_madry_one(x, 0, 2, -1), shift(x, -t), atol=ATOL)
    assert torch.allclose(_madry_one(x, 0, 2, -1), _warp_one(x, 0, -2, 1), atol=ATOL)


def test_madrylab_rotates_then_translates():
    """A dot at the centre, 90 degrees and t = (1, 0): rotate-then-translate (MadryLab) leaves it one pixel
    right, whatever the angle; robench's out(p) = in(R p + t) (move by -t, then rotate) one pixel down;
    translate-then-rotate (move by +t, then rotate) would put it one pixel up."""
    dot = _dot(h=9, w=9, row=4, col=4)
    assert torch.allclose(_madry_one(dot, 90, 1, 0), _dot(9, 9, row=4, col=5), atol=ATOL)
    assert torch.allclose(_warp_one(dot, 90, 1, 0), _dot(9, 9, row=5, col=4), atol=ATOL)
    assert _madry_one(dot, 37, 2, -3)[0, 0, 4 - 3, 4 + 2] == pytest.approx(1.0, abs=ATOL)


def test_madrylab_warp_is_differentiable_in_the_transform():
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([[12.3, 0.31, -1.77], [-25.1, 2.62, 0.45]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: madrylab_warp(x, p), (t,))


def test_warp_transforms_dispatches_on_the_convention():
    x = torch.rand(3, 1, 9, 9)
    t = torch.tensor([[10.0, 1.5, -1.0], [-30.0, 3.0, 3.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.equal(warp_transforms(x, t, convention="madrylab"), madrylab_warp(x, t))
    assert torch.equal(warp_transforms(x, t), warp(x, affine_thetas(t, 9, 9)))
    assert not torch.allclose(madrylab_warp(x[:1], t[:1]), warp_transforms(x[:1], t[:1]), atol=1e-2)


def test_align_corners_is_refused_with_madrylabs_warp():
    check_warp("fam", "robench", True)
    check_warp("fam", "madrylab", False)
    with pytest.raises(UsageError, match="fam: align_corners applies to the robench warp only"):
        check_warp("fam", "madrylab", True)
