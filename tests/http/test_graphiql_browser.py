"""An integrator opens GraphiQL in a browser with no network, pastes a demo key, runs a query and sees data.

The app runs under uvicorn on 127.0.0.1 with the small demo data set; Debian's Chromium
(/usr/bin/chromium) is driven by Playwright, and every request that is not to 127.0.0.1 is
blocked and recorded.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, Route, sync_playwright

from api.data.database import make_sync_engine
from api.data.migrate import upgrade
from api.data.seed import seed
from api.http.app import create_app
from api.http.graphiql import CONTENT_SECURITY_POLICY
from api.settings import Settings

# What the integrator runs, and as whom: a partner of the seeded demo keys file.
QUERY = "{ viewer { name } }"
PARTNER = "Logimed"
EXPECTED = '"name": "Logimed"'

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TIMEOUT_MS = 20_000


@dataclass
class Server:
    url: str
    keys: dict[str, str]  # partner name -> demo key, as in the seeded keys file


@dataclass
class Visit:
    """A browser tab on the server, with what it tried to reach outside and what went wrong in it."""

    page: Page
    outside: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("graphiql")
    database_url = f"sqlite:///{folder / 'api.db'}"
    keys_file = folder / "demo-keys.json"
    engine = make_sync_engine(database_url)
    upgrade(engine)
    seed(engine, "small", keys_file=keys_file, progress=False)
    engine.dispose()
    keys = {name: entry["key"] for name, entry in json.loads(keys_file.read_text()).items()}

    port = free_port()
    app = create_app(Settings(database_url=database_url, secret_key="graphiql-browser-test", graphiql=True))
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield Server(f"http://127.0.0.1:{port}", keys)
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def visit(browser: Browser) -> Iterator[Visit]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    visit = Visit(context.new_page())

    def loopback_only(route: Route) -> None:
        url = urlsplit(route.request.url)
        if url.scheme in ("data", "blob") or url.hostname == "127.0.0.1":
            route.continue_()
        else:
            visit.outside.append(route.request.url)
            route.abort()

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            visit.problems.append(message.text)

    def on_page_error(error: Error) -> None:
        visit.problems.append(f"{error.name}: {error.message}")

    context.route("**/*", loopback_only)
    visit.page.on("console", on_console)
    visit.page.on("pageerror", on_page_error)
    yield visit
    context.close()


def open_graphiql(page: Page, server_url: str) -> None:
    """Open GraphiQL (no key needed for the page) and wait until its editor is there."""
    response = page.goto(f"{server_url}/graphql")
    assert response is not None and response.status == 200
    page.locator(".graphiql-query-editor .CodeMirror").wait_for(timeout=TIMEOUT_MS)
    assert "Loading" not in page.locator("#graphiql").inner_text()


def run_query_in_graphiql(page: Page, query: str, key: str) -> str:
    """Type `query` in the editor, enter the key, run it: the result pane's text once it has an answer."""
    page.click(".graphiql-query-editor .CodeMirror")
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    # insert_text types without key events, so CodeMirror's bracket closing and hints stay out of it.
    page.keyboard.insert_text(query)
    # Straight from the key field to Run, as people do: the field's blur (which reloads the
    # schema with the key) must not lose the result.
    page.fill("#api-key", key)
    page.click(".graphiql-execute-button")
    result = page.locator(".graphiql-response .CodeMirror")
    result.filter(has_text=re.compile(r'"(data|errors)"')).wait_for(timeout=TIMEOUT_MS)
    return result.inner_text()


def test_integrator_runs_a_query_with_a_demo_key_without_network(server: Server, visit: Visit, tmp_path: Path):
    open_graphiql(visit.page, server.url)
    text = run_query_in_graphiql(visit.page, QUERY, server.keys[PARTNER])
    visit.page.screenshot(path=str(tmp_path / "graphiql.png"))
    assert EXPECTED in text
    assert '"errors"' not in text
    assert visit.outside == []
    assert visit.problems == []


def test_page_opens_without_a_key_and_queries_without_one_are_refused(server: Server, visit: Visit):
    open_graphiql(visit.page, server.url)
    text = run_query_in_graphiql(visit.page, QUERY, "")
    assert "UNAUTHENTICATED" in text
    assert visit.outside == []
    assert visit.problems == []


def test_the_dry_run_shows_cost_and_lacking_scopes_before_the_query_runs(server: Server, visit: Visit):
    open_graphiql(visit.page, server.url)
    visit.page.click(".graphiql-query-editor .CodeMirror")
    visit.page.keyboard.press("Control+A")
    visit.page.keyboard.press("Delete")
    visit.page.keyboard.insert_text("{ practices(first: 10) { edges { node { name } } } }")
    visit.page.fill("#api-key", server.keys["AgendaPlus"])  # identity, no contact details
    status = visit.page.locator(".dry-run")
    status.filter(has_text="Dry run: 10 of 1000 points").wait_for(timeout=TIMEOUT_MS)
    visit.page.click(".graphiql-query-editor .CodeMirror")
    visit.page.keyboard.press("Control+A")
    visit.page.keyboard.insert_text(
        "query P($id: ID!) { node(id: $id) { ... on Patient { firstName phone } } }"
    )
    status.filter(has_text="your grants lack patients:contact").wait_for(timeout=TIMEOUT_MS)
    assert '"data"' not in visit.page.locator(".graphiql-response").inner_text()  # nothing was run
    assert visit.problems == []


def test_enter_in_the_key_field_loads_the_schema_docs(server: Server, visit: Visit):
    open_graphiql(visit.page, server.url)
    visit.page.fill("#api-key", server.keys[PARTNER])
    visit.page.press("#api-key", "Enter")
    visit.page.click('[aria-label="Show Documentation Explorer"]')
    visit.page.locator(".graphiql-doc-explorer").get_by_text("Query", exact=True).wait_for(timeout=TIMEOUT_MS)
    assert visit.outside == []


def test_key_stays_in_the_tab_across_reloads(server: Server, visit: Visit):
    open_graphiql(visit.page, server.url)
    run_query_in_graphiql(visit.page, QUERY, server.keys[PARTNER])
    open_graphiql(visit.page, server.url)
    assert visit.page.input_value("#api-key") == server.keys[PARTNER]
    assert visit.page.evaluate("localStorage.length === 0 || !JSON.stringify(localStorage).includes('pak_')")


def test_page_and_assets_are_served_locally_with_strict_headers(server: Server):
    page = httpx.get(f"{server.url}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY and "unsafe-eval" not in CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-frame-options"] == "DENY"
    assert "://" not in page.text and "<script>" not in page.text

    assets = re.findall(r'(?:src|href)="(/static/graphiql/[^"]+)"', page.text)
    assert len(assets) == 7
    for asset in assets:
        response = httpx.get(server.url + asset)
        assert response.status_code == 200, asset
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
    for unserved in ("README.md", "package.json", "update.sh", "LICENSES.txt"):
        assert httpx.get(f"{server.url}/static/graphiql/{unserved}").status_code == 404
