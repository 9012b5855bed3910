"""``--model model.pt2``: a ``torch.export`` archive, graph and weights in one file, no user code needed.

Loading such an archive is not safe: torch's loader (``torch.export.pt2_archive``) reads its tensors with
``torch.load(weights_only=False)`` and its custom objects with ``pickle.loads``, so a crafted file runs code.
It is therefore treated like a pickle checkpoint: refused unless the caller passes ``allow_pickle``
(``--allow-pickle``) for a file they trust. The model's identity is the archive's sha256 (graph and
weights together), read once and loaded from the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

from robench.core.errors import CheckpointError, UsageError
from robench.datasets import dataset_info


def is_exported(name: str) -> bool:
    return name.endswith(".pt2")


def name_of(path: str | os.PathLike) -> str:
    """The records' model name: the file's stem, made a safe path component."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", Path(path).stem) or "exported"


def check(path: str | os.PathLike, allow_pickle: bool) -> Path:
    """The archive's path, refused in one line when missing or when pickles are not allowed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"exported program {path} does not exist")
    if not allow_pickle:
        raise CheckpointError(
            f"{path} is a torch.export archive, whose loader unpickles its contents (a crafted file can run "
            "code); pass --allow-pickle for a file you trust, or give a card with safetensors weights"
        )
    return path


def load(path: str | os.PathLike, allow_pickle: bool, dataset: str):
    """(module, model_meta) of the archive at ``path`` for images of ``dataset``; its input shape must be
    the dataset's (one line otherwise)."""
    import torch

    path = check(path, allow_pickle)
    data = path.read_bytes()
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as e:  # a damaged or foreign archive: torch raises many kinds
        raise CheckpointError(
            f"{path} is not a readable torch.export archive: {type(e).__name__}: {e}"
        ) from None
    info = dataset_info(dataset)
    want = (info.channels, info.image_size, info.image_size)
    inputs = [
        n
        for n in program.graph.nodes
        if n.op == "placeholder" and n.name in program.graph_signature.user_inputs
    ]
    shapes = [tuple(n.meta["val"].shape) for n in inputs if "val" in n.meta]
    if len(shapes) != 1 or tuple(int(s) for s in shapes[0][1:]) != want:
        raise UsageError(
            f"{path} takes inputs of shape {shapes[0] if len(shapes) == 1 else shapes}, but {dataset} images "
            f"are {'x'.join(map(str, want))} (N x {' x '.join(map(str, want))})"
        )
    if isinstance(shapes[0][0], int):
        raise UsageError(
            f"{path} was exported for batches of exactly {shapes[0][0]}: export it with a dynamic batch "
            "dimension (dynamic_shapes={'x': {0: torch.export.Dim('batch')}})"
        )
    meta = {"exported_program": path.name, "sha256": hashlib.sha256(data).hexdigest(), "normalization": None}
    return program.module(), meta
