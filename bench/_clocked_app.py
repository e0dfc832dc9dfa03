"""The app for `uvicorn --factory --workers N` on the simulation's clock: the system time shifted to
the data's reference day, by an offset the parent computed once (so that every worker agrees).

Used by bench/extraction.py's two-worker scenario on PostgreSQL and bench/http_load.py's servers (bench.run --http);
`partner-api serve` has no such option on purpose: production reads the system clock.
"""

from __future__ import annotations

import os
from datetime import timedelta

from starlette.applications import Starlette

from api.clock import shifted
from api.http.app import create_app

OFFSET_SECONDS = "PARTNER_API_BENCH_CLOCK_OFFSET_SECONDS"


def create() -> Starlette:
    return create_app(clock=shifted(timedelta(seconds=float(os.environ[OFFSET_SECONDS]))))
