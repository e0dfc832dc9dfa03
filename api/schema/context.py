"""What resolvers receive as `info.context`: one request's parts, each owned by its layer.

The pipeline (api/http/pipeline.py) builds it once authenticated. Resolvers hand each service the
parts it uses, never the whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from strawberry.types import ExecutionResult

from api.identity.authentication import Principal
from api.identity.request_identity import RequestIdentity
from api.ledger.disclosure_recorder import DisclosureRecorder
from api.protection.budgets import Budgets
from api.protection.cost_and_budget import Metering, PreparedDocument
from api.protection.extraction import ExtractionGuard
from api.schema.loaders import Loaders
from api.services.cursors import CursorCodec
from api.services.readable_fields import ReadableFields
from api.services.unit_of_work import UnitOfWork
from api.settings import Settings

__all__ = ["GraphQLContext"]


@dataclass
class GraphQLContext:
    identity: RequestIdentity  # who asks, when, under which request id
    uow: UnitOfWork  # the session, the policy's row filters, transactions
    fields: ReadableFields  # the fields readable at each practice
    disclosures: DisclosureRecorder  # what the response carries, for the ledger
    cursors: CursorCodec
    settings: Settings
    budgets: Budgets
    extraction: ExtractionGuard
    metering: Metering = field(default_factory=Metering)  # written by api.protection.cost_and_budget
    # The registered document the request names by id (api/documents/protocol.py): run without
    # parsing, validation or pricing, which were done when it was registered.
    document: PreparedDocument | None = None
    # The execution's result, errors classified: written by the view (api/http/graphql_view.py).
    result: ExecutionResult | None = None
    loaders: Loaders = field(init=False)

    def __post_init__(self) -> None:
        self.loaders = Loaders(self.uow, self.extraction, self.fields, self.cursors)

    @property
    def principal(self) -> Principal:
        return self.identity.principal
