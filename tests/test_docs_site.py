"""The documentation site: built by mkdocs --strict, served over HTTP and opened in a real headless browser.

Needs the ``docs`` dependency group (mkdocs, mkdocs-material, mkdocstrings,
playwright) and Debian's Chromium at /usr/bin/chromium (or the path in
``ASYNCBRIDGE_CHROMIUM``); Playwright only drives it, its own browser downloads
are never used. ``python3 dev.py docs`` runs these tests with
``ASYNCBRIDGE_DOCS_TESTS=1``, which turns a missing tool into a failure; anywhere
else (the main test environment) they skip, naming what is missing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM = os.environ.get("ASYNCBRIDGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A page that is a guide, screenshotted along with the home page.
GUIDE_PAGE = "threads/"


def _missing() -> str | None:
    for module, group in (("mkdocs", "mkdocs"), ("material", "mkdocs-material"), ("mkdocstrings", "mkdocstrings")):
        if importlib.util.find_spec(module) is None:
            return f"{group} is not installed here; run python3 dev.py docs (the docs dependency group)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed here; run python3 dev.py docs (the docs dependency group)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM}; apt-get install chromium (or set ASYNCBRIDGE_CHROMIUM)"
    return None


_reason = _missing()
if _reason is not None:
    if os.environ.get("ASYNCBRIDGE_DOCS_TESTS") == "1":
        raise RuntimeError(f"the docs tests cannot run: {_reason}")
    pytest.skip(_reason, allow_module_level=True)

import yaml  # noqa: E402  (mkdocs' own dependency: only importable once the skip above did not happen)
from playwright.sync_api import Browser, Page, Request, Response, sync_playwright  # noqa: E402


def nav_pages() -> list[tuple[str, str]]:
    """(nav title, markdown path) for every page in mkdocs.yml's nav, in order."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages: list[tuple[str, str]] = []

    def walk(items: list[Any]) -> None:
        for item in items:
            ((title, target),) = item.items()
            if isinstance(target, list):
                walk(target)
            else:
                pages.append((title, target))

    walk(config["nav"])
    return pages


def url_of(markdown: str) -> str:
    """The site path mkdocs gives a markdown file (directory URLs)."""
    stem = markdown.removesuffix(".md")
    if stem == "index":
        return ""
    return stem.removesuffix("/index") + "/"


def expected_h1(markdown: str) -> str:
    """The page's first '# ' heading as the browser shows it; follows a --8<-- snippet include."""
    text = (DOCS / markdown).read_text()
    include = re.match(r'--8<-- "([^"]+)"', text.strip())
    if include:
        text = (ROOT / include.group(1)).read_text()
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].replace("`", "").strip()
    raise AssertionError(f"docs/{markdown} has no '# ' heading")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    assert response.status == 200
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, f"http.server exited with {server.returncode}"
                assert time.monotonic() < deadline, f"http.server did not answer on {url} within 30 s"
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # The site must render from the local server alone; what it asks of others (GitHub's API for the
    # repository's stars) is refused, so the test never reaches the network.
    context.route(re.compile(r"^(?!http://127\.0\.0\.1:)"), lambda route: route.abort())
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


BROKEN_IMAGES_JS = "() => Array.from(document.images).filter(img => !(img.naturalWidth > 0)).map(img => img.src)"


