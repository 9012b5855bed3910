"""The offline leaderboard site: ``robench leaderboard --site DIR``.

Built on demand into DIR, never committed: the markdown pages under ``leaderboards/`` are the reviewed,
``--check``-ed record, and the site is a view of the same numbers (the same selection, ranking, intervals
and front tests, from :func:`robench.boards.render.ranked`). ``--check --site DIR`` compares a built
site with what the records build now, for whoever publishes one.

Layout: ``index.html`` (the boards, populated ones first), ``<board>/index.html`` (table + scatter,
driven by ``assets/site.js`` from data embedded as JSON, around the markdown board's own sections; without
JavaScript, the committed plot ``<board>/board.svg`` and the markdown table), ``<board>/board.csv`` and
``board.json`` (downloads), ``<board>/models/<model>.html`` (a static page per model: card, every threat
with its interval, the board's axes first, charts, UAP images, flags, the command that reproduces each
record) and ``<board>/img/<model>/<threat>.png`` (copied record artifacts). Model pages have a folder of
their own, in which the site writes nothing else, so no model name (``index``, a board's name,
``assets``) can take the place of another page; board names that the site's root uses itself are
refused. No CDN, no fetch: every page works from ``file://`` and from ``python -m http.server``.

Hostile records: files are read from the records only through
:func:`robench.boards.selection.read_checkout_file` (no symbolic link followed, nothing outside
``leaderboards/runs``, a size limit), a PNG is copied only if its header declares a small image
(:func:`png_problem`), and the charts drawn from a record's ``details`` are bounded (:data:`MAX_POINTS`,
:data:`MAX_CELLS`): a refused image or an oversized chart is named on the page in one line instead.

Deterministic: sorted inputs, fixed number formats, no dates, so two builds are byte-identical. Card text
is escaped with :func:`robench.boards.text.html_escape` in HTML (no page holds a bidirectional control)
and, in the embedded JSON, has ``<``, ``>`` and ``&`` written as ``\\u003c`` etc. so that no string can
close the ``<script>`` element; links are made only from http(s) urls.
"""

from __future__ import annotations

import csv
import io
import json
from importlib import resources
from pathlib import Path

import pandas as pd

from robench.boards import charts, mdhtml, unions
from robench.boards import plot as plots
from robench.boards.details import recipe_name
from robench.boards.files import BOARDS_DIR, paths
from robench.boards.render import Page, Ranked, build, pair_text, ranked, tied
from robench.boards.schema import board_names
from robench.boards.selection import RUNS_DIR, Refused, default_root, read_checkout_file
from robench.boards.text import html_escape, plain, safe_url
from robench.core import record, stats
from robench.core.errors import UsageError

#: A file at the site's root that marks DIR as a robench site, so that a rebuild may remove files the
#: records no longer produce there and never touches a folder that is something else.
MARKER = "robench-site.txt"
_MARKER_TEXT = (
    b"Built by `robench leaderboard --site`; every file here is regenerated from the run records.\n"
)
#: Names the site's root holds itself, so no board may be called so.
RESERVED = frozenset({"assets", "index.html", MARKER})
#: A record's PNG is copied only when at most this large, in bytes and pixels per side: UAP δ images are
#: the input's size (28 to 224 px), and a small file may declare 40000 x 40000 px and exhaust a browser.
MAX_PNG_BYTES, MAX_PNG_SIDE = 4 << 20, 4096
#: The most points a curve, and cells a heatmap, is drawn with from a record's details; a valid record may
#: hold any grid, and every point is an SVG element in the page.
MAX_POINTS, MAX_CELLS = 400, 2500
#: The committed board plot is a few dozen kB.
MAX_SVG_BYTES = 4 << 20
X_FAMILIES = ("spatial_grid", "spatial_random", "spatial_pgd", "translation_sweep")
Y_FAMILIES = ("autoattack", "pgd", "uap", "corruptions", "corruptions_read", "mnist_c", "mnist_c_read")


