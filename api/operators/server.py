"""`partner-api serve`: gunicorn's arbiter over uvicorn workers.

uvicorn's own supervisor checks its workers from another thread, so a worker whose event loop is
stuck in synchronous code looks alive forever. gunicorn's arbiter expects each worker to notify it
(uvicorn's main loop does, every half timeout): a worker silent for `PARTNER_API_WORKER_TIMEOUT_SECONDS`
is killed and replaced, and the requests it was serving are recorded in the ledger as refused
(`api.http.in_flight`).

The policy: `serve` checks the policy directory (PARTNER_API_POLICY_DIR) and releases it before any
worker starts, and refuses to start on a policy that fails `partner-api policy check`. SIGHUP to the
arbiter does what `partner-api policy reload` does (api/operators/policy_release.py): a checked
policy is released and every worker loads it on its next request; the workers keep running (gunicorn's
own SIGHUP would restart them), and a refused policy leaves the one in force serving.

On SIGTERM (or SIGINT) the arbiter closes its sockets and asks each worker to stop: uvicorn stops accepting,
finishes the requests in flight (their ledger rows are written before their responses, as always), closes
their connections, commits the ledger rows still queued (the app's lifespan drains api/ledger/group_commit.py)
and exits. A worker still serving after `graceful_timeout` (the request timeout + 5 s) is
killed, and what it was serving is recorded as refused (`_on_exit`). tests/http/test_graceful_shutdown.py.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from contextlib import ExitStack
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from prometheus_client import values as prometheus_values
from sqlalchemy.exc import SQLAlchemyError
from uvicorn_worker import UvicornWorker

from api.http.bounded_head import BoundedHead
from api.http.in_flight import IN_FLIGHT_DIR, InFlight, lost
from api.http.logs import log_config
from api.http.metrics import MULTIPROCESS_DIR
from api.http.policy_in_force import PolicyRefused, read_checked
from api.operators.policy_release import Release
from api.settings import Settings
from api.timeutil import utcnow
from authz.engine import POLICY_DIR

logger = logging.getLogger("api.server")
APP_FACTORY = "api.http.app:create_app"


class PartnerWorker(UvicornWorker):  # type: ignore[misc]  # uvicorn_worker's base class is gunicorn's, untyped
    """gunicorn's uvicorn worker, each request's head bounded in size and time (api/http/bounded_head.py)."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {**UvicornWorker.CONFIG_KWARGS, "http": BoundedHead}

    def init_process(self) -> None:
        # prometheus_client chose where values are kept when the arbiter imported it, before `serve`
        # set PROMETHEUS_MULTIPROC_DIR (api/http/metrics.py): each worker chooses again, or /metrics
        # of several workers stays empty.
        prometheus_values.ValueClass = prometheus_values.get_value_class()  # type: ignore[no-untyped-call]
        super().init_process()


class PolicyArbiter(Arbiter):  # type: ignore[misc]  # gunicorn is untyped: its base class is Any
    """gunicorn's arbiter, for which SIGHUP means: put the policy directory's checked policy in force."""

    def handle_hup(self) -> None:
        settings: Settings = self.app.settings
        try:
            release = reload_policy(settings)
        except Exception:  # the database away or locked: gunicorn's arbiter would exit on it, with every worker
            logger.exception("SIGHUP: the policy could not be released; the one in force stays")
            return
        if release.report.ok:
            logger.info("SIGHUP: %s", release.summary)
            return
        problems = " | ".join(str(p) for p in release.report.problems if p.severity == "error")
        logger.error("SIGHUP: %s: %s", release.summary, problems)


def reload_policy(settings: Settings) -> Release:
    from api.data.database import make_sync_engine
    from api.operators.policy_release import release_policy

    engine = make_sync_engine(settings.database_url)
    try:
        return release_policy(engine, settings.policy_dir or POLICY_DIR)
    finally:
        engine.dispose()


