"""The official corrupted test sets (CIFAR-10-C, CIFAR-100-C, ImageNet-C, MNIST-C), read where a user has
them.

They are not datasets of their own (docs/threats.md, "Common corruptions"): a corrupted set is the clean
test split seen through 75 (corruption, severity) pairs, and the record keeps the clean split's accuracy,
indices and per-example verdicts, so that "robust" can still mean *this image* survives every corruption.
The engine therefore opens the set aligned with the evaluated examples and hands it to the
``corruptions_read`` / ``mnist_c_read`` threat, which asks for the corrupted versions of the batch it
holds (rows ``start:stop`` of the evaluated split), as the engine hands a fitting threat its fit data.

Layouts are RobustBench's (``robustbench/data.py``) and the MNIST-C archive's, under the data root
(``--data-dir``, else ``$ROBENCH_DATA``, else ``~/.cache/robench/data`` for the CIFAR and MNIST sets, as
for torchvision's files):

- ``DIR/CIFAR-10-C/<corruption>.npy`` and ``DIR/CIFAR-100-C/<corruption>.npy``: uint8 ``[5*m, 32, 32, 3]``
  with severity s in rows ``(s-1)*m`` to ``s*m`` (m = 10,000, the test split in its official order), and
  ``labels.npy`` (``[5*m]``); test example i is row ``(s-1)*m + i``, as RobustBench slices it.
- ``DIR/ImageNet-C/<corruption>/<severity>/<wnid>/<file>``: the 224 px corrupted copy of the validation
  image of the same name; the evaluated ``imagenet`` subset's file names pick the copies, which get the
  clean images' preprocessing (resize 256, centre crop 224, RobustBench's ``Res256Crop224`` for both).
- ``DIR/mnist_c/<corruption>/test_images.npy`` (uint8 ``[10000, 28, 28, 1]``) and ``test_labels.npy``:
  MNIST's test split in its official order under each corruption, at its one severity.

Only the files of the configured corruptions are opened; a missing or malformed one is a one-line
:class:`DataError` naming it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from robench.core.errors import DataError, UsageError
from robench.core.paths import data_root, env_data_dir
from robench.datasets import create_dataset
from robench.datasets.imagenet import ImageFiles

SEVERITIES = 5
_CIFAR = {"cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C"}
_IMAGENET = {"imagenet": "ImageNet-C"}
_MNIST = {"mnist": "mnist_c"}
#: which datasets have a set of each suite: Hendrycks' 15 corruptions, or MNIST-C's
SUITES = {"hendrycks": ("cifar10", "cifar100", "imagenet"), "mnist_c": ("mnist",)}


class CifarC:
    """CIFAR-10-C / CIFAR-100-C rows of the evaluated test examples, memory-mapped (2.3 GB per set)."""

    def __init__(self, name: str, arrays: dict[str, np.ndarray], per_severity: int):
        self.name, self._arrays, self._m = name, arrays, per_severity

    def images(self, corruption: str, severity: int, start: int, stop: int) -> torch.Tensor:
        """float32 [stop-start, 3, 32, 32] in [0, 1]: test examples start..stop-1 at ``severity``."""
        rows = self._arrays[corruption][(severity - 1) * self._m + start : (severity - 1) * self._m + stop]
        return torch.from_numpy(np.array(rows)).permute(0, 3, 1, 2).float() / 255


class MnistCFiles:
    """MNIST-C rows of the evaluated test examples, one file per corruption (memory-mapped)."""

    def __init__(self, name: str, arrays: dict[str, np.ndarray]):
        self.name, self._arrays = name, arrays

    def images(self, corruption: str, severity: int, start: int, stop: int) -> torch.Tensor:
        """float32 [stop-start, 1, 28, 28] in [0, 1] (MNIST-C has one severity per corruption)."""
        rows = np.array(self._arrays[corruption][start:stop])
        return torch.from_numpy(rows).permute(0, 3, 1, 2).float() / 255


class ImageNetC:
    """ImageNet-C copies of the evaluated validation images, decoded per batch (375,000 JPEGs in all)."""

    def __init__(self, name: str, root: Path, names: list[tuple[str, str]], labels: list[int], transform):
        self.name, self._root, self._transform = name, root, transform
        self._names, self._labels = names, labels

    def images(self, corruption: str, severity: int, start: int, stop: int) -> torch.Tensor:
        """float32 [stop-start, 3, 224, 224] in [0, 1], preprocessed like the clean images."""
        folder = self._root / corruption / str(severity)
        names, labels = self._names[start:stop], self._labels[start:stop]
        samples = [(folder / wnid / file, label) for (wnid, file), label in zip(names, labels, strict=True)]
        files = ImageFiles(samples, self._transform)
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
            return torch.stack([x for x, _ in pool.map(files.__getitem__, range(len(files)))])


def open_corrupted_set(
    dataset: str,
    suite: str,
    split: str,
    labels: torch.Tensor,
    pairs: list[tuple[str, int]],
    data_dir: str | os.PathLike | None,
) -> CifarC | ImageNetC | MnistCFiles:
    """The official corrupted set of ``dataset`` in ``suite`` (:data:`SUITES`), aligned with the first
    ``len(labels)`` examples of ``split`` (whose labels are ``labels``), with the files of the
    (corruption, severity) ``pairs`` checked."""
    if dataset not in SUITES[suite]:
        raise UsageError(
            f"dataset {dataset!r} has no official {suite} corrupted set: evaluate "
            f"{' or '.join(SUITES[suite])}, or use the computed threat"
        )
    if split != "test":
        raise UsageError(f"the official corrupted sets copy the test split, not {split!r}: use --split test")
    data_dir = Path(data_dir).expanduser() if data_dir else None
    corruptions = list(dict.fromkeys(c for c, _ in pairs))
    if dataset in _CIFAR:
        return _open_cifar(_CIFAR[dataset], data_root(data_dir) / _CIFAR[dataset], labels, corruptions)
    if dataset in _MNIST:
        return _open_mnist(_MNIST[dataset], data_root(data_dir) / _MNIST[dataset], labels, corruptions)
    return _open_imagenet(_IMAGENET[dataset], data_dir, labels, pairs)


def _load(path: Path, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path} is missing: download the set (RobustBench's layout) or drop the corruption")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as e:
        reason = " ".join(str(e).split())[:200]
        raise DataError(f"{path} is not a readable .npy file ({reason}): re-download it") from e


def _open_cifar(name: str, root: Path, labels: torch.Tensor, corruptions: list[str]) -> CifarC:
    all_labels = _load(root / "labels.npy", mmap=False)
    if all_labels.ndim != 1 or len(all_labels) % SEVERITIES:
        raise DataError(
            f"{root / 'labels.npy'} has shape {list(all_labels.shape)}, not [5 severities x m]: "
            "re-download it"
        )
    m = len(all_labels) // SEVERITIES
    n = len(labels)
    if n > m:
        raise UsageError(f"{name} has {m} images per severity; evaluate at most {m} examples, not {n}")
    if not np.array_equal(all_labels[:n].astype(np.int64), labels.cpu().numpy()):
        raise DataError(
            f"{root / 'labels.npy'} does not match the test labels in their official order: "
            f"is {root} the right set ({name})?"
        )
    arrays = {}
    for corruption in corruptions:
        path = root / f"{corruption}.npy"
        array = _load(path, mmap=True)
        if array.dtype != np.uint8 or array.shape != (SEVERITIES * m, 32, 32, 3):
            raise DataError(
                f"{path} is {array.dtype} {list(array.shape)}, not uint8 "
                f"[{SEVERITIES * m}, 32, 32, 3] (5 severities x {m} images): re-download it"
            )
        arrays[corruption] = array
    return CifarC(name, arrays, m)


def _open_mnist(name: str, root: Path, labels: torch.Tensor, corruptions: list[str]) -> MnistCFiles:
    arrays = {}
    for corruption in corruptions:
        path, labels_path = root / corruption / "test_images.npy", root / corruption / "test_labels.npy"
        array, own = _load(path, mmap=True), _load(labels_path, mmap=False)
        if array.dtype != np.uint8 or array.shape != (len(own), 28, 28, 1):
            raise DataError(
                f"{path} is {array.dtype} {list(array.shape)}, not uint8 "
                f"[{len(own)}, 28, 28, 1]: re-download it"
            )
        first = own[: len(labels)].astype(np.int64)
        if len(first) < len(labels) or not np.array_equal(first, labels.cpu().numpy()):
            raise DataError(
                f"{labels_path} does not match the first {len(labels)} MNIST test labels: is {root} MNIST-C?"
            )
        arrays[corruption] = array
    return MnistCFiles(name, arrays)


def _open_imagenet(
    name: str, data_dir: Path | None, labels: torch.Tensor, pairs: list[tuple[str, int]]
) -> ImageNetC:
    clean = create_dataset("imagenet", "test", data_dir)  # its files name the copies; it fails if absent
    root = (data_dir or env_data_dir()) / name
    for corruption, severity in pairs:
        if not (root / corruption / str(severity)).is_dir():
            raise DataError(
                f"{root / corruption / str(severity)} is missing: ImageNet-C is read from "
                f"DIR/{name}/<corruption>/<severity>/<wnid>/*.JPEG next to DIR's ImageNet"
            )
    samples = clean.samples[: len(labels)]
    if [label for _, label in samples] != labels.tolist():  # the same subset rule, or the rows would drift
        raise DataError(
            f"the ImageNet test images under {data_dir or env_data_dir()} are not the evaluated "
            "ones: evaluate and read with the same --data-dir"
        )
    return ImageNetC(
        name,
        root,
        [(path.parent.name, path.name) for path, _ in samples],
        [label for _, label in samples],
        clean.transform,
    )