def _json(data) -> str:
    """JSON to embed in ``<script type="application/json">``: nothing in it can end the element."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _html(title: str, body: list[str], depth: int, script: str | None = None) -> bytes:
    up = "../" * depth
    tail = [script, f'<script src="{up}assets/site.js"></script>'] if script else []
    page = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html_escape(title)}</title>",
        f'<link rel="stylesheet" href="{up}assets/site.css">',
        '<link rel="icon" href="data:,">',  # no favicon request: a server would answer 404
        "</head>",
        "<body>",
        *body,
        *tail,
        "</body>",
        "</html>",
    ]
    return plain("\n".join(page) + "\n").encode()  # no bidirectional control anywhere on a page


def _link(text: str, url) -> str:
    url = safe_url(url)
    return f'<a href="{html_escape(url)}">{html_escape(text)}</a>' if url else html_escape(text)


def _labels(r: Ranked) -> dict[str, str]:
    """Each shown threat's label as the board names it (columns first: they name the norm)."""
    b, labels = r.board, {}
    for c in [*b.columns, b.x, *b.y_prefer]:
        labels.setdefault(c.threat, c.label)
    return {t: labels.get(t, t) for t in sorted(set(r.records["threat"]))}


def _acc(row) -> list[float]:
    low, high = stats.wilson(row["hits"], row["n"])
    return [float(row["acc"]), low, high]


def _board_data(r: Ranked, labels: dict[str, str]) -> dict:
    b, records = r.board, r.records.set_index(["model", "threat"])
    family = {t: unions.family(t) for t in labels}
    ties = tied(r.pairs)
    flagged: dict[str, list[str]] = {}
    for t in r.records.itertuples():
        if t.flags:
            flagged.setdefault(t.model, []).append(t.threat)
    y_by = {c.threat: c.label for c in b.y_prefer}
    models = []
    for rank, m in enumerate(r.ranking.itertuples(index=False), start=1):
        mine = r.records[r.records["model"] == m.model]
        models.append(
            {
                "rank": rank,
                "model": m.model,
                "name": str(m.meta.get("display_name") or m.model),
                "href": f"models/{m.model}.html",
                "arch": str(m.meta.get("arch") or "—"),
                "recipe": str(recipe_name(m.meta) or "—"),
                "front": bool(m.front),
                "tie": m.model in ties,
                "flags": list(flagged.get(m.model, [])),
                "y_threat": m.y_threat,
                "y_by": y_by.get(m.y_threat, "—"),
                "acc": {t: _acc(records.loc[(m.model, t)]) for t in mine["threat"]},
            }
        )
    # x always first; threat sets (robench.boards.unions) are offered on both axes, last
    sets = [t for t in labels if family[t] == unions.UNION]
    xs = [b.x.threat] + [t for t in labels if family[t] in X_FAMILIES and t != b.x.threat] + sets
    y_name = f"{b.y_label} (board: " + ", else ".join(c.label for c in b.y_prefer) + ")"
    return {
        "x": {"threat": b.x.threat, "label": b.x.label},
        "y_label": b.y_label,
        "x_default": b.x.threat,
        "xs": [{"id": t, "label": labels.get(t, b.x.label)} for t in xs],
        "ys": [{"id": "board_y", "label": y_name}]
        + [{"id": t, "label": labels[t]} for t in labels if family[t] in Y_FAMILIES]
        + [{"id": t, "label": labels[t]} for t in sets],
        "models": models,
    }


