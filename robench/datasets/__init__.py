"""Datasets, each with a fixed evaluation order, so that "the first n examples" means the same everywhere.

Every dataset yields ``(x, y)``: ``x`` a float32 CHW tensor with pixels in [0, 1] and ``y`` an int.
Normalisation (mean/std) is deliberately *not* done here but inside the model wrapper, so every threat
perturbs the same pixel space and an ε of 8/255 means 8 grey levels for every model.

- ``mnist5k`` (the default) is embedded in the package (``robench/datasets/data/mnist5k.npz``, built by
  ``scripts/build_mnist5k.py``), so a first evaluation works offline. Its splits are interleaved by
  class: example ``i`` has label ``i % 10``, which keeps small evaluations balanced. All 5,000 images are
  MNIST *training* images, so a model trained on full MNIST has seen them.
- ``mnist``'s ``test`` split, the official 10,000 test images in their official order, is embedded too
  (``robench/datasets/data/mnist_test.npz``, built by ``scripts/build_mnist_test.py``): evaluating on
  MNIST needs neither files nor a network.
- ``mnist``'s ``train`` split, ``cifar10``, ``cifar100`` and ``svhn`` are read, in the official order of
  their splits (as RobustBench uses them), from the data folder (``data_dir``, else ``$ROBENCH_DATA``, else
  ``~/.cache/robench/data``) in torchvision's layout, as the files are distributed, or as one ``.npz``
  (:mod:`robench.datasets.local`); only a split found in none of them is downloaded through torchvision.
- ``imagenet`` cannot be downloaded: it reads a local ILSVRC2012 validation folder in any common layout
  (:mod:`robench.datasets.imagenet`), of which it evaluates a fixed 5-images-per-class subset or a given
  subset file, preprocessed (resize, crop) as the evaluated model's card says.

torchvision (and timm, for ImageNet class indices) are imported inside the loaders: listing datasets or
reading their :class:`DatasetInfo` must stay cheap for the CLI.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from robench.core.errors import DataError, RobenchError, UsageError
from robench.core.paths import data_root, env_data_dir
from robench.core.registry import Registry
from robench.datasets import imagenet, local
from robench.datasets.imagenet import IMAGENET_PER_CLASS, Preprocessing
from robench.datasets.local import one_line

__all__ = [
    "IMAGENET_PER_CLASS",
    "DatasetInfo",
    "Preprocessing",
    "create_dataset",
    "dataset_info",
    "list_datasets",
    "load_tensors",
]


@dataclass(frozen=True)
class DatasetInfo:
    """What other modules need to know about a dataset without loading it.

    ``family`` selects the per-dataset threat budgets (``mnist``, ``cifar`` or ``imagenet``), so that
    ``mnist5k`` and ``mnist`` share ε = 0.3 and svhn shares CIFAR's 8/255. ``fit_split`` is the split,
    disjoint from the evaluated ``test`` split, on which anything fitted to data (a universal
    perturbation, a zoo model) is fitted, so that evaluation never reuses fitting images.
    ``evaluate_on`` names the dataset a model built for this one is evaluated on when no dataset is asked
    for (None: this one): ``mnist5k``'s test images are MNIST *training* images, so a model trained on it is
    judged on ``mnist``'s official test images unless ``--dataset mnist5k`` says otherwise.
    """

    name: str
    family: str
    num_classes: int
    channels: int
    image_size: int
    splits: tuple[str, ...]
    fit_split: str
    evaluate_on: str | None = None


_Build = Callable[[str, "Path | None"], Dataset]
_DATASETS: Registry[tuple[DatasetInfo, _Build]] = Registry("dataset")


def _dataset(info: DatasetInfo) -> Callable[[_Build], _Build]:
    """Decorator registering ``build(split, data_dir) -> Dataset`` together with its ``info``."""

    def add(build: _Build) -> _Build:
        _DATASETS.register(info.name)((info, build))
        return build

    return add


def default_eval_dataset(trained_on: str) -> str:
    """The dataset a run of a model built for ``trained_on`` uses when none is named (see
    :attr:`DatasetInfo.evaluate_on`)."""
    return dataset_info(trained_on).evaluate_on or trained_on


def list_datasets() -> list[str]:
    """Names accepted by :func:`create_dataset`, sorted."""
    return _DATASETS.names()


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; :class:`UsageError` with a suggestion if unknown."""
    return _DATASETS.get(name)[0]


