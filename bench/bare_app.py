"""The bare strawberry baseline as ASGI apps for the HTTP load test (`uvicorn --factory`): with its
parser and validation caches, and without them (like a default strawberry app)."""

import gc
import os
from typing import Any

from api.data.database import make_async_engine, make_session_factory
from bench.bare import bare_asgi


def with_caches() -> Any:
    return _served(caches=True)


def without_caches() -> Any:
    return _served(caches=False)


def _served(caches: bool) -> Any:
    graphql = bare_asgi(make_session_factory(make_async_engine(os.environ["PARTNER_API_DATABASE_URL"])), caches=caches)

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        # `/readyz` as the API has it, so that one helper (tests/server_process.py) awaits either server.
        if scope["type"] == "http" and scope["path"] == "/readyz":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await graphql(scope, receive, send)

    gc.freeze()  # as the API does at startup (api.http.app's lifespan): the comparison stays like for like
    return app