def _board_page(r: Ranked, data: dict, page: Page, has_plot: bool) -> bytes:
    """The board: its markdown page's text and sections (:mod:`robench.boards.mdhtml`), and between them the
    interactive scatter and table (``assets/site.js``), or without JavaScript the committed plot and the
    markdown's own table. An empty board is only the text, which says how to fill it."""
    b = r.board
    blocks = mdhtml.blocks(page.markdown, {f"{b.name}.svg": "board.svg"} if has_plot else {})
    first = next((i for i, block in enumerate(blocks) if block.kind == "h2"), len(blocks))
    intro = [x.html for x in blocks[:first] if x.kind in ("p", "ul")]
    static = [x.html for x in blocks[:first] if x.kind in ("img", "table")]
    sections = [x.html for x in blocks[first:]]
    body = ['<nav><a href="../index.html">All boards</a></nav>', f"<h1>{html_escape(b.title)}</h1>", *intro]
    if r.ranking.empty:
        return _html(b.title, body + sections, 1)
    body += [
        '<p class="downloads">Download this board: <a href="board.csv" download>CSV</a> · '
        '<a href="board.json" download>JSON</a><span class="js-only"> · the address of this page keeps '
        "the chosen axes, search and filters, to share this view</span></p>",
        '<div class="js-only">',
        '<div class="controls">',
        '<label>x axis <select id="ax-x"></select></label>',
        '<label>y axis <select id="ax-y"></select></label>',
        "</div>",
        '<div id="plot-wrap"><svg id="scatter" role="group" aria-label="Pareto scatter: one point per '
        'model, or per group of models at the same place"></svg><div id="tip" role="status" hidden></div>'
        "</div>",
        '<p class="muted">Red: the Pareto front of the shown models on the chosen axes, named, with 95% '
        "intervals as whiskers. Hover or focus (Tab) a point for its numbers; click it or press Enter for "
        "the model's page. Search and filters below apply to the plot too. The table follows the axes: "
        "ranked by y, then x; ★ marks the drawn front (≈, from the paired tests, only on the board's own "
        "axes); Flags lists only the flags of the records shown (x, y and clean).</p>",
        '<div class="controls">',
        '<label>Search <input id="search" type="search" placeholder="model name"></label>',
        '<label>Architecture <select id="f-arch"><option value="">all</option></select></label>',
        '<label>Recipe <select id="f-recipe"><option value="">all</option></select></label>',
        '<label>Flags <select id="f-flags"><option value="">all</option><option value="flagged">flagged'
        '</option><option value="clean">not flagged</option></select></label>',
        '<span id="count" class="muted"></span>',
        "</div>",
        '<div class="wide"><table id="models"></table></div>',
        "</div>",
        '<div class="no-js">',
        '<p class="muted">The committed plot and table (the board\'s axes); with JavaScript they can be '
        "re-plotted on other axes, searched and filtered.</p>",
        *static,
        "<h2>Model pages</h2>",
        '<ul class="models">',
        *(
            f'<li><a href="{m["href"]}">{html_escape(m["name"])}</a> '
            f'<span class="muted">({html_escape(m["model"])})</span></li>'
            for m in data["models"]
        ),
        "</ul>",
        "</div>",
        *sections,
    ]
    script = f'<script type="application/json" id="board-data">{_json(data)}</script>'
    return _html(b.title, body, 1, script)


