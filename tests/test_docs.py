"""docs/architecture.md states the public API's shape; these tests hold it to the code, so it stays true."""

from __future__ import annotations

import argparse
import functools
import inspect
import re
import shlex
import shutil
from pathlib import Path

import pytest

import robench
from robench.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
ARCHITECTURE = (REPO / "docs" / "architecture.md").read_text()


def _as_documented(name: str, function) -> str:
    """``evaluate(model, threat, dataset="mnist5k", **options)``: names, defaults and the catch-alls of
    the signature, as the page writes them (annotations are the code's business)."""
    parts = []
    for p in inspect.signature(function).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
        elif p.default is p.empty:
            parts.append(p.name)
        else:
            default = f'"{p.default}"' if isinstance(p.default, str) else repr(p.default)
            parts.append(f"{p.name}={default}")
    return f"{name}({', '.join(parts)})"


def test_the_documented_evaluate_signature_is_the_code_s():
    assert f"`{_as_documented('evaluate', robench.evaluate)} ->" in ARCHITECTURE


def test_the_documented_command_list_is_the_parser_s():
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    documented = re.search(r"CLI \(`robench/cli.py`\): `robench ([^`]+)`", ARCHITECTURE).group(1)
    assert documented.split(" | ") == list(commands.choices)


# --- the README and the docs pages: size, first screen, links, runnable commands (issue #25)

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: where code may name a page's section in a comment or docstring
CODE = [
    *sorted((REPO / "robench").rglob("*.py")),
    *sorted((REPO / "scripts").glob("*.py")),
    *sorted((REPO / "tests").glob("*.py")),
]
#: the user's pages the README's first screen links to, and the design index
USER_PAGES = ("guide", "threats", "models-and-data", "boards", "reliability", "performance")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
MARKER = "<!-- runnable -->"
#: what a command typed as it stands cannot hold: optional parts, placeholders, shell syntax
PLACEHOLDER = re.compile(r"[\[\]<>…|;&$`]|\.\.\.")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: links reduced to their text, lower case, every character but letters,
    digits, '_', '-' and spaces dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@functools.cache
def headings(page: Path) -> list[str]:
    """The page's headings outside code blocks, as written (without the #s)."""
    text = FENCE.sub("", page.read_text())
    return [m.group(1).strip() for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of the page: the slugs, a repeated one numbered -1, -2, … as GitHub does."""
    seen: dict[str, int] = {}
    out = set()
    for heading in headings(page):
        base = slug(heading)
        out.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return out


def links(page: Path) -> list[str]:
    """Link and image targets in the page's prose (code blocks and code spans are not markdown)."""
    text = re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text()))
    return re.findall(r"\]\(([^)\s]+)\)", text)


def runnable_blocks(page: Path) -> list[str]:
    """The bodies of the fenced bash blocks right after a ``<!-- runnable -->`` line."""
    text = page.read_text()
    bodies = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if before == MARKER:
            assert m.group(1) == "bash", f"{page.name}: a runnable block must be a bash block"
            bodies.append(m.group(2))
    return bodies


