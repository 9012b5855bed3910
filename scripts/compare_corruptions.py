"""Compare robench's on-device corruptions with the ``imagecorruptions`` package (Michaelis et al. 2019).

    pip install 'robench[corruptions]'        # imagecorruptions + opencv-python-headless + scikit-image
    OMP_NUM_THREADS=1 python scripts/compare_corruptions.py [--n 8] [--size 224]

``imagecorruptions`` implements the ImageNet-C table only (and needs images of at least 32 px), so the
comparison runs at 224 px on scikit-image's bundled photographs (astronaut, coffee, chelsea, ...), centre
cropped and resized. Two comparisons:

1. **Same image, same randomness**: corruptions without randomness (defocus, zoom, brightness, contrast,
   pixelate, JPEG) and motion blur at a fixed angle (the reference's ``np.random.uniform`` returns it).
   Reported: max |difference| in 8-bit levels and PSNR (dB) over the batch, per severity.
2. **Same image, independent randomness** (noise, glass, snow, frost, fog, elastic): the mean absolute
   distortion |x' - x| of each implementation, which should agree in size where the two implement the
   same distribution (elastic does not: imagecorruptions dropped the authors' random affine).

Then the speed ratio: the reference's per-image numpy loop over our batched torch call (CPU, one thread).

The package needs small shims on current numpy/scipy/scikit-image (``np.float_``,
``scipy.ndimage.interpolation``, ``pkg_resources``, ``multichannel=``); they change no arithmetic.

Measured (8 images, 224 px, CPU, OMP_NUM_THREADS=1; distortion: mean |x' - x| in levels) -- see
docs/threats.md "Common corruptions" for the reading:

| corruption | max abs diff (levels), sev 1..5 | min PSNR dB | distortion ours/ref, sev 1..5 | ref/ours time |
|---|---|---|---|---|
| defocus_blur | 1,1,1,1,1 | 62.5 | 6.0/6.0, 7.3/7.3, 9.5/9.5, 11.0/11.0, 12.5/12.5 | 0.1-0.2 |
| motion_blur | 1,1,1,1,1 | 73.3 | 8.0/8.0, 11.0/11.0, 14.0/14.0, 16.7/16.7, 18.4/18.4 | 0.2-0.4 |
| zoom_blur | 1,1,1,1,1 | 86.7 | 12.0/12.0, 14.2/14.2, 15.5/15.5, 17.0/17.0, 18.4/18.4 | 2.6-3.3 |
| brightness | 1,1,1,1,1 | 62.3 | 17.9/17.9, 35.0/35.0, 50.0/50.0, 62.6/62.6, 71.9/71.9 | 7.9-15.6 |
| contrast | 0,0,0,0,0 | inf | 24.0/24.0, 28.0/28.0, 32.1/32.1, 36.1/36.1, 38.1/38.1 | 1.7-4.4 |
| pixelate | 1,1,1,2,2 | 53.5 | 3.7/3.7, 4.2/4.3, 5.3/5.3, 6.5/6.5, 7.3/7.3 | 0.1-0.2 |
| jpeg_compression | 0,0,0,0,0 | inf | 5.3/5.3, 6.1/6.1, 6.6/6.6, 7.9/7.9, 9.4/9.4 | 0.4-0.7 |
| gaussian_noise | - | - | 14.9/14.9, 21.8/21.8, 31.4/31.5, 43.0/43.1, 57.6/57.6 | 3.2-5.9 |
| shot_noise | - | - | 14.0/14.0, 21.3/21.3, 30.0/30.0, 44.3/44.3, 55.0/55.0 | 1.0-1.3 |
| impulse_noise | - | - | 3.8/3.9, 7.7/7.6, 11.5/11.4, 21.6/21.7, 34.4/34.4 | 0.8-1.6 |
| glass_blur | - | - | 7.2/7.2, 7.2/7.2, 11.3/11.4, 10.8/10.8, 12.0/12.0 | 1.8-76.2 |
| snow | - | - | 40.0/40.0, 65.7/66.2, 65.7/66.2, 81.2/81.5, 95.5/95.1 | 1.0-1.2 |
| frost | - | - | 64.8/58.5, 80.3/79.5, 69.1/76.7, 72.3/70.9, 91.9/77.8 | 0.8-14.0 |
| fog | - | - | 45.8/44.5, 46.4/50.3, 54.5/56.6, 56.7/58.9, 54.1/53.7 | 1.1-2.2 |
| elastic_transform | - | - | 27.8/6.7, 38.1/8.1, 11.6/9.7, 14.5/10.7, 13.2/12.0 | 0.2-1.2 |
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch


def _import_reference():
    """``imagecorruptions`` with the shims it needs on current numpy / scipy / scikit-image."""
    import scipy.ndimage
    import skimage.filters

    if not hasattr(np, "float_"):
        np.float_ = np.float64
    sys.modules.setdefault("scipy.ndimage.interpolation", scipy.ndimage)
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            stub = types.ModuleType("pkg_resources")
            stub.resource_filename = lambda module, name: str(
                Path(importlib.util.find_spec(module).origin).parent / name
            )
            sys.modules["pkg_resources"] = stub
    import imagecorruptions
    import imagecorruptions.corruptions as ic

    def gaussian(image, sigma, multichannel=False, **kw):
        return skimage.filters.gaussian(image, sigma=sigma, channel_axis=-1 if multichannel else None, **kw)

    ic.gaussian = gaussian
    return imagecorruptions, ic


def _photos(n: int, size: int) -> np.ndarray:
    """``n`` photographs bundled with scikit-image, centre-cropped square and resized: [n, size, size, 3]."""
    import skimage.data
    from PIL import Image

    names = [
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "immunohistochemistry",
        "colorwheel",
        "cat",
        "hubble_deep_field",
        "retina",
    ]
    out = []
    for name in (names * (n // len(names) + 1))[:n]:
        im = getattr(skimage.data, name)()
        h, w = im.shape[:2]
        s = min(h, w)
        crop = im[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        out.append(np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR)))
    return np.stack(out)


DETERMINISTIC = [
    "defocus_blur",
    "motion_blur",
    "zoom_blur",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
]
RANDOM = [
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "snow",
    "frost",
    "fog",
    "elastic_transform",
]


def _ours(x: torch.Tensor, name: str, severity: int, seed: int, angle: float | None) -> torch.Tensor:
    from robench.threats.ops import corruption_ops as ops

    if name == "motion_blur" and angle is not None:  # the fixed angle the reference is given
        radius, sigma = ops.params(name, severity, *x.shape[-2:])
        return ops.levels(ops.motion_blur_lines(x, radius, sigma, torch.full((len(x),), angle)))
    return ops.corrupt(x, name, severity, torch.Generator().manual_seed(seed))


def _reference(images: np.ndarray, name: str, severity: int, angle: float | None, ic_pkg, ic) -> np.ndarray:
    if angle is not None:
        real = ic.np.random.uniform
        ic.np.random.uniform = lambda *a, **k: angle
    try:
        return np.stack([ic_pkg.corrupt(im, severity=severity, corruption_name=name) for im in images])
    finally:
        if angle is not None:
            ic.np.random.uniform = real


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    ic_pkg, ic = _import_reference()
    np.random.seed(0)
    images = _photos(args.n, args.size)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    _ours(
        x[:1], "jpeg_compression", 1, 0, None
    )  # warm-up: torchvision's first import is not the codec's cost
    header = (
        "| corruption | severity | max abs diff (levels) | PSNR (dB) | mean distortion ours / ref | "
        "ours (s) | ref (s) | speed ratio |"
    )
    rows = [header, "|---|---|---|---|---|---|---|---|"]
    for name in DETERMINISTIC + RANDOM:
        for severity in range(1, 6):
            angle = 20.0 if name == "motion_blur" else None
            t = time.perf_counter()
            ours = _ours(x, name, severity, seed=severity, angle=angle)
            t_ours = time.perf_counter() - t
            t = time.perf_counter()
            ref = _reference(images, name, severity, angle, ic_pkg, ic)
            t_ref = time.perf_counter() - t
            ours255 = (ours.permute(0, 2, 3, 1).numpy() * 255).round()
            ref255 = ref.astype(np.float64)
            if name in DETERMINISTIC:
                diff = np.abs(ours255 - ref255)
                mse = float((diff**2).mean())
                psnr = "inf" if mse == 0 else f"{10 * np.log10(255**2 / mse):.1f}"
                cols = f"{diff.max():.0f} | {psnr} | "
            else:
                cols = "- | - | "
            clean = images.astype(np.float64)
            dist = f"{np.abs(ours255 - clean).mean():.1f} / {np.abs(ref255 - clean).mean():.1f}"
            rows.append(
                f"| {name} | {severity} | {cols}{dist} | {t_ours:.3f} | {t_ref:.3f} | "
                f"{t_ref / max(t_ours, 1e-9):.1f} |"
            )
            print(rows[-1] if len(rows) > 3 else "\n".join(rows), flush=True)


if __name__ == "__main__":
    main()
