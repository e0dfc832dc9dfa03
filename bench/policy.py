"""What a policy evaluation costs, and what the caches save: the two questions the API asks oso,
asked of oso directly (as they would be without caches) and through `authz.engine.Authorizer`.

    python -m bench.policy

No database: the grant is an object in memory, and compiling a row filter builds SQL, runs none.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from api.data.models import Appointment, Grant
from api.scopes import Scope
from api.timeutil import utcnow
from authz.actors import PartnerActor
from authz.engine import Authorizer
from authz.records import GrantedRecord


def _microseconds(call: Callable[[], Any], iterations: int) -> float:
    samples = []
    for _ in range(iterations):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1e6)
    return statistics.median(samples)


def measure(iterations: int = 200) -> dict[str, float]:
    """Median microseconds per call."""
    authorizer = Authorizer()
    now = utcnow()
    actor = PartnerActor(1, "bench", now)
    grant = Grant(
        id=1, partner_id=1, practice_id=1, granted_at=now - timedelta(days=1), expires_at=now + timedelta(days=1)
    )
    grant.set_scopes(set(Scope))
    authorizer.readable_fields(actor, grant, in_horizon=True)
    authorizer.filter(1, "read", Appointment)
    return {
        "field_rules_uncached_us": _microseconds(
            lambda: authorizer.oso.authorized_fields(actor, "read", GrantedRecord(grant, True)), iterations
        ),
        "field_rules_cached_us": _microseconds(
            lambda: authorizer.readable_fields(actor, grant, in_horizon=True), iterations
        ),
        "row_filter_uncached_us": _microseconds(lambda: authorizer._compile_filter(1, "read", Appointment), iterations),
        "row_filter_cached_us": _microseconds(lambda: authorizer.filter(1, "read", Appointment), iterations),
    }


def render(measured: dict[str, float]) -> str:
    return "\n".join(
        [
            "policy evaluation (median per call; the API asks once per request and practice, never per row)",
            f"  field rules of a grant: {measured['field_rules_uncached_us']:,.0f} us by oso, "
            f"{measured['field_rules_cached_us']:,.1f} us cached",
            f"  row filter of a partner: {measured['row_filter_uncached_us']:,.0f} us by oso, "
            f"{measured['row_filter_cached_us']:,.1f} us cached",
        ]
    )


if __name__ == "__main__":
    print(render(measure()))
