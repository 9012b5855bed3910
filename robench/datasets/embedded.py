"""How the build scripts write the datasets shipped inside the package (``robench/datasets/data/*.npz``).

``scripts/build_mnist5k.py`` and ``scripts/build_mnist_test.py`` both commit uint8 arrays named
``<split>_x`` (images, [N, H, W]) and ``<split>_y`` (labels, [N]) in a compressed ``.npz``, which
:mod:`robench.datasets` reads. They share this writer rather than each keeping a copy, because what
matters is a property both need: the file is reproducible (sorted members, a fixed zip timestamp), unlike
``np.savez_compressed``, which stamps the current time. Rebuilding from the same source therefore gives
the same bytes, a rebuild never makes a spurious git diff, and the tests can hold each committed file to
its source byte for byte.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np


def write_npz(arrays: dict[str, np.ndarray], out: Path) -> None:
    """Like ``np.savez_compressed`` but reproducible: sorted members with a fixed timestamp, written to a
    temporary file first so that an interrupted build leaves the committed file intact."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    tmp.replace(out)
