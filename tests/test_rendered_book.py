"""The book as a reader meets it: every page of the built HTML opened in headless Chromium.

The test serves ``_build/html`` on 127.0.0.1 and opens every page listed in ``_toc.yml`` in Debian's ``chromium``
driven by Selenium through Debian's ``chromedriver`` (Selenium's own driver download is never used: it cannot
work offline). For each page it checks what a reader would notice first:

* the page title and every heading of the source (notebook markdown cells / markdown file) are rendered;
* every ``<img>`` loaded (``naturalWidth > 0``), and every figure the executed notebook produced is on the page;
* no executed cell output is a traceback or an error, and Sphinx rendered no error box;
* the Colab launch link opens this notebook in the repository configured in ``_config.yml``;
* every link to a local page, anchor, image, stylesheet or script resolves inside ``_build/html``.

A full-page screenshot of each page is saved to ``_build/screenshots/book__<page>.png`` for people to look at
(long pages continue in ``book__<page>-2.png``, ...).

The book under test is ``_build/html`` if it is newer than every source (``book/``, ``nlbook/``, ``_toc.yml``,
``_config.yml``); otherwise the test builds it with ``jupyter-book build . -W -n --keep-going`` in the quick
profile on the digits data set (a build warning fails the test). The browser can reach only 127.0.0.1: pages are
checked as served from the build folder, with no dependency on the network (so MathJax, which the theme loads
from a CDN, is not rendered in the screenshots).

Without ``chromium``/``chromedriver`` the tests skip; install them with ``apt-get install -y chromium
chromium-driver`` (Debian/Ubuntu; ``.ci/run`` does this) to run them.
"""

from __future__ import annotations

import base64
import functools
import http.server
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
import yaml
from book_toc import toc_docnames

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
EXECUTED = ROOT / "_build" / "jupyter_execute"
BUILD_ENV = {"NLBOOK_DATASET": "digits", "NLBOOK_PROFILE": "quick", "TQDM_DISABLE": "1"}
ENABLE_HINT = "install them with `apt-get install -y chromium chromium-driver` (Debian/Ubuntu) to run the browser tests"

# Building the book executes every chapter (about a minute each in the quick profile): far over the default
# per-test timeout, and it happens in the first test's set-up.
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(3600)]


# ---------------------------------------------------------------------------------------------------------------
# What the book should contain, read from its sources
# ---------------------------------------------------------------------------------------------------------------


def source_of(docname: str, root: Path = ROOT) -> Path:
    for suffix in (".ipynb", ".md"):
        if (root / f"{docname}{suffix}").exists():
            return root / f"{docname}{suffix}"
    raise FileNotFoundError(f"_toc.yml lists {docname!r} but neither {docname}.ipynb nor {docname}.md exists")


def markdown_of(path: Path) -> str:
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return path.read_text()


def source_headings(path: Path) -> list[tuple[int, str]]:
    """``(level, text)`` of the ATX headings in a page's markdown, outside fenced code and directives."""
    headings, fence = [], None
    for line in markdown_of(path).splitlines():
        m = re.match(r"^\s*(`{3,}|~{3,}|:{3,})", line)
        if m:
            marker = m.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence) and not line.strip()[len(marker) :].strip():
                fence = None
            continue
        h = re.match(r"^(#{1,6})\s+(.+?)\s*#*\s*$", line)
        if fence is None and h:
            headings.append((len(h.group(1)), h.group(2)))
    return headings


def words(text: str) -> list[str]:
    """A heading reduced to the words a reader sees: math, role names and markup dropped, lower case."""
    text = re.sub(r"\$[^$]*\$", " ", text)  # MathJax renders math its own way (and not at all offline)
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", text)  # {cite}`key` renders as "[Author, year]": drop roles
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [text](link) -> text
    return re.findall(r"\w+", text.lower())


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(any(w == h for h in it) for w in needle)


def expected_colab_url(docname: str, root: Path = ROOT) -> str:
    """The launch link sphinx-book-theme must produce from ``_config.yml``'s ``repository`` section."""
    config = yaml.safe_load((root / "_config.yml").read_text())
    repo = config["repository"]
    owner_repo = urllib.parse.urlparse(repo["url"]).path.strip("/").removesuffix(".git")
    prefix = (repo.get("path_to_book") or "").strip("/")
    path = f"{prefix}/{docname}.ipynb" if prefix else f"{docname}.ipynb"
    return f"https://colab.research.google.com/github/{owner_repo}/blob/{repo.get('branch', 'main')}/{path}"


