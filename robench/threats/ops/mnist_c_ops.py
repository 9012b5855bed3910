"""MNIST-C (Mu & Gilmer 2019): the 15 corruptions of the published set, batched in torch.

Each corruption is ``fn(x, generator) -> x'`` on grey 28 x 28 images ``[N, 1, 28, 28]`` in [0, 1], at the
one severity the authors' ``corruptions.py`` (github.com/google-research/mnist-c) gives it by default,
which is how the published set was made (:data:`SEVERITY`). Where MNIST-C reuses a Hendrycks corruption
with the same formula (shot and impulse noise, glass and motion blur, brightness) the operation of
:mod:`robench.threats.ops.corruption_ops` is called with MNIST-C's parameters; the rest are here. Deviations
from the authors' code (docs/threats.md "MNIST-C"):

- motion blur is ImageMagick's kernel as re-implemented in numpy (as in ``corruption_ops``), not Wand;
- shear, rotate and scale use scikit-image's ``AffineTransform`` as of 2019, when the set was made
  (shear matrix ``[[1, -sin s], [0, cos s]]``; later releases changed the shear convention);
- outputs are truncated to 8-bit levels, as the set is stored (uint8).

Randomness is drawn from the chunk's CPU generator (signs, noise, fractals, line positions), so a CPU and a
GPU run draw the same corruptions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robench.threats.ops import corruption_ops as ops
from robench.threats.ops.corruption_ops import bilinear, gaussian_blur, levels, plasma_fractal

SIDE = 28
_CENTRE = (SIDE - 1) / 2  # 13.5: the authors keep the image centre fixed under shear, rotation and scale


def _signs(n: int, gen: torch.Generator, k: int = 1) -> torch.Tensor:
    """np.random.choice([-1, 1]) per image (and per axis for k = 2), float64 [n, k]."""
    return torch.randint(0, 2, (n, k), generator=gen).double() * 2 - 1


def _warp(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """skimage ``warp(x, inverse_map=AffineTransform)`` with the centre fixed: output pixel (col, row) is
    the input, bilinearly, at ``a @ (col, row) + t`` (a: [n, 2, 2]); outside the image is 0 (constant)."""
    t = _CENTRE * (1 - a.sum(2))  # the authors' a3, b3
    grid = torch.arange(SIDE, dtype=torch.float64)
    cols, rows = grid[None, None, :].expand(1, SIDE, SIDE), grid[None, :, None].expand(1, SIDE, SIDE)
    src_c = a[:, 0, 0, None, None] * cols + a[:, 0, 1, None, None] * rows + t[:, 0, None, None]
    src_r = a[:, 1, 0, None, None] * cols + a[:, 1, 1, None, None] * rows + t[:, 1, None, None]
    padded = F.pad(x, (1, 1, 1, 1))  # a zero border, so that edge clamping samples zeros outside
    return bilinear(padded, (src_r + 1).to(x), (src_c + 1).to(x), "edge")


def shot_noise(x, gen):
    return ops.shot_noise(x, 3, gen)


def impulse_noise(x, gen):
    return ops.impulse_noise(x, 0.17, gen)


def glass_blur(x, gen):
    return ops.glass_blur(x, (0.7, 1, 2), gen)


def motion_blur(x, gen):
    return ops.motion_blur(x, (10, 3), gen)


def shear(x, gen):
    s = 0.4 * _signs(len(x), gen)[:, 0]
    zero, one = torch.zeros_like(s), torch.ones_like(s)
    rows = [torch.stack([one, -torch.sin(s)], 1), torch.stack([zero, torch.cos(s)], 1)]
    return _warp(x, torch.stack(rows, 1))


def scale(x, gen):
    return _warp(x, torch.eye(2, dtype=torch.float64).expand(len(x), 2, 2) / 0.7)


def rotate(x, gen):
    r = 0.4 * _signs(len(x), gen)[:, 0]
    c, s = torch.cos(r), torch.sin(r)
    return _warp(x, torch.stack([torch.stack([c, -s], 1), torch.stack([s, c], 1)], 1))


def brightness(x, gen):
    return ops.brightness(x, 0.5, gen)


def translate(x, gen):
    """A 3 px shift, its sign per axis random; zero fill (the inverse map adds (dx, dy) to coordinates)."""
    d = (3 * _signs(len(x), gen, 2)).long()
    out = torch.zeros_like(x)
    for k in range(len(x)):
        dx, dy = int(d[k, 0]), int(d[k, 1])
        out[k, :, max(0, -dy) : SIDE - max(0, dy), max(0, -dx) : SIDE - max(0, dx)] = x[
            k, :, max(0, dy) : SIDE - max(0, -dy), max(0, dx) : SIDE - max(0, -dx)
        ]
    return out


def stripe(x, gen):
    out = x.clone()
    out[..., :7] = 1 - x[..., :7]
    out[..., 21:] = 1 - x[..., 21:]
    return out


def fog(x, gen):
    """(3.0, 1.4): a 256 px plasma fractal's top-left 28 px (a far smoother patch than a 32 px fractal)."""
    layer = plasma_fractal(len(x), 256, 1.4, gen)[:, None, :SIDE, :SIDE].to(x)
    peak = x.amax((1, 2, 3), keepdim=True)
    return (x + 3.0 * layer) * peak / (peak + 3.0)


