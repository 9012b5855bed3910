"""ILSVRC2012 validation images from the layouts people actually have, preprocessed as the model says.

Layouts, tried in this order under the data folder ``DIR`` (``--data-dir`` or ``$ROBENCH_DATA``):

- class folders: ``DIR/imagenet/val/<wnid>/*``, ``DIR/val/<wnid>/*`` or ``DIR/<wnid>/*``;
- Kaggle: a flat folder of images (``DIR/ILSVRC/Data/CLS-LOC/val``, ``DIR/val`` or ``DIR``) with
  ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the first word of the prediction string is the
  wnid) in ``DIR``;
- ILSVRC2012 devkit: a flat folder of ``ILSVRC2012_val_<n>.JPEG`` with
  ``ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt`` (line n: the ILSVRC2012_ID of
  image n) and ``ILSVRC2012_devkit_t12/data/meta.mat`` (ILSVRC2012_ID -> wnid, read with scipy as
  ``torchvision.datasets.ImageNet`` does), in ``DIR`` or ``DIR/val``'s parent. Both files come from
  ``ILSVRC2012_devkit_t12.tar.gz``; unpack it next to the images.

Labels are the position of the wnid among the 1000 sorted ILSVRC2012 wnids (timm's list), so every
layout gives the labels a 1000-class model predicts, whatever subset of classes is present.

Which images are evaluated: within each class, files sorted by name; the first
:data:`IMAGENET_PER_CLASS` form ``test`` and the next as many ``fit`` (disjoint, for fitting universal
perturbations), both ordered by (rank within class, label). A subset file (``--subset-file``: one image
per line, a file name, an id without extension or ``<wnid>/<file>``, e.g. RobustBench's 5,000 ids)
replaces ``test`` by exactly those images in the file's order, and ``fit`` then skips them.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from robench.core.errors import DataError, UsageError

IMAGENET_PER_CLASS = 5
"""Images per class in the ImageNet ``test`` subset, and again in the disjoint ``fit`` subset."""

KAGGLE_LABELS = "LOC_val_solution.csv"
DEVKIT = Path("ILSVRC2012_devkit_t12") / "data"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
_CONTAINERS = {"imagenet", "val", "ILSVRC", DEVKIT.parts[0]}  # folders of a layout, never class folders
_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How an image file becomes the model's input: the shorter side resized to ``resize`` pixels with
    ``interpolation``, then a centre crop of ``crop`` pixels. A model's own config says which (timm:
    ``input_size`` and ``crop_pct``; torchvision: its weights' transforms), and accuracy depends on it by
    a point or more, so the record keeps it (``model_meta["preprocessing"]``)."""

    resize: int
    crop: int
    interpolation: Literal["bilinear", "bicubic", "nearest", "lanczos", "box", "hamming"] = "bilinear"

    def __post_init__(self):
        if not 1 <= self.crop <= self.resize:
            raise UsageError(
                f"preprocessing: need 1 <= crop <= resize, got crop {self.crop}, resize {self.resize}"
            )

    def transform(self) -> Callable:
        from torchvision import transforms

        mode = transforms.InterpolationMode(self.interpolation)
        return transforms.Compose(
            [
                transforms.Resize(self.resize, interpolation=mode),
                transforms.CenterCrop(self.crop),
                transforms.ToTensor(),
            ]
        )


DEFAULT_PREPROCESSING = Preprocessing(resize=256, crop=224, interpolation="bilinear")
"""The standard ResNet evaluation (torchvision's IMAGENET1K_V1 transforms); used when a card says none."""


class ImageFiles(Dataset):
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
        except Image.DecompressionBombError:  # declares more pixels than Pillow's guard lets it decode
            raise DataError(
                f"cannot read image {path}: it declares more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels "
                "(a decompression bomb, or not an ImageNet photo): replace or remove the file"
            ) from None
        except (OSError, SyntaxError, ValueError) as e:  # Pillow's plugins raise all three for bad files
            raise DataError(
                f"cannot read image {path} ({type(e).__name__}): replace or remove the file"
            ) from e


