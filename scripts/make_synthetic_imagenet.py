"""Write a synthetic ImageNet validation folder: DIR/val/<wnid>/ILSVRC2012_val_<i>.JPEG, N images.

Why synthetic: the real ILSVRC2012 validation set cannot be downloaded here, yet the data path (JPEG decode,
resize, crop), host memory and decode-vs-model throughput only show at ImageNet's size and format. The
images are smooth colour fields with mild noise, 375-500 px a side, JPEG quality 90, so their file sizes
and decode cost are close to real photographs'; they carry no class signal (the labels only exercise the
folder layout and the wnid -> index mapping).

Image i goes to class i % 1000 (the 1000 ILSVRC2012 wnids from timm, sorted), so any N spreads evenly over
the classes; every image depends only on (seed, i), so the folder is the same whatever the process count
and a larger N extends a smaller one. Used by scripts/benchmark.py and by the streaming tests:

    python scripts/make_synthetic_imagenet.py /tmp/synth --n 5000
    ROBENCH_DATA=/tmp/synth robench eval --model <imagenet card> --threat clean
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path

import numpy as np
from PIL import Image

MAX_IMAGES = 50_000  # the size of the ILSVRC2012 validation set


def wnids() -> list[str]:
    from timm.data import ImageNetInfo

    return list(ImageNetInfo("imagenet-1k").label_names())


def image(seed: int, i: int) -> Image.Image:
    """Image ``i``: a random low-resolution colour field upsampled (smooth, like photographs) plus noise."""
    rng = np.random.default_rng([seed, i])
    width, height = (int(v) for v in rng.integers(375, 501, size=2))
    coarse = rng.integers(0, 256, size=(int(rng.integers(2, 9)), int(rng.integers(2, 9)), 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
    noise = rng.integers(-12, 13, size=(height, width, 1), dtype=np.int16)  # grey grain: cheap to draw
    return Image.fromarray(np.clip(field + noise, 0, 255).astype(np.uint8))


def path_of(root: Path, classes: list[str], i: int) -> Path:
    return root / "val" / classes[i % len(classes)] / f"ILSVRC2012_val_{i + 1:08d}.JPEG"


def _write(job: tuple[Path, list[str], int, range]) -> int:
    root, classes, seed, indices = job
    for i in indices:
        path = path_of(root, classes, i)
        if not path.exists():  # a larger N (or a rerun after an interruption) reuses the files written
            partial = path.with_suffix(".part")
            image(seed, i).save(partial, format="JPEG", quality=90)
            partial.replace(path)  # never a truncated .JPEG, whenever the script is stopped
    return len(indices)


def make(root: Path, n: int, seed: int = 0, processes: int = 2) -> Path:
    """Write images 0..n-1 under ``root``/val (missing ones only); returns that folder."""
    if not 1 <= n <= MAX_IMAGES:
        raise ValueError(f"n must be between 1 and {MAX_IMAGES}, got {n}")
    classes = wnids()
    for wnid in classes[:n]:
        (root / "val" / wnid).mkdir(parents=True, exist_ok=True)
    step = 500
    jobs = [(root, classes, seed, range(lo, min(n, lo + step))) for lo in range(0, n, step)]
    if processes > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            for _ in pool.imap_unordered(_write, jobs):
                pass
    else:
        for job in jobs:
            _write(job)
    return root / "val"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="output folder (DIR/val/<wnid>/*.JPEG is written)")
    parser.add_argument(
        "--n", type=int, default=5000, help=f"number of images, 1..{MAX_IMAGES} (default 5000)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    if not 1 <= args.n <= MAX_IMAGES:
        print(
            f"make_synthetic_imagenet: --n must be between 1 and {MAX_IMAGES}, got {args.n}", file=sys.stderr
        )
        return 2
    print(make(args.root, args.n, args.seed, max(1, args.processes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
