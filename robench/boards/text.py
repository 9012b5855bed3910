"""Text that reaches a board page: escaping what strangers wrote, describing threats in words, and
laying out the table.

Card fields (model and display names, recipes, paper titles and urls) and record flags arrive with
submissions, so everything derived from them goes through :func:`escape` or :func:`link` before it reaches
the markdown: a name must not be able to add a table column, a link, an image or an HTML tag. Nor may it
look like something it is not: bidirectional controls (a right-to-left override makes ``gpj.exe`` read
``exe.jpg``) are removed from every page, markdown and site (:func:`plain`), and GitHub's autolinks
(``www.``, ``scheme://``, ``user@host``) are broken with an entity, so a name cannot become a link.

Protocol lines are derived from the resolved threat parameters rather than written by hand, so a page
cannot describe a protocol other than the one its records were checked against.

The table is laid out here rather than by a third-party renderer (pages were first made with pandas'
``to_markdown``, that is tabulate), because ``robench leaderboard --check`` compares the markdown byte for
byte: its bytes must not depend on which version of a layout library a contributor has installed.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Sequence
from urllib.parse import urlsplit

from robench.core import stats

_MD_PUNCT = re.compile(r"([\\`*_\[\]|~$])")
_SAFE_URL = re.compile(r"^https?://[A-Za-z0-9\-._~:/?#@!$&'*+,;=%]+$")
#: Bidirectional controls (U+061C, U+200E/F, U+202A–U+202E, U+2066–U+2069): they reorder what follows them
#: on screen, so a name could show text other than its characters; no name needs them.
_BIDI = dict.fromkeys([0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])
#: What cmark-gfm's autolink extension links: ``www.`` (any case, to be safe) and a scheme's ``://`` are
#: matched on the raw characters while parsing, so an entity for ``.`` or ``:`` keeps the text and defeats
#: them; an email is matched after entities are decoded, so its ``@`` gets an invisible word joiner
#: (U+2060) before it, which is no address character and so ends the match.
_AUTOLINK = [
    (re.compile(r"(?i)(www)\."), r"\1&#46;"),
    (re.compile(r":(?=//)"), "&#58;"),
    (re.compile("@"), "&#x2060;@"),
]


def plain(text) -> str:
    """``str(text)`` without bidirectional controls, for every string that reaches a page."""
    return str(text).translate(_BIDI)


def html_escape(text) -> str:
    """Any string as inert HTML text or attribute value (for the site), without bidirectional controls."""
    return html.escape(plain(text))


def escape(text) -> str:
    """Make any string inert in GitHub markdown, inside a table cell or running text.

    HTML-significant characters become entities (no tags, no entity tricks), markdown punctuation that
    could open emphasis, code, links, images, math, strikethrough or a new table cell is backslash-escaped,
    control characters (newlines included, which would end a table row) become spaces, bidirectional
    controls are removed, and what GitHub would autolink gets an entity that keeps it text.
    """
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in plain(text))
    text = " ".join(text.split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for pattern, entity in _AUTOLINK:
        text = pattern.sub(entity, text)
    return _MD_PUNCT.sub(r"\\\1", text)


def safe_url(url) -> str | None:
    """``url`` if it is an absolute http(s) url made of plain url characters (safe to link), else None."""
    url = str(url or "")
    return url if _SAFE_URL.match(url) and urlsplit(url).netloc else None


def link(text, url) -> str:
    """``[text](url)`` for a :func:`safe_url`, else the escaped text."""
    url = safe_url(url)
    return f"[{escape(text)}]({url})" if url else escape(text)


_FAMILY_TEXT = {
    "clean": "Clean accuracy, no perturbation",
    "pgd": "PGD",
    "autoattack": "AutoAttack",
    "spatial_grid": "Spatial grid, worst case over all transforms",
    "spatial_random": "Random spatial transforms, worst of k",
    "spatial_pgd": "First-order spatial attack",
    "uap": "Universal adversarial perturbation",
    "translation_sweep": "Translation sweep, worst of the 8 shifts of each magnitude",
    "consistency": "Shift consistency of two random shifts (Zhang 2019)",
}
_NORMS = {"linf": "ℓ∞", "inf": "ℓ∞", "l2": "ℓ2"}
#: Parameters with a customary notation, in the order a protocol is usually stated.
_KEY_TEXT = {
    "eps": lambda v: f"ε={_num(v)}",
    "steps": lambda v: f"{v} steps",
    "step_size": lambda v: f"step {_num(v)}",
    "restarts": lambda v: _count(v, "restart"),
    "max_rotation": lambda v: f"rotation ±{_num(v)}°",
    "n_rotations": lambda v: _count(v, "rotation"),
    "max_translation": lambda v: f"translation ±{_num(v)} px",
    "n_translations": lambda v: _count(v, "translation") + " per axis",
}


def _count(n, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _num(value) -> str:
    """Numbers as published: short decimals as they are, multiples of 1/255 as ``k/255``."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    short = f"{value:.6g}"
    if float(short) == value and len(short) <= 6:
        return short
    k = round(value * 255)
    if k and math.isclose(value, k / 255, rel_tol=1e-9):
        return f"{k}/255"
    return f"{value:.4g}"


