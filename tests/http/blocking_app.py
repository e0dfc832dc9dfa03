"""The API, with a request that blocks its worker's event loop: for tests/http/test_watchdog.py only.

A request carrying `X-Test-Block-Loop` spins in synchronous code, as a pathological document or a
bug would, and never yields to the event loop again.
"""

from typing import Any

from api.http.app import create_app as create_api

BLOCK_HEADER = b"x-test-block-loop"


def create_app() -> Any:
    api = create_api()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and any(name == BLOCK_HEADER for name, _ in scope["headers"]):
            while True:
                pass
        await api(scope, receive, send)

    return app