def _formula_safe(text: str) -> str:
    """A CSV cell that a spreadsheet will not run: text starting like a formula gets a leading ``'``."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _downloads(r: Ranked, labels: dict[str, str], data: dict) -> dict[str, bytes]:
    """``board.csv`` (one row per model, ranked; accuracies and their 95% bounds as fractions) and
    ``board.json`` (the board's settings, the threats' labels and the models as the page's data holds
    them). Card text is data here, so the CSV guards spreadsheets against formulas in it."""
    b, threats = r.board, list(labels)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["rank", "model", "display_name", "architecture", "recipe", "front", "tie", "y_threat", "flagged"]
        + [f"{t}{end}" for t in threats for end in ("", "_ci_low", "_ci_high")]
    )
    for m in data["models"]:
        text = [m["model"], m["name"], m["arch"], m["recipe"]]
        accs = [f"{v:.6f}" if m["acc"].get(t) else "" for t in threats for v in m["acc"].get(t, [0, 0, 0])]
        marks = [int(m["front"]), int(m["tie"]), m["y_threat"], ";".join(m["flags"])]
        writer.writerow([m["rank"], *map(_formula_safe, text), *marks, *accs])
    board = {
        "name": b.name,
        "title": b.title,
        "dataset": b.dataset,
        "split": b.split,
        "n_examples": b.n_examples,
        "seed": b.seed,
        "x": b.x.threat,
        "y": [c.threat for c in b.y_prefer],
    }
    whole = {"board": board, "threats": labels, "models": data["models"]}
    text = json.dumps(whole, ensure_ascii=False, sort_keys=True, indent=1) + "\n"
    return {"board.csv": plain(out.getvalue()).encode(), "board.json": plain(text).encode()}


def reproduce(r: Ranked, model: str, threat: str) -> str:
    """The command that re-creates a shown record. Shown records have the threat's current config (else
    the board would list them as stale), so no ``--set`` is needed; the board fixes examples and seed."""
    b = r.board
    command = (
        f"robench eval --model {model} --threat {threat} --runs {RUNS_DIR.as_posix()} --dataset {b.dataset}"
    )
    command += f" --n-examples {b.n_examples}"
    command += f" --split {b.split}" if b.split != "test" else ""
    return command + (f" --seed {b.seed}" if b.seed else "")


def _card(model: str, meta: dict) -> list[str]:
    recipe, paper = meta.get("recipe"), meta.get("paper")
    rows = [
        ("Model", f"<code>{html_escape(model)}</code>"),
        ("Display name", html_escape(str(meta.get("display_name") or model))),
        ("Architecture", html_escape(str(meta.get("arch") or "—"))),
        ("Weights sha256", f"<code>{html_escape(str(meta.get('weights_sha256') or '—'))}</code>"),
        ("Normalization", html_escape(_normalization(meta))),
        ("Recipe", html_escape(str(recipe_name(meta) or "—"))),
    ]
    if isinstance(recipe, dict) and recipe.get("command"):
        rows.append(("Trained with", f"<pre>{html_escape(str(recipe['command']))}</pre>"))
    if isinstance(paper, dict) and paper.get("title"):
        year = f" ({html_escape(str(paper['year']))})" if paper.get("year") else ""
        rows.append(("Paper", _link(str(paper["title"]), paper.get("url")) + year))
    if meta.get("description"):
        rows.append(("Description", html_escape(str(meta["description"]))))
    return ['<dl class="card">', *(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows), "</dl>"]


def _normalization(meta: dict) -> str:
    """What the model subtracts and divides inside (#21: never silent): the card's mean/std, 'none' for
    [0,1] pixels, or '—' for a record made before normalisation was part of the identity."""
    if "normalization" not in meta:
        return "—"
    norm = meta["normalization"]
    if not isinstance(norm, dict):
        return "none ([0,1] pixels)" if norm is None else str(norm)
    return f"mean {norm.get('mean')}, std {norm.get('std')}"


def _series(*lists) -> bool:
    """Whether ``lists`` are equally long lists of at least two numbers (what a chart can draw)."""
    ok = all(isinstance(v, list) and len(v) > 1 for v in lists) and len({len(v) for v in lists}) == 1
    return ok and all(isinstance(x, (int, float)) and not isinstance(x, bool) for v in lists for x in v)


def png_problem(data: bytes) -> str | None:
    """Why a record's PNG is not copied (not a PNG, too large a file or image), or None.

    The size is read from the IHDR chunk, which a PNG must start with, so nothing is decoded."""
    if len(data) > MAX_PNG_BYTES:
        return f"larger than {MAX_PNG_BYTES:,} bytes"
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return "not a PNG image"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not (0 < width <= MAX_PNG_SIDE and 0 < height <= MAX_PNG_SIDE):
        return f"declares {width}x{height} pixels (at most {MAX_PNG_SIDE} a side)"
    return None


def _png(root: Path, dataset: str, model: str, threat: str) -> bytes | str:
    """A record's PNG artifact, or why it is not shown (one line)."""
    path = root / RUNS_DIR / dataset / model / f"{threat}.png"
    try:
        data = read_checkout_file(root, path, MAX_PNG_BYTES)
    except Refused as e:
        return str(e)
    except OSError as e:
        return f"{path.relative_to(root).as_posix()} is unreadable ({e.strerror or e})"
    return png_problem(data) or data


def _charts(mine: pd.DataFrame, model: str, root: Path, dataset: str) -> tuple[list[str], dict[str, bytes]]:
    """The model's curves and heatmap (from its records' details) as HTML figures, and the UAP δ images
    shown, by threat (to be copied into the site). Details that are not plain number lists are skipped; a
    chart over :data:`MAX_POINTS` points or :data:`MAX_CELLS` cells, and a refused image, are named in one
    line instead."""
    figures, images = [], {}

    def figure(svg: str, caption: str) -> str:
        return f"<figure>{svg}<figcaption>{html_escape(caption)}</figcaption></figure>"

    def omitted(caption: str, why: str = "omitted: too large") -> str:
        return f'<p class="omitted">{html_escape(caption)} ({html_escape(why)})</p>'

    for r in mine.sort_values("threat").itertuples():
        threat, d, family = r.threat, r.details, unions.family(r.threat)
        angle, shift, curve = (
            d.get(k) or {} for k in ("accuracy_by_rotation", "accuracy_by_translation", "curve")
        )
        if _series(angle.get("rotation_deg"), angle.get("accuracy")) and len(angle["accuracy"]) > MAX_POINTS:
            figures.append(omitted(f"Accuracy by rotation angle ({threat})"))
        elif _series(angle.get("rotation_deg"), angle.get("accuracy")):
            svg = charts.line_chart(
                f"{threat}: accuracy by angle",
                "rotation (°)",
                angle["rotation_deg"],
                [("accuracy", angle["accuracy"])],
            )
            figures.append(figure(svg, f"Accuracy by rotation angle ({threat})"))
        grid = _series(shift.get("tx"), shift.get("ty"), shift.get("accuracy"))
        if grid and len(set(shift["tx"])) * len(set(shift["ty"])) > MAX_CELLS:
            figures.append(omitted(f"Accuracy by translation ({threat})"))
        elif grid:
            svg = charts.heatmap(
                f"{threat}: accuracy by translation", shift["tx"], shift["ty"], shift["accuracy"]
            )
            caption = f"Accuracy by translation, % ({threat}; shading from 0%, light, to 100%, dark)"
            figures.append(figure(svg, caption))
        sweep = [curve.get(k) for k in ("magnitude_px", "worst_case_accuracy", "mean_accuracy")]
        if family == "translation_sweep" and _series(*sweep) and len(sweep[0]) > MAX_POINTS:
            figures.append(omitted(f"Translation sweep ({threat})"))
        elif family == "translation_sweep" and _series(*sweep):
            svg = charts.line_chart(
                f"{threat}: sweep",
                "shift magnitude (px)",
                sweep[0],
                [("worst case", sweep[1]), ("mean", sweep[2])],
            )
            figures.append(figure(svg, f"Translation sweep: accuracy by shift magnitude ({threat})"))
        if family != "uap":
            continue
        pair = []
        fool = d.get("fooling_rate_by_shift") or {}
        if _series(fool.get("shift_px"), fool.get("fooling_rate")) and len(fool["shift_px"]) > MAX_POINTS:
            pair.append(omitted(f"Fooling rate when the UAP δ is shifted ({threat})"))
        elif _series(fool.get("shift_px"), fool.get("fooling_rate")):
            svg = charts.line_chart(
                f"{threat}: fooling by shift",
                "δ shifted by (s, s) px",
                fool["shift_px"],
                [("fooling rate", fool["fooling_rate"])],
            )
            pair.append(figure(svg, f"Fooling rate when the UAP δ is shifted ({threat})"))
        png = _png(root, dataset, model, threat) if r.artifacts.get("png") == f"{threat}.png" else None
        if isinstance(png, bytes):
            images[threat] = png
            pair.append(
                f'<figure><img class="delta" src="../img/{model}/{threat}.png" alt="UAP δ for {threat}">'
                f"<figcaption>δ of {threat}<br>grey 0, black/white ∓max|δ|</figcaption></figure>"
            )
        elif png is not None:
            pair.append(omitted(f"δ image of {threat}", f"not shown: {png}"))
        if pair:
            figures.append('<div class="pair">' + "".join(pair) + "</div>")
    return figures, images


def _neighbours(r: Ranked, model: str) -> list[str]:
    """The paired tests against the model's neighbours on the front (none off the front)."""
    verdict = {True: "distinguishable at 95%", False: "not distinguishable at 95% (≈)", None: "not tested"}
    lines = [
        f"<li>{html_escape(p.left)} vs {html_escape(p.right)}: {html_escape(pair_text(p))}: "
        f"{verdict[p.distinguishable]}</li>"
        for p in r.pairs
        if model in (p.left, p.right)
    ]
    return (
        [
            "<p>Neighbours on the front (left minus right, in points; Newcombe's paired 95% interval, exact "
            "McNemar test):</p>",
            "<ul>",
            *lines,
            "</ul>",
        ]
        if lines
        else []
    )


def _model_page(r: Ranked, labels: dict[str, str], row, root: Path) -> tuple[bytes, dict[str, bytes]]:
    b, model = r.board, row.model
    mine = r.records[r.records["model"] == model]
    name = str(row.meta.get("display_name") or model)
    axes = {b.x.threat: "x", row.y_threat: "y"}
    first = [*axes, *(c.threat for c in b.y_prefer), "clean", *(c.threat for c in b.columns)]
    order = {t: i for i, t in enumerate(dict.fromkeys(first))}  # the board's axes first, then by name
    threats = [
        '<div class="wide"><table>',
        '<tr><th>Threat</th><th>Protocol</th><th class="num">Accuracy (%)</th><th class="num">95% CI</th>'
        "<th>Flags</th></tr>",
    ]
    for threat in sorted(mine["threat"], key=lambda t: (order.get(t, len(order)), t)):
        rec = mine[mine["threat"] == threat].iloc[0]
        value, low, high = _acc(rec)
        text = unions.protocol(threat, b.dataset)
        axis = f' <span class="axis-tag">board {axes[threat]}</span>' if threat in axes else ""
        threats.append(
            f"<tr><td>{html_escape(labels[threat])}{axis}<br><code>{html_escape(threat)}</code></td>"
            f"<td>{html_escape(text)}</td>"
            f'<td class="num">{100 * value:.1f}</td><td class="num">[{100 * low:.1f}, {100 * high:.1f}]</td>'
            f"<td>{'⚠' if rec['flags'] else ''}</td></tr>"
        )
    threats.append("</table></div>")
    flags = [
        f"<li><code>{html_escape(t.threat)}</code>: {html_escape(f)}</li>"
        for t in mine.itertuples()
        for f in t.flags
    ]
    figures, images = _charts(mine, model, root, b.dataset)
    # a threat set has no command of its own: the board recomputes it from its members' records
    commands = [
        f"<pre>{html_escape(reproduce(r, model, t))}</pre>" for t in mine["threat"] if not unions.is_set(t)
    ]
    body = [
        '<nav><a href="../../index.html">All boards</a> › '
        f'<a href="../index.html">{html_escape(b.title)}</a></nav>',
        f"<h1>{html_escape(name)}</h1>",
        f'<p class="muted">On board {html_escape(b.title)}: '
        f"rank {int(row.Index) + 1} of {len(r.ranking)} by y; "
        + ("on the Pareto front." if row.front else "not on the Pareto front.")
        + "</p>",
        *_neighbours(r, model),
        "<h2>Card</h2>",
        *_card(model, row.meta),
        "<h2>Every threat</h2>",
        '<p class="muted">Accuracy on the board\'s examples with its 95% Wilson score interval.</p>',
        *threats,
        "<h2>Curves</h2>",
        *(
            ['<div class="charts">', *figures, "</div>"]
            if figures
            else ["<p>None in this model's records.</p>"]
        ),
        "<h2>Flags</h2>",
        '<p class="muted">A flag is a warning the evaluation raised about its own result (for example, '
        "that a weaker attack found what a stronger one missed): the number stands, but read it with care."
        "</p>",
        *(["<ul>", *flags, "</ul>"] if flags else ["<p>None.</p>"]),
        "<h2>Reproduce</h2>",
        '<p class="muted">Each record is re-created by (from the repository root):</p>',
        *commands,
    ]
    return _html(f"{name}: {b.title}", body, 2), images


def _committed_plot(root: Path, name: str, page: Page) -> bytes | None:
    """The board's committed SVG, if it shows what the records show now (:func:`plots.shows`), for the
    page without JavaScript. It is read like a record (no link followed) and shown as an image, in which
    a browser runs no script."""
    if page.plot is None:
        return None
    path = paths(name, root)[1]
    try:
        svg = read_checkout_file(root, path, MAX_SVG_BYTES, within=BOARDS_DIR)
    except (Refused, OSError):  # absent, a link or oversized: the page goes without it
        return None
    return svg if plots.shows(svg, page.plot) else None


def build_site(boards: list[str] | None = None, root: Path | None = None) -> dict[str, bytes]:
    """Every file of the site, by path relative to DIR (default: every board)."""
    root = Path(root) if root is not None else default_root()
    names = board_names() if boards is None else list(boards)
    assets = resources.files("robench.boards") / "assets"
    files = {f"assets/{n}": (assets / n).read_bytes() for n in ("site.css", "site.js")}
    files[MARKER] = _MARKER_TEXT
    items = []  # (ranked models, line): populated boards are listed first
    for name in names:
        if name in RESERVED:
            raise UsageError(f"board name {name!r} is reserved by the site (it writes {sorted(RESERVED)})")
        r = ranked(record.check_name("board", name), root)
        n = len(r.ranking)
        items.append(
            (
                n == 0,
                f'<li><a href="{name}/index.html">{html_escape(r.board.title)}</a> '
                f'<span class="muted">— {f"{n} ranked models" if n else "no models yet"}, '
                f"{r.board.n_examples:,} {html_escape(r.board.dataset)} examples</span></li>",
            )
        )
        labels, page = _labels(r), build(name, root)
        data, plot = _board_data(r, labels), _committed_plot(root, name, page)
        files[f"{name}/index.html"] = _board_page(r, data, page, plot is not None)
        if plot is not None:
            files[f"{name}/board.svg"] = plot
        if n:
            files.update({f"{name}/{file}": text for file, text in _downloads(r, labels, data).items()})
        for row in r.ranking.itertuples():
            page, images = _model_page(r, labels, row, root)
            files[f"{name}/models/{row.model}.html"] = page
            for threat, png in images.items():
                files[f"{name}/img/{row.model}/{threat}.png"] = png
    body = [
        "<h1>robench leaderboards</h1>",
        '<ul class="boards">',
        *(line for _, line in sorted(items, key=lambda item: item[0])),
        "</ul>",
        '<p class="muted">Generated from the committed run records by '
        "<code>robench leaderboard --site</code>."
        "</p>",
    ]
    files["index.html"] = _html("robench leaderboards", body, 0)
    return dict(sorted(files.items()))


def _existing(site: Path) -> dict[str, Path]:
    return {p.relative_to(site).as_posix(): p for p in sorted(site.rglob("*")) if p.is_file()}


def write_site(site: Path, boards: list[str] | None = None, root: Path | None = None) -> list[str]:
    """Build the site into ``site``; returns the paths written or removed. Refuses a non-empty folder
    that is not a robench site (no MARKER), since files the build does not produce are removed."""
    site = Path(site)
    files = build_site(boards, root)
    have = _existing(site) if site.is_dir() else {}
    if have and MARKER not in have:
        raise UsageError(
            f"{site} is not empty and not a robench site ({MARKER} missing): choose an empty folder"
        )
    changed = []
    for rel, data in files.items():
        if rel not in have or have[rel].read_bytes() != data:
            record.atomic_write_bytes(site / rel, data)
            changed.append(rel)
    for rel in sorted(set(have) - set(files)):
        have[rel].unlink()
        changed.append(rel)
    return changed


def check_site(site: Path, boards: list[str] | None = None, root: Path | None = None) -> list[str]:
    """Paths under ``site`` that differ from, are missing from or are extra to what the records build."""
    files, have = build_site(boards, root), _existing(Path(site))
    differ = [rel for rel, data in files.items() if rel not in have or have[rel].read_bytes() != data]
    return sorted(differ + [rel for rel in have if rel not in files])
