"""A request's body, read whole within a size and a time: a slow or endless client holds a
connection, never a worker's time (/graphql's pipeline and the token endpoint, each answering in
its own error shape)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

__all__ = ["BodyTooLarge", "read_bounded"]


class BodyTooLarge(Exception):
    """More than the limit arrived (bounded even without a Content-Length)."""


async def read_bounded(request: Request, limit: int, seconds: float) -> bytes:
    """The body; BodyTooLarge past `limit` bytes, TimeoutError past `seconds`, and starlette's
    ClientDisconnect when the client hangs up mid-body."""
    chunks, size = [], 0
    async with asyncio.timeout(seconds):
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
    return b"".join(chunks)
