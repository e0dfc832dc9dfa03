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
from datetime import date
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
from api.http.graphiql import CONTENT_SECURITY_POLICY, SCRIPTS, STYLESHEETS
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
    # Centred on today, as `partner-api demo` seeds it: the walkthrough's Day tab reads today.
    seed(engine, "small", keys_file=keys_file, progress=False, reference_date=date.today())
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
    # GraphiQL reads the operation's name from the editor after a debounce: the tab's title shows it
    # once read, and a run before that would send the previous tab content's name.
    named = re.match(r"\s*(?:query|mutation)\s+(\w+)", query)
    title = named.group(1) if named else "<untitled>"
    page.locator(".graphiql-tab-active").filter(has_text=title).wait_for(timeout=TIMEOUT_MS)
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
    # the dry run's own point, charged to the budget, shown where a run's cost is
    badge = visit.page.locator(".graphiql-toolbar .cost-badge")
    badge.wait_for(timeout=TIMEOUT_MS)
    assert badge.inner_text().split()[:2] == ["1", "pt"] and "dry run" in (badge.get_attribute("title") or "")
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
    assert "style-src 'self' 'sha256-" in CONTENT_SECURITY_POLICY  # one exact <style>, nothing else inline
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-frame-options"] == "DENY"
    assert "://" not in page.text and "<script>" not in page.text

    assets = re.findall(r'(?:src|href)="(/static/graphiql/[^"]+)"', page.text)
    assert len(assets) == len(SCRIPTS + STYLESHEETS) == 9  # with the explorer's script and style, dry-run.js
    for asset in assets:
        response = httpx.get(server.url + asset)
        assert response.status_code == 200, asset
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
    for unserved in ("README.md", "package.json", "update.sh", "LICENSES.txt"):
        assert httpx.get(f"{server.url}/static/graphiql/{unserved}").status_code == 404


def editor_text(page: Page, editor: str) -> str:
    """The text of one of GraphiQL's CodeMirror editors (the query's, the variables')."""
    return page.evaluate(f"document.querySelector('{editor} .CodeMirror').CodeMirror.getValue()")


def run_and_read(page: Page) -> dict:
    page.click(".graphiql-execute-button")
    result = page.locator(".graphiql-response .CodeMirror")
    result.filter(has_text=re.compile(r'"(data|errors)"')).wait_for(timeout=TIMEOUT_MS)
    return json.loads(editor_text(page, ".graphiql-response"))


def use_key(page: Page, key: str, practice_of: str) -> None:
    page.fill("#api-key", key)
    page.press("#api-key", "Enter")
    page.wait_for_function(
        "text => document.querySelector('.graphiql-editor-tool .CodeMirror').CodeMirror.getValue().includes(text)",
        arg=practice_of,
        timeout=TIMEOUT_MS,
    )


def first_practice(server: Server, partner: str) -> str:
    viewer = httpx.post(
        f"{server.url}/graphql",
        json={"query": "{ viewer { grants { practiceId } } }"},
        headers={"Authorization": f"Bearer {server.keys[partner]}"},
    )
    return viewer.json()["data"]["viewer"]["grants"][0]["practiceId"]


def test_the_readme_walkthrough_runs_as_written(server: Server, visit: Visit, tmp_path: Path):
    """README, "Using GraphiQL with a demo key": the first tab is Day; Enter with Logimed's key fills one of
    its practices; running it shows phones; AgendaPlus's key switches the practice, and its phones are
    FORBIDDEN."""
    open_graphiql(visit.page, server.url)
    assert "query Day(" in editor_text(visit.page, ".graphiql-query-editor")
    assert "press Enter" in editor_text(visit.page, ".graphiql-editor-tool")  # the variables say what to do
    use_key(visit.page, server.keys["Logimed"], first_practice(server, "Logimed"))
    logimed = run_and_read(visit.page)
    visit.page.screenshot(path=str(tmp_path / "walkthrough-logimed.png"))
    rows = [edge["node"] for edge in logimed["data"]["appointments"]["edges"]]
    assert rows and "errors" not in logimed
    assert any(row["patient"]["phone"] for row in rows)

    use_key(visit.page, server.keys["AgendaPlus"], first_practice(server, "AgendaPlus"))
    agenda = run_and_read(visit.page)
    visit.page.screenshot(path=str(tmp_path / "walkthrough-agendaplus.png"))
    rows = [edge["node"] for edge in agenda["data"]["appointments"]["edges"]]
    assert rows and all(row["patient"]["phone"] is None for row in rows)
    forbidden = {tuple(e["path"][-2:]) for e in agenda["errors"] if e["extensions"]["code"] == "FORBIDDEN"}
    assert ("patient", "phone") in forbidden or any(p[-1] == "phone" for p in forbidden)
    assert visit.problems == [] and visit.outside == []


