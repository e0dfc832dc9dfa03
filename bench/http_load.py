"""The benchmark page over HTTP: requests per second and latency over loopback, measured by wrk
against a server in its own processes (uvicorn, 1 or 2 workers).

Each variant is a server and the request it is sent:
  full              the API, the page as text with the partner's open key (the general executor)
  trusted-compiled  the API, the page as a registered document by id with a trusted key (its compiled plan)
  bare              bare strawberry with its parser and validation caches
  bare-nocache      bare strawberry without them (a default strawberry app)
Only clean answers are throughput: a refusal (non-2xx) or an answer carrying `errors` is counted
apart, by the Lua script's `response` hook. Each run also says where the machine's CPU went
(`cpu_usage`): the server's processes' CPU per answer, and how busy all cores were (the server, wrk
and, on PostgreSQL, its server share them): a second worker cannot add what no core has left. A
server that does not start, or that does not answer the page cleanly before the load, is reported
as such, with the end of its output.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import _clocked_app
from tests.server_process import LOOPBACK, partner_api_env, running_server

__all__ = ["VARIANTS", "Variant", "load", "lua_script", "parse_wrk", "wrk_version"]

WARM_UP_SECONDS = 3


@dataclass(frozen=True)
class Variant:
    name: str
    target: str  # uvicorn's factory, module:callable
    by_id: bool  # the page sent as its registered document's id, with the trusted key

    def payload(self, page: str, document_id: str, variables: dict[str, str]) -> dict[str, Any]:
        return (
            {"documentId": document_id, "variables": variables}
            if self.by_id
            else {"query": page, "variables": variables}
        )


VARIANTS = (
    Variant("full", "bench._clocked_app:create", by_id=False),
    Variant("trusted-compiled", "bench._clocked_app:create", by_id=True),
    Variant("bare", "bench.bare_app:with_caches", by_id=False),
    Variant("bare-nocache", "bench.bare_app:without_caches", by_id=False),
)


def lua_script(payload: dict[str, Any], key: str) -> str:
    """wrk's script: POST the payload with the key, and count the answers that carry errors.

    The body is a Lua long string, which takes its content verbatim (no escaping to get wrong),
    at a bracket level the JSON does not contain."""
    body = json.dumps(payload)
    level = next(n for n in range(1, 100) if f"]{'=' * n}]" not in body)
    return f"""wrk.method = "POST"
wrk.body = [{"=" * level}[{body}]{"=" * level}]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"

local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) with_errors = 0 end
function response(status, headers, body)
  if status >= 200 and status < 300 and string.find(body, '"errors"', 1, true) then
    with_errors = with_errors + 1
  end
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("with_errors") end
  io.write(string.format("Answered with errors: %d\\n", total))
end
"""


def parse_wrk(out: str) -> dict[str, float]:
    """wrk's summary as numbers: requests per second of clean answers, p50 and p99 in ms."""

    def ms(value: str) -> float:
        for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60_000.0)):
            if value.endswith(unit):
                return float(value[: -len(unit)]) * factor
        raise ValueError(f"not a wrk duration: {value}")

    result: dict[str, float] = {"non_2xx": 0, "with_errors": 0}
    requests, seconds = 0, 0.0
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[1:3] == ["requests", "in"]:  # "1234 requests in 10.01s, 5.6MB read"
            requests, seconds = int(parts[0]), ms(parts[3].rstrip(",")) / 1000
        elif parts[:1] == ["50%"]:
            result["p50_ms"] = ms(parts[1])
        elif parts[:1] == ["99%"]:
            result["p99_ms"] = ms(parts[1])
        elif "Non-2xx" in line:
            result["non_2xx"] = float(parts[-1])
        elif line.startswith("Answered with errors:"):
            result["with_errors"] = float(parts[-1])
    if not seconds:
        raise ValueError(f"wrk printed no summary: {out[-500:]}")
    # Refusals are not throughput: only clean pages count.
    result["requests_per_second"] = round((requests - result["non_2xx"] - result["with_errors"]) / seconds, 2)
    return result


def wrk_version() -> str:
    if shutil.which("wrk") is None:
        return "missing"
    printed = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()
    return printed[0].split(" [")[0].removeprefix("wrk ") if printed else "unknown"