def commands(body: str) -> list[str]:
    """A block's commands: ``\\``-continued lines joined, comments and blank lines dropped."""
    joined = body.replace("\\\n", " ")
    lines = [line.split(" #", 1)[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def page_id(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def test_the_readme_is_at_most_15000_characters():
    assert len((REPO / "README.md").read_text()) <= 15_000


def test_the_readme_s_first_screen_says_what_shows_and_links():
    """The first 30 lines: the board's plot, the three commands in one block, a link to every user page."""
    screen = "\n".join((REPO / "README.md").read_text().splitlines()[:30])
    assert re.search(r"!\[[^\]]+\]\(leaderboards/\w+\.svg\)", screen), "the board's plot"
    [block] = [body for lang, body in FENCE.findall(screen) if lang == "bash"]
    assert len(block.strip().splitlines()) == 3, block
    for name in USER_PAGES:
        assert f"(docs/{name}.md)" in screen, name


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_internal_link_resolves(page):
    """A relative link names a file of the checkout, and its #anchor a heading of that file."""
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or REPO not in file.parents:
            broken.append(f"{target}: no such file in the checkout")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(REPO)}")
    assert not broken, f"{page_id(page)}: " + "; ".join(broken)


def named_sections(text: str) -> list[tuple[str | None, str]]:
    """Sections a text names in words: a page and a quoted heading (``guide.md "Tests"``, ``README "Quick
    start"``), or ``see`` and a quoted heading of some page (page None)."""
    named = re.findall(r"((?:[\w./-]+\.md)|README),? \"([^\"\n]+)\"", text)
    named += [(None, title) for title in re.findall(r"\bsee \"([^\"\n]+)\"", text)]
    return named


def find_page(name: str, near: Path) -> Path | None:
    """The page a text names: README is the top-level one; a file name is found beside the text, at the
    top or in docs/."""
    if name == "README":
        return REPO / "README.md"
    for folder in (near.parent, REPO, REPO / "docs"):
        if (folder / name).is_file():
            return folder / name
    return None


@pytest.mark.parametrize("source", PAGES + CODE, ids=page_id)
def test_sections_named_in_words_exist(source):
    """A section referred to by its title, or the title's first words (where a link cannot be: code,
    comments, code blocks), is a heading of the page named, or of some page; a ``docs/…md`` path names a
    page that exists."""
    text = source.read_text()
    missing = [p for p in re.findall(r"\bdocs/[\w-]+\.md\b", text) if not (REPO / p).is_file()]
    for name, title in named_sections(text):
        page = find_page(name, source) if name else None
        if name and page is None:
            missing.append(f'{name} "{title}": no such page')
            continue
        wanted = slug(title)
        candidates = [slug(h) for p in ([page] if page else PAGES) for h in headings(p)]
        if not any(s == wanted or s.startswith(wanted + "-") for s in candidates):
            missing.append(f'{name or "see"} "{title}": no such section')
    assert not missing, f"{page_id(source)}: " + "; ".join(missing)


def pasted_code(page: Path) -> list[str]:
    """What a reader copies into a shell: fenced bash blocks, and indented lines that start a command."""
    text = page.read_text()
    indented = re.findall(r"^(?: {4}|\t)(?:robench|python3?|torchrun) .*$", FENCE.sub("", text), flags=re.M)
    return [body for lang, body in FENCE.findall(text) if lang == "bash"] + indented


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_pasted_code_writes_no_optional_parts(page):
    """What a reader pastes runs: optional parts (``[--threat …]``) and ellipses belong in prose."""
    for code in pasted_code(page):
        assert not re.search(r"\[\s*-|…", code), f"{page_id(page)}: {code.strip()[:200]}"


def test_every_runnable_marker_marks_a_block():
    """A marker that is misspelt or stands before no block would silently run nothing."""
    for page in PAGES:
        text = page.read_text()
        for m in re.finditer(r"^<!--\s*runnable.*$", text, flags=re.M):
            assert m.group(0) == MARKER, f"{page_id(page)}: {m.group(0)!r} is not {MARKER!r}"
            follows = text[m.end() :].startswith("\n```bash\n")
            assert follows, f"{page_id(page)}: {MARKER} stands before no bash block"


RUNNABLE = [
    pytest.param(body, id=f"{page_id(page)}#{i}")
    for page in PAGES
    for i, body in enumerate(runnable_blocks(page))
]


def test_there_are_runnable_blocks_to_run():
    assert len(RUNNABLE) >= 5


@pytest.mark.parametrize("body", RUNNABLE)
def test_runnable_commands_run_as_they_stand(body, tmp_path, monkeypatch, capsys):
    """Each command of the block, in order, in a fresh folder holding a copy of the committed boards,
    through the CLI's entry point: exit 0. Nothing lands in the checkout."""
    from robench.cli import main

    shutil.copytree(REPO / "leaderboards", tmp_path / "leaderboards", ignore=shutil.ignore_patterns(".lock"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROBENCH_CONFIGS", raising=False)
    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    for command in commands(body):
        assert not PLACEHOLDER.search(command), f"not runnable as it stands: {command}"
        words = shlex.split(command)
        assert words[0] == "robench", f"a runnable block holds robench commands only: {command}"
        code = main(words[1:])
        assert code == 0, f"{command}: exit {code}: {capsys.readouterr().err[-1000:]}"
