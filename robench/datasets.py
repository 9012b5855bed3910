"""Datasets, each with a fixed evaluation order, so that "the first n examples" means the same everywhere.

Every dataset yields ``(x, y)``: ``x`` a float32 CHW tensor with pixels in [0, 1] and ``y`` an int.
Normalisation (mean/std) is deliberately *not* done here but inside the model wrapper, so every threat
perturbs the same pixel space and an ε of 8/255 means 8 grey levels for every model.

- ``mnist5k`` (the default) is embedded in the package (``robench/data/mnist5k.npz``, built by
  ``scripts/build_mnist5k.py``), so a first evaluation works offline. Its splits are interleaved by
  class: example ``i`` has label ``i % 10``, which keeps small evaluations balanced.
- ``mnist``, ``cifar10``, ``cifar100``, ``svhn`` come from torchvision, in the official order of their
  splits (as RobustBench uses them). Local files are used first; only when they are absent or fail
  torchvision's checksum is a download attempted, into ``data_dir``, else ``$ROBENCH_DATA``, else
  ``~/.cache/robench/data`` (torchvision's layout, so an existing torchvision cache can be reused).
- ``imagenet`` cannot be downloaded: it reads a local ILSVRC2012 validation folder (see
  :func:`_imagenet`), of which it evaluates a fixed 5-images-per-class subset.

torchvision (and timm, for ImageNet class indices) are imported inside the loaders: listing datasets or
reading their :class:`DatasetInfo` must stay cheap for the CLI.
"""

from __future__ import annotations

import contextlib
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from robench.errors import DataError, UsageError
from robench.registry import Registry


@dataclass(frozen=True)
class DatasetInfo:
    """What other modules need to know about a dataset without loading it.

    ``family`` selects the per-dataset threat budgets (``mnist``, ``cifar`` or ``imagenet``), so that
    ``mnist5k`` and ``mnist`` share ε = 0.3 and svhn shares CIFAR's 8/255. ``fit_split`` is the split,
    disjoint from the evaluated ``test`` split, on which anything fitted to data (a universal
    perturbation, a zoo model) is fitted, so that evaluation never reuses fitting images.
    """

    name: str
    family: str
    num_classes: int
    channels: int
    image_size: int
    splits: tuple[str, ...]
    fit_split: str


_Build = Callable[[str, "Path | None"], Dataset]
_DATASETS: Registry[tuple[DatasetInfo, _Build]] = Registry("dataset")


def _dataset(info: DatasetInfo) -> Callable[[_Build], _Build]:
    """Decorator registering ``build(split, data_dir) -> Dataset`` together with its ``info``."""

    def add(build: _Build) -> _Build:
        _DATASETS.register(info.name)((info, build))
        return build

    return add


def list_datasets() -> list[str]:
    """Names accepted by :func:`create_dataset`, sorted."""
    return _DATASETS.names()


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; :class:`UsageError` with a suggestion if unknown."""
    return _DATASETS.get(name)[0]


def create_dataset(name: str, split: str = "test", data_dir: str | os.PathLike | None = None) -> Dataset:
    """The ``split`` of dataset ``name`` as a map-style Dataset of ``(x: float32 CHW in [0,1], y: int)``.

    ``data_dir`` is where downloadable datasets are cached and where the ImageNet folder is found
    (default: ``$ROBENCH_DATA``, then ``~/.cache/robench/data``); the embedded ``mnist5k`` ignores it.
    Raises :class:`UsageError` for an unknown name or split, :class:`DataError` when the data is missing
    and cannot be downloaded.
    """
    info, build = _DATASETS.get(name)
    if split not in info.splits:
        raise UsageError(f"dataset {name!r} has no split {split!r}; use one of: {', '.join(info.splits)}")
    return build(split, Path(data_dir).expanduser() if data_dir else None)


def load_tensors(
    name: str, split: str = "test", n: int | None = None, data_dir: str | os.PathLike | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` examples (all if ``None``) of a split, decoded once: ``x`` float32 [N,C,H,W] in
    [0,1] and ``y`` int64 [N].

    For what is needed whole (fitting and training data); the evaluation engine instead streams its
    subset through :func:`stream_batches`, so its memory does not grow with ``n``.
    """
    dataset = first_examples(name, split, n, data_dir)
    if isinstance(dataset, _UInt8Images):  # in memory already: slice, no per-example Python loop
        return dataset.images.float() / 255, dataset.labels.clone()
    batches = list(DataLoader(dataset, batch_size=256, num_workers=0))
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]).long()


