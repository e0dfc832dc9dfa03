
from datetime import datetime
from typing import TYPE_CHECKING

import strawberry

from api.data.models import KeyMode
from api.protection.cost import ListSize
from api.schema._described_enum import described_enum
from api.scopes import Scope

# Scopes are strings spelt as everywhere else (docs, CLI, errors, OAuth scopes): `appointments:read`,
# which a GraphQL enum value cannot spell. Their list comes from the scope table.
SCOPES_GRANTED = "Scopes granted, as the docs and the CLI spell them: " + ", ".join(f"`{s.value}`" for s in Scope) + "."
KeyModeEnum = described_enum("KeyMode", KeyMode, "What documents a key may run.")
if TYPE_CHECKING:
    KeyModeValue = KeyMode  # what the resolvers hand over
else:
    KeyModeValue = KeyModeEnum  # what the schema publishes


@strawberry.type(description="One of your grants: a practice's consent, with its scopes.")
class ViewerGrant:
    id: strawberry.ID = strawberry.field(description="Opaque id of the grant.")
    practice_id: strawberry.ID = strawberry.field(description="Id of the practice that granted access.")
    practice_name: str = strawberry.field(description="Name of that practice.")
    scopes: list[str] = strawberry.field(description=SCOPES_GRANTED)
    granted_at: datetime = strawberry.field(description="When the practice granted access.")
    expires_at: datetime = strawberry.field(description="When the grant ends unless renewed.")
    days_back: int = strawberry.field(
        description="Reading horizon: patients' identity and contact, and appointments' reasons, are readable for "
        "appointments starting at most this many days (of 24 h) before now..."
    )
    days_ahead: int = strawberry.field(
        description="...and less than this many days after now. Outside, those fields are FORBIDDEN."
    )
    history_until: datetime | None = strawberry.field(
        description="Until then the practice lets you read outside the horizon (an initial import it approved); "
        "null: it does not."
    )


@strawberry.type(description="The calling partner: who you are and what practices granted you.")
class Viewer:
    id: strawberry.ID = strawberry.field(description="Your partner id.")
    name: str = strawberry.field(description="Your partner name.")
    key_prefix: str = strawberry.field(description="Public prefix of the key used for this request.")
    key_mode: KeyModeValue = strawberry.field(
        description="TRUSTED: this key runs only your registered documents, by id; OPEN: any document."
    )
    grants: list[ViewerGrant] = strawberry.field(
        description="Your live grants (not revoked, not expired).", directives=[ListSize(assumed_size=100)]
    )


@strawberry.type(description="Your cost budget: what you may spend now, and how fast it comes back.")
class RateLimit:
    maximum_available: int = strawberry.field(description="Points your budget holds when full.")
    currently_available: int = strawberry.field(description="Points available now.")
    restore_rate: float = strawberry.field(description="Points restored per second.")
    max_query_cost: int = strawberry.field(description="Most points one operation may cost.")
