"""The offline site: what it contains, that card text stays inert, that --check covers a built site, that
hostile records (issue #24: symbolic links, page names, bidi controls, huge details and images) publish
nothing and break nothing, and (in a real headless Chromium driven by Selenium) that the table sorts,
filters and follows the chosen axes, the scatter's tooltip names every model at a point, links lead to
model pages, the pages fit a 390 px phone and work without JavaScript, the view survives in the address,
and no page logs a console error, from file:// and over HTTP (issue #25).

The browser tests skip, with the reason, where selenium, chromium or chromedriver is missing; .ci/run
installs Debian's chromium and chromium-driver. Selenium is pointed at the system chromedriver and never
downloads one. Screenshots of each step are saved under pytest's tmp folder (the path is printed).
"""

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from robench.boards import site, standings
from robench.boards.pareto import pareto_front
from robench.boards.schema import load_board
from robench.cli import main
from robench.core.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None
)
EVIL = (
    "</script><script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\"> "
    "| *b* [x](javascript:alert(1))"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The site of the repository's committed records (every ranked model of the mnist5k board)."""
    out = tmp_path_factory.mktemp("site")
    assert site.write_site(out, ["mnist5k"], REPO)
    return out


def ranked() -> list[str]:
    """The mnist5k board's ranked models, best first, as the markdown page orders them."""
    return standings("mnist5k", REPO)["model"].tolist()


def board_data(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="board-data">(.*?)</script>', html, re.S)
    return json.loads(found.group(1))


def test_site_has_a_board_page_and_a_page_per_ranked_model(built):
    data = board_data((built / "mnist5k" / "index.html").read_text())
    models = [m["model"] for m in data["models"]]
    assert models == ranked()  # ranked as on the markdown page
    cusp = next(m for m in data["models"] if m["model"] == "mnist_cnn_cusp")
    assert cusp["front"] and not cusp["tie"] and cusp["acc"]["spatial"][0] == 0.526
    assert [round(100 * v, 1) for v in cusp["acc"]["spatial"][1:]] == [49.5, 55.7]  # Wilson, as on the page
    assert {a["id"] for a in data["xs"]} >= {"spatial", "spatial_rotation", "translation_sweep"}
    assert {a["id"] for a in data["ys"]} >= {
        "board_y",
        "autoattack_linf",
        "pgd_l2",
        "uap_linf",
        "corruptions",
        "mnist_c",
    }
    page = (built / "mnist5k" / "models" / "mnist_cnn_cusp.html").read_text()
    assert "02bad1532077dbce48c6b5d74396f6aff3e8a8910f2dc5f367c9d3f18e601d5e" in page  # weights sha256
    assert "robench eval --model mnist_cnn_cusp --threat spatial --runs leaderboards/runs" in page
    assert "<dt>Normalization</dt><dd>mean [0.1307], std [0.3081]</dd>" in page
    assert page.count("<figure>") >= 8 and 'src="../img/mnist_cnn_cusp/uap_linf.png"' in page
    copied = built / "mnist5k" / "img" / "mnist_cnn_cusp" / "uap_linf.png"
    assert (
        copied.read_bytes() == (REPO / "leaderboards/runs/mnist5k/mnist_cnn_cusp/uap_linf.png").read_bytes()
    )
    assert "cdn" not in (built / "mnist5k" / "index.html").read_text().lower()
    board = (built / "mnist5k" / "index.html").read_text()  # nothing fetched elsewhere (papers are links)
    assert not re.search(r'(src="|<link[^>]*href=")(https?:)?//', board)


def test_site_is_byte_deterministic_and_imports_no_torch(built, tmp_path):
    script = (
        "import sys; from pathlib import Path; from robench.boards import site\n"
        f"site.write_site(Path({str(tmp_path)!r}), ['mnist5k'], Path({str(REPO)!r}))\n"
        "print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "99"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
    assert site.check_site(tmp_path, ["mnist5k"], REPO) == []
    assert {p.relative_to(tmp_path) for p in tmp_path.rglob("*")} == {
        p.relative_to(built) for p in built.rglob("*")
    }


def test_check_site_fails_on_an_edited_missing_or_extra_file(built, tmp_path, capsys):
    shutil.copytree(built, tmp_path / "s")
    s = tmp_path / "s"
    args = ["leaderboard", "--board", "mnist5k", "--check", "--root", str(REPO), "--site", str(s)]
    assert main(args) == 0
    (s / "mnist5k" / "models" / "mnist_cnn_cusp.html").write_text("hand edit")
    (s / "mnist5k" / "index.html").unlink()
    (s / "extra.html").write_text("x")
    assert main(args) == 1
    out = capsys.readouterr().out
    assert all(f"{name}: differs" in out for name in ("mnist_cnn_cusp.html", "index.html", "extra.html"))
    assert sorted(site.write_site(s, ["mnist5k"], REPO)) == [
        "extra.html",
        "mnist5k/index.html",
        "mnist5k/models/mnist_cnn_cusp.html",
    ]
    assert site.check_site(s, ["mnist5k"], REPO) == [] and not (s / "extra.html").exists()


def test_site_refuses_to_write_into_a_folder_that_is_not_a_site(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a robench site"):
        site.write_site(tmp_path, ["mnist5k"], REPO)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.fixture
def evil_site(tmp_path, config_tree):
    """A site whose one model's card carries markup, a javascript: url and markdown in every field."""
    from test_leaderboard import BOARD, THREATS, put_model

    root = config_tree(tmp_path, threats=THREATS, boards={"x": BOARD})
    meta = {
        "display_name": EVIL,
        "arch": EVIL,
        "recipe": EVIL,
        "description": EVIL,
        "paper": {"title": EVIL, "url": "javascript:alert(1)", "year": EVIL},
    }
    put_model(root, "evil", 0.9, 0.5, 0.2, meta=meta, flags=[EVIL])
    put_model(root, "good", 0.9, 0.4, 0.3)
    out = tmp_path / "site"
    site.write_site(out, ["x"], root)
    return out


def test_card_text_cannot_inject_markup_into_the_site(evil_site):
    for page in [evil_site / "x/index.html", evil_site / "x/models/evil.html", evil_site / "index.html"]:
        html = page.read_text()
        # only the site's own scripts: the embedded data and site.js
        assert re.findall(r"<script[^>]*>", html) in (
            [],
            ['<script type="application/json" id="board-data">', '<script src="../assets/site.js">'],
        )
        assert "<img src=x" not in html and "<img" not in html.replace('<img class="delta"', "")
        assert 'href="javascript' not in html  # the javascript: url stays text, never a link
    data = board_data((evil_site / "x" / "index.html").read_text())
    assert next(m for m in data["models"] if m["model"] == "evil")["name"] == EVIL  # intact, as data
    assert "&lt;/script&gt;" in (evil_site / "x" / "models" / "evil.html").read_text()


# --- hostile records (issue #24) --------------------------------------------------------------------------

UAP = "family: uap\nparams: {norm: linf, eps: 0.3, targeted: false}\n"
SECRET = "ROBENCH_TEST_SECRET=do-not-publish"


def png(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk declaring ``width`` x ``height`` (all a size check reads)."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + b"IHDR" + ihdr + b"\0" * 4


@pytest.fixture
def hostile(tmp_path, config_tree):
    """A board tree with the test board ``x`` and a ``uap_linf`` threat; returns (root, put, put_model)."""
    from test_leaderboard import BOARD, THREATS, put, put_model

    root = config_tree(tmp_path / "repo", threats={**THREATS, "uap_linf": UAP}, boards={"x": BOARD})
    return root, put, put_model


def put_uap(root, put, model, image: bytes | None = None):
    """A uap_linf record of ``model`` with a PNG artifact (``image``, if given, is written as it)."""
    from robench.core import config

    path = put(
        root,
        model,
        "uap_linf",
        0.4,
        family="uap",
        threat_config=config.threat_config("uap_linf", "mnist5k"),
        artifacts={"png": "uap_linf.png"},
    )
    if image is not None:
        path.with_suffix(".png").write_bytes(image)
    return path


def site_text(out: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in sorted(out.rglob("*")) if p.is_file())


def test_disclosure_symlinked_record_image_or_folder_is_never_read_or_copied(hostile, tmp_path):
    """Disclosure (#24.1): git stores symbolic links, so a committed UAP image that links to
    /proc/self/environ (here: a file outside the checkout) would publish the build's environment. No link
    is followed, whether the file, the model's folder or a record: the image is named as refused on the
    model page, the records are listed as invalid, and the secret is nowhere in the site or the page."""
    root, put, put_model = hostile
    secret = tmp_path / "environ"
    secret.write_text(SECRET)
    put_model(root, "victim", 0.9, 0.5, 0.3)
    image = put_uap(root, put, "victim").with_suffix(".png")
    image.symlink_to(secret)
    outside = tmp_path / "outside"  # a whole model folder that is a link to records outside the checkout
    put_model(outside, "linked", 0.9, 0.6, 0.6)
    (root / "leaderboards/runs/mnist5k/linked").symlink_to(outside / "leaderboards/runs/mnist5k/linked")
    put_model(root, "plain", 0.9, 0.2, 0.2)
    record = root / "leaderboards/runs/mnist5k/plain/spatial.json"
    moved = tmp_path / "spatial.json"
    record.rename(moved)
    record.symlink_to(moved)

    out = tmp_path / "site"
    site.write_site(out, ["x"], root)
    assert SECRET not in site_text(out) and not (out / "x/img/victim/uap_linf.png").exists()
    page = (out / "x/models/victim.html").read_text()
    assert "leaderboards/runs/mnist5k/victim/uap_linf.png is a symbolic link (not followed)" in page
    from robench import boards

    md = boards.build("x", root).markdown
    invalid = md.split("## Invalid records (not shown)")[1]
    assert "- plain / spatial: leaderboards/runs/mnist5k/plain/spatial.json is a symbolic link" in invalid
    assert "- linked / clean: leaderboards/runs/mnist5k/linked is a symbolic link (not followed)" in invalid
    assert "linked" not in md.split("## Incomplete")[0]  # its numbers are not on the board
    assert SECRET not in md


def test_page_takeover_model_named_index_or_like_a_board_gets_its_own_page(hostile, tmp_path):
    """Page takeover (#24.3): a model named ``index`` wrote ``<board>/index.html`` over the board's page.
    Model pages live in a folder of their own; a board may not take a name the site's root uses."""
    root, put, put_model = hostile
    for model in ["index", "x", "assets", "models", "img"]:
        put_model(root, model, 0.9, 0.5, 0.3, meta={"display_name": f"model {model}"})
    out = tmp_path / "site"
    site.write_site(out, ["x"], root)
    assert board_data((out / "x" / "index.html").read_text())["models"]  # still the board's page
    assert "robench leaderboards" in (out / "index.html").read_text()
    for model in ["index", "x", "assets", "models", "img"]:
        assert "<h1>model " + model + "</h1>" in (out / "x" / "models" / f"{model}.html").read_text()
    from test_leaderboard import BOARD

    (root / "configs/boards/assets.yaml").write_text(BOARD)
    with pytest.raises(UsageError, match="'assets' is reserved"):
        site.build_site(["assets"], root)


def test_text_spoofing_bidi_controls_reach_no_page(hostile, tmp_path):
    """Text spoofing (#24.5b): a right-to-left override in a display name showed another name on the page.
    Every bidirectional control is removed from the markdown board and from every site page."""
    from robench import boards

    root, put, put_model = hostile
    controls = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
    name = "good\u202egpj.exe" + controls
    put_model(root, "spoof", 0.9, 0.5, 0.3, meta={"display_name": name, "recipe": name}, flags=[name])
    out = tmp_path / "site"
    site.write_site(out, ["x"], root)
    text = site_text(out).encode("latin-1").decode("utf-8", "replace") + boards.build("x", root).markdown
    assert "goodgpj.exe" in text and not set(controls) & set(text)


def test_resource_exhaustion_huge_details_grid_is_omitted_not_drawn(hostile, tmp_path):
    """Resource exhaustion (#24.6b): a valid record whose details hold a 300 x 300 translation grid and a
    5,000-point curve drew an SVG element per cell and point. Charts are bounded and say they are omitted."""
    root, put, put_model = hostile
    side = list(range(300))
    grid = {
        "tx": [x for x in side for _ in side],
        "ty": [y for _ in side for y in side],
        "accuracy": [0.5] * len(side) ** 2,
    }
    curve = {"rotation_deg": list(range(5000)), "accuracy": [0.5] * 5000}
    put_model(root, "big", 0.9, 0.5, 0.3)
    put(root, "big", "spatial", 0.3, details={"accuracy_by_translation": grid, "accuracy_by_rotation": curve})
    out = tmp_path / "site"
    site.write_site(out, ["x"], root)
    page = (out / "x/models/big.html").read_text()
    assert page.count("(omitted: too large)") == 2 and len(page) < 100_000
    assert "<rect" not in page and "<circle" not in page


def test_resource_exhaustion_png_declaring_40000_px_is_not_copied(hostile, tmp_path):
    """Resource exhaustion (#24.6c): a PNG artifact of a few bytes may declare 40000 x 40000 pixels, which
    a browser would try to allocate. Its IHDR is read and the image refused in one line; a small one and
    a non-PNG are judged by the same check."""
    root, put, put_model = hostile
    put_model(root, "huge", 0.9, 0.5, 0.3)
    put_uap(root, put, "huge", png(40000, 40000))
    put_model(root, "fine", 0.9, 0.4, 0.4)
    put_uap(root, put, "fine", png(28, 28))
    out = tmp_path / "site"
    site.write_site(out, ["x"], root)
    assert not (out / "x/img/huge").exists() and (out / "x/img/fine/uap_linf.png").read_bytes() == png(28, 28)
    page = (out / "x/models/huge.html").read_text()
    assert "δ image of uap_linf (not shown: declares 40000x40000 pixels (at most 4096 a side))" in page
    assert site.png_problem(b"GIF89a" + bytes(30)) == "not a PNG image"
    assert "larger than" in site.png_problem(png(28, 28) + bytes(site.MAX_PNG_BYTES))


def test_board_page_conversion_keeps_escaped_card_text_as_text():
    """The site's board page is the markdown page converted (robench.boards.mdhtml), so what escape()
    made inert in markdown must stay text in HTML: no tag, no link, and the same characters on screen."""
    import html
    import unicodedata

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from robench.boards.mdhtml import inline
    from robench.boards.text import escape, plain

    def shown(text: str) -> str:  # what escape() keeps: controls as spaces, spaces collapsed, @ joined
        text = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in plain(text))
        return " ".join(text.split()).replace("@", "\u2060@")

    pieces = st.sampled_from([*"ab <>&;#:/.@*_`[]()|~$\\!\"'\n\u202e", "www.", "://", "**", "](http://x.y)"])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(pieces).map("".join))
    def check(text):
        converted = inline(escape(text))
        assert "<" not in converted and html.unescape(converted) == shown(text)

    check()
    assert inline(escape(EVIL)).count("<") == 0


# --- in a real browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def driver():
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')"
    )
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "headless Chromium tests need chromium and chromedriver "
            "(apt-get install chromium chromium-driver)"
        )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
    ]:
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(
        service=Service(CHROMEDRIVER), options=options
    )  # the system driver, no download
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots: {folder}")
    return folder