def build(
    split: str, root: Path | None, preprocessing: Preprocessing | None, subset_file: Path | None
) -> Dataset:
    """The ``split`` of the ImageNet validation images under ``root`` (see the module docstring)."""
    if root is None:
        raise DataError(
            "dataset 'imagenet' cannot be downloaded: pass --data-dir DIR or set ROBENCH_DATA to a copy of "
            "the ILSVRC2012 validation set (class folders DIR/val/<wnid>/*.JPEG, or a flat val/ folder with "
            f"{KAGGLE_LABELS} or the devkit's {GROUND_TRUTH} + meta.mat)"
        )
    if not root.is_dir():
        raise DataError(
            f"ImageNet directory {root} does not exist: point --data-dir or ROBENCH_DATA at the ILSVRC2012 "
            "validation folder"
        )
    wnid_index = {wnid: i for i, wnid in enumerate(_wnids())}
    images = _labelled_images(root, wnid_index)
    chosen = _select(images, split, _read_subset(subset_file, images) if subset_file else None)
    if not chosen:
        raise DataError(f"no images for split {split!r} in {root}")
    return ImageFiles(chosen, (preprocessing or DEFAULT_PREPROCESSING).transform())


def _wnids() -> list[str]:
    """The 1000 sorted ILSVRC2012 wnids; index = the class index of standard ImageNet models."""
    from timm.data import ImageNetInfo

    return list(ImageNetInfo("imagenet-1k").label_names())


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in _EXTENSIONS


def _labelled_images(root: Path, wnid_index: dict[str, int]) -> dict[str, tuple[Path, int]]:
    """Image id -> (path, label), from whichever layout ``root`` holds. The id is the file name without
    extension, prefixed by ``<wnid>/`` in class folders (where two classes may hold the same name)."""
    for folder in (root / "imagenet" / "val", root / "val", root):
        if folder.is_dir() and any(d.is_dir() and d.name not in _CONTAINERS for d in folder.iterdir()):
            return _class_folders(folder, wnid_index)
    flat = next(
        (
            d
            for d in (root / "ILSVRC" / "Data" / "CLS-LOC" / "val", root / "val", root)
            if d.is_dir() and any(_is_image(p) for p in d.iterdir())
        ),
        None,
    )
    if flat is None:
        raise DataError(
            f"no class folders or images in {root}: expected the ILSVRC2012 val set as {root}/val/<wnid>/* "
            f"or a flat {root}/val/ with {KAGGLE_LABELS} or the devkit's {GROUND_TRUTH}"
        )
    files = {p.stem: p for p in sorted(flat.iterdir()) if _is_image(p)}
    for base in (root, flat.parent):
        if (base / KAGGLE_LABELS).is_file():
            return _attach(files, _kaggle_labels(base / KAGGLE_LABELS), wnid_index, base / KAGGLE_LABELS)
        for devkit in (base / DEVKIT, base):
            if (devkit / GROUND_TRUTH).is_file():
                return _attach(files, _devkit_labels(devkit), wnid_index, devkit / GROUND_TRUTH)
    raise DataError(
        f"the images in {flat} have no labels: put {KAGGLE_LABELS} (Kaggle) or the devkit's "
        f"{DEVKIT / GROUND_TRUTH} "
        f"and {DEVKIT / 'meta.mat'} (ILSVRC2012_devkit_t12.tar.gz) in {root}"
    )


def _class_folders(folder: Path, wnid_index: dict[str, int]) -> dict[str, tuple[Path, int]]:
    out = {}
    for class_dir in sorted(d for d in folder.iterdir() if d.is_dir() and d.name not in _CONTAINERS):
        if class_dir.name not in wnid_index:
            raise DataError(
                f"folder {class_dir} is not named after an ILSVRC2012 class (a wnid such as n01440764): "
                "point --data-dir at the folder holding the 1000 class folders"
            )
        for path in sorted(p for p in class_dir.iterdir() if _is_image(p)):
            out[f"{class_dir.name}/{path.stem}"] = (path, wnid_index[class_dir.name])  # names may repeat
    return out


