"""The board's markdown page as HTML blocks, so the site shows the sections the reviewed page shows.

The site's board page carries what the markdown board carries (detail tables, front neighbours, flags,
the evaluation protocol, what is left out, and without JavaScript the main table itself). Rather than a
second renderer of the same sections, the site converts the markdown that
:func:`robench.boards.render.build` writes. That markdown is not arbitrary: every card- or record-derived
string in it went through :func:`robench.boards.text.escape` (HTML-significant characters are entities,
markdown punctuation is backslash-escaped) or :func:`robench.boards.text.link`, so only the page's own
syntax is unescaped. This module reads exactly that subset: headings, paragraphs, ``-`` lists, pipe
tables, images, and inline code, ``**strong**``, ``[text](url)`` and backslash escapes; an escaped
character stays text, entities pass through as entities, and links are made only from
:func:`robench.boards.text.safe_url` urls. Pure text processing, hence deterministic.
"""

from __future__ import annotations

import html
import re
from typing import NamedTuple

from robench.boards.text import safe_url

#: One inline token, leftmost first: a backslash escape, a code span, ``**``, a link, or a run of text.
_INLINE = re.compile(
    r"\\(?P<escaped>[!-/:-@\[-`{-~])"
    r"|`(?P<code>[^`]*)`"
    r"|(?P<strong>\*\*)"
    r"|\[(?P<text>(?:\\.|[^\\\]])*)\]\((?P<url>[^()\s]+)\)"
    r"|(?P<plain>[^\\`*\[]+|.)",
    re.S,
)
_ALIGN = {(True, False): "left", (True, True): "center", (False, True): "right", (False, False): ""}


class Block(NamedTuple):
    """One block of the page: its kind (``h1``..``h3``, ``p``, ``ul``, ``table``, ``img``) and its HTML."""

    kind: str
    html: str


def inline(text: str) -> str:
    """One line of the page's markdown as HTML (see the module docstring for what is read)."""
    out, strong = [], False
    for m in _INLINE.finditer(text):
        if m["escaped"] is not None:
            out.append(html.escape(m["escaped"]))
        elif m["code"] is not None:
            out.append(f"<code>{html.escape(m['code'], quote=False)}</code>")
        elif m["strong"]:
            out.append("</strong>" if strong else "<strong>")
            strong = not strong
        elif m["url"] is not None:
            url = safe_url(m["url"])
            label = inline(m["text"])
            out.append(f'<a href="{html.escape(url)}">{label}</a>' if url else label)
        else:  # text: entities the escaping wrote stay entities; nothing in it is a tag
            out.append(m["plain"].replace("<", "&lt;").replace(">", "&gt;"))
    return "".join(out) + ("</strong>" if strong else "")


def _cells(row: str) -> list[str]:
    """A pipe-table row's cells, split on unescaped pipes (as GitHub splits them)."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def _table(lines: list[str]) -> str:
    head, rule, *rows = (_cells(line) for line in lines)
    aligns = [_ALIGN[(r.startswith(":"), r.endswith(":"))] for r in rule]

    classes = [f' class="{a}"' if a else "" for a in aligns]

    def row(tag: str, cells: list[str]) -> str:
        tds = (f"<{tag}{c}>{inline(cell)}</{tag}>" for cell, c in zip(cells, classes, strict=True))
        return "<tr>" + "".join(tds) + "</tr>"

    body = "\n".join(row("td", r) for r in rows)
    return (
        f'<div class="wide"><table>\n<thead>{row("th", head)}</thead>\n<tbody>\n{body}\n</tbody>'
        + "</table></div>"
    )


_IMAGE = re.compile(r"^!\[(?P<alt>(?:\\.|[^\\\]])*)\]\((?P<src>[A-Za-z0-9_.-]+)\)$")


def blocks(markdown: str, images: dict[str, str] | None = None) -> list[Block]:
    """The page's blocks in order. An image is kept only if ``images`` maps its file to a site path (the
    board's plot is a committed file the site may or may not carry); HTML comments are dropped."""
    images = images or {}
    out: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        group = [line]
        while i + 1 < len(lines) and lines[i + 1] and _kind(lines[i + 1]) == _kind(line) != "h":
            i += 1
            group.append(lines[i])
        i += 1
        kind = _kind(line)
        if kind == "h":
            level = len(line) - len(line.lstrip("#"))
            out.append(Block(f"h{level}", f"<h{level}>{inline(line[level:].strip())}</h{level}>"))
        elif kind == "ul":
            items = "".join(f"<li>{inline(g[2:])}</li>" for g in group)
            out.append(Block("ul", f"<ul>{items}</ul>"))
        elif kind == "table":
            out.append(Block("table", _table(group)))
        elif kind == "img":
            m = _IMAGE.match(line)
            if m and m["src"] in images:
                alt = html.escape(html.unescape(re.sub(r"\\(.)", r"\1", m["alt"])))
                src = images[m["src"]]  # linked to itself: on a phone the picture opens at full size
                out.append(
                    Block("img", f'<a href="{src}"><img class="board-plot" src="{src}" alt="{alt}"></a>')
                )
        elif kind == "p":
            out.append(Block("p", "<p>" + " ".join(inline(g) for g in group) + "</p>"))
    return out


def _kind(line: str) -> str:
    if not line.strip() or line.startswith("<!--"):
        return ""
    if line.startswith("#"):
        return "h"
    if line.startswith("- "):
        return "ul"
    if line.startswith("|"):
        return "table"
    if line.startswith("!["):
        return "img"
    return "p"