def errors(browser) -> list:
    """Console messages at SEVERE level since the last call (reading the log clears it)."""
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def open_board(browser, address: str) -> None:
    """Load a board page and wait (up to 20 s, no time asserted) until site.js has drawn its table: under
    a loaded CPU, chromedriver has been seen to hand back a file:// page before its script had run."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(address)
    WebDriverWait(browser, 20).until(
        lambda b: b.execute_script(
            "return !!document.getElementById('count') && document.getElementById('count').textContent"
        )
    )


def rows(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return [
        tr.get_attribute("data-model") for tr in browser.find_elements(By.CSS_SELECTOR, "#models tbody tr")
    ]


def test_board_sorts_filters_hovers_and_links_in_chromium(driver, built, shots):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver.get((built / "index.html").as_uri())
    driver.save_screenshot(str(shots / "1-index.png"))
    driver.find_element(By.LINK_TEXT, load_board("mnist5k").title).click()
    open_board(driver, driver.current_url)
    assert rows(driver) == ranked()
    driver.save_screenshot(str(shots / "2-board.png"))

    header = driver.find_element(By.CSS_SELECTOR, 'th[data-key="x"]')
    header.click()  # numbers sort best first
    table = standings("mnist5k", REPO)
    assert rows(driver)[:2] == table.sort_values("x", ascending=False)["model"].tolist()[:2]
    assert header.get_attribute("aria-sort") == "descending"
    header.click()
    assert rows(driver)[-1] == "mnist_cnn_worst_of_10" and header.get_attribute("aria-sort") == "ascending"

    driver.find_element(By.ID, "search").send_keys("vit")
    assert sorted(rows(driver)) == ["mnist_vit_crop4", "mnist_vit_standard"]
    assert driver.find_element(By.ID, "count").text == f"2 of {len(ranked())} models shown"
    assert (
        len(driver.find_elements(By.CSS_SELECTOR, "#scatter circle")) == 2
    )  # the scatter follows the filter
    driver.find_element(By.ID, "search").send_keys(Keys.BACKSPACE * 3)  # as a reader would: fires input
    Select(driver.find_element(By.ID, "f-flags")).select_by_value("flagged")
    models = board_data((built / "mnist5k" / "index.html").read_text())["models"]
    shown = {m["model"]: {"spatial", m["y_threat"], "clean"} for m in models}
    flagged = sorted(m["model"] for m in models if set(m["flags"]) & shown[m["model"]])  # on shown records
    assert {"mnist_cnn_cusp", "mnist_cnn_pgd_linf"} <= set(flagged)  # AutoAttack flagged both
    assert sorted(rows(driver)) == flagged
    Select(driver.find_element(By.ID, "f-flags")).select_by_value("")
    Select(driver.find_element(By.ID, "f-arch")).select_by_value("mnist_mlp")
    assert sorted(rows(driver)) == ["mnist_mlp_crop4", "mnist_mlp_standard"]
    Select(driver.find_element(By.ID, "f-arch")).select_by_value("")

    dot = driver.find_element(By.CSS_SELECTOR, 'circle[data-model="mnist_cnn_cusp"]')
    ActionChains(driver).move_to_element(dot).perform()
    tip = driver.find_element(By.ID, "tip")
    assert tip.is_displayed()
    assert tip.text.splitlines() == [
        "mnist_cnn / cusp (mnist_cnn_cusp)",
        "Spatial grid accuracy (worst case): 52.6 [49.5, 55.7]",
        "ℓ∞ robust accuracy (board: AutoAttack, else PGD): 7.8 [6.3, 9.6]",
    ]
    driver.save_screenshot(str(shots / "3-hover.png"))

    def front_on(y_threat):  # robench.boards.pareto's front of the shown models on (spatial, y_threat)
        x = [m["acc"]["spatial"][0] if "spatial" in m["acc"] else None for m in models]
        y = [m["acc"][y_threat][0] if y_threat in m["acc"] else None for m in models]
        return {m["model"] for m, on in zip(models, pareto_front(x, y), strict=True) if on}

    board_front = {m["model"] for m in models if m["front"]}
    y_threat = next(t for t in ("uap_linf", "pgd_l2", "uap_l2", "corruptions") if front_on(t) != board_front)
    Select(driver.find_element(By.ID, "ax-y")).select_by_value(y_threat)  # another y: the front is recomputed
    red = driver.find_elements(By.CSS_SELECTOR, '#scatter circle[fill="#c0392b"]')
    drawn = {m for c in red for m in c.get_attribute("data-models").split()}
    assert drawn == front_on(y_threat) != board_front
    stars = {
        r.get_attribute("data-model")
        for r in driver.find_elements(By.CSS_SELECTOR, "#models tbody tr")
        if r.find_elements(By.XPATH, "td[2]")[0].text.startswith("★")
    }
    assert stars == drawn  # the table's ★ follows the drawn front
    driver.save_screenshot(str(shots / "4-uap-axis.png"))

    driver.find_element(By.CSS_SELECTOR, '#models tr[data-model="mnist_cnn_cusp"] a').click()
    assert driver.find_element(By.TAG_NAME, "h1").text == "mnist_cnn / cusp"
    images = driver.find_elements(By.CSS_SELECTOR, "img.delta")
    assert len(images) == 3 and all(
        driver.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images
    )
    driver.save_screenshot(str(shots / "5-model.png"))
    assert errors(driver) == []


def test_a_threat_set_is_an_axis_the_table_and_front_follow_in_chromium(driver, built, shots):
    """Issue #23: the board's threat sets are on the axis switch; choosing one re-ranks the table by the
    set's value (then x, then name, as the board ranks) and redraws the front on it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    models = board_data((built / "mnist5k" / "index.html").read_text())["models"]
    open_board(driver, (built / "mnist5k" / "index.html").as_uri())
    for axis in ("ax-x", "ax-y"):
        offered = [o.get_attribute("value") for o in Select(driver.find_element(By.ID, axis)).options]
        assert {"spatial+pgd_linf", "spatial+autoattack_linf"} <= set(offered)
    Select(driver.find_element(By.ID, "ax-y")).select_by_value("spatial+pgd_linf")
    both = {m["model"]: m["acc"]["spatial+pgd_linf"][0] for m in models}
    spatial = {m["model"]: m["acc"]["spatial"][0] for m in models}
    assert rows(driver) == sorted(both, key=lambda m: (-both[m], -spatial[m], m))
    names = list(both)
    on = pareto_front([spatial[m] for m in names], [both[m] for m in names])
    red = driver.find_elements(By.CSS_SELECTOR, '#scatter circle[fill="#c0392b"]')
    assert {m for c in red for m in c.get_attribute("data-models").split()} == {
        m for m, f in zip(names, on, strict=True) if f
    }
    header = driver.find_element(By.CSS_SELECTOR, 'th[data-key="y"]').text
    assert header == load_board("mnist5k").columns[-1].label == "Grid ∩ PGD ℓ∞"
    cusp = driver.find_element(By.XPATH, '//tr[@data-model="mnist_cnn_cusp"]/td[7]').text
    assert cusp.split()[0] == f"{100 * both['mnist_cnn_cusp']:.1f}"
    assert "y=spatial%2Bpgd_linf" in driver.current_url  # the view is kept in the address
    driver.save_screenshot(str(shots / "6-union-axis.png"))
    assert errors(driver) == []


