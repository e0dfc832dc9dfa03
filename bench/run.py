"""The benchmark: one 50-appointment page (with patient and practitioner), measured side by side.

    python -m bench.run [--size large] [--db sqlite|postgresql|both] [--iterations 300] [--http [--seconds 10]]

Seeds each data set once (kept under bench/data/, PostgreSQL's in a server of its own there
unless PARTNER_API_BENCH_POSTGRES_URL names one), then measures in one run, the variants taking
turns request by request so that a shared machine's slow moments hit them alike:
  floor        the raw SQL of the page, joined, through the async engine
  memory       bare strawberry resolving the same 50 rows held in memory (floor + memory: the CPU floor)
  bare         bare strawberry, same data loading, parser and validation caches, in-process ASGI
  bare-nocache the same without the caches
  no-authz     the full stack with an allow-all authorizer (authorization off)
  no-cost      the full stack without cost analysis and budgets
  full         the full stack in-process: authentication, policy filters, field rules, cost, budgets
  full-10k     the full stack on a 10,000-appointment database (cost must not grow with the table)
  no-ledger    the full stack without writing the access ledger (its price, not an option)
  no-key-lookup the full stack with the key looked up once and no freshness check (the principal cache's ideal)
  full-uncached the full stack with PARTNER_API_PRINCIPAL_CACHE off: the key looked up on every request
  trusted      the full stack running the same page as a registered document, by id, with a
               trusted key (no parsing, validation or pricing per request), on the general executor
  trusted-compiled the same, through the document's compiled plan (api/compiled/): both against
               `full` and against the raw SQL `floor`
and the plan of each SQL read the full stack issues for the page (bench/explain.py), written to
bench/results/plans-<db>.txt; what a policy evaluation costs with and without the caches
(bench/policy.py); and with --http, requests per second and p50/p99 over loopback with wrk, for
1 and 2 workers, of the page as text (`full`), by id through its compiled plan (`trusted-compiled`)
and of bare strawberry with and without caches (bench/http_load.py).
Figures are medians (and p99) in milliseconds, and ratios to `bare` and `floor` of the same run;
the report states the machine, and each condition of issue 15's "Done when" as holds or does not
hold (bench/conditions.py). It prints a table and writes bench/results/latest.json and
bench/results/run-<db>-<size>.md (bench/report.py). `python -m bench.fairness` measures fairness
under a flood (one partner's sync while another floods).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, ExitStack
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from api.clock import shifted
from api.data import models
from api.data.database import make_async_engine, make_session_factory, make_sync_engine
from api.data.migrate import upgrade
from api.data.seed import SIZES, SeedSize, reference_date_for, seed
from api.documents import service as documents
from api.documents.manifests import document_id_of
from api.http.app import create_app
from api.identity import principal_cache as principal_cache_module
from api.ledger import access as ledger
from api.operators import accounts
from api.protection.shape_limits import limit_rules
from api.schema import build_schema
from api.settings import Settings
from authz.engine import Authorizer
from bench import explain, http_load, policy
from bench import report as report_module
from bench.bare import bare_asgi, bare_schema, in_memory_context
from bench.conditions import conditions
from bench.open_authorizer import OpenAuthorizer
from tests.server_process import PARTNER_API, partner_api_env

HERE = Path(__file__).resolve().parent
DATA, RESULTS = HERE / "data", HERE / "results"
REFERENCE = reference_date_for(2020)  # the page: the busiest practice's first 50 of 31 days from it
# The apps run on the data's clock, the system time moved to the reference day: the page then lies inside
# the partner's reading horizon (days back, days ahead), as a partner's working page does.
CLOCK_OFFSET = datetime.combine(REFERENCE, datetime.min.time(), tzinfo=UTC) - datetime.now(UTC)
SIZES.setdefault("10k", SeedSize("10k", practices=10, practitioners=40, patients=2_000, appointments=10_000))
PARTNER = "Logimed"
PAGE = """query Page($p: ID!, $from: DateTime!, $to: DateTime!) {
  appointments(practiceId: $p, from: $from, to: $to, first: 50) {
    edges { node { id startsAt endsAt status reason
      patient { id firstName lastName gender birthDate phone email }
      practitioner { id firstName lastName specialty } } } } }"""
# Limits that refuse are lifted (their machinery still runs): the benchmark measures capacity, with one
# partner's key; bench/fairness.py measures the per-key limits.
UNLIMITED = {
    "budget_capacity": 10**9,
    "budget_refill_per_second": 10**9,
    "max_query_cost": 10**6,
    "max_concurrent_requests_per_partner": 64,
}


def prepare(url: str, size: str) -> dict[str, Any]:
    """Migrate and seed once; returns the keys file's content."""
    engine = make_sync_engine(url)
    upgrade(engine)
    keys_file = DATA / f"{size}-{engine.dialect.name}-keys.json"
    with Session(engine) as session:
        seeded = session.scalar(select(func.count()).select_from(models.Practice))
    if not seeded or not keys_file.exists():
        print(f"seeding {size} on {engine.dialect.name} (once)...", flush=True)
        seed(engine, size, keys_file=keys_file, reference_date=REFERENCE)
        if engine.dialect.name == "postgresql":
            # Autovacuum's statistics can lag a bulk load; the plans must be those of a settled table.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("ANALYZE"))
    engine.dispose()
    return json.loads(keys_file.read_text())


