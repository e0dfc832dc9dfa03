"""Who is asking, and when: the part of a request every layer may read, and none may change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from api.identity.authentication import Principal
from authz.actors import PartnerActor

__all__ = ["RequestIdentity"]


@dataclass(frozen=True)
class RequestIdentity:
    """The authenticated caller of one request, the instant the request counts from (policy
    conditions, expiries, windows) and the id that names it in the log and the ledger."""

    principal: Principal
    request_time: datetime
    request_id: str

    @property
    def actor(self) -> PartnerActor:
        """The caller as the policy sees it."""
        return PartnerActor(self.principal.partner_id, self.principal.partner_name, self.request_time)
