"""``robench verify``: do the committed records still follow from the shipped weights, configs and code?

``robench leaderboard --check`` only compares pages with records; nothing else notices a record that was
made by older code, on other weights, or edited by hand. This module re-runs records with exactly the
protocol each one states (split, example count, seed, batch and chunk size, on the CPU) and compares the
result with the committed file under one of two contracts (docs/reliability.md, "Reproducible"):

- **exact**, when the re-run's machine class (``record.machine_class``: CPU or GPU, torch, threads) is the
  record's: the per-example verdicts bit for bit, and every other field that the code determines;
- **equivalent**, when the classes differ or the record's is unknown: float summation order differs
  between classes and flips borderline verdicts, so the verdicts must agree on at least
  ``100 - MAX_DIFFERING_PERCENT`` % of the examples with no significant direction (exact McNemar,
  p >= ``ALPHA``); the fields the code fixes regardless of arithmetic must still be equal, and the
  float-valued ones (``details``, the ``.npy`` artifacts) are not compared.

Fields that describe the run rather than its result (timing, versions, the device string, whether a
fitted perturbation came from the cache) are never compared.

A prefix of ``n`` examples (``--n-examples``, what CI uses) reproduces the record's first verdicts only
where the generator draws agree. Each chunk's generator is seeded by (seed, chunk id) and consumed batch
by batch, so the first ``m`` examples of a run get the same draws and the same batches exactly when
``m`` ends a chunk, or ends a whole number of batches inside one (:func:`exact_prefix`); ``n`` is rounded
up to the next such ``m``. Aggregates (``details``, the accuracies) describe all examples and are then
not compared.

The engine is imported only when a record is re-run, so the boards package stays torch-free at import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from robench.boards.selection import RUNS_DIR
from robench.core import record, stats
from robench.core.errors import RecordError, RobenchError, UsageError

#: Fields of ``details`` (at any depth) that vary from run to run with the same result.
VOLATILE_DETAILS = frozenset({"fit_time_s", "cached"})
#: Record fields fixed by the code, weights and protocol; compared on a full re-run.
FULL_FIELDS = (
    "clean_acc",
    "robust_acc",
    "threat_config",
    "config_hash",
    "family",
    "flags",
    "model_meta",
    "n_examples",
    "indices",
)
#: Artifacts compared byte for byte; images are left out, as their bytes depend on the plotting library.
EXACT_ARTIFACTS = frozenset({"npy"})
#: The per-example verdict strings; under the equivalent contract they are judged by agreement.
VERDICTS = ("per_example", "clean_per_example")
#: The accuracies are the verdicts' means: under the equivalent contract the verdicts are judged instead.
VERDICT_MEANS = frozenset({"clean_acc", "robust_acc"})
#: Equivalent contract: at most this share of the examples (in percent) may get another verdict, so the
#: accuracy moves by at most one point: less than the half-width of a 1,000-example record's 95% interval
#: (1.9 to 3.1 points between 10% and 90% accuracy), and above the 0.6% that another CPU class gave on the
#: zoo's most sensitive record (issue #24; docs/reliability.md).
MAX_DIFFERING_PERCENT = 1
#: Equivalent contract: the discordant examples must not lean one way at this level (exact McNemar).
ALPHA = 0.05


def flag_names(flags: list) -> list:
    """The names of a record's flags (``name: text``): under the equivalent contract which flags are
    raised must agree, not the counts in their text (AutoAttack's share of warned batches moves with the
    verdicts)."""
    return [f.split(":", 1)[0] if isinstance(f, str) else f for f in flags]


@dataclasses.dataclass(frozen=True)
class Contract:
    """Which promise a re-run is held to (``exact``: bit for bit; else equivalent) and why."""

    exact: bool
    why: str

    def text(self) -> str:
        return f"{'exact' if self.exact else 'equivalent'} contract, {self.why}"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """What a re-run does not reproduce (``differs``), the verdict differences the equivalent contract
    accepts (``drift``), and the fields it leaves out (``not_compared``)."""

    differs: tuple[str, ...]
    drift: tuple[str, ...] = ()
    not_compared: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One record's verdict: the fields that differ (empty: reproduced) over how many examples, under
    which contract (None: not re-run), and what that contract accepted or left out."""

    path: Path
    n_examples: int
    differs: tuple[str, ...]
    seconds: float
    contract: Contract | None = None
    drift: tuple[str, ...] = ()
    not_compared: tuple[str, ...] = ()

    def line(self, root: Path) -> str:
        """``OK`` (everything compared is equal), ``EQUIVALENT (...)`` (verdicts differ within the bounds)
        or ``DIFFERS: ...``, then the example count, the time, the contract and what was not compared."""
        name = self.path.relative_to(root / RUNS_DIR).with_suffix("").as_posix()
        drift = "; ".join(self.drift)
        if self.differs:
            status = "DIFFERS: " + ", ".join(self.differs) + f"; accepted: {drift}" * bool(drift)
        else:
            status = f"EQUIVALENT ({drift})" if drift else "OK"
        about = [f"{self.n_examples:,} examples, {self.seconds:.0f}s"]
        if self.contract is not None:
            about.append(self.contract.text())
        about += ["not compared: " + ", ".join(self.not_compared)] * bool(self.not_compared)
        return f"{name}: {status} ({'; '.join(about)})"


