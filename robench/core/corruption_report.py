"""mCE and relative mCE (Hendrycks & Dietterich 2019) from two corruption records: a model's, a reference's.

The paper normalises a model's corruption errors by a reference model's (AlexNet on ImageNet-C), so that
corruptions that are hard for everyone do not dominate the mean:

- ``CE_c = sum_s E_{s,c}(f) / sum_s E_{s,c}(ref)`` and ``mCE = mean_c CE_c``, with E the top-1 error;
- relative: ``rCE_c = sum_s (E_{s,c}(f) - E_clean(f)) / sum_s (E_{s,c}(ref) - E_clean(ref))`` and
  ``relative mCE = mean_c rCE_c``: how much *more* the model errs under corruption, relative to the reference.

Both are ratios (lower is better; the reference scores 1.0). They are computed here, torch-free, from the
records' ``details.accuracy_by_corruption_and_severity`` and ``clean_acc`` (``robench corruptions-report``
prints them), rather than stored in a record, because they depend on which reference a reader picks: for
mnist5k robench uses ``mnist_cnn_standard`` (the zoo's plain CNN, the role AlexNet plays in the paper).
"""

from __future__ import annotations

import math
import os

from robench.core.errors import UsageError
from robench.core.record import RunRecord, load, path_for

CORRUPTION_FAMILIES = ("corruptions", "corruptions_read", "mnist_c", "mnist_c_read")
DEFAULT_REFERENCE = {"mnist5k": "mnist_cnn_standard", "mnist": "mnist_cnn_standard"}


def _errors(record: RunRecord) -> dict[str, dict[str, float]]:
    if record.family not in CORRUPTION_FAMILIES:
        raise UsageError(
            f"record {record.model}/{record.threat} is of family {record.family!r}, not a "
            f"corruption family ({', '.join(CORRUPTION_FAMILIES)})"
        )
    table = record.details.get("accuracy_by_corruption_and_severity") or {}
    return {c: {s: 1.0 - a for s, a in by_s.items()} for c, by_s in table.items()}


def _ratio(numerator: float, denominator: float) -> float | None:
    """None where the reference leaves nothing to compare with (no error, or none above its clean error)."""
    return numerator / denominator if denominator > 0 else None


def _mean(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else math.fsum(values) / len(values)


def corruption_errors(model: RunRecord, reference: RunRecord) -> dict:
    """CE and relative CE per corruption, and their means (module doc), of ``model`` against ``reference``.

    Both records must be the same threat (family and configuration) on the same dataset, split and
    examples, so that each error is taken over the same images; otherwise a one-line :class:`UsageError`.
    A ratio whose reference denominator is not positive is ``None``, and so is a mean over it.
    """
    mine, theirs = _errors(model), _errors(reference)
    for what, a, b in (
        ("dataset", model.dataset, reference.dataset),
        ("threat", model.threat, reference.threat),
        ("family", model.family, reference.family),
        ("threat configuration", model.threat_config, reference.threat_config),
        ("examples", (model.indices, model.n_examples), (reference.indices, reference.n_examples)),
        ("seed", model.seed, reference.seed),
    ):
        if a != b:
            raise UsageError(
                f"the reference {reference.model} differs from {model.model} in {what} "
                f"({b} vs {a}): evaluate both under one threat on the same examples and seed"
            )
    clean, clean_ref = 1.0 - model.clean_acc, 1.0 - reference.clean_acc
    ce, relative = {}, {}
    for c, by_s in mine.items():
        ref = theirs[c]
        ce[c] = _ratio(math.fsum(by_s.values()), math.fsum(ref.values()))
        relative[c] = _ratio(
            math.fsum(e - clean for e in by_s.values()), math.fsum(e - clean_ref for e in ref.values())
        )
    return {
        "model": model.model,
        "reference": reference.model,
        "dataset": model.dataset,
        "threat": model.threat,
        "source": model.details.get("source"),
        "clean_error": clean,
        "reference_clean_error": clean_ref,
        "mean_corruption_accuracy": model.details.get("mean_corruption_accuracy"),
        "mCE": _mean(list(ce.values())),
        "relative_mCE": _mean(list(relative.values())),
        "CE": ce,
        "relative_CE": relative,
    }


def format_report(report: dict) -> str:
    """The report as a plain-text table: one row per corruption, then the means."""

    def pct(v):
        return "n/a" if v is None else f"{100 * v:.1f}%"

    lines = [
        f"{report['model']} vs reference {report['reference']} | {report['dataset']} | "
        f"{report['threat']} ({report['source']}) | clean error {pct(report['clean_error'])}, reference "
        f"{pct(report['reference_clean_error'])}",
        f"{'corruption':<18} {'CE':>8} {'relative CE':>12}",
    ]
    lines += [f"{c:<18} {pct(v):>8} {pct(report['relative_CE'][c]):>12}" for c, v in report["CE"].items()]
    lines.append(
        f"{'mean':<18} {pct(report['mCE']):>8} {pct(report['relative_mCE']):>12}   "
        f"(mCE, relative mCE; mCA {pct(report['mean_corruption_accuracy'])})"
    )
    return "\n".join(lines)


def report_from_runs(
    runs: str | os.PathLike, model: str, reference: str | None, dataset: str, threat: str
) -> dict:
    """:func:`corruption_errors` of the two records ``runs/<dataset>/<model|reference>/<threat>.json``;
    ``reference`` defaults to the dataset's (:data:`DEFAULT_REFERENCE`)."""
    if reference is None:
        if dataset not in DEFAULT_REFERENCE:
            raise UsageError(
                f"no default reference model for {dataset!r}: name one with --reference "
                "(AlexNet's record on ImageNet reproduces the paper's mCE)"
            )
        reference = DEFAULT_REFERENCE[dataset]
    records = []
    for name in (model, reference):
        path = path_for(runs, dataset, name, threat)
        if not path.is_file():
            raise UsageError(
                f"no record {path}: run robench eval --model {name} --threat {threat} "
                f"--dataset {dataset} --out {runs}"
            )
        records.append(load(path))
    return corruption_errors(*records)
