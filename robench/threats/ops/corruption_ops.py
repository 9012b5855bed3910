"""The 15 common corruptions of Hendrycks & Dietterich (2019), batched in torch on the images' device.

Each corruption is ``fn(x, c, generator) -> x'`` on a float batch ``[N, C, H, W]`` in [0, 1] (C = 1 or 3),
where ``c`` is one row of the published parameter table. Two tables exist, because the authors tuned the
severities per resolution: :data:`TABLES` ``["cifar"]`` is ``make_cifar_c.py`` (CIFAR-10/100-C, 32 px) and
``["imagenet"]`` is ``make_imagenet_c.py`` (ImageNet-C, 224 px), both from github.com/hendrycks/robustness.
:func:`table_for` picks the CIFAR table for images of at most 64 px (so MNIST's 28 px too) and the
ImageNet table above. The operations follow the authors' code, not the ``imagecorruptions`` package where
the two differ (its zoom blur crops off-centre, its elastic transform drops the random affine, its
pixelate upsamples with NEAREST); ``scripts/compare_corruptions.py`` measures the gap to the package.

Randomness (noise, angles, crops, fractals, displacement fields) is drawn from the chunk's CPU generator
and then moved to the device, so a CPU and a GPU run draw the same corruptions; only Poisson noise, whose
rate is the image, is sampled on the CPU. Outputs are truncated to 8-bit levels as the published sets
(stored as uint8 with ``np.uint8``) are. Deviations from the authors' code, all documented in
docs/threats.md "Common corruptions":

- motion blur (and the snow streaks) use ImageMagick's MotionBlurImage kernel as ``imagecorruptions``
  re-implements it (a one-sided Gaussian-weighted line of integer shifts), not ImageMagick itself;
- frost reads the authors' frost pictures from the installed ``imagecorruptions`` package
  (``pip install 'robench[corruptions]'``); without it, frost is a one-line error;
- JPEG uses torchvision's libjpeg (CPU) instead of PIL's; grey images are coded as grey JPEGs;
- elastic transform's CIFAR constants are multiples of the image size (32 in the authors' code), so a 28 px
  image gets 28 x the fractions; glass blur's pixel "swap" is the copy the authors' numpy code performs on
  colour images (``x[h,w], x[h',w'] = x[h',w'], x[h,w]`` with views copies (h',w') into (h,w)).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from robench.core.errors import UsageError

_GREY = (0.299, 0.587, 0.114)  # cv2's RGB2GRAY weights, used by snow


# -- shared helpers -------------------------------------------------------------------------------------
def _index(n: int, idx: torch.Tensor, mode: str) -> torch.Tensor:
    """Map integer positions onto [0, n): ``edge`` (scipy nearest), ``symmetric`` (scipy reflect, dcba|abcd)
    or ``reflect101`` (OpenCV's default border, dcb|abcd)."""
    if mode == "edge":
        return idx.clamp(0, n - 1)
    if mode == "symmetric":
        i = idx.remainder(2 * n)
        return torch.where(i < n, i, 2 * n - 1 - i)
    if n == 1:
        return torch.zeros_like(idx)
    i = idx.remainder(2 * n - 2)
    return torch.where(i < n, i, 2 * n - 2 - i)


def _correlate1d(x: torch.Tensor, kernel: torch.Tensor, dim: int, mode: str) -> torch.Tensor:
    """Correlate the last (dim=-1) or second-last (dim=-2) axis with an odd 1-D kernel; borders by ``mode``.

    Applied as an [n, n] matrix (the kernel's taps folded onto the border by ``mode``): ImageNet's elastic
    transform blurs with sigma 170, a kernel four times wider than the image, which a convolution pays for.
    """
    n, r = x.shape[dim], len(kernel) // 2
    cols = _index(n, torch.arange(n)[:, None] + torch.arange(-r, r + 1)[None], mode)
    m = torch.zeros(n, n, dtype=torch.float64).scatter_add_(
        1, cols, kernel.double().expand(n, -1).contiguous()
    )
    m = m.to(x)
    return torch.einsum("...hw,jw->...hj", x, m) if dim == -1 else torch.einsum("ih,...hw->...iw", m, x)


def _gaussian_kernel(sigma: float, truncate: float) -> torch.Tensor:
    """scipy.ndimage's Gaussian: radius int(truncate * sigma + 0.5), normalised."""
    r = int(truncate * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float, mode: str = "edge", truncate: float = 4.0) -> torch.Tensor:
    """skimage.filters.gaussian over H and W only (``mode="edge"`` is its default, scipy's 'nearest')."""
    if sigma <= 0:
        return x
    k = _gaussian_kernel(sigma, truncate)
    return _correlate1d(_correlate1d(x, k, -1, mode), k, -2, mode)


def bilinear(x: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, mode: str) -> torch.Tensor:
    """Sample every image of ``x`` [N,C,H,W] at its own coordinates ``ys``, ``xs`` [N,H',W'] (pixels)."""
    n, c, h, w = x.shape
    y0, x0 = ys.floor(), xs.floor()
    wy, wx = (ys - y0).unsqueeze(1), (xs - x0).unsqueeze(1)
    y0, x0 = y0.long(), x0.long()
    flat = x.reshape(n, c, h * w)

    def at(yi, xi):
        idx = _index(h, yi, mode) * w + _index(w, xi, mode)
        return flat.gather(2, idx.reshape(n, 1, -1).expand(n, c, -1)).view(n, c, *ys.shape[1:])

    top = at(y0, x0) * (1 - wx) + at(y0, x0 + 1) * wx
    bottom = at(y0 + 1, x0) * (1 - wx) + at(y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy


def _uniform(shape, low, high, generator, device) -> torch.Tensor:
    return (torch.rand(shape, generator=generator, dtype=torch.float64) * (high - low) + low).to(device)


def levels(x: torch.Tensor, rounding: str = "floor") -> torch.Tensor:
    """Quantise to 8-bit levels: ``floor`` as ``np.uint8`` truncates (1e-4 absorbs float error at exact
    levels), ``round`` as PIL and OpenCV round."""
    scaled = x.clamp(0, 1) * 255
    return (scaled.add(1e-4).floor() if rounding == "floor" else scaled.round()) / 255


def _zoom_matrix(n: int, zoom: float) -> torch.Tensor:
    """The authors' ``clipped_zoom`` along one axis as an [n, n] matrix: crop the central ceil(n/zoom)
    pixels, scipy.ndimage.zoom them by ``zoom`` (order 1), keep the central n."""
    ch = int(np.ceil(n / zoom))
    top = (n - ch) // 2
    out = round(ch * zoom)
    trim = (out - n) // 2
    src = torch.arange(trim, trim + n, dtype=torch.float64) * ((ch - 1) / (out - 1) if out > 1 else 0.0)
    i0 = src.floor().long().clamp(max=ch - 1)
    frac = src - i0
    m = torch.zeros(n, n, dtype=torch.float64)
    rows = torch.arange(n)
    m[rows, top + i0] += 1 - frac
    m[rows, top + (i0 + 1).clamp(max=ch - 1)] += frac
    return m


def _zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    a, b = _zoom_matrix(h, zoom).to(x), _zoom_matrix(w, zoom).to(x)
    return torch.einsum("ih,nchw,jw->ncij", a, x, b)


def motion_blur_lines(x: torch.Tensor, radius: float, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """ImageMagick's motion blur (as imagecorruptions' ``_motion_blur``): a sum over i < 2*radius+1 of
    the image shifted by i pixels along ``angles`` (degrees, one per image), edge-replicated, weighted by a
    one-sided Gaussian; a shift past the border ends that image's sum, as in the reference."""
    n, c, h, w = x.shape
    width = int(2 * radius + 1)
    k = torch.exp(-(torch.arange(width, dtype=torch.float64) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    rad = torch.deg2rad(angles.double().cpu())
    i = torch.arange(width, dtype=torch.float64)
    dy = -torch.ceil(i[None] * torch.sin(rad)[:, None] - 0.5).long()
    dx = -torch.ceil(i[None] * torch.cos(rad)[:, None] - 0.5).long()
    inside = ((dy.abs() < h) & (dx.abs() < w)).long().cumprod(1).bool()
    weights = torch.where(inside, k, torch.zeros(())).to(x)
    out = torch.zeros_like(x)
    for j in range(width):
        rows = (torch.arange(h)[None] - dy[:, j, None]).clamp(0, h - 1).to(x.device)
        cols = (torch.arange(w)[None] - dx[:, j, None]).clamp(0, w - 1).to(x.device)
        shifted = x.gather(2, rows[:, None, :, None].expand(n, c, h, w))
        shifted = shifted.gather(3, cols[:, None, None, :].expand(n, c, h, w))
        out = out + weights[:, j].view(n, 1, 1, 1) * shifted
    return out


def plasma_fractal(n: int, size: int, decay: float, generator: torch.Generator) -> torch.Tensor:
    """The authors' diamond-square height map, ``n`` at once ([n, size, size] in [0, 1], float64, CPU)."""
    m = torch.zeros(n, size, size, dtype=torch.float64)
    step, wibble = size, 100.0

    def wibbled_mean(total):
        return (
            total / 4
            + wibble * (torch.rand(total.shape, generator=generator, dtype=torch.float64) * 2 - 1) * wibble
        )

    while step >= 2:
        half = step // 2
        corner = m[:, 0::step, 0::step]
        square = corner + corner.roll(-1, 1)
        m[:, half::step, half::step] = wibbled_mean(square + square.roll(-1, 2))
        dr, ul = m[:, half::step, half::step], m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = wibbled_mean(dr + dr.roll(1, 1) + ul + ul.roll(-1, 2))
        m[:, half::step, 0::step] = wibbled_mean(dr + dr.roll(1, 2) + ul + ul.roll(-1, 1))
        step, wibble = half, wibble / decay
    m = m - m.amin((1, 2), keepdim=True)
    return m / m.amax((1, 2), keepdim=True)


def _disk(radius: float, alias_blur: float) -> torch.Tensor:
    """The authors' anti-aliased disk: a normalised 0/1 disk, blurred by cv2.GaussianBlur (3x3 or 5x5)."""
    r = 8 if radius <= 8 else int(radius)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    d = ((t[None] ** 2 + t[:, None] ** 2) <= radius**2).double()
    d = d / d.sum()
    size = 3 if radius <= 8 else 5
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2) / (2 * alias_blur**2))
    g = g / g.sum()
    return _correlate1d(_correlate1d(d, g, -1, "reflect101"), g, -2, "reflect101")


# -- the corruptions (x in [0,1], [N,C,H,W]; c: one row of the table) ------------------------------------
def gaussian_noise(x, c, gen):
    return x + torch.randn(x.shape, generator=gen).to(x) * c


def shot_noise(x, c, gen):
    return (torch.poisson(x.detach().cpu().double() * c, generator=gen) / c).to(x)


def impulse_noise(x, c, gen):
    flipped = torch.rand(x.shape, generator=gen) <= c
    salted = torch.rand(x.shape, generator=gen) <= 0.5
    x = torch.where((flipped & salted).to(x.device), torch.ones((), device=x.device), x)
    return torch.where((flipped & ~salted).to(x.device), torch.zeros((), device=x.device), x)


def defocus_blur(x, c, gen):
    kernel = _disk(*c).to(x)
    r = kernel.shape[0] // 2
    h, w = x.shape[-2:]
    rows = _index(h, torch.arange(-r, h + r, device=x.device), "reflect101")
    cols = _index(w, torch.arange(-r, w + r, device=x.device), "reflect101")
    padded = x[..., rows, :][..., cols].flatten(0, 1).unsqueeze(1)
    return F.conv2d(padded, kernel[None, None]).view_as(x)


def glass_blur(x, c, gen):
    """Blur, shuffle pixels locally (a sequential scan; the copy the authors' code performs), blur again.

    With a reach of 1 px (every CIFAR severity, ImageNet severity 1) no pixel reads one the scan has
    already rewritten, so the scan is one gather; larger reaches loop over pixels, batched over images.
    """
    sigma, reach, iterations = c
    n, _, h, w = x.shape
    x = levels(gaussian_blur(x, sigma))
    hs, ws = torch.arange(h - reach, reach, -1), torch.arange(w - reach, reach, -1)
    for _ in range(iterations):
        d = torch.randint(-reach, reach, (n, len(hs), len(ws), 2), generator=gen)
        src_h = (hs[None, :, None] + d[..., 1]).to(x.device)
        src_w = (ws[None, None, :] + d[..., 0]).to(x.device)
        if reach == 1:
            x[:, :, hs[:, None], ws[None, :]] = x[
                torch.arange(n, device=x.device)[:, None, None], :, src_h, src_w
            ].permute(0, 3, 1, 2)
            continue
        batch = torch.arange(n, device=x.device)
        for i, hh in enumerate(hs.tolist()):
            for j, ww in enumerate(ws.tolist()):
                x[:, :, hh, ww] = x[batch, :, src_h[:, i, j], src_w[:, i, j]]
    return gaussian_blur(x, sigma)


def motion_blur(x, c, gen):
    return motion_blur_lines(x, c[0], c[1], torch.rand(len(x), generator=gen, dtype=torch.float64) * 90 - 45)


def zoom_blur(x, c, gen):
    zooms = np.arange(*c)  # numpy's arange, so that the factors (and their count) are the authors'
    return (x + sum(_zoom(x, float(z)) for z in zooms)) / (len(zooms) + 1)


def snow(x, c, gen):
    loc, scale, zoom, threshold, radius, sigma, keep = c
    n, ch, h, w = x.shape
    layer = (torch.randn((n, 1, h, w), generator=gen, dtype=torch.float64) * scale + loc).to(x)
    layer = _zoom(layer, zoom)
    layer = levels(torch.where(layer < threshold, torch.zeros_like(layer), layer))
    angles = torch.rand(n, generator=gen, dtype=torch.float64) * 90 - 135
    layer = levels(motion_blur_lines(layer, radius, sigma, angles), "round")
    grey = x if ch == 1 else (x * torch.tensor(_GREY).to(x).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = keep * x + (1 - keep) * torch.maximum(x, grey * 1.5 + 0.5)
    return x + layer + layer.flip(-1, -2)


@functools.lru_cache(maxsize=2)
def _frost_pictures(scale: float) -> tuple[torch.Tensor, ...]:
    """The authors' first five frost pictures ([3, h, w] in [0, 1], CPU), resized by ``scale`` as cv2 does."""
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "corruption 'frost' needs the frost pictures of the imagecorruptions package: "
            "pip install 'robench[corruptions]', or leave frost out of `corruptions`"
        )
    from PIL import Image

    folder = Path(next(iter(spec.submodule_search_locations))) / "frost"
    out = []
    for name in ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"):
        rgb = np.asarray(Image.open(folder / name).convert("RGB"), dtype=np.float32) / 255
        pic = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        if scale != 1:
            pic = levels(
                F.interpolate(
                    pic,
                    scale_factor=scale,
                    mode="bilinear",
                    align_corners=False,
                    recompute_scale_factor=False,
                ),
                "round",
            )
        out.append(pic[0])
    return tuple(out)


def frost(x, c, gen):
    """c * x + c' * a random crop of a frost picture (downscaled by 0.2 for the CIFAR table, as the authors
    do; grey images get the crop's luma, as imagecorruptions does)."""
    keep, amount, scale = c
    n, ch, h, w = x.shape
    pictures = _frost_pictures(scale)
    if any(p.shape[1] <= h or p.shape[2] <= w for p in pictures):
        raise UsageError(f"frost: images of {h}x{w} px are larger than the frost pictures")
    crops = []
    for _ in range(n):
        pic = pictures[int(torch.randint(5, (1,), generator=gen))]
        top = int(torch.randint(pic.shape[1] - h, (1,), generator=gen))
        left = int(torch.randint(pic.shape[2] - w, (1,), generator=gen))
        crops.append(pic[:, top : top + h, left : left + w])
    layer = torch.stack(crops).to(x)
    if ch == 1:
        layer = (layer * torch.tensor((0.2989, 0.5870, 0.1140)).to(x).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return keep * x + amount * layer


def fog(x, c, gen):
    amount, decay = c
    n, _, h, w = x.shape
    size = 1 << (max(h, w) - 1).bit_length()
    layer = plasma_fractal(n, size, decay, gen)[:, None, :h, :w].to(x)
    peak = x.amax((1, 2, 3), keepdim=True)
    return (x + amount * layer) * peak / (peak + amount)


def brightness(x, c, gen):
    """V += c in HSV; since HSV -> RGB scales linearly with V at fixed H, S this is rgb * V'/V (grey: x+c)."""
    v = x.amax(1, keepdim=True)
    v_new = (v + c).clamp(0, 1)
    return torch.where(v > 0, x * v_new / v.clamp_min(1e-12), v_new)


def contrast(x, c, gen):
    means = x.mean((2, 3), keepdim=True)
    return (x - means) * c + means


def elastic_transform(x, c, gen):
    """A random affine (cv2.warpAffine, bilinear, reflect-101 border), then a smoothed random displacement
    field (scipy map_coordinates, order 1, 'reflect'), as in the authors' code."""
    alpha, sigma, spread = c
    n, _, h, w = x.shape
    centre = torch.tensor([h // 2, w // 2], dtype=torch.float64)
    side = min(h, w) // 3
    pts1 = torch.stack([centre + side, torch.stack([centre[0] + side, centre[1] - side]), centre - side])
    pts2 = (
        pts1 + _uniform((n, 3, 2), -spread, spread, gen, "cpu").float().double()
    )  # float32, as the authors'
    affine = torch.linalg.solve(torch.cat([pts1, torch.ones(3, 1, dtype=torch.float64)], 1), pts2)  # [n,3,2]
    lin, shift = affine[:, :2].transpose(1, 2), affine[:, 2]  # dst = lin @ src + shift
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    dst = torch.stack([xx, yy], -1).reshape(1, -1, 2) - shift[:, None]
    src = torch.linalg.solve(lin[:, None], dst.unsqueeze(-1)).squeeze(-1).view(n, h, w, 2).to(x.device)
    x = bilinear(x, src[..., 1].to(x), src[..., 0].to(x), "reflect101")
    fields = [
        gaussian_blur(_uniform((n, 1, h, w), -1, 1, gen, "cpu"), sigma, "symmetric", 3.0) * alpha
        for _ in range(2)
    ]
    dx, dy = (f.float().to(x)[:, 0] for f in fields)
    return bilinear(x, yy.to(x) + dy, xx.to(x) + dx, "symmetric")


def _pil_box(n_in: int, n_out: int) -> torch.Tensor:
    """PIL's BOX resampling along one axis as an [n_out, n_in] matrix (0/1 taps at input pixel centres)."""
    scale = n_in / n_out
    support = 0.5 * max(scale, 1.0)
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        centre = (i + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        taps = torch.arange(lo, hi, dtype=torch.float64)
        arg = (taps - centre + 0.5) / max(scale, 1.0)
        weights = ((arg > -0.5) & (arg <= 0.5)).double()
        m[i, lo:hi] = weights / weights.sum()
    return m


def _pil_resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """PIL's uint8 BOX resize: horizontal pass, rounded to 8 bits, then vertical pass, rounded."""
    x = levels(torch.einsum("nchw,jw->nchj", x, _pil_box(x.shape[-1], w).to(x)), "round")
    return levels(torch.einsum("ih,nchw->nciw", _pil_box(x.shape[-2], h).to(x), x), "round")


def pixelate(x, c, gen):
    h, w = x.shape[-2:]
    return _pil_resize(_pil_resize(levels(x, "round"), int(h * c), int(w * c)), h, w)


def jpeg_compression(x, c, gen):
    from torchvision.io import decode_jpeg, encode_jpeg

    images = list(levels(x, "round").mul(255).round().to(torch.uint8).cpu())
    decoded = decode_jpeg(encode_jpeg(images, quality=int(c)))
    return torch.stack(decoded).to(x) / 255


# -- the published tables ----------------------------------------------------------------------------------
def _elastic(size_factor: float, rows) -> list[tuple[float, float, float]]:
    return [tuple(v * size_factor for v in row) for row in rows]


#: corruption -> (CIFAR-10-C row per severity, ImageNet-C row per severity), from make_cifar_c.py and
#: make_imagenet_c.py. Elastic rows are fractions of the image size (see :func:`params`); frost rows carry
#: the frost pictures' scale (0.2 for CIFAR) as a third entry.
_TABLE = {
    "gaussian_noise": ([0.04, 0.06, 0.08, 0.09, 0.10], [0.08, 0.12, 0.18, 0.26, 0.38]),
    "shot_noise": ([500, 250, 100, 75, 50], [60, 25, 12, 5, 3]),
    "impulse_noise": ([0.01, 0.02, 0.03, 0.05, 0.07], [0.03, 0.06, 0.09, 0.17, 0.27]),
    "defocus_blur": (
        [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
        [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
    ),
    "glass_blur": (
        [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
        [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
    ),
    "motion_blur": (
        [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
        [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
    ),
    "zoom_blur": (
        [(1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01), (1, 1.26, 0.01)],
        [(1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02), (1, 1.31, 0.03)],
    ),
    "snow": (
        [
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ],
        [
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ],
    ),
    "frost": (
        [(1, 0.2, 0.2), (1, 0.3, 0.2), (0.9, 0.4, 0.2), (0.85, 0.4, 0.2), (0.75, 0.45, 0.2)],
        [(1, 0.4, 1), (0.8, 0.6, 1), (0.7, 0.7, 1), (0.65, 0.7, 1), (0.6, 0.75, 1)],
    ),
    "fog": (
        [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
        [(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)],
    ),
    "brightness": ([0.05, 0.1, 0.15, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4, 0.5]),
    "contrast": ([0.75, 0.5, 0.4, 0.3, 0.15], [0.4, 0.3, 0.2, 0.1, 0.05]),
    # (alpha, sigma, affine spread) x size; the authors wrote 244 (not 224) for ImageNet, kept as 244/224
    "elastic_transform": (
        [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)],
        _elastic(
            244 / 224,
            [(2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02)],
        ),
    ),
    "pixelate": ([0.95, 0.9, 0.85, 0.75, 0.65], [0.6, 0.5, 0.4, 0.3, 0.25]),
    "jpeg_compression": ([80, 65, 58, 50, 40], [25, 18, 15, 10, 7]),
}

CORRUPTIONS: dict[str, object] = {name: globals()[name] for name in _TABLE}  # in the paper's order


def table_for(h: int, w: int) -> str:
    """The parameter table for an image size: CIFAR's up to 64 px, ImageNet's above."""
    return "cifar" if max(h, w) <= 64 else "imagenet"


def params(name: str, severity: int, h: int, w: int):
    """The published parameters of ``name`` at ``severity`` (1..5) for an h x w image."""
    row = _TABLE[name][table_for(h, w) == "imagenet"][severity - 1]
    if name == "elastic_transform":
        row = tuple(v * min(h, w) for v in row)
    return row


def corrupt(x: torch.Tensor, name: str, severity: int, generator: torch.Generator) -> torch.Tensor:
    """``x`` under corruption ``name`` at ``severity``, clipped to [0, 1] and truncated to 8-bit levels."""
    out = CORRUPTIONS[name](x, params(name, severity, *x.shape[-2:]), generator)
    return levels(out).to(x.dtype)


__all__ = [
    "CORRUPTIONS",
    "corrupt",
    "gaussian_blur",
    "motion_blur_lines",
    "params",
    "plasma_fractal",
    "table_for",
]
