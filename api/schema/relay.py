from typing import Any

import strawberry

from api.protection.cost import Cost
from api.services.reads import Page


@strawberry.interface(description="An object with a stable, opaque global id, fetchable with `node(id:)`.")
class Node:
    id: strawberry.ID = strawberry.field(description="Opaque global id: `<kind>_<random>`. Never sequential.")


@strawberry.type(description="Where a page of a connection stands.", directives=[Cost(weight=0)])
class PageInfo:
    has_next_page: bool = strawberry.field(description="True when another page follows `endCursor`.")
    end_cursor: str | None = strawberry.field(
        description="Pass as `after` to get the next page. Bound to this query and to your key."
    )

    @classmethod
    def of(cls, page: Page[Any]) -> "PageInfo":
        return cls(has_next_page=page.has_next_page, end_cursor=page.end_cursor)
