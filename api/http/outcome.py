"""What became of one request to /graphql: the response, and what the ledger and metrics need of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.responses import JSONResponse, Response

from api.errors import ApiError, error_body
from api.identity.authentication import Principal
from api.ledger.access import Disclosures
from api.protection.cost_and_budget import Metering

__all__ = ["Outcome", "refused"]


@dataclass(frozen=True)
class Outcome:
    """Served (data was sent) or refused, with the response to send.

    `principal` is the caller when known (a refusal before authentication has none, a key cooling
    down has its own); `metering` is what pricing and charging decided; `disclosures` is what a
    served response carries, for the ledger.
    """

    response: Response
    served: bool = False
    error_code: str | None = None
    principal: Principal | None = None
    metering: Metering = field(default_factory=Metering)
    disclosures: Disclosures | None = None

    @property
    def status(self) -> int:
        return self.response.status_code


def refused(
    status: int, error: ApiError, request_id: str, principal: Principal | None = None, **headers: str
) -> Outcome:
    """A request refused as a whole, in the API's JSON error shape."""
    response = JSONResponse(
        error_body(error, requestId=request_id), status_code=status, headers={"X-Request-Id": request_id, **headers}
    )
    return Outcome(response, error_code=str(error.extensions["code"]), principal=principal)
