"""GraphiQL for integrators, served from vendored assets (api/http/static/graphiql): no CDN, works offline.

The page's own script (static/graphiql/app.js) adds the API key field, the README walkthrough's
first tab (filled with one of the key's practices), `?query=` links, the cost and budget under the
run button, and the query builder (@graphiql/plugin-explorer). It is on for `partner-api demo`, and
for `serve` only when asked (`--graphiql`, PARTNER_API_GRAPHIQL).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

ASSETS = Path(__file__).resolve().parent / "static" / "graphiql"
ASSETS_URL = "/static/graphiql"
# What the page loads, in order; nothing else in the folder is served (README, update.sh, ...).
STYLESHEETS = ("graphiql.min.css", "plugin-explorer.css", "app.css")
SCRIPTS = (
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphiql.min.js",
    "plugin-explorer.umd.js",
    "dry-run.js",
    "app.js",
)

# GraphiQL's dialogs (settings, short keys) lock the page's scroll with react-remove-scroll, which
# writes one <style> element; with no page scrollbar and no body margin (app.css) its text is always
# the same, so its hash allows it and nothing else. A nonce would need the library to be given one,
# which graphiql's bundle does not let a page do; 'unsafe-inline' would allow any injected style
# (CSS can read an input's value through attribute selectors). tests/http/test_graphiql_browser.py
# opens both dialogs and fails on any CSP report.
SCROLL_LOCK_STYLE_HASH = "'sha256-Y/huXlwoYkVyQlxwSVcCi1RCDGDCSVBzDt0hYP9qlTc='"

# Scripts, styles, fonts and requests: this origin only (GraphiQL's fonts are data: URLs).
# No 'unsafe-inline' or 'unsafe-eval' anywhere: the page's own script is app.js.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    f"style-src 'self' {SCROLL_LOCK_STYLE_HASH}",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Partner API · GraphiQL</title>
  <link rel="icon" href="data:,">
{stylesheets}
</head>
<body>
  <header class="key-bar">
    <strong>Partner API</strong>
    <label for="api-key">API key</label>
    <input id="api-key" type="password" autocomplete="off" spellcheck="false"
      placeholder="pak_… (kept in this tab only)">
    <span class="hint">Sent as <code>Authorization: Bearer &lt;key&gt;</code>; Enter loads the schema docs.</span>
  </header>
  <main id="graphiql">Loading…</main>
{scripts}
</body>
</html>
"""


@lru_cache
def asset_version() -> str:
    """A digest of the assets: part of their URLs, so they can be cached for a year."""
    digest = hashlib.sha256()
    for name in STYLESHEETS + SCRIPTS:
        digest.update((ASSETS / name).read_bytes())
    return digest.hexdigest()[:12]


@lru_cache
def graphiql_page() -> str:
    version = asset_version()
    return PAGE.format(
        stylesheets="\n".join(
            f'  <link rel="stylesheet" href="{ASSETS_URL}/{name}?v={version}">' for name in STYLESHEETS
        ),
        scripts="\n".join(f'  <script src="{ASSETS_URL}/{name}?v={version}"></script>' for name in SCRIPTS),
    )


class GraphiQLAssets(StaticFiles):
    """The page's scripts and styles only, cached for a year (their URLs change with their content)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path not in STYLESHEETS + SCRIPTS:
            raise HTTPException(status_code=404)
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def wants_graphiql(request: Request) -> bool:
    """A browser asking for a page (GET, Accept: text/html) gets GraphiQL instead of a GraphQL answer."""
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def render_graphiql(_: Request) -> HTMLResponse:
    """The GraphiQL page: local assets only, queries POSTed to /graphql with the key typed in the page.

    It needs no key itself; only the queries it sends do.
    """
    return HTMLResponse(graphiql_page(), headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


def graphiql_routes() -> list[BaseRoute]:
    """The vendored GraphiQL assets under /static/graphiql."""
    return [Mount(ASSETS_URL, GraphiQLAssets(directory=ASSETS), name="graphiql-assets")]