def n_figures(path: Path) -> int | None:
    """How many image outputs the notebook at ``path`` shows (None if there is no such notebook)."""
    if not path.exists():
        return None
    nb = nbformat.read(path, as_version=4)
    shown = [
        c
        for c in nb.cells
        if c.cell_type == "code" and not {"remove-output", "remove-cell"} & set(c.metadata.get("tags", []))
    ]
    outputs = [o for c in shown for o in c.get("outputs", [])]
    return sum(1 for o in outputs if any(k.startswith("image/") for k in o.get("data", {})))


def n_figures_in_executed(docname: str) -> int | None:
    """How many image outputs the build's executed copy of the notebook has (None if there is no such copy)."""
    return n_figures(EXECUTED / f"{docname}.ipynb")


# ---------------------------------------------------------------------------------------------------------------
# Fixtures: the browser, the built book, a local server
# ---------------------------------------------------------------------------------------------------------------


def find_browser() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        missing = " and ".join(n for n, p in (("chromium", chromium), ("chromedriver", driver)) if not p)
        pytest.skip(f"{missing} not found on PATH: {ENABLE_HINT}")
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("selenium is a test dependency: pip install -e '.[test]'")
    return chromium, driver


def book_sources(root: Path = ROOT) -> list[Path]:
    sources = [root / "_toc.yml", root / "_config.yml"]
    sources += [p for p in (root / "book").rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts]
    sources += list((root / "nlbook").glob("*.py"))  # shown by literalinclude and run by every chapter
    return sources


def book_is_fresh(docnames: list[str], root: Path = ROOT) -> bool:
    pages = [root / "_build" / "html" / f"{d}.html" for d in docnames]
    if not all(p.exists() for p in pages):
        return False
    oldest_page = min(p.stat().st_mtime for p in pages)
    return all(s.stat().st_mtime < oldest_page for s in book_sources(root))


@pytest.fixture(scope="module")
def browser_paths() -> tuple[str, str]:
    return find_browser()


@pytest.fixture(scope="module")
def built_book(browser_paths: tuple[str, str]) -> Path:
    """``_build/html``, built now unless it is newer than every source."""
    docnames = toc_docnames()
    if book_is_fresh(docnames):
        return HTML
    jb = Path(sys.executable).parent / "jupyter-book"
    command = [str(jb) if jb.exists() else "jupyter-book", "build", ".", "-W", "-n", "--keep-going"]
    t0 = time.perf_counter()
    # Without MPLBACKEND the kernels draw inline; an inherited MPLBACKEND=Agg would build a book without figures.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"} | BUILD_ENV
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        seconds = time.perf_counter() - t0
        pytest.fail(f"`{' '.join(command)}` failed (exit {proc.returncode}) after {seconds:.0f} s:\n{log[-6000:]}")
    return HTML


@pytest.fixture(scope="module")
def server(built_book: Path) -> Iterator[str]:
    """Serve the built book on a free port of 127.0.0.1; yield its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep pytest's output about the test
            pass

    handler = functools.partial(Quiet, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def driver(browser_paths: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_paths
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--hide-scrollbars",
        # Only the local server is reachable: the pages are checked as built, never with what a CDN serves.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # With an explicit driver path Selenium skips selenium-manager (which would try to download a driver).
    service = Service(executable_path=chromedriver)
    drv = webdriver.Chrome(service=service, options=options)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


# ---------------------------------------------------------------------------------------------------------------
# One visit per page; the tests below check what it collected
# ---------------------------------------------------------------------------------------------------------------

COLLECT_JS = """
const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
const abs = (u) => { try { return new URL(u, document.baseURI).href; } catch (e) { return u; } };
return {
  title: document.title,
  headings: Array.from(article.querySelectorAll('h1, h2, h3, h4, h5, h6'))
                 .map(h => [parseInt(h.tagName.substring(1)), h.textContent]),
  images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src, complete: i.complete,
                                                   width: i.naturalWidth,
                                                   in_output: !!i.closest('.cell_output')})),
  error_outputs: Array.from(article.querySelectorAll(
      '.cell_output .traceback, .cell_output .error, .system-message, ' +
      '.cell_output [class*="ipythontb"]'))
      .map(e => [e.className, e.textContent.substring(0, 400)]),
  outputs_text: Array.from(article.querySelectorAll('.cell_output')).map(e => e.textContent),
  colab: Array.from(document.querySelectorAll('a[href*="colab.research.google.com"]')).map(a => a.href),
  repo_buttons: Array.from(document.querySelectorAll('a[href^="https://github.com/"]')).map(a => a.href),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => abs(a.getAttribute('href'))),
  resources: Array.from(document.querySelectorAll('link[rel="stylesheet"][href], script[src]'))
                  .map(e => abs(e.getAttribute('href') || e.getAttribute('src'))),
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
  // code and output blocks whose text is wider than the block: the reader would have to scroll sideways
  cut_off: Array.from(article.querySelectorAll('pre'))
      .filter(p => p.offsetParent !== null && p.scrollWidth > p.clientWidth + 1)
      .map(p => [p.scrollWidth, p.clientWidth,
                 p.textContent.split('\\n').reduce((a, b) => (a.length >= b.length ? a : b), '')
                  .substring(0, 100)]),
};
"""


@dataclass
class Visit:
    """What one page looked like in the browser."""

    docname: str
    url: str
    title: str = ""
    headings: list[tuple[int, str]] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    error_outputs: list[tuple[str, str]] = field(default_factory=list)
    outputs_text: list[str] = field(default_factory=list)
    colab: list[str] = field(default_factory=list)
    repo_buttons: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    cut_off: list[list] = field(default_factory=list)
    console: list[dict] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)


def wait_until_loaded(drv: object, timeout: float = 20.0) -> None:
    """Wait for the load event and for every image to finish (loading or failing)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, timeout).until(
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete);"
        )
    )