def format_value(value) -> str:
    """Any resolved parameter value (number, list, mapping) in the notation of :func:`protocol_text`."""
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return _num(value)


def protocol_text(family: str, params: dict) -> str:
    """One line describing a threat from its resolved parameters, e.g.
    ``PGD ℓ∞ ε=0.3, 100 steps, step 0.01, 1 restart``.

    Derived from the configuration the shown records were checked against, so the page cannot drift
    from what was run. Well-known keys get their usual notation; any other key is shown as ``key=value``.
    """
    params = dict(params)
    head, separator = _FAMILY_TEXT.get(family, family), ": "
    if "norm" in params:  # "PGD ℓ∞ ε=0.3, ...": the norm reads as part of the name
        norm = str(params.pop("norm"))
        head, separator = f"{head} {_NORMS.get(norm.lower(), f'norm={norm}')}", " "
    parts = [_KEY_TEXT[key](params.pop(key)) for key in _KEY_TEXT if key in params]
    parts += [f"{key}={format_value(v)}" for key, v in params.items()]
    return f"{head}{separator}{', '.join(parts)}" if parts else head


#: p-values below this are printed as ``< 1e-10``: at that size the exact digits (3.2e-173) say nothing a
#: reader can use, and they come from the tail of a binomial where floating point is least exact.
P_FLOOR = 1e-10


def p_text(p: float) -> str:
    """A p-value after its name: ``= 0.032``, ``= 1.2e-05`` or ``< 1e-10``."""
    return f"< {P_FLOOR:g}" if p < P_FLOOR else f"= {p:.2g}"


def percent(fraction: float) -> str:
    """An accuracy or rate in % with one decimal, as every board cell shows it."""
    return f"{100 * fraction:.1f}"


def with_interval(value: float, hits: int, n: int) -> str:
    """An accuracy in % with the 95% Wilson score interval of ``hits`` out of ``n``: ``52.6 [49.5, 55.7]``.

    The value is the record's own accuracy, so the number on the page is the one the record states."""
    low, high = stats.wilson(hits, n)
    return f"{percent(value)} [{percent(low)}, {percent(high)}]"


_PAD = {"left": "<", "center": "^", "right": ">"}
_RULE = {"left": ":{}-", "center": ":{}:", "right": "-{}:"}


def pipe_table(headers: Sequence[str], aligns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub pipe table, laid out exactly as tabulate's ``pipe`` format lays out strings, so that the
    committed pages stayed byte-identical when tabulate was dropped.

    Cells are used as given (escape them first). A column is as wide as its widest cell and at least two
    wider than its header; widths count code points, not terminal columns, so that the bytes never depend
    on a width library. ``aligns`` holds ``"left"``, ``"center"`` or ``"right"`` per column.
    """
    widths = [max([len(h) + 2, *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = (f" {c:{_PAD[a]}{w}} " for c, a, w in zip(cells, aligns, widths, strict=True))
        return "|" + "|".join(padded) + "|"

    rule = "|" + "|".join(_RULE[a].format("-" * w) for a, w in zip(aligns, widths, strict=True)) + "|"
    return "\n".join([line(headers), rule, *map(line, rows)])