def _kaggle_labels(path: Path) -> dict[str, str]:
    """``LOC_val_solution.csv``: image id -> wnid (the first word of its PredictionString)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return {row["ImageId"]: row["PredictionString"].split()[0] for row in rows}
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start}): it is not Kaggle's label file") from None
    except (OSError, KeyError, IndexError, AttributeError, csv.Error) as e:
        raise DataError(
            f"{path} is not Kaggle's ImageId,PredictionString file ({type(e).__name__}: {e})"
        ) from None


def _devkit_labels(devkit: Path) -> dict[str, str]:
    """Ground-truth line n (an ILSVRC2012_ID) is image ``ILSVRC2012_val_<n:08d>``; meta.mat maps ids to
    wnids."""
    meta = devkit / "meta.mat"
    import scipy.io
    from scipy.io.matlab import MatReadError

    try:
        synsets = scipy.io.loadmat(str(meta), squeeze_me=True)["synsets"]
        id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    except (OSError, ValueError, KeyError, TypeError, IndexError, MatReadError, NotImplementedError) as e:
        raise DataError(
            f"cannot read the devkit's {meta} ({type(e).__name__}): unpack ILSVRC2012_devkit_t12.tar.gz "
            "next to the images"
        ) from None
    truth = devkit / GROUND_TRUTH
    try:
        lines = truth.read_text(encoding="utf-8").split()
    except UnicodeDecodeError as e:
        raise DataError(f"{truth} is not UTF-8 text (byte {e.start}): it is not the devkit's file") from None
    except OSError as e:
        raise DataError(f"cannot read {truth} ({e.strerror})") from None
    out = {}
    for n, line in enumerate(lines, start=1):
        if not line.isdigit() or int(line) not in id_to_wnid:
            raise DataError(f"{truth} line {n}: {line!r} is not an ILSVRC2012_ID listed in {meta}")
        out[f"ILSVRC2012_val_{n:08d}"] = id_to_wnid[int(line)]
    return out


def _attach(
    files: dict[str, Path], labels: dict[str, str], wnid_index: dict[str, int], source: Path
) -> dict[str, tuple[Path, int]]:
    """Flat image files with their labels; an image without a label or a wnid outside ILSVRC2012 fails."""
    out = {}
    for image_id, path in files.items():
        if image_id not in labels:
            raise DataError(f"{source} has no label for {path.name}")
        wnid = labels[image_id]
        if wnid not in wnid_index:
            raise DataError(f"{source}: {wnid!r} (label of {path.name}) is not an ILSVRC2012 class")
        out[image_id] = (path, wnid_index[wnid])
    return out


def subset_identity(path: str | Path) -> dict:
    """What a record keeps of a subset file: its name and sha256 (the path is machine-specific)."""
    import hashlib

    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read subset file {path} ({e.strerror})") from None
    return {"file": Path(path).name, "sha256": hashlib.sha256(data).hexdigest()}


def _read_subset(path: Path, images: dict[str, tuple[Path, int]]) -> list[str]:
    """Image ids listed in a subset file, in its order; every one must be present, none twice."""
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read subset file {path} ({type(e).__name__})") from None
    by_stem: dict[str, list[str]] = {}
    for image_id in images:
        by_stem.setdefault(image_id.rpartition("/")[2], []).append(image_id)
    ids, absent = [], []
    for line in lines:
        entry = Path(line.split()[0])
        if f"{entry.parent.name}/{entry.stem}" in images:  # <wnid>/<file>, as RobustBench lists them
            ids.append(f"{entry.parent.name}/{entry.stem}")
        elif len(by_stem.get(entry.stem, [])) == 1:
            ids.append(by_stem[entry.stem][0])
        elif entry.stem in by_stem:
            raise UsageError(
                f"subset file {path}: {entry.stem} is in several class folders: write <wnid>/<file>"
            )
        else:
            absent.append(entry.stem)
    if absent:
        raise DataError(
            f"subset file {path} names {len(absent)} images not in the ImageNet folder (e.g. {absent[0]})"
        )
    if len(set(ids)) != len(ids):
        raise UsageError(f"subset file {path} lists an image twice")
    if not ids:
        raise UsageError(f"subset file {path} lists no images")
    return ids


def _select(
    images: dict[str, tuple[Path, int]], split: str, subset: list[str] | None
) -> list[tuple[Path, int]]:
    """The split's (path, label) pairs in evaluation order (see the module docstring)."""
    if subset is not None and split == "test":
        return [images[i] for i in subset]
    skip = set(subset or ())
    by_class: dict[int, list[str]] = {}
    for image_id in sorted(images, key=lambda i: images[i][0].name):
        if image_id not in skip:
            by_class.setdefault(images[image_id][1], []).append(image_id)
    first = 0 if split == "test" else IMAGENET_PER_CLASS
    ranked = [
        (rank, label, images[image_id][0])
        for label, ids in by_class.items()
        for rank, image_id in enumerate(ids[first : first + IMAGENET_PER_CLASS])
    ]
    return [(path, label) for _, label, path in sorted(ranked)]
