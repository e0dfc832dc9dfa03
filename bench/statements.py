"""Where a page's time goes in the database: each SQL statement of the benchmark's page, timed.

    python -m bench.statements [--db sqlite|postgresql] [--size medium] [--requests 200] [--as text|id]

Serves the benchmark's page (bench/run.py: the same data set, clock and key) in process, `--as id`
by its registered document with the trusted key (its compiled plan), `--as text` as text with the
open key, and prints the median time of the whole request, then of each statement the request
issues (from SQLAlchemy's cursor events: the round trip, the driver's thread hand-offs included),
how many of each per request, and the commits per request. The key cache's listener is started, as
a served worker's lifespan does.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import defaultdict
from contextlib import ExitStack
from typing import Any

from sqlalchemy import event

from api.clock import shifted
from api.http.app import create_app
from api.settings import Settings
from bench import run


async def measure(url: str, size: str, requests: int, by_id: bool) -> str:
    keys = run.prepare(url, size)
    document_id, trusted_key = run.registered_page(url)
    app = create_app(Settings(database_url=url, secret_key="bench", **run.UNLIMITED), clock=shifted(run.CLOCK_OFFSET))
    await app.state.principals.start()
    variables = run.page_variables(url, keys)
    if by_id:
        payload, key = {"documentId": document_id, "variables": variables}, trusted_key
    else:
        payload, key = {"query": run.PAGE, "variables": variables}, keys[run.PARTNER]["key"]
    headers = {"Authorization": f"Bearer {key}"}
    started: dict[int, float] = {}
    spent: dict[str, list[float]] = defaultdict(list)
    commits: list[int] = []
    engine = app.state.engine.sync_engine

    def before(_conn: Any, cursor: Any, *_: Any) -> None:
        started[id(cursor)] = time.perf_counter()

    def after(_conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        spent[" ".join(statement.split())[:72]].append(time.perf_counter() - started.pop(id(cursor)))

    async with run._asgi_client(app) as client:
        for _ in range(20):  # warm: caches, prepared statements, the patients' first disclosure
            run._checked(await client.post("/graphql", json=payload, headers=headers))
        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        event.listen(engine, "commit", lambda _conn: commits.append(1))
        taken = []
        for _ in range(requests):
            began = time.perf_counter()
            run._checked(await client.post("/graphql", json=payload, headers=headers))
            taken.append(time.perf_counter() - began)
    await app.state.principals.stop()
    await app.state.engine.dispose()
    lines = [f"{engine.dialect.name}, the page {'by id' if by_id else 'as text'}: {requests} requests"]
    lines.append(f"  request            median {statistics.median(taken) * 1000:7.2f} ms")
    for statement, times in spent.items():
        lines.append(
            f"  {len(times) / requests:.1f}/request  median {statistics.median(times) * 1000:7.2f} ms  {statement}"
        )
    lines.append(
        f"  {sum(statistics.median(t) * len(t) for t in spent.values()) / requests * 1000:.2f} ms in "
        f"statements per request, {len(commits) / requests:.1f} commits per request"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--size", default="medium", choices=["medium", "large"])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--as", dest="sent_as", default="id", choices=["id", "text"])
    args = parser.parse_args()
    with ExitStack() as stack:
        url = run.database_urls(args.db, stack)[args.db](args.size)
        print(asyncio.run(measure(url, args.size, args.requests, args.sent_as == "id")))


if __name__ == "__main__":
    main()