def create_dataset(
    name: str,
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    *,
    preprocessing: Preprocessing | None = None,
    subset_file: str | os.PathLike | None = None,
) -> Dataset:
    """The ``split`` of dataset ``name`` as a map-style Dataset of ``(x: float32 CHW in [0,1], y: int)``.

    ``data_dir`` is the folder the datasets are read from (:mod:`robench.datasets.local`, and the ImageNet
    folder; default: ``$ROBENCH_DATA``, then ``~/.cache/robench/data``); the embedded sets (``mnist5k``,
    ``mnist`` ``test``) ignore it.
    ``preprocessing`` (the model's, from its card) and ``subset_file`` (which images form ``test``) apply
    to ``imagenet``, whose images come in every size; the other datasets have one native size and split.
    Raises :class:`UsageError` for an unknown name or split, :class:`DataError` when the data is missing
    and cannot be downloaded.
    """
    info, build = _DATASETS.get(name)
    if split not in info.splits:
        raise UsageError(f"dataset {name!r} has no split {split!r}; use one of: {', '.join(info.splits)}")
    root = Path(data_dir).expanduser() if data_dir else None
    if name == "imagenet":
        return build(split, root, preprocessing, Path(subset_file).expanduser() if subset_file else None)
    if subset_file is not None:
        raise UsageError(f"a subset file selects ImageNet images; {name!r} is read in its official order")
    return build(split, root)


