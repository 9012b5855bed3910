"""What a threat that fits on data gets from the engine: its fit data, the process group, and the cache.

Why the engine owns these rather than the threat:
- Data: a fitted threat must never see the evaluated images, so the engine loads the dataset's
  ``fit_split`` and refuses to evaluate on it; the threat only receives tensors (docs/protocols.md).
- Ranks: under ``torchrun`` the threat's fitting all-reduces; the engine hands it the operation, so
  threats stay free of torch.distributed.
- Cache: a fitted result is kept under ``$ROBENCH_CACHE/<family>/<key>.npy`` with its fit info in
  ``<key>.json`` (default ``~/.cache/robench``), so that evaluating three models under three UAP threats
  twice fits nine perturbations, not eighteen. The threat names the key (it knows which of its
  parameters change the fit); the cache validates what it reads and refits anything damaged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from robench.core import paths, record
from robench.core.errors import UsageError, WriteError
from robench.datasets import dataset_info, example_labels, load_tensors
from robench.datasets.corruption_sets import open_corrupted_set
from robench.engine import stop
from robench.engine.spec import LoadedModel, RunSpec, module_fingerprint
from robench.runtime.distributed import all_reduce_sum, world
from robench.threats.base import FitData, PrepareContext, Ranks


def cache_dir(family: str) -> Path:
    """Where fitted results of ``family`` are kept: ``$ROBENCH_CACHE/<family>``, by default under
    ``~/.cache/robench``."""
    return paths.cache_dir(family)


def model_fingerprint(model: LoadedModel) -> str:
    """sha256 of the model's identity (its card's, cosmetic fields aside) and of every parameter and buffer
    (normalisation included), so a cached fit names exactly the function it was fitted against and a
    changed display name never refits."""
    return record.config_hash({"identity": model.identity, "tensors": module_fingerprint(model.module)})


def data_fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    digest = hashlib.sha256(x.contiguous().numpy().tobytes())
    digest.update(y.contiguous().numpy().tobytes())
    return digest.hexdigest()


class FitCache:
    """Fitted tensors of one threat family, shared by every run on this machine (see the module doc)."""

    def __init__(self, family: str, device: torch.device, ranks: Ranks):
        self.root = cache_dir(family)
        self.device = device
        self.ranks = ranks

    def fetch_or_fit(
        self,
        key: str,
        shape: tuple,
        fit: Callable[[], tuple[torch.Tensor, dict]],
        accept: Callable[[torch.Tensor], bool],
    ) -> tuple[torch.Tensor, dict]:
        """The cached tensor ([1, *shape], on the device) if every rank read a valid one, else ``fit()``'s.

        Every rank must agree, or some would fit (and wait in its all-reduces) while others did not.
        The returned info is the fit's, plus ``cached``: whether this run read it or fitted it.
        """
        path = self.root / f"{key}.npy"
        cached = self._load(path, shape, accept)
        hits = self.ranks.all_reduce_sum(torch.tensor(float(cached is not None), device=self.device))
        if int(hits) == self.ranks.size:
            tensor, info = cached
            return tensor.to(self.device), {**info, "cached": True}
        tensor, info = fit()
        if self.ranks.rank == 0:
            self._store(path, tensor, info)
        return tensor, {**info, "cached": False}

    @staticmethod
    def _store(path: Path, tensor: torch.Tensor, info: dict) -> None:
        """The tensor, then its sidecar naming the key and the tensor's sha256: a reader accepts the pair
        only if both agree, so a file renamed, copied from another key or changed by a bit is refitted."""
        buffer = io.BytesIO()
        np.save(buffer, tensor[0].cpu().numpy())
        blob = buffer.getvalue()
        sidecar = {"key": path.stem, "sha256": hashlib.sha256(blob).hexdigest(), "info": info}
        try:
            record.atomic_write_bytes(path, blob)
            record.atomic_write_bytes(path.with_suffix(".json"), json.dumps(sidecar, sort_keys=True).encode())
        except WriteError as e:  # the cache saves time, the run does not need it
            print(
                f"robench: cannot write the fit cache {e.path} ({e.reason}); the run goes on, and the next "
                "run fits again",
                file=sys.stderr,
            )

    @staticmethod
    def _load(
        path: Path, shape: tuple, accept: Callable[[torch.Tensor], bool]
    ) -> tuple[torch.Tensor, dict] | None:
        """A cached tensor that its sidecar vouches for, of the right shape, finite float32 and passing
        ``accept``; else None, with one line on stderr when a cached file was there but is refused."""
        if not path.exists():
            return None
        problem = None
        try:
            blob = path.read_bytes()
            sidecar = json.loads(path.with_suffix(".json").read_text())
            array = np.load(io.BytesIO(blob), allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            problem = f"unreadable ({type(e).__name__})"
        else:
            vouched = {"key": path.stem, "sha256": hashlib.sha256(blob).hexdigest()}
            if not (
                isinstance(sidecar, dict)
                and isinstance(sidecar.get("info"), dict)
                and all(sidecar.get(k) == v for k, v in vouched.items())
            ):
                problem = "not the file its sidecar describes"
            elif array.shape != shape or array.dtype != np.float32 or not np.isfinite(array).all():
                problem = f"a {array.dtype} array of shape {array.shape}, not finite float32 {shape}"
            elif not accept(torch.from_numpy(array)[None]):
                problem = "outside the threat's constraint"
        if problem is not None:
            print(f"robench: cached fit {path}: {problem}; fitting again", file=sys.stderr)
            return None
        return torch.from_numpy(array)[None], sidecar["info"]


def prepare(spec: RunSpec) -> None:
    """Call ``spec.threat.prepare`` with everything it may use; a threat that fits on data gets the fit
    split (never the evaluated one), a fingerprint of the model and the cache; a threat that reads an
    official corrupted set gets it, aligned with the evaluated examples (whose labels it checks)."""
    threat, options, dataset = spec.threat, spec.options, spec.dataset
    info = dataset_info(dataset)
    ranks = Ranks(*world(), all_reduce_sum)
    ctx = PrepareContext(
        dataset=dataset,
        num_classes=info.num_classes,
        device=spec.device,
        seed=options.seed,
        ranks=ranks,
        check_stop=stop.check,
    )
    if threat.fits_on_data:
        if options.split == info.fit_split:
            raise UsageError(
                f"{threat.family}: cannot evaluate on split {options.split!r} of {dataset}: the threat is "
                "fitted on it; evaluate on a disjoint split (e.g. --split test)"
            )
        # preprocessed as the evaluated images, and never one of a subset file's images (#11)
        card = spec.model.card
        x, y = load_tensors(
            dataset,
            info.fit_split,
            None,
            options.data_dir,
            subset_file=options.subset_file,
            preprocessing=card.preprocessing if card is not None else None,
        )
        ctx = dataclasses.replace(
            ctx,
            fit=FitData(info.fit_split, x, y, data_fingerprint(x, y)),
            model_fingerprint=model_fingerprint(spec.model),
            cache=FitCache(threat.family, spec.device, ranks),
        )
    if threat.reads_corrupted_set:
        if options.subset_file is not None:  # the set's copies match the split rule's images, not a list's
            raise UsageError(
                f"{threat.family}: an official corrupted set is read for the test split's own "
                "images; evaluate it without --subset-file"
            )
        labels = example_labels(spec.examples)
        ctx = dataclasses.replace(
            ctx,
            corrupted=open_corrupted_set(
                dataset, threat.suite, options.split, labels, threat.pairs(), options.data_dir
            ),
        )
    threat.prepare(spec.model.module, ctx)