class PartnerServer(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped: its base class is Any
    """gunicorn configured in code: one command, no gunicorn.conf.py to keep in step."""

    def __init__(
        self, settings: Settings, host: str, port: int, workers: int, app_factory: str, in_flight: Path
    ) -> None:
        self.settings, self.app_factory, self.in_flight = settings, app_factory, in_flight
        self.options = {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": "api.operators.server.PartnerWorker",
            "timeout": settings.worker_timeout_seconds,
            "graceful_timeout": math.ceil(settings.request_timeout_seconds) + 5,  # running requests may end
            "logconfig_dict": _log_config(settings.log_level),
            "control_socket_disable": True,  # one fixed path per user: two servers on a host would share it
            "loglevel": settings.log_level,
            "keepalive": 5,  # uvicorn's own default, which serve had before gunicorn (gunicorn's is 2 s)
            "accesslog": None,  # api.http.logs writes one line per request, without the query string
            "child_exit": lambda arbiter, worker: self._record_lost(worker.pid),
            "on_exit": lambda arbiter: self._on_exit(),
        }
        super().__init__()

    def run(self) -> None:
        """As gunicorn's own run, with the arbiter that reloads the policy on SIGHUP."""
        try:
            PolicyArbiter(self).run()
        except RuntimeError as error:
            logger.error("the server stopped: %s", error)
            raise SystemExit(1) from None

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        """In each worker, after the fork: the app's engines and pools are the worker's own."""
        module, _, name = self.app_factory.partition(":")
        return InFlight(getattr(import_module(module), name)(), self.in_flight)

    def _on_exit(self) -> None:
        """In the arbiter, last, on shutdown: a worker still serving when the grace period ended was killed
        without being reaped (no `child_exit`), so what it was serving is recorded here."""
        for pid in sorted({int(path.name.split(".")[0]) for path in self.in_flight.glob("*.json")}):
            with contextlib.suppress(ChildProcessError):  # killed: reaped here, so its files are final
                os.waitpid(pid, 0)
            self._record_lost(pid)

    def _record_lost(self, pid: int) -> None:
        """In the arbiter, once a worker has exited: what it was serving never got an answer."""
        entries, files = lost(self.in_flight, pid, utcnow())
        if not entries:
            return
        from api.data.database import make_sync_engine
        from api.ledger.access import write_refusals

        engine = make_sync_engine(self.settings.database_url)
        try:
            with engine.begin() as connection:
                write_refusals(connection, entries)
        except Exception:  # the database is away: the files stay, the log says so
            logger.exception("could not record the %d requests of the lost worker %s", len(entries), pid)
            return
        finally:
            engine.dispose()
        for path in files:
            path.unlink(missing_ok=True)
        logger.error("worker %s was lost with %d requests in flight, recorded as refused", pid, len(entries))


def _log_config(level: str) -> dict[str, Any]:
    """The API's JSON lines for gunicorn's arbiter too; uvicorn's loggers in each worker take the
    handlers of gunicorn's error logger (uvicorn_worker), so they go there as well."""
    config = log_config(level)
    config["loggers"] = {
        **config["loggers"],
        "gunicorn.error": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
        "gunicorn.access": {"handlers": [], "propagate": False},
    }
    return config


def unsafe_setup(settings: Settings, workers: int) -> str | None:
    """Why `serve` must not start as configured, if it must not: without PARTNER_API_SECRET_KEY each
    worker draws its own key, so a cursor issued by one is refused by the others and by the next start."""
    if settings.secret_key:
        return None
    if workers > 1:
        where = f"{workers} workers"
    elif settings.database_url.startswith("postgresql"):
        where = "PostgreSQL (production: several instances, restarts)"
    else:
        return None  # the embedded demo shape: one process on SQLite, cursors live as long as it
    return (
        f"PARTNER_API_SECRET_KEY is required with {where}: every worker and instance must sign paging and sync "
        "cursors with the same key (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)."
    )


def serve(settings: Settings, host: str, port: int, workers: int, app_factory: str = APP_FACTORY) -> None:
    """Serve until stopped; raises PolicyRefused, before any worker starts, on a policy that fails its check."""
    try:
        release = reload_policy(settings)
    except SQLAlchemyError:  # the database is away: workers start from the checked directory, /readyz says 503
        logger.warning("the policy could not be released: the database is unreachable", exc_info=True)
        directory = settings.policy_dir or POLICY_DIR
        release = Release(directory, read_checked(directory)[1], None, changed=False)
    if not release.report.ok:
        raise PolicyRefused(release.directory, release.report)
    # a release of another directory replaced (a restart without PARTNER_API_POLICY_DIR?): said louder
    logger.log(logging.WARNING if release.replaced else logging.INFO, "policy: %s", release.summary)
    if not settings.oauth_issuer and (workers > 1 or settings.database_url.startswith("postgresql")):
        logger.warning(
            "PARTNER_API_OAUTH_ISSUER is unset: OAuth clients are served only under this server's own address "
            "(behind a proxy, none): set it to the public base URL"
        )
    with ExitStack() as stack:
        if workers > 1 and not os.environ.get(MULTIPROCESS_DIR):
            # Each worker writes its metrics there, so that /metrics sums them (see api.http.metrics).
            os.environ[MULTIPROCESS_DIR] = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="partner-api-metrics-")
            )
        if not os.environ.get(IN_FLIGHT_DIR):
            os.environ[IN_FLIGHT_DIR] = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="partner-api-in-flight-")
            )
        PartnerServer(settings, host, port, workers, app_factory, Path(os.environ[IN_FLIGHT_DIR])).run()
