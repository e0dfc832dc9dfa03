"""A throwaway PostgreSQL server for the test suite: initdb in a temp dir, loopback only.

PostgreSQL refuses to run as root, so as root it runs as the `postgres` user that Debian's
package creates (pytest-postgresql has no such option, hence this module). The binaries come
from Debian's `postgresql` package, which `make test` installs when they are missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# A test server need not survive a crash: skip every flush to disk.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class PostgresUnavailable(RuntimeError):
    pass


def find_bindir() -> Path:
    """The newest of Debian's /usr/lib/postgresql/<version>/bin, else the pg_ctl on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries (pg_ctl) not found: run `make test`, which installs Debian's "
        "postgresql package as root, or set PARTNER_API_TEST_POSTGRES_URL to an existing server"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server(keep_in: Path | None = None) -> Iterator[str]:
    """Start a server; yield the URL of its `postgres` database (superuser, no password); stop it.
    Fresh and thrown away, unless `keep_in` names a folder: there its data is kept across runs
    (the benchmark's seeded data sets)."""
    bindir = find_bindir()
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    if keep_in is not None:
        keep_in.mkdir(parents=True, exist_ok=True)
    root = keep_in or Path(tempfile.mkdtemp(prefix="partner-api-pg-"))
    data, log = root / "data", root / "server.log"
    port = _free_port()

    def run(*args: str) -> None:
        result = subprocess.run([*run_as, *args], cwd=root, capture_output=True, text=True)
        if result.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            raise PostgresUnavailable(f"{Path(args[0]).name} failed:\n{result.stderr}{result.stdout}{server_log}")

    try:
        if as_root:
            try:
                shutil.chown(root, "postgres", "postgres")
            except LookupError:
                raise PostgresUnavailable(
                    "running as root needs the `postgres` user (Debian's package creates it)"
                ) from None
        if not (data / "PG_VERSION").exists():
            run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale")
        options = " ".join([f"-p {port}", f"-k {root}", *(f"-c {k}={v}" for k, v in SERVER_SETTINGS.items())])
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            stop = "fast" if keep_in else "immediate"  # a kept server shuts down cleanly
            subprocess.run(
                [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", stop, "stop"], cwd=root, capture_output=True
            )
    finally:
        if keep_in is None:
            shutil.rmtree(root, ignore_errors=True)
