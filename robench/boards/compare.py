"""``robench compare A B``: are two models' accuracies different, threat by threat, on the same examples?

Every record keeps its per-example verdicts, so two records of the same examples are compared *paired*
(:func:`robench.core.stats.compare`): the difference A − B with Newcombe's paired score interval and the exact
McNemar p-value. Pairing matters: two models that fail on mostly the same images differ far more
surely than two independent samples with the same accuracies would.

With ``board`` only the records that board shows are compared (current configs, the board's examples
and seed); with ``dataset`` every committed record of the two models is, and a pair of records whose
examples differ is reported as not comparable rather than tested.

A threat may be a threat set (``spatial+pgd_linf``, :mod:`robench.boards.unions`): each model's verdicts
are then those of its members' records intersected, and a model whose member records are not verdicts on
the same examples stops the command with one line naming the two records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from robench.boards import unions
from robench.boards.schema import load_board
from robench.boards.selection import RUNS_DIR, collect, read_record
from robench.boards.text import p_text, with_interval
from robench.core import record, stats
from robench.core.errors import UsageError

METHODS = (
    "95% intervals: Wilson score for each accuracy; Newcombe's paired hybrid score interval "
    "(1998, method 10) for A − B. p: exact two-sided McNemar test (binomial test on the examples only "
    "one model gets right)."
)


class Side(NamedTuple):
    """What one record (or threat set) contributes: its verdicts and which examples they are about."""

    verdicts: str
    examples: tuple  # (indices as JSON, n, seed): records pair only when these agree
    part: unions.Part  # the record as a threat set's member


def _side(dataset: str, model: str, threat: str, verdicts: str, indices, n: int, seed) -> Side:
    indices = indices if isinstance(indices, dict) else {}
    part = unions.Part(f"{dataset}/{model}/{threat}.json", verdicts, dataset, indices, n)
    return Side(verdicts, (json.dumps(indices, sort_keys=True), n, seed), part)


def _set_side(name: str, model: str, sides: dict) -> Side | None:
    """Model's side of threat set ``name`` from its members' sides; None when a member has none. The seeds
    of the members are kept, so two sets pair only when their members' records would."""
    found = [sides.get((model, t)) for t in unions.members(name)]
    if any(s is None for s in found):
        return None
    verdicts = unions.intersect(name, [s.part for s in found])
    examples = (*found[0].examples[:2], tuple(s.examples[2] for s in found))
    return Side(verdicts, examples, found[0].part._replace(verdicts=verdicts))


class Row(NamedTuple):
    threat: str
    result: stats.Paired | None  # None: not comparable
    why: str = ""


def _board_sides(board_name: str, models: tuple[str, str], root: Path) -> tuple[str, dict]:
    board = load_board(board_name)
    frame = collect(board, root)[0]
    sides = {
        (r.model, r.threat): _side(board.dataset, r.model, r.threat, r.verdicts, r.indices, r.n, board.seed)
        for r in frame[frame["model"].isin(models)].itertuples()
    }
    return board.dataset, sides


def _dataset_sides(dataset: str, models: tuple[str, str], root: Path) -> dict:
    sides = {}
    for model in models:
        for path in sorted((root / RUNS_DIR / record.check_name("dataset", dataset) / model).glob("*.json")):
            rec = read_record(path, root)
            verdicts = str(rec.per_example)
            sides[(model, rec.threat)] = _side(
                dataset, model, rec.threat, verdicts, rec.indices, rec.n_examples, rec.seed
            )
    return sides


def _default_dataset(models: tuple[str, str], root: Path) -> str:
    both = sorted(
        d.name
        for d in (root / RUNS_DIR).glob("*")
        if all((d / record.check_name("model", m)).is_dir() for m in models)
    )
    if len(both) != 1:
        found = f"records of both in {both}" if both else f"no dataset under {RUNS_DIR} with records of both"
        raise UsageError(
            f"cannot tell which dataset to compare {models[0]} and {models[1]} on ({found}): "
            "give --dataset or --board"
        )
    return both[0]


def compare_models(
    a: str,
    b: str,
    *,
    threats: list[str] | None = None,
    board: str | None = None,
    dataset: str | None = None,
    root: Path,
) -> tuple[str, list[Row]]:
    """The dataset compared on and one :class:`Row` per threat or threat set (default: every threat both
    models have)."""
    models = (record.check_name("model", a), record.check_name("model", b))
    for threat in threats or []:
        unions.check(threat)
    if board is not None and dataset is not None:
        raise UsageError("give --board or --dataset, not both")
    if board is not None:
        dataset, sides = _board_sides(board, models, root)
    else:
        dataset = dataset or _default_dataset(models, root)
        sides = _dataset_sides(dataset, models, root)
    for threat in dict.fromkeys(t for t in threats or [] if unions.is_set(t)):
        for model in models:
            side = _set_side(threat, model, sides)
            if side is not None:
                sides[(model, threat)] = side
    have = {m: {t for (model, t) in sides if model == m} for m in models}
    if threats is None:
        threats = sorted(have[a] & have[b])
        if not threats:
            raise UsageError(
                f"{a} and {b} have no threat in common on {dataset}" + (f" (board {board})" if board else "")
            )
    rows = []
    for threat in threats:
        if any(threat not in have[m] for m in models):
            lacking = [(m, t) for m in models for t in unions.members(threat) if (m, t) not in sides]
            if unions.is_set(threat):
                what = "of " + ", ".join(f"{t} for {m}" for m, t in lacking)
            else:
                what = "for " + ", ".join(m for m, _ in lacking)
            rows.append(Row(threat, None, f"no {'current ' if board else ''}record {what}"))
            continue
        sa, sb = sides[(a, threat)], sides[(b, threat)]
        if sa.examples != sb.examples or any(len(s.verdicts) != s.part.n for s in (sa, sb)):
            rows.append(Row(threat, None, "not paired: the records are not verdicts on the same examples"))
            continue
        rows.append(Row(threat, stats.compare(sa.verdicts, sb.verdicts)))
    return dataset, rows


def format_rows(a: str, b: str, dataset: str, rows: list[Row]) -> str:
    """The comparison as an aligned text table (accuracies and differences in %), then the methods."""
    header = ["threat", "A", "B", "A − B [95% CI]", "A only", "B only", "McNemar p", ""]
    lines = []
    for row in rows:
        r = row.result
        if r is None:
            lines.append([row.threat, "—", "—", "—", "", "", "", row.why])
            continue
        verdict = "different at 95%" if r.distinguishable else "not distinguishable at 95%"
        lines.append(
            [
                row.threat,
                *(with_interval(acc, round(acc * r.n), r.n) for acc in (r.acc_a, r.acc_b)),
                f"{100 * r.diff:+.1f} [{100 * r.low:+.1f}, {100 * r.high:+.1f}]",
                str(r.only_a),
                str(r.only_b),
                p_text(r.p).removeprefix("= "),
                verdict,
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:{'<' if i in (0, 7) else '>'}{w}}}" for i, w in enumerate(widths))
    n = next((r.result.n for r in rows if r.result), None)
    head = (
        f"A = {a}, B = {b}, on {dataset}" + (f" ({n:,} paired examples)" if n else "") + "; accuracies in %"
    )
    return "\n".join([head, *(fmt.format(*line).rstrip() for line in [header, *lines]), METHODS])