def full_page_screenshot(drv: object, path: Path, tile_height: int = 16000) -> list[Path]:
    """The whole page (not only the window) as PNG through the DevTools protocol: ``path``, then ``path-2.png``...

    A long chapter is cut into tiles because Chromium cannot capture images taller than about 16k pixels.
    """
    metrics = drv.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    width, height = math.ceil(size["width"]), math.ceil(size["height"])
    paths = []
    for k, top in enumerate(range(0, height, tile_height), start=1):
        clip = {"x": 0, "y": top, "width": width, "height": min(tile_height, height - top), "scale": 1}
        shot = drv.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        tile = path if k == 1 else path.with_name(f"{path.stem}-{k}{path.suffix}")
        tile.write_bytes(base64.b64decode(shot["data"]))
        paths.append(tile)
    return paths


_VISITS: dict[str, Visit] = {}


@pytest.fixture
def visit(request: pytest.FixtureRequest, server: str, driver: object) -> Visit:
    """Open the page for ``request.param`` once per session and collect everything the tests check."""
    docname = request.param
    if docname not in _VISITS:
        url = urllib.parse.urljoin(server, f"{docname}.html")
        driver.get(url)
        wait_until_loaded(driver)
        data = driver.execute_script(COLLECT_JS)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOTS.glob(f"{docname.replace('/', '__')}*.png"):
            old.unlink()  # a shorter page leaves no stale tiles behind
        shots = full_page_screenshot(driver, SCREENSHOTS / f"{docname.replace('/', '__')}.png")
        console = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        data["headings"] = [tuple(h) for h in data["headings"]]
        data["error_outputs"] = [tuple(e) for e in data["error_outputs"]]
        _VISITS[docname] = Visit(docname=docname, url=url, console=console, screenshots=shots, **data)
    return _VISITS[docname]


DOCNAMES = toc_docnames()
NOTEBOOK_DOCNAMES = [d for d in DOCNAMES if (ROOT / f"{d}.ipynb").exists()]
per_page = pytest.mark.parametrize("visit", DOCNAMES, ids=DOCNAMES, indirect=True)
per_notebook = pytest.mark.parametrize("visit", NOTEBOOK_DOCNAMES, ids=NOTEBOOK_DOCNAMES, indirect=True)


# ---------------------------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------------------------


def test_every_toc_page_was_built(built_book: Path) -> None:
    missing = [d for d in DOCNAMES if not (built_book / f"{d}.html").exists()]
    assert not missing, f"pages in _toc.yml with no HTML in {built_book}: {missing}"


@per_page
def test_title_and_headings(visit: Visit) -> None:
    expected = source_headings(source_of(visit.docname))
    assert expected, f"{visit.docname}: the source has no heading"
    level, top = expected[0]
    assert level == 1, f"{visit.docname}: the first heading must be a level-1 title, got {'#' * level} {top}"
    title_words = words(top)
    assert is_subsequence(title_words, words(visit.title)), f"browser title {visit.title!r} does not start with {top!r}"
    h1 = [text for lvl, text in visit.headings if lvl == 1]
    assert len(h1) == 1, f"{visit.docname}: expected one <h1>, found {h1}"
    assert is_subsequence(title_words, words(h1[0])), f"<h1> {h1[0]!r} is not the source title {top!r}"
    rendered = [words(text) for _, text in visit.headings]
    missing = [
        f"{'#' * lvl} {text}" for lvl, text in expected if not any(is_subsequence(words(text), r) for r in rendered)
    ]
    assert not missing, f"{visit.docname}: headings in the source but not on the page: {missing}"


