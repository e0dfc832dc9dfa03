"""bench/run.py's report: the machine, the absolute figures (ms, req/s), the ratios, and issue 15's
"Done when" line by line; printed, and as markdown for bench/results/run-<db>-<size>.md."""

from __future__ import annotations

import os
import platform
import sqlite3
from pathlib import Path
from typing import Any

from bench import explain
from bench.conditions import Condition, line
from bench.http_load import wrk_version

__all__ = ["machine", "markdown", "render"]

# Each protection's price: the full stack against the variant without it.
PARTS = (
    ("authorization", "no-authz"),
    ("cost analysis", "no-cost"),
    ("access ledger", "no-ledger"),
    ("key lookup", "no-key-lookup"),
)


def machine() -> dict[str, Any]:
    """What the figures were measured on (the databases' versions are added per database run)."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(terse=True),
        "sqlite": sqlite3.sqlite_version,
        "wrk": wrk_version(),
        # The machine may be shared: how busy it was when the run began (1-minute load average).
        "load_at_start": round(os.getloadavg()[0], 1),
    }


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for info in cpuinfo.read_text().splitlines():
            if info.startswith("model name"):
                return info.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _machine_line(report: dict[str, Any]) -> str:
    m = report["machine"]
    databases = [f"SQLite {m['sqlite']}"] + ([f"PostgreSQL {m['postgresql']}"] if m.get("postgresql") else [])
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['system']}, Python {m['python']}, {', '.join(databases)}, "
        f"wrk {m['wrk']}, load {m.get('load_at_start', '?')} at start"
    )


def _conditions(report: dict[str, Any], db: str) -> list[Condition]:
    return [Condition(**c) for c in report["conditions"][db]]


def _http_line(name: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{name:<27} not measured: {r['error']}"
    uncounted = [
        f"{r[k]:.0f} {what}" for k, what in (("non_2xx", "refused"), ("with_errors", "with errors")) if r.get(k)
    ]
    return (
        f"{name:<27} {r['requests_per_second']:>8.1f} req/s  p50 {r.get('p50_ms', 0):.1f} ms  p99 "
        f"{r.get('p99_ms', 0):.1f} ms  {_cpu(r)}" + (f"  ({', '.join(uncounted)}: not counted)" if uncounted else "")
    )


def _cpu(r: dict[str, Any]) -> str:
    """Where the CPU went during a run (bench/http_load.py `cpu_usage`)."""
    usage = r.get("cpu_usage") or {}
    if usage.get("server_ms_per_answer") is None or usage.get("cores_busy") is None:
        return "CPU not measured"
    return (
        f"server CPU {usage['server_ms_per_answer']:.2f} ms/answer, cores {100 * usage['cores_busy']:.0f}% busy "
        f"(server {100 * usage['server_share']:.0f}%, wrk {100 * usage['wrk_share']:.0f}% of it)"
    )


def render(report: dict[str, Any]) -> str:
    lines = [f"{report['taken_at']} · data set {report['size']} · {_machine_line(report)}"]
    for db, results in report["databases"].items():
        base, floor = results["bare"]["median_ms"], results["floor"]["median_ms"]
        lines.append(f"\n{db:<27} {'median ms':>10} {'p99 ms':>9} {'x bare':>8} {'x floor':>8}")
        for name, r in results.items():
            if "median_ms" in r:
                lines.append(
                    f"{name:<27} {r['median_ms']:>10.2f} {r['p99_ms']:>9.2f} {r['median_ms'] / base:>8.2f} "
                    f"{r['median_ms'] / floor:>8.2f}"
                )
        cpu_floor = floor + results["memory"]["median_ms"]
        lines.append(
            f"CPU floor (floor + memory) {cpu_floor:.2f} ms; full / CPU floor: "
            f"{results['full']['median_ms'] / cpu_floor:.2f}x"
        )
        for part, without in PARTS:
            lines.append(
                f"{part} overhead (full / {without}): "
                f"{results['full']['median_ms'] / results[without]['median_ms']:.2f}x"
            )
        lines.append(
            f"registered document by id (trusted / full, same page as text): "
            f"{results['trusted']['median_ms'] / results['full']['median_ms']:.2f}x"
        )
        lines.append(
            f"against the raw SQL floor: full {results['full']['median_ms'] / floor:.2f}x, trusted (general executor) "
            f"{results['trusted']['median_ms'] / floor:.2f}x, trusted-compiled "
            f"{results['trusted-compiled']['median_ms'] / floor:.2f}x; the page's plan: {report['page_plan'][db]}"
        )
        lines.append(
            f"principal cache (full-uncached / full): "
            f"{results['full-uncached']['median_ms'] / results['full']['median_ms']:.2f}x"
        )
        lines.append(
            f"table size (full on {report['size']} / full on 10k): "
            f"{results['full']['median_ms'] / results['full-10k']['median_ms']:.2f}x"
        )
        plans = report["plans"].get(db, [])
        scans = "; ".join(f"{p['table']} ({', '.join(p['full_scans'])})" for p in plans if p["large_table_full_scan"])
        lines.append(f"full scans of a large table, in {len(plans)} reads explained: {scans or 'none'}")
        if db == "postgresql":
            slow = "; ".join(explain.slow_cached_plans(plans))
            lines.append(f"cached (generic) plans over 3x slower than as sent: {slow or 'none'}")
        http = {name: r for name, r in results.items() if name.startswith("http-")}
        if http:
            lines.append(f"\nover HTTP ({db}, wrk: 2 threads, 16 connections)")
            lines += [_http_line(name, r) for name, r in http.items()]
        lines.append(f"\nissue 15, done when ({db}, {report['size']}):")
        lines += ["  " + line(c) for c in _conditions(report, db)]
    return "\n".join(lines)


def markdown(report: dict[str, Any], db: str, command: str, seconds: int) -> str:
    """One database's run, as bench/results/run-<db>-<size>.md."""
    results = report["databases"][db]
    base, floor = results["bare"]["median_ms"], results["floor"]["median_ms"]
    rows = [
        "| in process | median ms | p99 ms | x bare (caches) | x floor |",
        "| --- | --- | --- | --- | --- |",
    ] + [
        f"| {name} | {r['median_ms']:.2f} | {r['p99_ms']:.2f} | {r['median_ms'] / base:.2f} "
        f"| {r['median_ms'] / floor:.2f} |"
        for name, r in results.items()
        if "median_ms" in r
    ]
    http = {name: r for name, r in results.items() if name.startswith("http-")}
    if http:
        rows += [
            "",
            "| over HTTP (wrk, 16 connections) | req/s | p50 ms | p99 ms | not counted | CPU during the run |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, r in http.items():
            if "error" in r:
                rows.append(f"| {name} | not measured: {r['error']} | | | | |")
            else:
                rows.append(
                    f"| {name} | {r['requests_per_second']:.1f} | {r.get('p50_ms', 0):.1f} | {r.get('p99_ms', 0):.1f} "
                    f"| {r['non_2xx'] + r.get('with_errors', 0):.0f} | {_cpu(r)} |"
                )
    verdicts = [f"- {c.text}: {c.measured}, {c.verdict}" for c in _conditions(report, db)]
    return (
        f"`{command}` ({seconds} s), {report['taken_at']}\n\n"
        f"{_machine_line(report)}; data set {report['size']}; the page: {report['page_plan'][db]}\n\n"
        + "\n".join(rows)
        + '\n\nIssue 15\'s "Done when":\n\n'
        + "\n".join(verdicts)
        + "\n"
    )