def registered_page(url: str) -> tuple[str, str]:
    """The page registered as the partner's trusted document (once), and a new trusted key: (id, key)."""
    settings = Settings(database_url=url, **UNLIMITED)
    checker = documents.DocumentChecker(build_schema(settings)._schema, settings, limit_rules(settings), Authorizer())
    engine = make_sync_engine(url)
    with Session(engine) as session, session.begin():
        documents.register(session, checker, PARTNER, json.dumps({document_id_of(PAGE): PAGE}).encode())
        key = accounts.issue_partner_key(session, PARTNER, label="bench, trusted")
    engine.dispose()
    return document_id_of(PAGE), key.token


def page_variables(url: str, keys: dict[str, Any]) -> dict[str, str]:
    engine = make_sync_engine(url)
    start = datetime.combine(REFERENCE, datetime.min.time(), tzinfo=UTC)
    granted = [g["practice_id"] for g in keys[PARTNER]["grants"]]
    with Session(engine) as session:
        busiest = session.execute(
            select(models.Practice.public_id, func.count())
            .join(models.Appointment, models.Appointment.practice_id == models.Practice.id)
            .where(
                models.Practice.public_id.in_(granted),
                models.Appointment.starts_at >= start,
                models.Appointment.starts_at < start + timedelta(days=31),
            )
            .group_by(models.Practice.public_id)
            .order_by(func.count().desc())
            .limit(1)
        ).one()
    engine.dispose()
    return {"p": busiest[0], "from": start.isoformat(), "to": (start + timedelta(days=31)).isoformat()}