def open_page(page: Page, url: str) -> list[str]:
    """Load url and wait for its images; return what went wrong (failed requests, script errors)."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def on_response(response: Response) -> None:
        if response.status >= 400:
            problems.append(f"HTTP {response.status} for {response.url}")

    def on_failure(request: Request) -> None:
        if request.url.startswith("http://127.0.0.1:"):
            problems.append(f"request failed: {request.url} ({request.failure})")

    page.on("response", on_response)
    page.on("requestfailed", on_failure)
    response = page.goto(url, wait_until="load")
    assert response is not None
    assert response.status == 200, f"{url}: HTTP {response.status}"
    return problems


def test_the_nav_lists_every_built_page(site: Path) -> None:
    built = {
        str(path.parent.relative_to(site)) + "/" if path.parent != site else ""
        for path in site.rglob("index.html")
        if path.parent.name != "search"
    }
    assert built == {url_of(markdown) for _, markdown in nav_pages()}


def test_every_page_has_its_title_and_heading_and_no_broken_image(base_url: str, page: Page) -> None:
    failures: list[str] = []
    for title, markdown in nav_pages():
        url = base_url + url_of(markdown)
        tab = page.context.new_page()  # a fresh tab per page: its listeners see only its own errors
        try:
            problems = open_page(tab, url)
            want_title = "asyncbridge" if markdown == "index.md" else f"{title} - asyncbridge"
            if tab.title() != want_title:
                problems.append(f"title {tab.title()!r}, expected {want_title!r}")
            headings = [h.strip().removesuffix("¶").strip() for h in tab.locator("article h1").all_inner_texts()]
            want_h1 = expected_h1(markdown)
            if headings != [want_h1]:
                problems.append(f"h1 {headings!r}, expected [{want_h1!r}]")
            broken = tab.evaluate(BROKEN_IMAGES_JS)
            if broken:
                problems.append(f"broken images: {broken}")
        finally:
            tab.close()
        failures.extend(f"{url}: {problem}" for problem in problems)
    assert not failures, "\n".join(failures)


def test_the_broken_image_check_sees_a_broken_image(base_url: str, page: Page) -> None:
    """The check above is not vacuous: an image that does not load is reported."""
    open_page(page, base_url)
    assert page.evaluate(BROKEN_IMAGES_JS) == []
    page.evaluate(
        """() => new Promise(resolve => {
            const img = document.createElement("img");
            img.onerror = img.onload = () => resolve();
            img.src = "no-such-image.png";
            document.querySelector("article").appendChild(img);
        })"""
    )
    assert page.evaluate(BROKEN_IMAGES_JS) == [base_url + "no-such-image.png"]


def test_search_finds_async_wrap(base_url: str, page: Page) -> None:
    open_page(page, base_url)
    search = page.locator("input.md-search__input")
    search.click()
    search.press_sequentially("async_wrap", delay=20)  # Material searches on key events, not on fill()
    result = page.locator(".md-search-result__item", has_text="async_wrap").first
    result.wait_for(state="visible", timeout=30_000)
    assert "async_wrap" in result.inner_text()


def test_the_api_reference_shows_typed_signatures(base_url: str, page: Page) -> None:
    open_page(page, base_url + "reference/executors/")
    assert page.locator("[id='asyncbridge.ThreadExecutor']").count() == 1
    signature = page.locator("[id='asyncbridge.ThreadExecutor'] + .doc-signature").first.inner_text()
    assert "max_workers: int = DEFAULT_MAX_THREADS" in signature
    assert "idle_timeout: float | None" in signature
    internal = ("ThreadExecutor.run_nested_call", "ThreadExecutor.reject_routed_call", "CapacityLimiter.reclaim")
    for name in internal:  # methods other modules of the package call, not users
        assert page.locator(f"[id='asyncbridge.{name}']").count() == 0, name
    assert page.locator("[id='asyncbridge.ThreadExecutor.submit']").count() == 1


SPHINX_ROLE = re.compile(r":(class|func|meth|attr|exc|data|mod|obj):`")


def test_the_api_reference_shows_no_sphinx_markup_and_links_public_names(base_url: str, page: Page) -> None:
    """docs/reference/sphinx_roles.py turns the docstrings' roles into code spans and links."""
    for area in ("wrapping", "executors", "processes", "detector", "integrations", "exceptions"):
        open_page(page, f"{base_url}reference/{area}/")
        text = page.locator("article").inner_text()
        assert not SPHINX_ROLE.search(text), f"{area}: {SPHINX_ROLE.search(text)}"
        assert not re.search(r"\S::$", text, re.MULTILINE), area
    open_page(page, base_url + "reference/detector/")
    # The plugin's module docstring says ":class:`~asyncbridge.BlockingDetector`" in its list of switches.
    item = page.locator("li", has_text="which also gives the test its")
    assert item.count() == 1, "the pytest_plugin docstring changed: pick another role to check"
    assert item.locator("a[href='#asyncbridge.BlockingDetector'] code").inner_text() == "BlockingDetector"


def test_the_changelog_page_includes_changelog_md(base_url: str, page: Page) -> None:
    open_page(page, base_url + "changelog/")
    first_entry = next(line[2:] for line in (ROOT / "CHANGELOG.md").read_text().splitlines() if line.startswith("- "))
    words = re.sub(r"[`*\[\]]", "", first_entry)[:60]
    assert words in page.locator("article").inner_text().replace("\n", " ")


def test_screenshots(
    base_url: str, page: Page, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path_factory.mktemp("docs-screenshots")
    for name, path in (("home", ""), ("guide", GUIDE_PAGE)):
        open_page(page, base_url + path)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=False)
        assert (folder / f"{name}.png").stat().st_size > 10_000
    with capsys.disabled():
        print(f"\nscreenshots of the docs site: {folder}")
