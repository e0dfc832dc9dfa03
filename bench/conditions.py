"""Issue 15's "Done when", as ratios of one benchmark run: each condition one line, holds or not.

The conditions hold for the medium and the large data set alike (one run per size), and on both
databases unless a line names one. A figure the run did not measure (no --http, a server that did
not start) is "not measured", never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Condition", "conditions", "line"]

HTTP_VARIANTS = ("full", "trusted-compiled", "bare", "bare-nocache")
READ_IN_ONE_STATEMENT = "compiled, read in one statement"  # `partner-api documents show`: api/compiled/plan.py
WIDTH = 62  # where the dots end, so that the figures line up


@dataclass(frozen=True)
class Condition:
    """One condition: what is compared, against which bound, what the run measured and whether it holds.

    Example: `Condition("full / bare (caches), in-process <= 1.15x", "1.32x", False)`."""

    text: str
    measured: str  # "1.32x"; why not, when it was not measured
    holds: bool | None  # None: not measured

    @property
    def verdict(self) -> str:
        return {True: "holds", False: "does not hold", None: "not measured"}[self.holds]


def line(condition: Condition) -> str:
    """`text ...... measured  verdict`, aligned."""
    return f"{condition.text} {'.' * max(2, WIDTH - len(condition.text))} {condition.measured}  {condition.verdict}"


def _ratio(text: str, numerator: float | None, denominator: float | None, bound: str, limit: float) -> Condition:
    """`numerator / denominator` against `limit`, `bound` being "<=" or ">="."""
    text = f"{text} {bound} {limit}x"
    if numerator is None or not denominator:
        return Condition(text, "-", None)
    ratio = numerator / denominator
    return Condition(text, f"{ratio:.2f}x", ratio <= limit if bound == "<=" else ratio >= limit)


def _median(results: dict[str, Any], name: str) -> float | None:
    return results.get(name, {}).get("median_ms")


def _rps(results: dict[str, Any], variant: str, workers: int) -> float | None:
    return results.get(f"http-{variant}-{workers}w", {}).get("requests_per_second")


def conditions(db: str, size: str, results: dict[str, Any], page_plan: str) -> list[Condition]:
    """The issue's conditions on one database's results (bench/run.py's latest.json, per database):
    the in-process variants' `median_ms`, and `http-<variant>-<n>w` entries' `requests_per_second`."""
    found = [
        Condition(
            "the page is read in one statement by its compiled plan", page_plan, page_plan == READ_IN_ONE_STATEMENT
        ),
        _ratio(
            "trusted-compiled / floor, in-process",
            _median(results, "trusted-compiled"),
            _median(results, "floor"),
            "<=",
            2,
        ),
        _ratio(
            "HTTP 1 worker: trusted-compiled / bare (caches), req/s",
            _rps(results, "trusted-compiled", 1),
            _rps(results, "bare", 1),
            ">=",
            3,
        ),
        _ratio("full / bare (caches), in-process", _median(results, "full"), _median(results, "bare"), "<=", 1.15),
    ]
    if db == "postgresql":
        found += [
            _ratio("PostgreSQL: full / no-authz", _median(results, "full"), _median(results, "no-authz"), "<=", 1.05),
            _ratio(
                f"PostgreSQL: full ({size}) / full-10k",
                _median(results, "full"),
                _median(results, "full-10k"),
                "<=",
                1.1,
            ),
        ]
    found += [
        _ratio(
            f"HTTP: 2 workers / 1 worker, {variant}", _rps(results, variant, 2), _rps(results, variant, 1), ">=", 1.7
        )
        for variant in HTTP_VARIANTS
    ]
    return found