def spatter(x, gen):
    """Severity 4, (0.65, 0.3, 1, 0.65, 1.5): mud-coloured (63/255) blobs where blurred noise is high."""
    liquid = gaussian_blur(torch.randn(x.shape, generator=gen, dtype=torch.float64) * 0.3 + 0.65, 1)
    liquid = torch.where(liquid < 0.65, torch.zeros_like(liquid), liquid)
    m = gaussian_blur((liquid > 0.65).double(), 1.5)
    m = torch.where(m < 0.8, torch.zeros_like(m), m).to(x)
    return x * (1 - m) + 63 / 255 * m


def _lines(c0, r0, c1, r1) -> torch.Tensor:
    """The authors' ``line_from_points`` per image ([n] float64 endpoints -> [n, 1, 28, 28]): a 2.3 px
    wide line whose intensity decays as log(1 - d/2.3) + 1, cut to columns floor(c0) .. ceil(c1) - 1."""
    grid = torch.arange(SIDE, dtype=torch.float64)
    cc, rr = grid[None, None, :], grid[None, :, None]
    vertical = c1 == c0
    slope = (r1 - r0) / torch.where(vertical, torch.ones_like(c1), c1 - c0)
    f = slope[:, None, None] * (cc - c0[:, None, None]) + r0[:, None, None]
    dist = (rr - f).abs().clamp(0, 2.3 - 1e-10)
    line = (torch.log(1 - dist / 2.3) + 1).clamp(0, 1)
    keep = (cc >= torch.floor(c0)[:, None, None]) & (cc < torch.ceil(c1)[:, None, None])
    return torch.where(keep & ~vertical[:, None, None], line, torch.zeros(())).unsqueeze(1)