@per_page
def test_images_loaded(visit: Visit) -> None:
    broken = [img["src"] for img in visit.images if not img["complete"] or img["width"] == 0]
    assert not broken, f"{visit.docname}: images that did not load: {broken}"
    n_expected = n_figures_in_executed(visit.docname)
    if n_expected is not None:
        n_rendered = sum(1 for img in visit.images if img["in_output"])
        assert n_rendered == n_expected, (
            f"{visit.docname}: the executed notebook has {n_expected} figure outputs, the page shows {n_rendered}"
        )


@per_page
def test_build_drew_every_committed_figure(visit: Visit) -> None:
    # The page check above compares the page with the build's own executed notebook, which cannot notice a
    # build whose kernels drew nothing (e.g. MPLBACKEND=Agg inherited by the kernels: 0 figures run, 0 shown).
    # The committed notebook is the reference for how many figures a chapter draws.
    committed = n_figures(ROOT / f"{visit.docname}.ipynb")
    if committed is None:
        pytest.skip(f"{visit.docname} is not a notebook")
    assert n_figures_in_executed(visit.docname) == committed, (
        f"{visit.docname}: the build drew {n_figures_in_executed(visit.docname)} figures, the committed notebook "
        f"has {committed} (were the kernels started with MPLBACKEND set?)"
    )


@per_page
def test_no_error_in_outputs(visit: Visit) -> None:
    # stderr on its own is allowed (warnings are shown on purpose: stderr_output: show), tracebacks are not
    errors = visit.error_outputs
    assert not errors, f"{visit.docname}: error output or Sphinx error box on the page: {errors}"
    tracebacks = [t[:400] for t in visit.outputs_text if "Traceback (most recent call last)" in t]
    assert not tracebacks, f"{visit.docname}: a cell output contains a traceback: {tracebacks}"
    # The console is not asserted clean as a whole: the jupyter-book 1.0 theme stack logs its own errors (e.g.
    # sphinx-thebe declaring THEBE_JS_URL twice). A resource of the book that fails to load is the book's fault.
    failed = [
        e["message"]
        for e in visit.console
        if "Failed to load resource" in e.get("message", "")
        and "127.0.0.1" in e["message"]
        and "/favicon.ico" not in e["message"]
    ]
    assert not failed, f"{visit.docname}: resources of the book failed to load: {failed}"


@per_notebook
def test_colab_link(visit: Visit) -> None:
    expected = expected_colab_url(visit.docname)
    assert visit.colab, f"{visit.docname}: no Colab launch link on the page"
    assert set(visit.colab) == {expected}, f"{visit.docname}: Colab link(s) {visit.colab}, expected {expected}"


@per_page
def test_repository_button(visit: Visit) -> None:
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    assert url in {u.rstrip("/") for u in visit.repo_buttons}, f"{visit.docname}: no link to {url}"


def local_target(url: str, base: str, html: Path) -> tuple[Path, str] | None:
    """The file (and fragment) a link to the local server points at, or None for an external link."""
    if not url.startswith(base):
        return None
    parts = urllib.parse.urlsplit(url)
    rel = urllib.parse.unquote(parts.path).lstrip("/")
    path = html / rel
    if rel == "" or rel.endswith("/"):
        path = path / "index.html"
    return path, urllib.parse.unquote(parts.fragment)


@per_page
def test_internal_links_resolve(visit: Visit, server: str, built_book: Path) -> None:
    broken = []
    for url in sorted(set(visit.links) | set(visit.resources)):
        target = local_target(url, server, built_book)
        if target is None:
            continue
        path, fragment = target
        if not path.is_file():
            broken.append(f"{url} (no file {path.relative_to(built_book)})")
        elif fragment and path.suffix == ".html":
            if path.resolve() == (built_book / f"{visit.docname}.html").resolve():
                found = fragment in visit.ids
            else:
                found = re.search(rf'\bid="{re.escape(fragment)}"', path.read_text(errors="replace")) is not None
            if not found:
                broken.append(f"{url} (no element with id {fragment!r})")
    assert not broken, f"{visit.docname}: links that do not resolve: {broken}"


@per_page
def test_screenshot_saved(visit: Visit) -> None:
    assert visit.screenshots, f"{visit.docname}: no screenshot"
    for shot in visit.screenshots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{shot} is not a PNG"
    # a rendered page (text, sidebar, navigation) compresses to far more than a blank or error page
    assert visit.screenshots[0].stat().st_size > 20_000, f"{visit.screenshots[0]} looks blank"


@per_page
def test_no_code_or_output_cut_off(visit: Visit) -> None:
    """Every code and output block fits its column at the test's 1280-pixel window: nothing scrolls sideways."""
    assert not visit.cut_off, (
        f"{visit.docname}: blocks wider than the page (scroll width, width, longest line): {visit.cut_off[:5]}"
    )