def first_examples(name: str, split: str = "test", n: int | None = None,
                   data_dir: str | os.PathLike | None = None) -> Dataset:
    """The first ``n`` examples (all if ``None``) of a split, not decoded yet: what an evaluation streams.

    Asking for more examples than the split has is a :class:`UsageError` rather than a silent
    truncation, so that a record's ``n_examples`` is always what was evaluated.
    """
    dataset = create_dataset(name, split, data_dir)
    total = len(dataset)
    if n is None:
        n = total
    elif not 1 <= n <= total:
        raise UsageError(f"n_examples must be between 1 and {total} for {name!r} split {split!r}, got {n}")
    if isinstance(dataset, _UInt8Images):
        return _UInt8Images(dataset.images[:n], dataset.labels[:n])
    return Subset(dataset, range(n))


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
    loader = DataLoader(Subset(examples, range(lo, hi)), batch_size=batch_size, num_workers=workers,
                        pin_memory=cuda)
    for x, y in loader:
        yield x.to(device, non_blocking=cuda), y.long().to(device, non_blocking=cuda)


class _UInt8Images(Dataset):
    """Images held in memory as uint8 [N,C,H,W] (4x smaller than float) with int64 labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].float() / 255, int(self.labels[i])


_MNIST5K = Path(__file__).parent / "data" / "mnist5k.npz"
_TRAIN_TEST = ("train", "test")


@_dataset(DatasetInfo("mnist5k", "mnist", 10, 1, 28, _TRAIN_TEST, "train"))
def _mnist5k(split: str, data_dir: Path | None) -> Dataset:
    """4,000 train / 1,000 test MNIST images embedded in the package (see robench/data/NOTICE.md)."""
    try:
        with np.load(_MNIST5K) as arrays:
            images, labels = arrays[f"{split}_x"], arrays[f"{split}_y"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"{_MNIST5K} is missing or damaged ({_one_line(e)}): reinstall robench") from e
    return _UInt8Images(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def _env_data_dir() -> Path | None:
    value = os.environ.get("ROBENCH_DATA")
    return Path(value).expanduser() if value else None


def _cache_root(data_dir: Path | None) -> Path:
    return data_dir or _env_data_dir() or Path("~/.cache/robench/data").expanduser()


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]


def _torchvision(name: str, cls_name: str, data_dir: Path | None, **kwargs) -> Dataset:
    """A torchvision dataset, read locally if intact, else downloaded; failures become one DataError.

    ``download=False`` comes first because torchvision then touches no network when the files are
    there; a download's progress messages go to stderr, keeping stdout clean for ``--json`` output.
    """
    from torchvision import datasets, transforms

    root = _cache_root(data_dir)

    def make(download: bool) -> Dataset:
        cls = getattr(datasets, cls_name)
        return cls(str(root), download=download, transform=transforms.ToTensor(), **kwargs)

    try:
        try:
            return make(download=False)
        except RuntimeError:  # torchvision's "Dataset not found or corrupted": fetch it below
            pass
        with contextlib.redirect_stdout(sys.stderr):
            return make(download=True)
    except ImportError as e:  # svhn's .mat files need scipy
        raise DataError(f"dataset {name!r} needs a missing package ({_one_line(e)}): pip install it") from e
    except (OSError, RuntimeError) as e:  # urllib's URLError is an OSError
        raise DataError(
            f"dataset {name!r} is missing or incomplete in {root} and could not be downloaded (no network?): "
            f"download it elsewhere and pass --data-dir DIR or set ROBENCH_DATA [{_one_line(e)}]"
        ) from e


@_dataset(DatasetInfo("mnist", "mnist", 10, 1, 28, _TRAIN_TEST, "train"))
def _mnist(split: str, data_dir: Path | None) -> Dataset:
    return _torchvision("mnist", "MNIST", data_dir, train=split == "train")


@_dataset(DatasetInfo("cifar10", "cifar", 10, 3, 32, _TRAIN_TEST, "train"))
def _cifar10(split: str, data_dir: Path | None) -> Dataset:
    return _torchvision("cifar10", "CIFAR10", data_dir, train=split == "train")


@_dataset(DatasetInfo("cifar100", "cifar", 100, 3, 32, _TRAIN_TEST, "train"))
def _cifar100(split: str, data_dir: Path | None) -> Dataset:
    return _torchvision("cifar100", "CIFAR100", data_dir, train=split == "train")


@_dataset(DatasetInfo("svhn", "cifar", 10, 3, 32, _TRAIN_TEST, "train"))
def _svhn(split: str, data_dir: Path | None) -> Dataset:
    return _torchvision("svhn", "SVHN", data_dir, split=split)


IMAGENET_PER_CLASS = 5
"""Images per class in the ImageNet ``test`` subset, and again in the disjoint ``fit`` subset."""


class _ImageFiles(Dataset):
    """Image files decoded on access; ``samples`` lists ``(path, label)`` in evaluation order."""

    def __init__(self, samples: list[tuple[Path, int]], transform: Callable):
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[i]
        try:
            with Image.open(path) as image:
                return self.transform(image.convert("RGB")), label
        except OSError as e:
            raise DataError(f"cannot read image {path} ({_one_line(e)}): replace or remove the file") from e


@_dataset(DatasetInfo("imagenet", "imagenet", 1000, 3, 224, ("test", "fit"), "fit"))
def _imagenet(split: str, data_dir: Path | None) -> Dataset:
    """ILSVRC2012 validation images from a local folder, resized to 256 and centre-cropped to 224.

    The folder (``data_dir``, else ``$ROBENCH_DATA``) is ``DIR/imagenet/val/<wnid>/*``,
    ``DIR/val/<wnid>/*`` or ``DIR/<wnid>/*``; the first layout lets one ``ROBENCH_DATA`` root hold
    every dataset. Labels are the position of the wnid among the 1000 sorted ILSVRC2012 wnids (timm's
    list), not among the folders present, so a folder holding only some classes still yields the
    labels a 1000-class model predicts.

    Subset rule, computed from the folder itself: within each class folder, image files sorted by
    name; the first 5 form ``test`` (5,000 images for the full val set, RobustBench's evaluation size)
    and the next 5 form ``fit`` (disjoint, for fitting universal perturbations). RobustBench's own
    5,000-image list cannot be fetched offline and a substitute must not be invented, so the rule is
    derived from the data instead: anyone with the standard val folder gets the same images. Both
    splits are ordered by (rank within class, label), so the first 1,000 examples cover every class.
    """
    from torchvision import transforms
    from torchvision.datasets.folder import IMG_EXTENSIONS

    root = data_dir or _env_data_dir()
    if root is None:
        raise DataError(
            "dataset 'imagenet' cannot be downloaded: pass --data-dir DIR or set ROBENCH_DATA to a copy of "
            "the ILSVRC2012 validation set in class folders (DIR/val/<wnid>/*.JPEG)"
        )
    if not root.is_dir():
        raise DataError(
            f"ImageNet directory {root} does not exist: point --data-dir or ROBENCH_DATA at the ILSVRC2012 "
            "validation folder"
        )
    folder = next((d for d in (root / "imagenet" / "val", root / "val") if d.is_dir()), root)
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir())
    if not class_dirs:
        raise DataError(f"no class folders in {folder}: expected the ILSVRC2012 val set as {folder}/<wnid>/*")

    wnid_index = _imagenet_wnid_index()
    first = 0 if split == "test" else IMAGENET_PER_CLASS
    ranked = []
    for class_dir in class_dirs:
        if class_dir.name not in wnid_index:
            raise DataError(
                f"folder {class_dir} is not named after an ILSVRC2012 class (a wnid such as n01440764): "
                "point --data-dir at the folder holding the 1000 class folders"
            )
        files = sorted(f.name for f in class_dir.iterdir() if f.name.lower().endswith(IMG_EXTENSIONS))
        for rank, filename in enumerate(files[first : first + IMAGENET_PER_CLASS]):
            ranked.append((rank, wnid_index[class_dir.name], class_dir / filename))
    if not ranked:
        raise DataError(f"no images for split {split!r} in the class folders of {folder}")
    resize_crop = [transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()]
    return _ImageFiles([(path, label) for _, label, path in sorted(ranked)], transforms.Compose(resize_crop))


def _imagenet_wnid_index() -> dict[str, int]:
    """wnid -> class index of the standard 1000-class ImageNet models (timm ships the sorted list)."""
    from timm.data import ImageNetInfo

    return {wnid: i for i, wnid in enumerate(ImageNetInfo("imagenet-1k").label_names())}
