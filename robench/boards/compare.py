"""``robench compare A B``: are two models' accuracies different, threat by threat, on the same examples?

Every record keeps its per-example verdicts, so two records of the same examples are compared *paired*
(:func:`robench.core.stats.compare`): the difference A − B with Newcombe's paired score interval and the exact
McNemar p-value. Pairing matters: two models that fail on mostly the same images differ far more
surely than two independent samples with the same accuracies would.

With ``board`` only the records that board shows are compared (current configs, the board's examples
and seed); with ``dataset`` every committed record of the two models is, and a pair of records whose
examples differ is reported as not comparable rather than tested.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

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
    """What one record contributes: its verdicts and which examples they are about."""

    verdicts: str
    examples: tuple  # (split, start, n, seed): records pair only when these agree


class Row(NamedTuple):
    threat: str
    result: stats.Paired | None  # None: not comparable
    why: str = ""


def _board_sides(board_name: str, models: tuple[str, str], root: Path) -> tuple[str, dict]:
    board = load_board(board_name)
    frame = collect(board, root)[0]
    sides = {
        (r.model, r.threat): Side(r.verdicts, (board.split, 0, r.n, board.seed))
        for r in frame[frame["model"].isin(models)].itertuples()
    }
    return board.dataset, sides


def _dataset_sides(dataset: str, models: tuple[str, str], root: Path) -> dict:
    sides = {}
    for model in models:
        for path in sorted((root / RUNS_DIR / record.check_name("dataset", dataset) / model).glob("*.json")):
            rec = read_record(path, root)
            where = rec.indices if isinstance(rec.indices, dict) else {}
            examples = (where.get("split"), where.get("start", 0), rec.n_examples, rec.seed)
            sides[(model, rec.threat)] = Side(str(rec.per_example), examples)
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
    """The dataset compared on and one :class:`Row` per threat (default: every threat both models have)."""
    models = (record.check_name("model", a), record.check_name("model", b))
    if board is not None and dataset is not None:
        raise UsageError("give --board or --dataset, not both")
    if board is not None:
        dataset, sides = _board_sides(board, models, root)
    else:
        dataset = dataset or _default_dataset(models, root)
        sides = _dataset_sides(dataset, models, root)
    have = {m: {t for (model, t) in sides if model == m} for m in models}
    if threats is None:
        threats = sorted(have[a] & have[b])
        if not threats:
            raise UsageError(
                f"{a} and {b} have no threat in common on {dataset}" + (f" (board {board})" if board else "")
            )
    rows = []
    for threat in threats:
        missing = [m for m in models if threat not in have[m]]
        if missing:
            rows.append(Row(threat, None, f"no {'current ' if board else ''}record for {', '.join(missing)}"))
            continue
        sa, sb = sides[(a, threat)], sides[(b, threat)]
        if (
            sa.examples != sb.examples
            or len(sa.verdicts) != sa.examples[2]
            or len(sb.verdicts) != sb.examples[2]
        ):
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
