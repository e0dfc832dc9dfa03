"""An integrator opens GraphiQL offline, enters a demo key, runs a query and sees data."""

import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import uvicorn

from api.app import create_app
from api.database import make_sync_engine
from api.migrate import upgrade
from api.settings import Settings
from tests.world import build_world

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail("Chromium is missing: .ci/run installs Debian's chromium package", pytrace=False)
    pytest.skip("Debian's chromium is not installed here (CI installs it)", allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'api.db'}"
    engine = make_sync_engine(url)
    upgrade(engine)
    world = build_world(engine)
    engine.dispose()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(Settings(database_url=url, secret_key="browser")), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", world
    uv.should_exit = True
    thread.join(timeout=10)


def run_query_in_graphiql(page, base: str, query: str, key: str) -> str:
    """Open GraphiQL with `query` in the editor, enter the key, run it; the result pane's text."""
    page.goto(f"{base}/graphql?query={quote(query)}")
    page.wait_for_selector(".graphiql-container .graphiql-execute-button", timeout=20_000)
    page.fill("#api-key", key)
    page.click(".graphiql-execute-button")
    result = page.locator(".result-window")
    result.locator("text=data").first.wait_for(timeout=20_000)
    return result.inner_text()


def test_graphiql_works_offline_with_a_demo_key(server):
    base, world = server
    outside: list[str] = []

    def only_loopback(route):
        host = urlsplit(route.request.url).hostname
        if host == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.route("**/*", only_loopback)
        text = run_query_in_graphiql(page, base, "{ viewer { name grants { practiceName } } }", world.keys["full"])
        page.screenshot(path=str(Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / "graphiql.png"))
        browser.close()
    assert '"name": "full"' in text and '"practiceName": "A"' in text
    assert outside == []


def test_graphiql_page_is_served_with_security_headers(server):
    import httpx

    base, _ = server
    response = httpx.get(f"{base}/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert "unpkg" not in response.text and "cdn" not in response.text.lower()