async def interleaved(calls: dict[str, Callable[[], Awaitable[None]]], iterations: int) -> dict[str, dict[str, float]]:
    """Each call timed `iterations` times, the variants taking turns: a machine that slows down for
    a while slows every variant alike, so the ratios of one run stay comparable."""
    for call in calls.values():
        for _ in range(max(5, iterations // 10)):
            await call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(iterations):
        for name, call in calls.items():
            began = time.perf_counter()
            await call()
            samples[name].append((time.perf_counter() - began) * 1000)
    return {
        name: {"median_ms": statistics.median(taken), "p99_ms": sorted(taken)[int(len(taken) * 0.99) - 1]}
        for name, taken in samples.items()
    }


def _with(
    call: Callable[[], Awaitable[None]], module: Any, name: str, replacement: Any
) -> Callable[[], Awaitable[None]]:
    """`call` with `module.name` swapped for its duration: the variants take turns, never overlap."""

    async def swapped() -> None:
        original = getattr(module, name)
        setattr(module, name, replacement)
        try:
            await call()
        finally:
            setattr(module, name, original)

    return swapped


async def _no_ledger(*_: object) -> None:
    """The access record and its disclosures not written (the budget refund still is)."""


def _remembered(authenticate: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Authentication that looks the key up once, with no freshness check: the principal cache's ideal."""
    known: dict[str | None, Any] = {}

    async def remembered(session: Any, token: str | None, now: datetime) -> Any:
        if token not in known:
            known[token] = await authenticate(session, token, now)
        return known[token]

    return remembered


def _asgi_client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")


def _checked(response: httpx.Response) -> None:
    body = response.json()
    if response.status_code != 200 or body.get("errors") or len(body["data"]["appointments"]["edges"]) != 50:
        raise RuntimeError(f"the benchmark page is not a clean 50-row page: {str(body)[:300]}")


def _floor_sql(variables: dict[str, str]) -> Select[Any]:
    """The page as one hand-written join: what the database alone needs."""
    start, end = datetime.fromisoformat(variables["from"]), datetime.fromisoformat(variables["to"])
    return (
        select(models.Appointment, models.Patient, models.Practitioner)
        .join(models.Patient, models.Patient.id == models.Appointment.patient_id)
        .join(models.Practitioner, models.Practitioner.id == models.Appointment.practitioner_id)
        .join(models.Practice, models.Practice.id == models.Appointment.practice_id)
        .where(
            models.Practice.public_id == variables["p"],
            models.Appointment.starts_at >= start,
            models.Appointment.starts_at < end,
        )
        .order_by(models.Appointment.starts_at, models.Appointment.public_id)
        .limit(50)
    )


async def in_process(
    url: str,
    keys: dict[str, Any],
    small_url: str,
    small_keys: dict[str, Any],
    trusted: tuple[str, str],
    iterations: int,
    explained: list[dict[str, Any]] | None = None,
) -> dict[str, dict[str, float]]:
    """The timings of every in-process variant; and, given a list, the plans of the full stack's
    statements appended to it."""
    async with AsyncExitStack() as stack:
        engine = make_async_engine(url)
        stack.push_async_callback(engine.dispose)
        sessions = make_session_factory(engine)
        variables = page_variables(url, keys)
        floor_sql = _floor_sql(variables)

        async def floor() -> None:
            async with sessions() as session:
                assert len((await session.execute(floor_sql)).all()) == 50

        async def over_asgi(
            app: Any, variables: dict[str, str], key: str | None = None, document_id: str | None = None
        ) -> Callable[[], Awaitable[None]]:
            client = await stack.enter_async_context(_asgi_client(app))
            payload, headers = (
                {"documentId": document_id} if document_id else {"query": PAGE},
                {"Authorization": f"Bearer {key}"} if key else {},
            )
            payload["variables"] = variables

            async def call() -> None:
                _checked(await client.post("/graphql", json=payload, headers=headers))

            return call

        apps = {}

        async def full_stack(
            name: str, database_url: str, keys: dict[str, Any], settings: dict[str, Any] | None = None, **variant: Any
        ) -> Callable[[], Awaitable[None]]:
            apps[name] = app = create_app(
                Settings(database_url=database_url, secret_key="bench", **UNLIMITED, **(settings or {})),
                clock=shifted(CLOCK_OFFSET),
                **variant,
            )
            stack.push_async_callback(app.state.engine.dispose)
            # the key cache's PostgreSQL listener, as the lifespan starts it (ASGITransport runs none)
            await app.state.principals.start()
            stack.push_async_callback(app.state.principals.stop)
            if isinstance(listener := app.state.principals.freshness, principal_cache_module.Notifications):
                await listener.wait_listening(30)
            return await over_asgi(app, page_variables(database_url, keys), keys[PARTNER]["key"])

        async with sessions() as session:
            memory_context = await in_memory_context(session, variables)
        bare = bare_schema(caches=True)

        async def memory() -> None:
            result = await bare.execute(PAGE, variable_values=variables, context_value=memory_context())
            assert not result.errors and len(result.data["appointments"]["edges"]) == 50  # type: ignore[index]

        calls = {
            "floor": floor,
            "memory": memory,
            "bare": await over_asgi(bare_asgi(sessions, True), variables),
            "bare-nocache": await over_asgi(bare_asgi(sessions, False), variables),
            "no-authz": await full_stack("no-authz", url, keys, authorizer=OpenAuthorizer()),
            "no-cost": await full_stack(
                "no-cost", url, keys, schema=build_schema(Settings(database_url=url), cost_analysis=False)
            ),
            "full": await full_stack("full", url, keys),
            "full-uncached": await full_stack("full-uncached", url, keys, settings={"principal_cache": False}),
            "full-10k": await full_stack("full-10k", small_url, small_keys),
        }
        # The same page as a registered document, by id: through the general executor (an app with the
        # compiled plans off), and through its compiled plan on the full app (same worker, same caches).
        document_id, trusted_key = trusted
        await full_stack("general", url, keys, settings={"compiled_plans": False})
        calls["trusted"] = await over_asgi(apps["general"], page_variables(url, keys), trusted_key, document_id)
        calls["trusted-compiled"] = await over_asgi(apps["full"], page_variables(url, keys), trusted_key, document_id)
        # Two more parts priced alone, on the full app: the access ledger, and the key's lookup.
        calls["no-ledger"] = _with(calls["full"], ledger, "write", _no_ledger)
        calls["no-key-lookup"] = _with(
            calls["full"],
            apps["full"].state.principals,
            "authenticate",
            _remembered(apps["full"].state.principals.authenticate),
        )
        # every variant's long-lived objects, as the API's lifespan does in a server (ASGITransport runs none)
        gc.freeze()
        results = await interleaved(calls, iterations)
        if explained is not None:  # warm by now, as the timings were
            full_engine = apps["full"].state.engine
            explained += await explain.explain(full_engine, await explain.capture(full_engine, calls["full"]))
        return results


def database_urls(kind: str, stack: ExitStack) -> dict[str, Callable[[str], str]]:
    urls: dict[str, Callable[[str], str]] = {}
    if kind in ("sqlite", "both"):
        DATA.mkdir(parents=True, exist_ok=True)
        urls["sqlite"] = lambda size: f"sqlite:///{DATA / f'{size}.db'}"
    if kind in ("postgresql", "both"):
        admin = os.environ.get("PARTNER_API_BENCH_POSTGRES_URL")
        if admin is None:
            from tests.postgres_server import postgres_server

            admin = stack.enter_context(postgres_server(keep_in=DATA / "postgresql"))
        admin_engine = make_sync_engine(admin).execution_options(isolation_level="AUTOCOMMIT")

        def pg(size: str) -> str:
            name = f"bench_{size}"
            with admin_engine.connect() as connection:
                if not connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first():
                    connection.execute(text(f"CREATE DATABASE {name}"))
            return admin.rsplit("/", 1)[0] + f"/{name}"

        urls["postgresql"] = pg
    return urls


def page_plan(url: str, document_id: str) -> str:
    """Whether the registered page runs through a compiled plan, or why it falls back to the general
    executor (then `trusted-compiled` is not), as the operators' `documents show` says it."""
    shown = subprocess.run(
        [PARTNER_API, "documents", "show", PARTNER, document_id],
        env=partner_api_env(url),
        capture_output=True,
        text=True,
    )
    plan = [line.split(None, 1)[1] for line in shown.stdout.splitlines() if line.startswith("plan ")]
    return (
        plan[0]
        if plan
        else f"unknown (`partner-api documents show` said: {(shown.stderr or shown.stdout).strip()[-300:]})"
    )


def over_http(url: str, keys: dict[str, Any], trusted: tuple[str, str], seconds: int) -> dict[str, dict[str, Any]]:
    """Each HTTP variant (bench/http_load.py) with 1 and 2 workers, under the names `http-<variant>-<n>w`."""
    document_id, trusted_key = trusted
    variables = page_variables(url, keys)
    measured = {}
    for workers in (1, 2):
        for variant in http_load.VARIANTS:
            name = f"http-{variant.name}-{workers}w"
            print(f"  {name}...", file=sys.stderr, flush=True)
            measured[name] = http_load.load(
                variant,
                url,
                UNLIMITED,
                CLOCK_OFFSET,
                variant.payload(PAGE, document_id, variables),
                trusted_key if variant.by_id else keys[PARTNER]["key"],
                workers,
                seconds,
            )
    return measured


def database_version(url: str) -> str:
    engine = make_sync_engine(url)
    with engine.connect() as connection:
        version = str(connection.execute(text("SHOW server_version")).scalar_one())
    engine.dispose()
    return version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="large", choices=["medium", "large"])
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgresql", "both"])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--http", action="store_true", help="also load-test over loopback with wrk")
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    args = parser.parse_args()
    if args.http and shutil.which("wrk") is None:
        parser.error("--http needs wrk: apt-get install wrk")
    started = time.perf_counter()
    command = " ".join(["python -m bench.run", *sys.argv[1:]])
    report: dict[str, Any] = {
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": report_module.machine(),
        "size": args.size,
        "databases": {},
        "plans": {},
        "conditions": {},
        "page_plan": {},
    }
    RESULTS.mkdir(exist_ok=True)
    with ExitStack() as stack:
        for db, url_for in database_urls(args.db, stack).items():
            url, small_url = url_for(args.size), url_for("10k")
            keys, small_keys = prepare(url, args.size), prepare(small_url, "10k")
            if db == "postgresql":
                report["machine"]["postgresql"] = database_version(url)
            trusted = registered_page(url)
            report["page_plan"][db] = page_plan(url, trusted[0])
            explained: list[dict[str, Any]] = []
            print(f"{db}: in process, {args.iterations} turns...", file=sys.stderr, flush=True)
            results: dict[str, dict[str, Any]] = dict(
                asyncio.run(in_process(url, keys, small_url, small_keys, trusted, args.iterations, explained))
            )
            if args.http:
                results.update(over_http(url, keys, trusted, args.seconds))
            report["databases"][db] = results
            report["plans"][db] = explain.summary(explained)
            report["conditions"][db] = [asdict(c) for c in conditions(db, args.size, results, report["page_plan"][db])]
            explain.write(RESULTS / f"plans-{db}.txt", db, args.size, explained)
    report["policy"] = policy.measure()
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    seconds = round(time.perf_counter() - started)
    for db in report["databases"]:
        (RESULTS / f"run-{db}-{args.size}.md").write_text(report_module.markdown(report, db, command, seconds))
    print(report_module.render(report))
    print(policy.render(report["policy"]))


if __name__ == "__main__":
    main()