def test_site_served_over_http_works_too(driver, built, shots):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(built))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        open_board(driver, f"{base}/mnist5k/index.html")
        assert len(rows(driver)) == len(ranked())
        driver.get(f"{base}/mnist5k/models/mnist_cnn_worst_of_10.html")
        assert driver.title.startswith("mnist_cnn / worst_of_10")
        assert errors(driver) == []
    finally:
        server.shutdown()


def test_card_text_stays_text_in_the_browser(driver, evil_site, shots):
    from selenium.webdriver.common.by import By

    open_board(driver, (evil_site / "x" / "index.html").as_uri())
    link = driver.find_element(By.CSS_SELECTOR, '#models tr[data-model="evil"] a')
    assert link.text == EVIL and link.get_attribute("href").endswith("/x/models/evil.html")
    assert driver.title == "Test board" and not driver.find_elements(By.CSS_SELECTOR, "#models img")
    driver.get((evil_site / "x" / "models" / "evil.html").as_uri())
    assert driver.find_element(By.TAG_NAME, "h1").text == EVIL
    assert driver.title == f"{EVIL}: Test board"  # the text, not a script's doing
    assert not driver.find_elements(By.CSS_SELECTOR, 'a[href^="javascript"]')
    driver.save_screenshot(str(shots / "6-evil-model.png"))
    assert [e for e in errors(driver) if "pwned" in e["message"] or "alert" in e["message"]] == []


