"""What became of one request to /graphql: the response, and what the ledger and metrics need of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.responses import JSONResponse, Response

from api.errors import ApiError, error_body
from api.identity.authentication import Principal
from api.ledger.access import Disclosures
from api.protection.cost_and_budget import Metering
from api.services.unit_of_work import UnitOfWork

__all__ = ["Outcome", "refused"]


@dataclass(frozen=True)
class Outcome:
    """Served (data was sent) or refused, with the response to send.

    `principal` is the caller when known (a refusal before authentication has none, a key cooling
    down has its own); `metering` is what pricing and charging decided; `disclosures` is what a
    served response carries, for the ledger; `write` is the unit of work of a served booking,
    rescheduling or cancellation, not yet committed: the ledger's record commits it.
    """

    response: Response
    served: bool = False
    error_code: str | None = None
    principal: Principal | None = None
    metering: Metering = field(default_factory=Metering)
    disclosures: Disclosures | None = None
    write: UnitOfWork | None = None

    @property
    def status(self) -> int:
        return self.response.status_code


def refused(
    status: int, error: ApiError, request_id: str, principal: Principal | None = None, **headers: str
) -> Outcome:
    """A request refused as a whole, in the API's JSON error shape."""
    retry = error.extensions.get("retryAfter")  # said in the header too, where HTTP clients look for it
    headers = {"X-Request-Id": request_id, **({"Retry-After": str(retry)} if retry is not None else {}), **headers}
    response = JSONResponse(error_body(error, requestId=request_id), status_code=status, headers=headers)
    return Outcome(response, error_code=str(error.extensions["code"]), principal=principal)