def _clean_page(response: httpx.Response) -> str | None:
    """Why the answer is not the benchmark's clean 50-row page, or None."""
    try:
        body = response.json()
        if response.status_code == 200 and not body.get("errors") and len(body["data"]["appointments"]["edges"]) == 50:
            return None
    except (ValueError, KeyError, TypeError):
        pass
    return f"HTTP {response.status_code}: {response.text[:300]}"


def load(
    variant: Variant,
    database_url: str,
    settings: dict[str, Any],
    clock_offset: timedelta,
    payload: dict[str, Any],
    key: str,
    workers: int,
    seconds: int,
) -> dict[str, Any]:
    """wrk's figures for the variant with `workers` workers, or {"error": why} when there are none."""
    env = partner_api_env(
        database_url,
        secret_key="bench",
        log_level="warning",
        **{name: str(value) for name, value in settings.items()},
    )
    env[_clocked_app.OFFSET_SECONDS] = str(clock_offset.total_seconds())

    def command(port: int) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", variant.target, "--factory", "--host", LOOPBACK, "--port", str(port),
            "--workers", str(workers), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip

    script = Path(tempfile.mkstemp(prefix="bench-", suffix=".lua")[1])
    script.write_text(lua_script(payload, key))
    try:
        with running_server(command, env) as server:
            unclean = _clean_page(
                httpx.post(
                    f"{server.base}/graphql", json=payload, headers={"Authorization": f"Bearer {key}"}, timeout=60
                )
            )
            if unclean:
                return {"error": f"the server does not answer the page cleanly: {unclean}"}
            url = f"{server.base}/graphql"
            subprocess.run(["wrk", "-t1", "-c8", f"-d{WARM_UP_SECONDS}s", "-s", str(script), url], capture_output=True)
            before = _CpuUse.now(server.pid)
            ran = subprocess.run(
                ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", "-s", str(script), url],
                capture_output=True,
                text=True,
            )
            used = _CpuUse.now(server.pid) - before
        if ran.returncode != 0:
            return {"error": f"wrk failed ({ran.returncode}): {(ran.stderr or ran.stdout)[-500:]}"}
        measured = parse_wrk(ran.stdout)
        return {**measured, **used.usage(measured)}
    except (RuntimeError, AssertionError) as failed:  # tests.server_process: exited, or never ready
        return {"error": f"the server did not start: {_last_lines(str(failed))}"}
    except httpx.HTTPError as failed:
        return {"error": f"the server did not answer: {failed!r}"}
    finally:
        script.unlink()


@dataclass(frozen=True)
class _CpuUse:
    """CPU seconds so far: of the machine's cores (busy, and all), of the server's processes, of wrk;
    and the time."""

    busy: float
    total: float
    server: float
    wrk: float
    at: float

    @classmethod
    def now(cls, server_pid: int) -> _CpuUse:
        with open("/proc/stat") as stat:
            jiffies = [int(n) for n in stat.readline().split()[1:]]
        idle = jiffies[3] + jiffies[4]  # idle, iowait
        tick = os.sysconf("SC_CLK_TCK")
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the wrk runs waited for
        return cls(
            (sum(jiffies) - idle) / tick,
            sum(jiffies) / tick,
            sum(_process_seconds(pid) for pid in _tree(server_pid)),
            children.ru_utime + children.ru_stime,
            time.monotonic(),
        )

    def __sub__(self, earlier: _CpuUse) -> _CpuUse:
        return _CpuUse(*(a - b for a, b in zip(asdict(self).values(), asdict(earlier).values(), strict=True)))

    def usage(self, measured: dict[str, float]) -> dict[str, Any]:
        answers = measured["requests_per_second"] * self.at
        return {
            "cpu_usage": {
                "cores_busy": round(self.busy / self.total, 3) if self.total else None,
                "server_ms_per_answer": round(1000 * self.server / answers, 2) if answers else None,
                "wrk_share": round(self.wrk / self.busy, 3) if self.busy else None,
                "server_share": round(self.server / self.busy, 3) if self.busy else None,
            }
        }


def _tree(pid: int) -> list[int]:
    """The process and its descendants (uvicorn's workers)."""
    parents: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        fields = _stat(int(entry))
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry))  # its parent's pid
    tree, todo = [], [pid]
    while todo:
        tree.append(current := todo.pop())
        todo += parents.get(current, [])
    return tree


def _process_seconds(pid: int) -> float:
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command's name (its state first), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _last_lines(text: str, count: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-count:])
