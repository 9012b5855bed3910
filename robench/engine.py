"""The one evaluation loop: (model, threat, dataset) -> one run record.

Work is split into fixed-size chunks of the evaluation subset. Each chunk is seeded by (seed, chunk id),
so its result does not depend on which process computes it or on what ran before; each finished chunk's
per-example results are written to disk, so an interrupted run resumes where it stopped and ends with the
same record as an uninterrupted one (reliability.md). The chunk files live in
``<out>/<dataset>/<model>/.partial/<threat>-<hash>/`` and are removed once the record is written.

Because chunks are independent, the same loop shards over processes: under ``torchrun`` the ranks take
chunks from a shared queue and rank 0 writes the record from everyone's results (:mod:`robench.distributed`);
a cluster job-array task computes only its ``shard`` of the chunks, and the same call without ``shard``
then finds them all on disk and writes the record.
"""

from __future__ import annotations

import datetime as _dt
import io
import platform
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from robench import record as rec
from robench import imagenet
from robench.datasets import dataset_info, load_tensors
from robench.distributed import ChunkQueue
from robench.errors import EvaluationError, UsageError
from robench.models import create_model
from robench.threats import BatchContext, PrepareContext, Threat, create_threat

DEFAULT_BATCH_SIZE = 256
DEFAULT_CHUNK_SIZE = 500


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/None -> CUDA when present, else CPU; an explicit CUDA request without CUDA is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("CUDA was requested but no CUDA device is available here: use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"{dev} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type != "cpu":
        raise UsageError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    return dev


def describe_device(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def versions() -> dict:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("robench", "torch", "torchvision", "timm", "numpy", "torchattacks", "pyautoattack"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    out["torch"] = torch.__version__  # with its build tag (+cu130, +cpu): CPU and CUDA builds can differ
    out["torch_cuda"] = torch.version.cuda
    return out


def chunk_seed(seed: int, chunk: int) -> int:
    """A generator seed per chunk: independent of process count and of the order chunks run in."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _save_chunk(path: Path, stats: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **stats)
    rec.atomic_write_bytes(path, buffer.getvalue())


def _load_chunk(path: Path, n: int) -> dict[str, np.ndarray] | None:
    """A finished chunk's results, or None if the file is absent or unreadable (then it is recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            stats = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError):
        return None
    return stats if all(len(v) == n for v in stats.values()) and "robust" in stats else None


def check_logits(logits: torch.Tensor, batch: int, num_classes: int, model_name: str) -> None:
    if logits.dim() != 2 or logits.shape != (batch, num_classes):
        raise EvaluationError(
            f"model {model_name!r} returned logits of shape {tuple(logits.shape)}; expected ({batch}, {num_classes})"
        )
    bad = ~torch.isfinite(logits).all(1)
    if bad.any():
        raise EvaluationError(f"model {model_name!r} returned non-finite logits for {int(bad.sum())} of {batch} examples")


def run_chunk(model, threat, x, y, batch_size, seed, num_classes, model_name) -> dict[str, np.ndarray]:
    """Per-example results of one chunk (tensors already on the device)."""
    ctx = BatchContext(generator=torch.Generator().manual_seed(seed), batch_size=batch_size)
    parts: list[dict[str, np.ndarray]] = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        with torch.inference_mode():
            logits = model(xb)
        check_logits(logits, len(xb), num_classes, model_name)
        clean_correct = logits.argmax(1) == yb
        out = threat.run_batch(model, xb, yb, clean_correct, ctx)
        out = {k: v.detach().cpu().numpy() for k, v in out.items()}
        out["clean_correct"] = clean_correct.cpu().numpy()
        out["robust_claimed"] = out["robust"].astype(bool)
        out["robust"] = out["robust_claimed"] & out["clean_correct"]
        parts.append(out)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def evaluate(
    model: str | nn.Module,
    threat: str | Threat,
    dataset: str = "mnist5k",
    n_examples: int | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    *,
    split: str = "test",
    data_dir: str | None = None,
    out_dir: str | Path | None = None,
    chunk_size: int | None = None,
    overrides: dict | None = None,
    allow_pickle: bool = False,
    progress: bool | None = None,
    model_name: str | None = None,
    shard: tuple[int, int] | None = None,
    subset_file: str | Path | None = None,
) -> rec.RunRecord | None:
    """Evaluate ``model`` under ``threat`` on the first ``n_examples`` of ``dataset``/``split``.

    With ``out_dir``, finished chunks are kept on disk until the record is written there, so the same
    call after an interruption resumes. With ``shard=(i, n)`` (task i of a job array of n), only chunks
    c with c % n == i are computed and kept in ``out_dir``; nothing is returned and no record is written.
    Under ``torchrun`` every rank makes the same call and gets the same record; rank 0 writes it.
    """
    started = time.time()
    started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    for label, value in (("n_examples", n_examples), ("batch_size", batch_size), ("chunk_size", chunk_size)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise UsageError(f"{label} must be a positive integer, got {value!r}")
    if shard is not None:
        if not (len(shard) == 2 and 0 <= shard[0] < shard[1]):
            raise UsageError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
        if out_dir is None:
            raise UsageError("a shard's chunks are only useful on disk: give an output directory")
    dev = resolve_device(device)
    info = dataset_info(dataset)
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    chunk_size = chunk_size or DEFAULT_CHUNK_SIZE

    if isinstance(model, str):
        model_name = model
        model = create_model(model, device=dev, allow_pickle=allow_pickle)
    else:
        model = model.to(dev).eval().requires_grad_(False)
    card = getattr(model, "card", None)
    model_name = rec.check_name("model", model_name or (card.name if card else type(model).__name__))
    if card is not None:
        trained = dataset_info(card.dataset)
        if (card.num_classes, trained.channels, trained.image_size) != (info.num_classes, info.channels, info.image_size):
            raise UsageError(
                f"model {model_name!r} takes {trained.channels}x{trained.image_size}px images with {card.num_classes} "
                f"classes ({card.dataset}); {dataset!r} has {info.channels}x{info.image_size}px and {info.num_classes}"
            )
    if isinstance(threat, str):
        threat = create_threat(threat, dataset, **(overrides or {}))
    elif overrides:
        raise UsageError("overrides apply to threat names, not to threat objects")
    rec.check_name("threat", threat.name or threat.family)
    threat_name = threat.name or threat.family

    # #11: ImageNet files are resized/cropped as the model's card says; a subset file picks the images
    subset = imagenet.subset_identity(subset_file) if subset_file is not None else None
    if subset is not None and type(threat).prepare is not Threat.prepare:
        raise UsageError(f"{threat_name} fits on data, whose split does not exclude a subset file yet: "
                         "evaluate it without --subset-file")
    x, y = load_tensors(dataset, split, n_examples, data_dir, subset_file=subset_file,
                        preprocessing=card.preprocessing if card is not None else None)
    if n_examples is not None and len(x) < n_examples:
        raise UsageError(f"n_examples={n_examples} exceeds the {len(x)} examples of {dataset} {split}")
    n = len(x)
    x, y = x.to(dev), y.to(dev)
    torch.manual_seed(seed)

    threat_config = threat.config()
    identity = {
        "model": model_name, "weights": card.meta() if card else None, "dataset": dataset, "split": split,
        "n": n, "threat": threat_name, "family": threat.family, "config": threat_config, "seed": seed,
        "batch_size": batch_size, "chunk_size": chunk_size, **({"subset": subset} if subset else {}),
    }
    chash = rec.config_hash(identity)
    partial = None
    if out_dir is not None:
        partial = rec.path_for(out_dir, dataset, model_name, threat_name).parent / ".partial" / f"{threat_name}-{chash}"

    threat.prepare(model, PrepareContext(dataset=dataset, data_dir=data_dir, device=dev, seed=seed, batch_size=batch_size,
                                         split=split))

    n_chunks = (n + chunk_size - 1) // chunk_size
    bounds = [(c * chunk_size, min(n, (c + 1) * chunk_size)) for c in range(n_chunks)]
    queue = ChunkQueue(c for c in range(n_chunks) if shard is None or c % shard[1] == shard[0])
    paths = {c: partial / f"chunk-{c:05d}.npz" for c in queue.chunks} if partial else {}
    mine: dict[int, dict[str, np.ndarray]] = {}  # the chunks this process took
    computed = 0
    loop_start = time.time()
    todo = sum(bounds[c][1] - bounds[c][0] for c in queue.chunks)
    with tqdm(total=todo, desc=f"{model_name} | {threat_name}", unit="ex", file=sys.stderr, leave=False,
              disable=True if queue.rank else (None if progress is None else not progress)) as bar:
        for c in queue:
            lo, hi = bounds[c]
            path = paths.get(c)
            stats = _load_chunk(path, hi - lo) if path and path.exists() else None
            if stats is None:
                stats = run_chunk(model, threat, x[lo:hi], y[lo:hi], batch_size, chunk_seed(seed, c),
                                  info.num_classes, model_name)
                computed += hi - lo
                if path:
                    _save_chunk(path, stats)
            mine[c] = stats
            bar.update(queue.finished(hi - lo) - bar.n)
    if shard is not None:
        return None
    gathered = queue.gather((mine, computed))  # every rank's chunks, once all are done
    results = {c: chunk for chunks, _ in gathered for c, chunk in chunks.items()}
    computed = sum(count for _, count in gathered)
    if computed < n and queue.rank == 0 and progress is not False:
        print(f"robench: {model_name} | {threat_name}: resumed {n - computed} of {n} examples from {partial}",
              file=sys.stderr)
    loop_time = time.time() - loop_start
    stats = {k: np.concatenate([results[c][k] for c in range(n_chunks)]) for k in results[0]}
    flags = list(threat.flags(stats))
    if (stats["robust_claimed"] & ~stats["clean_correct"]).any():
        flags.append("robust_above_clean: the threat reported misclassified examples as robust (counted as not robust)")
    record = rec.RunRecord(
        model=model_name, dataset=dataset, threat=threat_name, family=threat.family,
        threat_config=threat_config, config_hash=chash, n_examples=n,
        clean_acc=float(stats["clean_correct"].mean()), robust_acc=float(stats["robust"].mean()),
        per_example=rec.bits(stats["robust"]), clean_per_example=rec.bits(stats["clean_correct"]),
        indices={"split": split, "start": 0, "stop": n, **({"subset": subset} if subset else {})}, details=threat.summarize(stats), flags=flags,
        seed=seed, device=describe_device(dev) + (f" x {queue.world_size} ranks" if queue.world_size > 1 else ""),
        batch_size=batch_size, chunk_size=chunk_size,
        model_meta=card.meta() if card else {}, versions=versions(), started_at=started_at,
        duration_s=round(time.time() - started, 3),
        examples_per_s=round(computed / loop_time, 3) if computed and loop_time > 0 else 0.0,
    )
    if out_dir is not None and queue.rank == 0:
        record_path = rec.path_for(out_dir, dataset, model_name, threat_name)
        for suffix, blob in threat.artifacts().items():
            artifact = record_path.with_name(f"{threat_name}.{suffix}")
            rec.atomic_write_bytes(artifact, blob)
            record.artifacts[suffix] = artifact.name
        rec.save(record, out_dir)
        shutil.rmtree(partial, ignore_errors=True)
        try:
            partial.parent.rmdir()  # the .partial folder, once no other run uses it
        except OSError:
            pass
    return record