def test_edited_variables_are_never_replaced_by_the_walkthrough(server: Server, visit: Visit):
    open_graphiql(visit.page, server.url)
    use_key(visit.page, server.keys["Logimed"], first_practice(server, "Logimed"))
    visit.page.click(".graphiql-editor-tool .CodeMirror")
    visit.page.keyboard.press("Control+A")
    visit.page.keyboard.insert_text('{"practiceId": "mine"}')
    visit.page.fill("#api-key", server.keys["AgendaPlus"])
    visit.page.press("#api-key", "Enter")
    visit.page.wait_for_timeout(1000)  # the fill would come after the viewer query: give it its chance
    assert '"mine"' in editor_text(visit.page, ".graphiql-editor-tool")


def test_a_query_link_opens_even_when_tabs_are_stored(server: Server, visit: Visit):
    open_graphiql(visit.page, server.url)
    run_query_in_graphiql(visit.page, QUERY, server.keys[PARTNER])  # GraphiQL stores its tabs
    visit.page.wait_for_function("() => localStorage.getItem('graphiql:tabState') !== null", timeout=TIMEOUT_MS)
    linked = "{ rateLimit { currentlyAvailable } }"
    visit.page.goto(f"{server.url}/graphql?query={linked}")
    visit.page.locator(".graphiql-query-editor .CodeMirror").wait_for(timeout=TIMEOUT_MS)
    assert editor_text(visit.page, ".graphiql-query-editor") == linked
    assert visit.problems == []


def test_dialogs_open_without_a_content_security_policy_report(server: Server, visit: Visit, tmp_path: Path):
    open_graphiql(visit.page, server.url)
    for dialog in ("Open settings dialog", "Open short keys dialog"):
        visit.page.click(f'[aria-label="{dialog}"]')
        visit.page.locator(".graphiql-dialog").wait_for(timeout=TIMEOUT_MS)
        visit.page.screenshot(path=str(tmp_path / f"{dialog}.png"))
        visit.page.keyboard.press("Escape")
        visit.page.locator(".graphiql-dialog").wait_for(state="detached", timeout=TIMEOUT_MS)
    assert visit.problems == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_key_bar_follows_dark_mode(server: Server, visit: Visit, scheme: str, tmp_path: Path):
    visit.page.emulate_media(color_scheme=scheme)
    open_graphiql(visit.page, server.url)
    visit.page.screenshot(path=str(tmp_path / f"{scheme}.png"))
    bar = visit.page.evaluate("getComputedStyle(document.querySelector('.key-bar')).backgroundColor")
    editor = visit.page.evaluate("getComputedStyle(document.querySelector('.graphiql-container')).backgroundColor")
    assert (bar, editor) != (None, None)
    # GraphiQL's own theme (its settings dialog) wins over the system's, for the bar as for the editor.
    visit.page.evaluate("document.body.classList.add('graphiql-light')")
    forced_light = visit.page.evaluate("getComputedStyle(document.querySelector('.key-bar')).backgroundColor")
    assert forced_light == "rgb(11, 61, 92)"
    assert (bar == forced_light) is (scheme == "light")


def test_cost_and_budget_are_shown_under_the_run_button_after_a_run(server: Server, visit: Visit):
    open_graphiql(visit.page, server.url)
    run_query_in_graphiql(visit.page, "{ viewer { name } rateLimit { currentlyAvailable } }", server.keys[PARTNER])
    response = json.loads(editor_text(visit.page, ".graphiql-response"))
    cost = response["extensions"]["cost"]
    badge = visit.page.locator(".graphiql-toolbar .cost-badge")
    badge.wait_for(timeout=TIMEOUT_MS)
    text = badge.inner_text()
    assert f"{cost['actualQueryCost']} pt" in text
    assert f"{int(cost['throttleStatus']['currentlyAvailable'])} left" in text
    # The display is a function anything can feed (a dry run, for instance).
    visit.page.evaluate(
        "PartnerApi.showCost({requestedQueryCost: 7, actualQueryCost: null,"
        " throttleStatus: {currentlyAvailable: 1234, maximumAvailable: 2000}}, 'dry run')"
    )
    assert badge.inner_text().split() == ["7", "pt", "1234", "left"]
    assert "dry run" in (badge.get_attribute("title") or "")


def test_the_explorer_plugin_builds_queries_from_local_assets(server: Server, visit: Visit, tmp_path: Path):
    open_graphiql(visit.page, server.url)
    visit.page.fill("#api-key", server.keys[PARTNER])
    visit.page.press("#api-key", "Enter")
    visit.page.click('[aria-label="Show GraphiQL Explorer"]')
    explorer = visit.page.locator(".graphiql-explorer-root")
    explorer.get_by_text("viewer", exact=True).first.wait_for(timeout=TIMEOUT_MS)
    visit.page.screenshot(path=str(tmp_path / "explorer.png"))
    assert visit.outside == [] and visit.problems == []