def load_tensors(
    name: str,
    split: str = "test",
    n: int | None = None,
    data_dir: str | os.PathLike | None = None,
    *,
    preprocessing: Preprocessing | None = None,
    subset_file: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` examples (all if ``None``) of a split, decoded once: ``x`` float32 [N,C,H,W] in
    [0,1] and ``y`` int64 [N].

    For what is needed whole (fitting and training data); the evaluation engine instead streams its
    subset through :func:`stream_batches`, so its memory does not grow with ``n``.
    """
    dataset = first_examples(name, split, n, data_dir, preprocessing=preprocessing, subset_file=subset_file)
    if isinstance(dataset, _UInt8Images):  # in memory already: slice, no per-example Python loop
        return dataset.images.float() / 255, dataset.labels.clone()
    batches = list(DataLoader(dataset, batch_size=256, num_workers=0))
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]).long()


def first_examples(
    name: str,
    split: str = "test",
    n: int | None = None,
    data_dir: str | os.PathLike | None = None,
    *,
    preprocessing: Preprocessing | None = None,
    subset_file: str | os.PathLike | None = None,
) -> Dataset:
    """The first ``n`` examples (all if ``None``) of a split, not decoded yet: what an evaluation streams.

    Asking for more examples than the split has is a :class:`UsageError` rather than a silent
    truncation, so that a record's ``n_examples`` is always what was evaluated.
    """
    dataset = create_dataset(name, split, data_dir, preprocessing=preprocessing, subset_file=subset_file)
    total = len(dataset)
    if n is None:
        n = total
    elif not 1 <= n <= total:
        raise UsageError(f"n_examples must be between 1 and {total} for {name!r} split {split!r}, got {n}")
    if isinstance(dataset, _UInt8Images):
        return _UInt8Images(dataset.images[:n], dataset.labels[:n])
    return Subset(dataset, range(n))


def example_labels(examples: Dataset) -> torch.Tensor:
    """The labels of :func:`first_examples`' output, int64 [N], without decoding images where the dataset
    keeps its labels apart (in-memory arrays, image files)."""
    if isinstance(examples, _UInt8Images):
        return examples.labels.clone()
    base, indices = (
        (examples.dataset, list(examples.indices)) if isinstance(examples, Subset) else (examples, None)
    )
    indices = indices if indices is not None else range(len(base))
    if hasattr(base, "samples"):
        return torch.tensor([int(base.samples[i][1]) for i in indices], dtype=torch.long)
    return torch.tensor([int(examples[i][1]) for i in range(len(examples))], dtype=torch.long)


def default_workers(examples: Dataset) -> int:
    """Decode processes for :func:`stream_batches`: none for images already in memory (slicing beats any
    worker), else one per core up to 8 (JPEG decode scales with processes; more rarely pays)."""
    if isinstance(examples, _UInt8Images):
        return 0
    return min(8, len(os.sched_getaffinity(0)))


def stream_batches(
    examples: Dataset, lo: int, hi: int, batch_size: int, device: torch.device, workers: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Examples ``lo:hi`` of ``examples`` as ``(x, y)`` batches on ``device``, decoded as they are needed.

    Memory is bounded by the batch (times the loader's prefetch), not by the number of examples: the
    evaluation engine streams each chunk through here instead of holding the whole subset. Batches start
    at ``lo`` and hold ``batch_size`` examples (the last one fewer), the same boundaries as slicing
    :func:`load_tensors`' output, and the values are the same: the same per-example decode, in workers.
    With ``workers`` > 0 files are decoded in that many processes; on CUDA the batches are pinned and
    copied without blocking, so the copy overlaps the previous batch's work.
    """
    if isinstance(examples, _UInt8Images):
        for i in range(lo, hi, batch_size):
            j = min(hi, i + batch_size)
            yield (examples.images[i:j].float() / 255).to(device), examples.labels[i:j].to(device)
        return
    cuda = device.type == "cuda"
    loader = DataLoader(
        Subset(examples, range(lo, hi)), batch_size=batch_size, num_workers=workers, pin_memory=cuda
    )
    try:
        for x, y in loader:
            yield x.to(device, non_blocking=cuda), y.long().to(device, non_blocking=cuda)
    except RobenchError as e:
        raise _from_worker(e) from None


def _from_worker(error: RobenchError) -> RobenchError:
    """A one-line error raised in a decode worker (an unreadable image), as it was raised there.

    The DataLoader re-raises it in this process with the same type but with a message of its own: "Caught
    DataError in DataLoader worker process 0. Original Traceback ..." and the whole worker traceback, which
    the CLI would print as 25 lines. The original message is that traceback's last line.
    """
    text = str(error).rstrip()
    if not text.startswith("Caught ") or "\n" not in text:  # raised in this process (workers=0)
        return error
    name = f"{type(error).__module__}.{type(error).__qualname__}: "
    return type(error)(text.splitlines()[-1].removeprefix(name))


class _UInt8Images(Dataset):
    """Images held in memory as uint8 [N,C,H,W] (4x smaller than float) with int64 labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].float() / 255, int(self.labels[i])


_DATA = Path(__file__).parent / "data"
_TRAIN_TEST = ("train", "test")


def _embedded(npz: Path, split: str) -> Dataset:
    """``split`` of a file of robench/datasets/data/ (format: :mod:`robench.datasets.embedded`)."""
    try:
        with np.load(npz) as arrays:
            images, labels = arrays[f"{split}_x"], arrays[f"{split}_y"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{npz} is missing or damaged ({one_line(e)}): reinstall robench") from e
    return _UInt8Images(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


@_dataset(DatasetInfo("mnist5k", "mnist", 10, 1, 28, _TRAIN_TEST, "train", evaluate_on="mnist"))
def _mnist5k(split: str, data_dir: Path | None) -> Dataset:
    """4,000 train / 1,000 test images, all from MNIST's training set, embedded in the package
    (robench/datasets/data/NOTICE.md)."""
    return _embedded(_DATA / "mnist5k.npz", split)


def _local(name: str, split: str, data_dir: Path | None) -> Dataset:
    """``split`` of ``name`` from the data folder in any layout :mod:`robench.datasets.local` reads."""
    images, labels = local.read(name, split, data_root(data_dir))
    return _UInt8Images(torch.from_numpy(images), torch.from_numpy(labels))


@_dataset(DatasetInfo("mnist", "mnist", 10, 1, 28, _TRAIN_TEST, "train"))
def _mnist(split: str, data_dir: Path | None) -> Dataset:
    """The official test split from the package, so that evaluating needs no download and no training
    files; the 60,000 training images, which only training and fitting read, from the data folder."""
    if split == "test":
        return _embedded(_DATA / "mnist_test.npz", split)
    return _local("mnist", split, data_dir)


@_dataset(DatasetInfo("cifar10", "cifar", 10, 3, 32, _TRAIN_TEST, "train"))
def _cifar10(split: str, data_dir: Path | None) -> Dataset:
    return _local("cifar10", split, data_dir)


@_dataset(DatasetInfo("cifar100", "cifar", 100, 3, 32, _TRAIN_TEST, "train"))
def _cifar100(split: str, data_dir: Path | None) -> Dataset:
    return _local("cifar100", split, data_dir)


@_dataset(DatasetInfo("svhn", "cifar", 10, 3, 32, _TRAIN_TEST, "train"))
def _svhn(split: str, data_dir: Path | None) -> Dataset:
    return _local("svhn", split, data_dir)


@_dataset(DatasetInfo("imagenet", "imagenet", 1000, 3, 224, ("test", "fit"), "fit"))
def _imagenet(split: str, data_dir: Path | None, preprocessing=None, subset_file=None) -> Dataset:
    """ILSVRC2012 validation images from a local folder in any common layout
    (:mod:`robench.datasets.imagenet`)."""
    return imagenet.build(split, data_dir or env_data_dir(), preprocessing, subset_file)
