"""bench/conditions.py on fixed figures: each condition of issue 15's "Done when" says holds, does
not hold, or not measured, from the numbers of one run; and wrk's summary counts only clean pages."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from bench.conditions import READ_IN_ONE_STATEMENT, Condition, conditions, line
from bench.http_load import VARIANTS, _CpuUse, _tree, parse_wrk
from bench.report import markdown, render

HTTP_1W = {"full": 40.0, "trusted-compiled": 300.0, "bare": 90.0, "bare-nocache": 80.0}


def run(**changed: float) -> dict[str, Any]:
    """One database's results in which every condition holds, but for the figures `changed`
    (in-process medians by variant name; `http_<variant>_<n>w` for requests per second)."""
    medians = {
        "floor": 10.0, "memory": 5.0, "bare": 20.0, "bare-nocache": 23.0, "no-authz": 21.5, "no-cost": 20.0,
        "full": 22.0, "full-10k": 21.0, "trusted": 21.0, "trusted-compiled": 19.0, "no-ledger": 20.0,
        "no-key-lookup": 21.0, "full-uncached": 22.5,
    }  # fmt: skip
    results: dict[str, Any] = {}
    for name, ms in medians.items():
        ms = changed.pop(name.replace("-", "_"), ms)
        results[name] = {"median_ms": ms, "p99_ms": ms * 1.5}
    for workers in (1, 2):
        for variant, rps in HTTP_1W.items():
            name = f"http-{variant}-{workers}w"
            rps = changed.pop(name.replace("-", "_"), rps * (1.8 if workers == 2 else 1))
            results[name] = {"requests_per_second": rps, "p50_ms": 100.0, "p99_ms": 300.0, "non_2xx": 0}
    assert not changed, f"no such figure: {changed}"
    return results


def verdicts(db: str, results: dict[str, Any], page_plan: str = READ_IN_ONE_STATEMENT) -> dict[str, bool | None]:
    return {c.text: c.holds for c in conditions(db, "medium", results, page_plan)}


def test_every_condition_of_the_issue_is_stated_once_per_database():
    assert list(verdicts("sqlite", run())) == [
        "the page is read in one statement by its compiled plan",
        "trusted-compiled / floor, in-process <= 2x",
        "HTTP 1 worker: trusted-compiled / bare (caches), req/s >= 3x",
        "full / bare (caches), in-process <= 1.15x",
        "HTTP: 2 workers / 1 worker, full >= 1.7x",
        "HTTP: 2 workers / 1 worker, trusted-compiled >= 1.7x",
        "HTTP: 2 workers / 1 worker, bare >= 1.7x",
        "HTTP: 2 workers / 1 worker, bare-nocache >= 1.7x",
    ]
    postgresql = verdicts("postgresql", run())
    assert "PostgreSQL: full / no-authz <= 1.05x" in postgresql
    assert "PostgreSQL: full (medium) / full-10k <= 1.1x" in postgresql
    assert all(postgresql.values())


@pytest.mark.parametrize(
    ("changed", "condition"),
    [
        ({"trusted_compiled": 20.01}, "trusted-compiled / floor, in-process <= 2x"),
        ({"http_trusted_compiled_1w": 269.9}, "HTTP 1 worker: trusted-compiled / bare (caches), req/s >= 3x"),
        ({"full": 23.1, "no_authz": 23.0, "full_10k": 23.0}, "full / bare (caches), in-process <= 1.15x"),
        ({"no_authz": 20.9}, "PostgreSQL: full / no-authz <= 1.05x"),
        ({"full_10k": 19.9}, "PostgreSQL: full (medium) / full-10k <= 1.1x"),
        ({"http_full_2w": 67.9}, "HTTP: 2 workers / 1 worker, full >= 1.7x"),
        ({"http_bare_nocache_2w": 135.0}, "HTTP: 2 workers / 1 worker, bare-nocache >= 1.7x"),
    ],
)
def test_a_ratio_past_its_bound_does_not_hold_and_only_that_one(changed, condition):
    found = verdicts("postgresql", run(**changed))
    assert found.pop(condition) is False
    assert all(found.values())


def test_a_ratio_on_its_bound_holds():
    on_the_bounds = run(trusted_compiled=20.0, full=23.0, http_trusted_compiled_1w=270.0, http_full_2w=68.0)
    assert all(verdicts("sqlite", on_the_bounds).values())


def test_a_page_that_falls_back_to_the_general_executor_is_said_so():
    found = verdicts("sqlite", run(), page_plan="general executor (fragments)")
    assert found["the page is read in one statement by its compiled plan"] is False
    found = verdicts("sqlite", run(), page_plan="compiled, read through the resolvers (Practice.practitioners ...)")
    assert found["the page is read in one statement by its compiled plan"] is False


def test_figures_not_measured_are_never_a_pass():
    without_http = {name: r for name, r in run().items() if not name.startswith("http-")}
    found = verdicts("sqlite", without_http)
    assert {text for text, holds in found.items() if holds is None} == {text for text in found if "HTTP" in text}
    a_server_that_did_not_start = run() | {"http-bare-1w": {"error": "the server did not start: ..."}}
    found = verdicts("sqlite", a_server_that_did_not_start)
    assert found["HTTP 1 worker: trusted-compiled / bare (caches), req/s >= 3x"] is None
    assert found["HTTP: 2 workers / 1 worker, bare >= 1.7x"] is None
    no_clean_page_at_all = run(http_bare_1w=0.0)
    assert (
        verdicts("sqlite", no_clean_page_at_all)["HTTP 1 worker: trusted-compiled / bare (caches), req/s >= 3x"] is None
    )


def test_each_condition_is_one_aligned_line():
    holds, fails, unmeasured = (
        Condition("full / bare (caches), in-process <= 1.15x", "1.10x", True),
        Condition("trusted-compiled / floor, in-process <= 2x", "4.19x", False),
        Condition("HTTP: 2 workers / 1 worker, full >= 1.7x", "-", None),
    )
    assert line(holds).endswith(" 1.10x  holds")
    assert line(fails).endswith(" 4.19x  does not hold")
    assert line(unmeasured).endswith(" -  not measured")
    assert len({line(c).index(c.measured) for c in (holds, fails, unmeasured)}) == 1
    assert line(fails).startswith("trusted-compiled / floor, in-process <= 2x ....")


def test_the_report_names_the_machine_a_server_that_did_not_start_and_every_condition():
    results = run() | {"http-full-2w": {"error": "the server did not start: Could not import module"}}
    report = {
        "taken_at": "2026-11-30T07:00:00+00:00",
        "machine": {"cpu": "AMD EPYC", "cores": 2, "python": "3.12.1", "system": "Linux", "sqlite": "3.40.1",
                    "postgresql": "16.4", "wrk": "4.1.0", "load_at_start": 3.5},
        "size": "medium",
        "databases": {"postgresql": results},
        "plans": {"postgresql": []},
        "conditions": {
            "postgresql": [vars(c) for c in conditions("postgresql", "medium", results, READ_IN_ONE_STATEMENT)]
        },
        "page_plan": {"postgresql": READ_IN_ONE_STATEMENT},
    }  # fmt: skip
    for text in (render(report), markdown(report, "postgresql", "python -m bench.run --db postgresql", 60)):
        assert "AMD EPYC, 2 cores" in text and "PostgreSQL 16.4" in text and "Python 3.12.1" in text
        assert "load 3.5 at start" in text
        assert "http-full-2w" in text and "the server did not start: Could not import module" in text
        for c in report["conditions"]["postgresql"]:
            assert c["text"] in text


WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:41000/graphql
  2 threads and 16 connections
  Latency Distribution
     50%  409.35ms
     75%  450.10ms
     90%  500.00ms
     99%    1.31s
  210 requests in 5.02s, 4.10MB read
  Non-2xx or 3xx responses: 4
Requests/sec:     41.83
Answered with errors: 6
"""


