"""Union over threats: which examples survive *every* threat of a set, from the records' verdicts alone.

A board shows each threat's accuracy on its own (two marginals), but every record keeps its verdict per
example and a board's records are verdicts on the same examples. So the share of examples that are robust
under a spatial adversary **and** under an ℓ∞ adversary needs no new evaluation: it is the share of
positions where both records say ``1``. That is what a threat *set* is.

A set is named by its threats joined with ``+`` (``spatial+pgd_linf``), a character no threat name may
hold (:func:`robench.core.record.check_name`), so the same name works in a board's ``columns``, on the
site's axis switch and in ``robench compare --threat``. The order of the members does not change the
value. A set's members are exact threats, never a preference list like the board's y axis: a set's value
must be one measurement, taken the same way for every model, so that its column ranks like any other and
its name means one thing on the command line. A board that wants both a strong and a cheap ℓ∞ member
lists two sets (``spatial+autoattack_linf`` and ``spatial+pgd_linf``).

The union is computed only when every member's record holds verdicts on the same examples (dataset,
``indices`` and ``n_examples`` equal, one verdict per example); otherwise it is refused in one line that
names the two records (:func:`intersect`). A model that lacks a member's record gets no value rather than
a guess. The value's flags are its members' flags, each prefixed by the member it comes from.

What the value means (docs/protocols.md, "Union over threats"): it is exactly the accuracy against an
adversary that, per example, uses whichever of the recorded attacks breaks it. Each recorded attack only
bounds the true robustness from above, so the value is an upper bound on the robust accuracy under the
union of the threat models, and also under an adversary that combines them on one image (which can do
anything either does alone: the identity transform, or δ = 0). The examples it breaks are a lower bound
on what a combined adversary breaks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import pandas as pd

from robench.boards.selection import Rejected
from robench.boards.text import format_value, protocol_text
from robench.core import config
from robench.core.errors import UsageError
from robench.core.record import check_name

#: Joins the threats of a set's name; never part of a threat name.
SEP = "+"
#: What :func:`family` calls a set: it groups the sets' table on a page and keys nothing else.
UNION = "union"


def is_set(name: str) -> bool:
    return SEP in name


def members(name: str) -> tuple[str, ...]:
    """The threats of a set (``spatial+pgd_linf`` -> ``("spatial", "pgd_linf")``); a threat -> itself."""
    return tuple(name.split(SEP))


def check(name: str) -> str:
    """``name`` if it is a safe threat name or a set of at least two different ones, else a UsageError."""
    threats = members(name)
    for threat in threats:
        check_name("threat", threat)
    if len(set(threats)) < len(threats):
        raise UsageError(f"threat set {name!r} lists a threat twice")
    return name


def family(threat: str) -> str:
    """A threat's family, or :data:`UNION` for a set."""
    return UNION if is_set(threat) else config.threat_spec(threat).family


def protocol(threat: str, dataset: str) -> str:
    """The one-line protocol of a threat (:func:`protocol_text`) or of a set."""
    if is_set(threat):
        return (
            f"robust only where robust under each of {', '.join(members(threat))}, from their records' "
            "per-example verdicts on the same examples (no re-run)"
        )
    return protocol_text(config.threat_spec(threat).family, config.threat_config(threat, dataset))


class Part(NamedTuple):
    """One member's record as a union needs it."""

    source: str  # the record, as ``<dataset>/<model>/<threat>.json``, for the refusal's line
    verdicts: str  # '0'/'1' per example
    dataset: str
    indices: dict  # the record's ``indices``: which examples, in which order
    n: int


def _examples(part: Part) -> str:
    return f"{part.dataset} {format_value(part.indices)}, n={part.n}"


def intersect(name: str, parts: list[Part]) -> str:
    """The verdicts of set ``name``: '1' exactly where every part says '1'.

    One-line UsageError when a part has no verdict per example, or when two parts are not verdicts on the
    same examples (same dataset, equal ``indices``, same n): the two records are named."""
    first = parts[0]
    for part in parts:
        if len(part.verdicts) != part.n:
            raise UsageError(
                f"cannot form {name}: {part.source} holds {len(part.verdicts)} per-example verdicts "
                f"for its {part.n} examples"
            )
        if (part.dataset, part.indices, part.n) != (first.dataset, first.indices, first.n):
            raise UsageError(
                f"cannot form {name}: {first.source} and {part.source} do not cover the same examples "
                f"({_examples(first)} vs {_examples(part)})"
            )
    return "".join(
        "1" if all(v == "1" for v in column) else "0"
        for column in zip(*(p.verdicts for p in parts), strict=True)
    )


def add(sets: Iterable[str], frame: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, list[Rejected]]:
    """``frame`` (a board's records, :data:`robench.boards.selection.COLUMNS`) with one row per model and
    set whose members all have a row there, plus the refused ones.

    A set's row is what a record of it would be: its accuracy, hits and n from the intersected verdicts
    (so the board's Wilson intervals and paired tests treat it like a record), the members' flags, and the
    model's card; it has no details and no artifacts. A model missing a member gets no row (an empty
    cell)."""
    rows, refused = [], []
    by_key = {(r.model, r.threat): r for r in frame.itertuples(index=False)}
    for name in dict.fromkeys(sets):
        for model in sorted(frame["model"].unique()):
            found = [by_key.get((model, t)) for t in members(name)]
            if any(r is None for r in found):
                continue
            parts = [
                Part(f"{dataset}/{model}/{r.threat}.json", r.verdicts, dataset, r.indices, r.n) for r in found
            ]
            try:
                verdicts = intersect(name, parts)
            except UsageError as e:
                refused.append(Rejected(model, name, str(e)))
                continue
            hits, first = verdicts.count("1"), found[0]
            rows.append(
                {
                    **first._asdict(),
                    "threat": name,
                    "acc": hits / first.n,
                    "flags": [f"{r.threat}: {f}" for r in found for f in r.flags],
                    "hits": hits,
                    "verdicts": verdicts,
                    "details": {},
                    "artifacts": {},
                }
            )
    if not rows:
        return frame, refused
    return pd.concat([frame, pd.DataFrame(rows, columns=frame.columns)], ignore_index=True), refused