def contract(old: record.RunRecord, new: record.RunRecord) -> Contract:
    """Exact when the re-run ``new`` ran on the machine class ``old`` states; equivalent when the classes
    differ or ``old``'s is not fully known (records written before the class was stored)."""
    recorded, here = record.machine_class(old), record.machine_class(new)
    if record.machine_known(recorded) and recorded == here:
        return Contract(True, f"same machine class: {record.describe_machine(here)}")
    why = "other machine class" if record.machine_known(recorded) else "machine class of the record unknown"
    return Contract(False, f"{why}: {record.describe_machine(recorded)} vs {record.describe_machine(here)}")


def verdict_drift(name: str, old: str, new: str, exact: bool) -> tuple[str | None, bool]:
    """How the verdicts ``new`` differ from ``old`` (same examples), in words (None: equal), and whether
    the contract accepts that (exact: only when equal; equivalent: few and not one-sided)."""
    if len(old) != len(new):  # a damaged record, which the caller reports as such
        return name, False
    paired = stats.compare(old, new)
    differ = paired.only_a + paired.only_b
    if not differ:
        return None, True
    text = f"{name}: {differ:,} of {paired.n:,} differ"
    if exact:
        return text, False
    too_many = 100 * differ > MAX_DIFFERING_PERCENT * paired.n
    one_sided = paired.p < ALPHA
    bounds = [f"more than {MAX_DIFFERING_PERCENT}%"] * too_many + [f"one-sided: p < {ALPHA}"] * one_sided
    return f"{text}, p = {paired.p:.2g}" + (f" ({', '.join(bounds)})" if bounds else ""), not bounds


def exact_prefix(n: int, total: int, batch_size: int, chunk_size: int) -> int:
    """The smallest prefix length ``m >= n`` whose verdicts a run of ``m`` examples reproduces exactly:
    ``m`` is the total, ends a chunk, or ends a whole number of batches inside its chunk (module doc)."""
    m = min(n, total)
    while m < total and (m % chunk_size) % batch_size:
        m += 1
    return m


def strip_volatile(value):
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE_DETAILS}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


def select(
    root: Path,
    boards: list[str] | None,
    models: list[str] | None,
    threats: list[str] | None,
    all_records: bool,
) -> list[Path]:
    """The record files to verify: every record with ``all_records``, else those the filters name
    (records of a board's dataset, of the models, of the threats); at least one filter or ``--all``."""
    if not (all_records or boards or models or threats):
        raise UsageError("say what to verify: --all, or --board/--model/--threat")
    from robench.boards.schema import load_board

    datasets = {load_board(b).dataset for b in boards} if boards else None
    paths = [
        p
        for p in sorted((root / RUNS_DIR).glob("*/*/*.json"))
        if (datasets is None or p.parent.parent.name in datasets)
        and (not models or p.parent.name in models)
        and (not threats or p.stem in threats)
    ]
    if not paths:
        raise UsageError(f"no record under {root / RUNS_DIR} matches the given --board/--model/--threat")
    return paths


@contextlib.contextmanager
def fresh_cache() -> Iterator[None]:
    """A private, empty cache of fitted perturbations: a cached δ may come from older code, and
    re-fitting it is part of what is verified."""
    old = os.environ.get("ROBENCH_CACHE")
    with tempfile.TemporaryDirectory(prefix="robench-verify-") as tmp:
        os.environ["ROBENCH_CACHE"] = tmp
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("ROBENCH_CACHE", None)
            else:
                os.environ["ROBENCH_CACHE"] = old