def test_wrk_counts_only_clean_pages_as_throughput():
    measured = parse_wrk(WRK_OUTPUT)
    assert measured["requests_per_second"] == round(200 / 5.02, 2)
    assert (measured["non_2xx"], measured["with_errors"]) == (4, 6)
    assert (measured["p50_ms"], measured["p99_ms"]) == (409.35, 1310.0)


def test_the_http_variants_are_the_ones_the_conditions_read():
    from bench.conditions import HTTP_VARIANTS

    assert tuple(v.name for v in VARIANTS) == HTTP_VARIANTS


def test_the_report_says_where_the_cpu_went_during_each_http_run():
    results = run()
    results["http-trusted-compiled-2w"]["cpu_usage"] = {
        "cores_busy": 0.97, "server_ms_per_answer": 5.61, "wrk_share": 0.04, "server_share": 0.81,
    }  # fmt: skip
    row = next(line for line in markdown_of(results).splitlines() if line.startswith("| http-trusted-compiled-2w "))
    assert "server CPU 5.61 ms/answer, cores 97% busy (server 81%, wrk 4% of it)" in row
    assert "CPU not measured" in next(line for line in markdown_of(results).splitlines() if "http-bare-1w" in line)


def markdown_of(results: dict[str, Any]) -> str:
    report = {
        "taken_at": "2026-11-30T07:00:00+00:00", "size": "medium",
        "machine": {"cpu": "AMD EPYC", "cores": 2, "system": "Linux", "python": "3.12.1", "sqlite": "3.40.1",
                    "wrk": "4.1.0"},
        "databases": {"sqlite": results}, "plans": {"sqlite": []},
        "conditions": {"sqlite": [vars(c) for c in conditions("sqlite", "medium", results, READ_IN_ONE_STATEMENT)]},
        "page_plan": {"sqlite": READ_IN_ONE_STATEMENT},
    }  # fmt: skip
    return markdown(report, "sqlite", "python -m bench.run", 60)


def test_a_run_counts_the_cpu_of_the_server_and_its_workers():
    """The server's CPU is its process tree's: uvicorn's workers are its children."""
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE) as child:
        try:
            assert {os.getpid(), child.pid} <= set(_tree(os.getpid()))
            assert _tree(child.pid) == [child.pid]  # a process without children is its own tree
        finally:
            child.communicate(b"")
    earlier = _CpuUse(busy=10.0, total=40.0, server=2.0, wrk=1.0, at=100.0)
    later = _CpuUse(busy=25.0, total=60.0, server=14.0, wrk=2.5, at=110.0)
    assert (later - earlier).usage({"requests_per_second": 120.0})["cpu_usage"] == {
        "cores_busy": 0.75, "server_ms_per_answer": 10.0, "wrk_share": 0.1, "server_share": 0.8,
    }  # fmt: skip
