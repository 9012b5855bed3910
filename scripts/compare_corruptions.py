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

Measured (8 images, 224 px, CPU, OMP_NUM_THREADS=1) -- see README "Common corruptions" for the reading:

MEASURED_TABLE
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
            stub.resource_filename = lambda module, name: str(Path(importlib.util.find_spec(module).origin).parent / name)
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

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "colorwheel", "cat",
             "hubble_deep_field", "retina"]
    out = []
    for name in (names * (n // len(names) + 1))[:n]:
        im = getattr(skimage.data, name)()
        h, w = im.shape[:2]
        s = min(h, w)
        crop = im[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        out.append(np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR)))
    return np.stack(out)


DETERMINISTIC = ["defocus_blur", "motion_blur", "zoom_blur", "brightness", "contrast", "pixelate",
                 "jpeg_compression"]
RANDOM = ["gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "snow", "frost", "fog",
          "elastic_transform"]


def _ours(x: torch.Tensor, name: str, severity: int, seed: int, angle: float | None) -> torch.Tensor:
    from robench.threats import corruption_ops as ops

    if name == "motion_blur" and angle is not None:  # the fixed angle the reference is given
        radius, sigma = ops.params(name, severity, *x.shape[-2:])
        return ops._levels(ops.motion_blur_lines(x, radius, sigma, torch.full((len(x),), angle)))
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
    _ours(x[:1], "jpeg_compression", 1, 0, None)  # warm-up: torchvision's first import is not the codec's cost
    rows = ["| corruption | severity | max abs diff (levels) | PSNR (dB) | mean distortion ours / ref | "
            "ours (s) | ref (s) | speed ratio |", "|---|---|---|---|---|---|---|---|"]
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
            rows.append(f"| {name} | {severity} | {cols}{dist} | {t_ours:.3f} | {t_ref:.3f} | "
                        f"{t_ref / max(t_ours, 1e-9):.1f} |")
            print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
