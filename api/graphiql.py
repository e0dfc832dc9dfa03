"""GraphiQL for integrators, served from vendored assets (api/static/graphiql): no CDN, works offline."""

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

ASSETS = Path(__file__).resolve().parent / "static" / "graphiql"
PAGE = (ASSETS / "index.html").read_text()

SECURITY_HEADERS = {
    # Scripts and data only from this origin; GraphiQL sets inline styles on its panes.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def wants_graphiql(request: Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def render_graphiql(_: Request) -> Response:
    return HTMLResponse(PAGE, headers=SECURITY_HEADERS)


def graphiql_routes() -> list[BaseRoute]:
    return [Mount("/static/graphiql", StaticFiles(directory=ASSETS), name="graphiql-assets")]