# --- for the researcher at the screen (issue #25) ---------------------------------------------------------


@pytest.fixture(scope="module")
def driver_nojs():
    """A second headless Chromium with JavaScript switched off, as a reader may have it."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("headless Chromium tests need chromium and chromedriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]:
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    options.binary_location = CHROMIUM
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield browser
    browser.quit()


@pytest.fixture
def small(hostile, tmp_path):
    """A site of board ``x`` with five models: ``a``, ``b`` and ``e`` on the front, ``c`` and ``d`` at the
    same point, ``e`` flagged only on its ``pgd_l2`` record (a column, not an axis), plus an empty board
    ``a_empty`` that sorts first by name. Returns the site folder."""
    from test_leaderboard import BOARD

    root, put, put_model = hostile
    (root / "configs/boards/a_empty.yaml").write_text(BOARD.replace("n_examples: 100", "n_examples: 200"))
    for model, pgd, spatial, l2 in [
        ("a", 0.5, 0.3, 0.1),
        ("b", 0.4, 0.6, 0.2),
        ("c", 0.2, 0.2, 0.5),
        ("d", 0.2, 0.2, 0.3),
        ("e", 0.6, 0.1, 0.4),
    ]:
        meta = {"display_name": f"Model {model.upper()}", "recipe": "=HYPERLINK(1)" if model == "a" else "r"}
        put_model(root, model, 0.9, pgd, spatial, meta=meta)
        put(root, model, "pgd_l2", l2, meta=meta, flags=["l2 warning"] if model == "e" else ())
    out = tmp_path / "site"
    site.write_site(out, ["a_empty", "x"], root)
    return out


def test_b1_empty_board_says_so_with_the_command_and_is_listed_last(small, driver):
    """Empty boards (#25.1): an empty board showed blank axes, a bare table header and an empty Models
    heading, and the index listed it first. It now says so plainly, with the ``robench submit`` commands
    that fill it, and the index lists populated boards first."""
    from selenium.webdriver.common.by import By

    index = (small / "index.html").read_text()
    assert index.index('href="x/index.html"') < index.index('href="a_empty/index.html"')
    assert "no models yet" in index.split('href="a_empty/index.html"')[1].split("</li>")[0]
    page = (small / "a_empty" / "index.html").read_text()
    assert "No complete, current run records for this board yet." in page
    assert "<code>robench submit CARD.yaml --board a_empty</code>" in page
    assert not re.search(r"<(table|svg|select)", page) and "Model pages" not in page
    driver.get((small / "a_empty" / "index.html").as_uri())
    assert "robench submit --checkpoint" in driver.find_element(By.TAG_NAME, "body").text
    assert errors(driver) == []


def test_b3_board_page_has_the_markdown_boards_sections(built):
    """Parity (#25.3): the site's board page had no detail tables, front neighbours, flag explanations or
    protocol. It shows the markdown board's own sections, converted (robench.boards.mdhtml), with the
    p-values as the page prints them."""
    page = (built / "mnist5k" / "index.html").read_text()
    for heading in ["Front neighbours", "Details", "Spatial breakdown", "Flags", "Evaluation protocol"]:
        assert f">{heading}</h" in page
    assert "McNemar p &lt; 1e-10" in page and "autoattack_square_stronger" in page
    assert "<strong>Spatial grid accuracy (worst case)</strong> (<code>spatial</code>)" in page


def cells(browser, model: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [td.text for td in browser.find_elements(By.CSS_SELECTOR, f'#models tr[data-model="{model}"] td')]


def test_b3_table_follows_the_axes_and_flags_only_the_shown_threats(small, driver):
    """Parity (#25.3): after an axis switch the table kept the board's ranking, columns and ★, and its
    Flags column mixed threats (⚠ for an ℓ2 record while ℓ2 was not shown). The table is re-ranked on
    the chosen axes, its ★ follows the drawn front and it flags only the records it shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_board(driver, (small / "x" / "index.html").as_uri())
    assert rows(driver) == ["e", "a", "b", "c", "d"] and cells(driver, "e")[-1] == ""  # pgd_l2 not shown
    Select(driver.find_element(By.ID, "ax-y")).select_by_value("pgd_l2")
    assert rows(driver) == ["c", "e", "d", "b", "a"]  # by ℓ2, then spatial, then name
    assert [cells(driver, m)[0] for m in rows(driver)] == ["1", "2", "3", "4", "5"]
    assert [cells(driver, m)[1] for m in rows(driver)] == ["★", "", "", "★", ""]
    assert cells(driver, "e")[-1] == "⚠ pgd_l2" and "PGD l2" in cells(driver, "e")[7]
    Select(driver.find_element(By.ID, "f-flags")).select_by_value("flagged")
    assert rows(driver) == ["e"]
    assert errors(driver) == []


def test_b4_scatter_names_the_front_draws_whiskers_groups_coincident_points_and_takes_focus(small, driver):
    """Scatter (#25.4): front points were unlabelled, without intervals; two models at one point hid each
    other; points could not be reached by keyboard; the plot was 560 px whatever the page. Front points
    are named, every point has its 95% whiskers, one marker stands for a place and its tooltip lists
    every model there, Tab reaches the points (tooltip on focus), and the plot is as wide as its box."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.set_window_size(1280, 1100)
    open_board(driver, (small / "x" / "index.html").as_uri())
    circles = driver.find_elements(By.CSS_SELECTOR, "#scatter circle")
    assert sorted(c.get_attribute("data-models") for c in circles) == ["a", "b", "c d", "e"]
    labels = {t.text for t in driver.find_elements(By.CSS_SELECTOR, "#scatter text.front-label")}
    assert labels == {"Model A", "Model B", "Model E"}
    assert len(driver.find_elements(By.CSS_SELECTOR, "#scatter line.whisker")) == 2 * len(circles)
    shared = driver.find_element(By.CSS_SELECTOR, '#scatter circle[data-models="c d"]')
    ActionChains(driver).move_to_element(shared).perform()
    tip = driver.find_element(By.ID, "tip")
    assert tip.is_displayed() and [line for line in tip.text.splitlines() if line.startswith("Model")] == [
        "Model C (c)",
        "Model D (d)",
    ]
    ActionChains(driver).move_to_element(driver.find_element(By.TAG_NAME, "h1")).perform()
    assert not tip.is_displayed()  # away from the point, the tooltip goes
    driver.find_element(By.ID, "ax-y").send_keys(Keys.TAB)  # from the y-axis select into the plot
    focused = driver.switch_to.active_element
    assert focused.tag_name == "circle" and tip.is_displayed()
    assert tip.text.splitlines()[0].split(" (")[0] in {"Model A", "Model B", "Model E", "Model C"}
    wrap, plot = (driver.find_element(By.ID, i).rect["width"] for i in ("plot-wrap", "scatter"))
    assert plot == pytest.approx(min(wrap, 960), abs=1) and plot > 560
    assert errors(driver) == []


def overflow(browser) -> int:
    """How far the page is wider than the window (0: no horizontal scroll)."""
    return browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )


def settled(browser) -> None:
    """Wait (up to 10 s) until the page is loaded and no wider than the window: the script lays the table
    out after load, so the first reading can catch a layout still being built. A page that stays too wide
    is then measured by the assertion that follows."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(browser, 10).until(
            lambda b: b.execute_script("return document.readyState") == "complete" and overflow(b) == 0
        )
    except TimeoutException:
        pass


@pytest.mark.parametrize("page", ["index.html", "mnist5k/index.html", "mnist5k/models/mnist_cnn_cusp.html"])
def test_b5_phone_width_has_no_horizontal_page_scroll(built, driver, driver_nojs, page):
    """Phones (#25.5): at 390 px the plot, the charts and the tables made the whole page scroll sideways.
    Nothing is wider than the screen, with or without JavaScript; wide tables scroll in a wrapper of their
    own (the model page's threat table too), and the plot fits the width."""
    from selenium.webdriver.common.by import By

    for browser in (driver, driver_nojs):
        browser.set_window_size(390, 844)
        try:
            browser.get((built / page).as_uri())
            settled(browser)  # the script lays the table out after load; measure the page it leaves
            assert overflow(browser) == 0
            tables = browser.find_elements(By.CSS_SELECTOR, "table")
            assert all(t.find_element(By.XPATH, "..").get_attribute("class") == "wide" for t in tables)
            shown = [s for s in browser.find_elements(By.CSS_SELECTOR, "svg, img") if s.is_displayed()]
            assert all(s.rect["x"] + s.rect["width"] <= 390 for s in shown)
        finally:
            browser.set_window_size(1280, 1100)


def test_b6_without_javascript_the_board_shows_the_committed_plot_and_table(built, driver_nojs):
    """No JavaScript (#25.6): the board page said only that it needed JavaScript. Without it the page shows
    the committed SVG (copied when it shows the current records) and the markdown board's table inline,
    with a link to every model's page; the interactive controls are hidden."""
    from selenium.webdriver.common.by import By

    assert (built / "mnist5k" / "board.svg").read_bytes() == (REPO / "leaderboards/mnist5k.svg").read_bytes()
    driver_nojs.get((built / "mnist5k" / "index.html").as_uri())
    plot = driver_nojs.find_element(By.CSS_SELECTOR, "img.board-plot")
    assert plot.is_displayed() and driver_nojs.execute_script("return arguments[0].naturalWidth", plot) > 0
    table = driver_nojs.find_element(By.CSS_SELECTOR, ".no-js table")
    assert table.is_displayed() and len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == len(ranked())
    assert not driver_nojs.find_element(By.ID, "scatter").is_displayed()
    assert not driver_nojs.find_element(By.ID, "ax-x").is_displayed()
    links = driver_nojs.find_elements(By.CSS_SELECTOR, "ul.models a")
    assert [a.get_attribute("href").rsplit("/", 1)[1] for a in links] == [f"{m}.html" for m in ranked()]


def test_b7_board_downloads_as_csv_and_json_and_the_view_is_in_the_address(small, driver):
    """Downloads and shared views (#25.7): the board can be downloaded as CSV (ranked; text that a
    spreadsheet would run as a formula is quoted) and JSON, and the chosen axes, search, filters and sort
    are written to the address's #fragment, from which a fresh load restores the same view."""
    import csv as csvlib

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    table = list(csvlib.DictReader((small / "x" / "board.csv").open()))
    assert [r["model"] for r in table] == ["e", "a", "b", "c", "d"] and table[1]["recipe"] == "'=HYPERLINK(1)"
    assert table[0]["pgd_l2"] == "0.400000" and table[0]["flagged"] == "pgd_l2"
    whole = json.loads((small / "x" / "board.json").read_text())
    assert whole["board"]["x"] == "spatial" and [m["model"] for m in whole["models"]] == [
        "e",
        "a",
        "b",
        "c",
        "d",
    ]
    page = (small / "x" / "index.html").read_text()
    assert 'href="board.csv" download' in page and 'href="board.json" download' in page

    open_board(driver, (small / "x" / "index.html").as_uri())
    Select(driver.find_element(By.ID, "ax-y")).select_by_value("pgd_l2")
    driver.find_element(By.ID, "search").send_keys("Model")
    Select(driver.find_element(By.ID, "f-recipe")).select_by_value("r")
    driver.find_element(By.CSS_SELECTOR, 'th[data-key="model"]').click()
    address = driver.current_url
    assert (
        "y=pgd_l2" in address and "q=Model" in address and "recipe=r" in address and "sort=model" in address
    )
    driver.get("about:blank")
    open_board(driver, address)
    assert Select(driver.find_element(By.ID, "ax-y")).first_selected_option.get_attribute("value") == "pgd_l2"
    assert driver.find_element(By.ID, "search").get_attribute("value") == "Model"
    assert rows(driver) == ["b", "c", "d", "e"]  # recipe r only, sorted by name
    open_board(driver, (small / "x" / "index.html").as_uri() + "#y=no_such_axis&sort=nonsense")
    assert rows(driver) == ["e", "a", "b", "c", "d"] and errors(driver) == []  # an edited address is ignored


def test_b8_model_page_axes_first_readable_fixed_heatmap_and_short_p_values(built, driver, tmp_path):
    """Model pages (#25.8): threats were alphabetical, the heatmap's shading was stretched over each
    grid's own min..max with numbers hard to read on it, and p-values printed as 3.2e-173. The board's
    axes come first, the shading is on a fixed 0-100% scale with every number at 4.5:1 contrast or more,
    and p-values below 1e-10 read "< 1e-10"."""
    from robench.boards import charts
    from robench.boards.text import p_text

    page = (built / "mnist5k" / "models" / "mnist_cnn_cusp.html").read_text()
    threats = re.findall(r"<br><code>([a-z0-9_]+)</code></td>", page)
    assert threats[:4] == ["spatial", "autoattack_linf", "pgd_linf", "clean"] and len(threats) > 10
    assert "McNemar p &lt; 1e-10" in page and not re.search(r"p = \d(\.\d+)?e-(1\d|[2-9]\d)", page)
    assert p_text(3.2e-173) == "< 1e-10" and p_text(0.0123) == "= 0.012" and p_text(2e-9) == "= 2e-09"

    def luminance(rgb):
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    def contrast(a: str, b: str) -> float:  # two computed colours, "rgb(r, g, b)"
        la, lb = (luminance([int(v) / 255 for v in re.findall(r"\d+", c)[:3]]) for c in (a, b))
        return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)

    # every number as the browser draws it, on every shade from 0% to 100% (and the shipped page's grid)
    values = [i / 100 for i in range(101)]
    style = (built / "assets" / "site.css").as_uri()
    heat = charts.heatmap("t", list(range(101)), [0] * 101, values)
    heat = f'<link rel="stylesheet" href="{style}">{heat}'
    (tmp_path / "heat.html").write_text(heat)
    for page in [tmp_path / "heat.html", built / "mnist5k" / "models" / "mnist_cnn_cusp.html"]:
        driver.get(page.as_uri())
        pairs = driver.execute_script(
            "return [...document.querySelectorAll('svg.chart rect')].map(r => [getComputedStyle(r).fill,"
            " getComputedStyle(r.nextElementSibling).fill])"
        )
        assert len(pairs) >= 25 and min(contrast(*pair) for pair in pairs) >= 4.5
    narrow = charts.heatmap("t", [0, 1], [0, 0], [0.40, 0.45])  # a 5-point spread stays 5 points of shade
    shades = [float(v) for v in re.findall(r"hsl\(210, 60%, ([\d.]+)%\)", narrow)]
    assert shades == [pytest.approx(96 - 66 * 0.40, abs=0.1), pytest.approx(96 - 66 * 0.45, abs=0.1)]


def test_curve_axes_are_labelled_at_round_values():
    """#25.10: a ±30° rotation curve had ticks at every k-th angle (-22, -14, ..., 26); the labels are now
    the round values of the axis, never more than nine."""
    from robench.boards import charts

    angles = [-30 + 2 * i for i in range(31)]
    svg = charts.line_chart("t", "rotation (°)", angles, [("m", [0.5] * 31)])
    labels = re.findall(r'text-anchor="middle">(-?[\d.]+)</text>', svg)
    assert labels == ["-30", "-20", "-10", "0", "10", "20", "30"]
    assert charts.nice_ticks(0, 8) == list(range(9)) and charts.nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1]
    for lo, hi in [(-30, 30), (0, 32), (0, 0.3), (-3, 3), (1, 1000)]:
        ticks = charts.nice_ticks(lo, hi)
        assert 2 <= len(ticks) <= 9 and lo <= ticks[0] and ticks[-1] <= hi, (lo, hi, ticks)
