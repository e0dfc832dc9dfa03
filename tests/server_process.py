"""A real server process on a free loopback port, for the tests and benchmarks that need one
(workers, the watchdog, slow clients, fairness, the extraction scenarios): started, awaited until
`/readyz` answers, stopped, and its output kept for the caller to read once it has stopped."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["LOOPBACK", "PARTNER_API", "Server", "free_port", "partner_api_env", "running_server", "wait_for"]

LOOPBACK = "127.0.0.1"
PARTNER_API = str(Path(sys.executable).parent / "partner-api")


@dataclass
class Server:
    """A started server: where it listens, and (once it has stopped) what it printed."""

    port: int
    output: str = ""
    pid: int = 0  # the server's main process (gunicorn's arbiter under `serve`), to signal it
    log: Path | None = None  # what it has printed so far, readable while it runs

    def printed(self) -> str:
        """Its output so far (read through a file of its own: the server's writing position stays put)."""
        return self.log.read_text(errors="replace") if self.log else self.output
    process: subprocess.Popen[bytes] | None = None  # to signal it (its exit is awaited after the block)

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def partner_api_env(database_url: str, **settings: str) -> dict[str, str]:
    """This process's environment with the database and each setting as `PARTNER_API_<NAME>`."""
    return {
        **os.environ,
        "PARTNER_API_DATABASE_URL": database_url,
        **{f"PARTNER_API_{name.upper()}": value for name, value in settings.items()},
    }


def wait_for(condition: Callable[[], bool], seconds: float, failure: str) -> None:
    """Polls a condition that another process makes true (no event to wait on across processes)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(failure)
        time.sleep(0.05)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running_server(
    command: Callable[[int], Sequence[str]],
    env: dict[str, str],
    *,
    cwd: Path | None = None,
    started_within: float = 60,
) -> Iterator[Server]:
    """Runs `command(port)` until the block ends; yields once the server answers `/readyz`.

    Example: `with running_server(lambda port: [PARTNER_API, "serve", "--port", str(port)], env) as server:`;
    after the block, `server.output` holds its stdout and stderr."""
    server = Server(free_port())
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command(server.port), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        server.pid = process.pid
        server.log = Path(f"/proc/self/fd/{log.fileno()}")  # Linux: opened anew, with its own position
        server.process = process

        def started() -> bool:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the server exited with {process.returncode}: {log.read()[-2000:]}")
            return _ready(server.base)

        try:
            wait_for(started, started_within, "the server did not start")
            yield server
        finally:
            process.terminate()
            process.wait(timeout=60)
            log.seek(0)
            server.output = log.read()