def dotted_line(x, gen):
    r = torch.randint(0, 27, (len(x), 2), generator=gen).double()
    left, right = torch.zeros(len(x), dtype=torch.float64), torch.full((len(x),), 27.0, dtype=torch.float64)
    line = _lines(left, r[:, 0], right, r[:, 1])
    dots = (torch.arange(SIDE) // 2) % 2 == 1  # the authors blank columns 0-1, 4-5, 8-9, ...
    return x + (line * dots.double()).to(x)


def zigzag(x, gen):
    """Seven segments of a 2 px zigzag along a line from column 2 to 25, its row and slope random."""
    n = len(x)
    r0 = torch.randint(0, 27, (n,), generator=gen).double()
    r1 = r0 + torch.randint(-5, 5, (n,), generator=gen).double()
    theta = torch.atan((r1 - r0) / 23)
    d = 23 / torch.cos(theta)
    pieces = int(((d - 2) // 4).max()) + 1  # 6 for every slope the draw allows (d in [23, 23.6])
    ends_c = [torch.zeros(n, dtype=torch.float64)] + [
        torch.full((n,), (2 * i + 1) * 2.0, dtype=torch.float64) for i in range(pieces)
    ]
    ends_r = [torch.zeros(n, dtype=torch.float64)] + [
        torch.full((n,), (-1.0) ** i * 2, dtype=torch.float64) for i in range(pieces)
    ]
    last = 4 * torch.floor(d / 4)
    ends_c.append(d)
    ends_r.append(ends_r[-1] / (2 * (d - last)))  # the authors' closing point (d differs from last here)
    c, s = torch.cos(theta), torch.sin(theta)
    cs = [2 + c * ec - s * er for ec, er in zip(ends_c, ends_r, strict=True)]
    rs = [r0 + s * ec + c * er for ec, er in zip(ends_c, ends_r, strict=True)]
    out = x.double().cpu()
    for i in range(1, len(cs)):
        out = (out + _lines(cs[i - 1], rs[i - 1], cs[i], rs[i])).clamp(0, 1)
    return out.to(x)


def _sobel(x: torch.Tensor, axis: int) -> torch.Tensor:
    """scipy.ndimage.sobel (mode reflect): [-1, 0, 1] along ``axis`` (-2: rows, -1: columns), [1, 2, 1]
    across."""
    diff = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    other = -1 if axis == -2 else -2
    return ops._correlate1d(ops._correlate1d(x, diff, axis, "symmetric"), smooth, other, "symmetric")


def _neighbour(m: torch.Tensor, di: int, dj: int) -> torch.Tensor:
    """m[i + di, j + dj] at every (i, j) (borders wrap, but only interior pixels are ever read)."""
    return m.roll((-di, -dj), (-2, -1))


def canny_edges(x, gen):
    """skimage.feature.canny(x) with its defaults (sigma 1, thresholds 0.1 and 0.2): Gaussian smoothing
    normalised at the border, Sobel gradients, non-maximum suppression interpolated between the two
    neighbours in the gradient's octant, hysteresis over 8-connected edges; the 1 px border is never an
    edge. Checked equal to scikit-image 0.26's on mnist5k images."""
    x64 = x.double().cpu()
    k = ops._gaussian_kernel(1.0, 4.0)
    r = len(k) // 2

    def blur(image):  # mode constant: zeros outside, then divided by how much of the kernel was inside
        return F.conv2d(F.conv2d(F.pad(image, (r, r, r, r)), k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))

    smoothed = blur(x64) / (blur(torch.ones_like(x64)) + torch.finfo(torch.float64).eps)
    gi, gj = _sobel(smoothed, -2), _sobel(smoothed, -1)
    ai, aj = gi.abs(), gj.abs()
    mag = torch.hypot(gi, gj)
    interior = torch.zeros_like(mag, dtype=torch.bool)
    interior[..., 1:-1, 1:-1] = True
    interior &= mag > 0
    same = ((gi >= 0) & (gj >= 0)) | ((gi <= 0) & (gj <= 0))
    opposite = ((gi <= 0) & (gj >= 0)) | ((gi >= 0) & (gj <= 0))
    ratio_j, ratio_i = aj / ai.clamp_min(1e-300), ai / aj.clamp_min(1e-300)
    # (octant points, weight, plus neighbours (c1, c2), minus neighbours), in skimage's order: later wins
    octants = [
        (same & (ai >= aj), ratio_j, ((1, 0), (1, 1)), ((-1, 0), (-1, -1))),
        (same & (ai <= aj), ratio_i, ((0, 1), (1, 1)), ((0, -1), (-1, -1))),
        (opposite & (ai <= aj), ratio_i, ((0, 1), (-1, 1)), ((0, -1), (1, -1))),
        (opposite & (ai >= aj), ratio_j, ((-1, 0), (-1, 1)), ((1, 0), (1, -1))),
    ]
    maxima = torch.zeros_like(interior)
    for points, w, plus, minus in octants:
        points = points & interior
        ok = torch.ones_like(points)
        for c1, c2 in (plus, minus):
            ok &= _neighbour(mag, *c2) * w + _neighbour(mag, *c1) * (1 - w) <= mag
        maxima = torch.where(points, ok, maxima)
    low, high = maxima & (mag >= 0.1), maxima & (mag >= 0.2)
    edges = high
    while True:  # grow the strong edges through 8-connected weak ones until nothing changes
        grown = F.max_pool2d(edges.double(), 3, 1, 1).bool() & low
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges.to(x)


#: corruption -> its function, in the authors' order
CORRUPTIONS = {
    f.__name__: f
    for f in (
        shot_noise,
        impulse_noise,
        glass_blur,
        motion_blur,
        shear,
        scale,
        rotate,
        brightness,
        translate,
        stripe,
        fog,
        spatter,
        dotted_line,
        zigzag,
        canny_edges,
    )
}
#: the severity (1-5 in the authors' tables) each MNIST-C corruption is made at; 0 where it has no table
SEVERITY = {
    "shot_noise": 5,
    "impulse_noise": 4,
    "glass_blur": 1,
    "motion_blur": 1,
    "shear": 2,
    "scale": 3,
    "rotate": 2,
    "brightness": 5,
    "translate": 3,
    "stripe": 0,
    "fog": 5,
    "spatter": 4,
    "dotted_line": 0,
    "zigzag": 0,
    "canny_edges": 0,
}


def corrupt(x: torch.Tensor, name: str, generator: torch.Generator) -> torch.Tensor:
    """``x`` (grey, 28 x 28) under MNIST-C corruption ``name``, clipped to [0, 1], in 8-bit levels."""
    return levels(CORRUPTIONS[name](x, generator)).to(x.dtype)


__all__ = ["CORRUPTIONS", "SEVERITY", "SIDE", "corrupt"]