def compare(
    old: record.RunRecord,
    new: record.RunRecord,
    m: int,
    old_folder: Path,
    new_folder: Path,
    exact: bool,
) -> Comparison:
    """What ``new`` (a re-run of the first ``m`` examples of ``old``) does not reproduce under the exact
    contract or, with ``exact`` False, the equivalent one (module doc)."""
    differs, drift = [], []
    for name in VERDICTS:
        text, accepted = verdict_drift(name, getattr(old, name)[:m], getattr(new, name), exact)
        if text is not None:
            (drift if accepted else differs).append(text)
    if m < old.n_examples:
        return Comparison(tuple(differs), tuple(drift))
    fields = FULL_FIELDS if exact else [k for k in FULL_FIELDS if k not in VERDICT_MEANS | {"flags"}]
    differs += [k for k in fields if getattr(old, k) != getattr(new, k)]
    if not exact:
        differs += ["flags"] * (flag_names(old.flags) != flag_names(new.flags))
        floats = ["details"] + [f"artifact {s}" for s in sorted(EXACT_ARTIFACTS & set(old.artifacts))]
        return Comparison(tuple(differs), tuple(drift), tuple(floats))
    if strip_volatile(old.details) != strip_volatile(new.details):
        differs.append("details")
    for suffix in sorted(EXACT_ARTIFACTS & (set(old.artifacts) | set(new.artifacts))):
        files = [
            folder / r.artifacts[suffix] if suffix in r.artifacts else None
            for folder, r in ((old_folder, old), (new_folder, new))
        ]
        blobs = [f.read_bytes() if f is not None and f.is_file() else None for f in files]
        if blobs[0] is None or blobs[0] != blobs[1]:
            differs.append(f"artifact {suffix}")
    return Comparison(tuple(differs))


def verify_one(path: Path, n_examples: int | None, data_dir: str | None) -> Outcome:
    """Re-run the record at ``path`` (its first ``n_examples``, rounded up by :func:`exact_prefix`) on
    the CPU, into a temporary folder, and compare it with the file."""
    import time

    from robench.engine import evaluate

    old = _read(path)
    damaged = record.problem(old)
    m = (
        old.n_examples
        if n_examples is None
        else exact_prefix(n_examples, old.n_examples, old.batch_size, old.chunk_size)
    )
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="robench-verify-") as out:
        new = evaluate(old.model, old.threat, old.dataset, **rerun_options(old, m, data_dir, out))
        new_folder = record.path_for(out, new.dataset, new.model, new.threat).parent
        terms = contract(old, new)
        found = compare(old, new, m, path.parent, new_folder, terms.exact)
    differs = (f"record damaged ({damaged})",) * bool(damaged) + found.differs
    return Outcome(path, m, differs, time.time() - started, terms, found.drift, found.not_compared)


def rerun_options(old: record.RunRecord, n: int, data_dir: str | None, out_dir: str) -> dict:
    """The :class:`~robench.engine.spec.RunOptions` fields that re-run ``old`` on its first ``n`` examples:
    its split, seed, batch and chunk sizes, on the CPU. A record whose gradient search ran on the fast path
    (``execution.search``) is re-run on that path, whose trajectory only it reproduces; other records in
    fp32 (a fast argmax record's verdicts are fp32's)."""
    from robench.engine.forward import Speed

    execution = old.execution if isinstance(old.execution, dict) else {}
    speed = Speed()
    if execution.get("search") is not None:
        speed = Speed(
            execution.get("precision", "fp32"),
            execution.get("memory_format") == "channels_last",
            bool(execution.get("compile")),
        )
    return {
        "split": old.indices.get("split", "test"),
        "n_examples": n,
        "batch_size": old.batch_size,
        "chunk_size": old.chunk_size,
        "seed": old.seed,
        "speed": speed,
        "model_name": old.model,
        "device": "cpu",
        "data_dir": data_dir,
        "out_dir": out_dir,
        "progress": False,
    }


def _read(path: Path) -> record.RunRecord:
    """The record as written: a self-contradicting one is still re-run, so the report says which fields
    the code does not reproduce."""
    try:
        return record.load(path)
    except (OSError, ValueError, TypeError, AttributeError, RecursionError) as e:
        raise RecordError(f"cannot read run record {path}: {type(e).__name__}: {e}") from None


def verify(
    paths: list[Path], n_examples: int | None = None, data_dir: str | None = None
) -> Iterator[Outcome]:
    """Each record's :class:`Outcome`, in order, as soon as it is known (one fresh fit cache for all)."""
    with fresh_cache():
        for path in paths:
            try:
                yield verify_one(path, n_examples, data_dir)
            except RobenchError as e:  # e.g. a record of data this machine lacks: say so, go on
                yield Outcome(path, 0, (f"not re-run: {e}",), 0.0)
