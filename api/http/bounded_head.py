"""uvicorn's httptools protocol with each request's head (request line and headers) bounded in size
and in time, before the application sees anything.

httptools buffers a header that has not ended without limit, and its work per chunk grows with the
buffer: one unauthenticated connection sending a never-ending 200 MB header held a worker's event loop
for half a minute (other partners' requests waited 18 s) until the arbiter killed it, with the
requests it was serving. uvicorn bounds a head only with its pure-Python parser (h11, slower for every
request), and times neither out. Here a head larger than PARTNER_API_MAX_HEAD_BYTES (within a slice,
below) is answered 431, and one still incomplete PARTNER_API_HEAD_TIMEOUT_SECONDS after its first byte
408, both in the API's JSON error shape, and the connection is closed; either before the request
reached the application. A proxy in front may bound them more tightly.

The same bounds hold where httptools reads a head outside one: a new connection that sends nothing
(uvicorn times it out only between requests: 45,000 idle connections took every descriptor of both
workers), and a chunked body's framing, its chunks' size lines (whose extensions httptools skips
without limit: one connection sent 10 GB in 10 s) and its trailers (appended to at a cost growing
with their length: 30 MB of one trailer held a worker until the arbiter killed it). A body's framing
is bounded as a whole, not line by line (1.4 GB came in one-byte chunks with 20 KB extensions): at
most PARTNER_API_MAX_HEAD_BYTES, and FRAMING_PER_BYTE for each byte of data (a one-byte chunk's
framing is five).

    uvicorn.Config(app, http=BoundedHead)  # api/operators/server.py: gunicorn's uvicorn workers
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.errors import ApiError, ErrorCode, error_body
from api.settings import get_settings

__all__ = ["BoundedHead"]

# The head is counted slice by slice of what arrives (httptools tells where a head ends, not at which
# byte): a slice in which a head began or went on counts whole, so a head is bounded within a slice,
# and a body arriving with its head (or a pipelined request's) never counts towards the head; a
# body's framing is what it received beyond its data, so a slice's head bytes count there at most.
SLICE = 8 * 1024
FRAMING_PER_BYTE = 16  # of a chunked body's framing allowed per byte of its data: a one-byte chunk needs five
MAX_CHUNKS = 1024  # in one body: each is three calls into Python, whatever its size
MAX_PIPELINED = 32  # requests queued on one connection behind the one being answered
# Header fields of one request (Apache's LimitRequestFields): each is a call into Python, and the
# application looks headers up by scanning them; 7,000 empty ones (28 KB) made a one-point request
# 2.5 times the work (outside review, helper 53).
MAX_HEADER_FIELDS = 100


class BoundedHead(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.max_head_bytes, self.head_timeout = settings.max_head_bytes, settings.head_timeout_seconds
        # received since the last request ended (blank lines included, which httptools skips unseen)
        # until the next head is complete; None while a head's request is being read
        self._head_bytes: int | None = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_bytes: int | None = None  # received since the head ended, framing included; None between bodies
        self._data_bytes = 0  # of which the body's data
        self._chunks = 0  # of the body's chunks
        self._fields = 0  # of the head being read (or of a chunked body's trailers)
        self._refused = False  # answered and closing: httptools parses on to the end of its data, for nobody
        self._first = True  # the connection's first request: its head's time runs from the connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        self._start_timer()  # its first request's head is due from now, not from a first byte that may never come

    def data_received(self, data: bytes) -> None:
        for start in range(0, len(data), SLICE):
            if self.transport.is_closing():  # refused, or a malformed request answered 400
                return
            piece = data[start : start + SLICE] if len(data) > SLICE else data
            super().data_received(piece)
            # a head began in this slice or before, and is not over
            if self._head_bytes is not None and self._head_bytes + len(piece) > self.max_head_bytes:
                self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                return
            if self._head_bytes is not None:
                self._head_bytes += len(piece)
            if self._body_bytes is not None:  # a body is being read: what is not its data is its framing
                self._body_bytes += len(piece)
                framing = self._body_bytes - self._data_bytes
                if framing > self.max_head_bytes + FRAMING_PER_BYTE * self._data_bytes:
                    self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
                    return

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._fields = 0
        if not self._first:
            self._start_timer()
        self._first = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._fields += 1
        if self._fields > MAX_HEADER_FIELDS:
            message = f"A request carries at most {MAX_HEADER_FIELDS} header fields."
            self._answer(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, message, limit="header_fields",
                         maximum=MAX_HEADER_FIELDS)  # fmt: skip
            return
        super().on_header(name, value)

    def on_chunk_header(self) -> None:
        if self._refused:
            return
        self._chunks += 1
        if self._chunks > MAX_CHUNKS:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._data_bytes += len(body)
        super().on_body(body)

    def on_headers_complete(self) -> None:
        if self._refused:  # a head refused within this data (its 101st field): the application never sees it
            return
        self._head_bytes = None
        self._body_bytes, self._data_bytes, self._chunks = 0, 0, 0  # a body, if any, follows
        self._stop_timer()
        super().on_headers_complete()
        if len(self.pipeline) > MAX_PIPELINED:  # each queued request holds its head in memory
            message = f"At most {MAX_PIPELINED} requests may wait on one connection (HTTP pipelining)."
            self._answer(HTTPStatus.TOO_MANY_REQUESTS, message, limit="pipelined_requests", maximum=MAX_PIPELINED)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._head_bytes, self._body_bytes = 0, None  # the next head's bytes, blank lines first, count from here
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """A response sent before its request's body ended (a route that never reads it, a refusal): the
        connection is closed, rather than httptools parsing the rest, unbounded, with nobody to read it."""
        if not self.pipeline and self.cycle is not None and self.cycle.more_body:
            self.transport.close()
            return
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _start_timer(self) -> None:
        self._stop_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._refuse, HTTPStatus.REQUEST_TIMEOUT)

    def _stop_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: HTTPStatus) -> None:
        if status == HTTPStatus.REQUEST_TIMEOUT:
            message = f"The request's headers were not received within {self.head_timeout:g} s."
            self._answer(status, message, limit="head_timeout", maximum=self.head_timeout)
        else:
            message = (
                f"A request's line and headers (or a chunked body's size lines and trailers) are limited to "
                f"{self.max_head_bytes} bytes, and a chunked body to {MAX_CHUNKS} chunks."
            )
            self._answer(status, message, limit="max_head_bytes", maximum=self.max_head_bytes)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what httptools cannot parse (a Content-Length beside a Transfer-Encoding,
        a negative length...), in the API's JSON error shape rather than its plain text."""
        self._answer(HTTPStatus.BAD_REQUEST, msg)

    def _answer(self, status: HTTPStatus, message: str, **extensions: object) -> None:
        """The request refused before the application, and the connection closed."""
        self._stop_timer()
        self._head_bytes = None
        answered, self._refused = self._refused or self.transport.is_closing(), True
        if answered:
            return
        body = json.dumps(error_body(ApiError(ErrorCode.BAD_USER_INPUT, message, **extensions)))
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.logger.warning("request refused before the application: %s", message)
        self.transport.write((head + body).encode())
        self.transport.close()
