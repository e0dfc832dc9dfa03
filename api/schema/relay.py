"""Relay's shapes: the `Node` interface and paged connections (`Connection[Practice]` is the
schema's `PracticeConnection`, its edges `PracticeEdge`: strawberry names a generic by its node)."""

from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

import strawberry

from api.protection.cost import TOTAL_COUNT_COST, Cost, ListSize
from api.schema import constraints
from api.schema.deferred import Deferred
from api.services.reads import MAX_PAGE_SIZE, Page, Slice

NodeType = TypeVar("NodeType")
Row = TypeVar("Row")


# The arguments of every paged field (Relay's), and its cost directive: `first` or `last` items,
# exactly one of them, each an edge.
First = Annotated[
    int | None,
    strawberry.argument(description=f"Page size going forward, 1 to {MAX_PAGE_SIZE}; or give `last`."),
]
After = Annotated[
    str | None,
    strawberry.argument(
        description="Forward: the items after this cursor (`endCursor` of the previous page).",
        directives=[constraints.CURSOR],
    ),
]
Last = Annotated[
    int | None,
    strawberry.argument(description=f"Page size going backward, 1 to {MAX_PAGE_SIZE}; or give `first`."),
]
Before = Annotated[
    str | None,
    strawberry.argument(
        description="Backward, with `last`: the items before this cursor (`startCursor` of the page after).",
        directives=[constraints.CURSOR],
    ),
]
PAGED = ListSize(slicing_arguments=["first", "last"], sized_fields=["edges"], require_one_slicing_argument=True)


@strawberry.interface(description="An object with a stable, opaque global id, fetchable with `node(id:)`.")
class Node:
    id: strawberry.ID = strawberry.field(description="Opaque global id: `<kind>_<random>`. Never sequential.")


@strawberry.type(
    description="Where a page of a connection stands (Relay's cursor connections).", directives=[Cost(weight=0)]
)
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="True when another page follows `endCursor`. Paging backward: true when `before` was given."
    )
    has_previous_page: bool = strawberry.field(
        description="True when another page precedes `startCursor`. Paging forward: true when `after` (`since`) "
        "was given."
    )
    start_cursor: str | None = strawberry.field(
        description="Pass as `before` (with `last`) to get the page before this one; null when the page is empty."
    )
    end_cursor: str | None = strawberry.field(
        description="Pass as `after` to get the next page (as `since` to the change feed, where it is set even "
        "when the page is empty). Bound to this query and to your partner account: any of its keys may continue it."
    )

    @classmethod
    def of(cls, page: Page[Any]) -> "PageInfo":
        return cls(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=page.start_cursor,
            end_cursor=page.end_cursor,
        )


def page_slice(first: int | None, after: str | None, last: int | None, before: str | None) -> Slice:
    return Slice(first=first, after=after, last=last, before=before)


# An edge costs a point, the row it reads, and its node nothing more: a page costs the same whatever
# it selects of its rows, cursors alone included (they name each row's id and position, and cost
# nothing when the edge did: 100 rows a request, for free).
@strawberry.type(description="One edge of a connection: a node and its position (1 point, whatever is selected).")
class Edge(Generic[NodeType]):
    cursor: str = strawberry.field(description="Position of this edge, for `after` (for `since` in the change feed).")
    node: NodeType = strawberry.field(description="The node (its edge's point).", directives=[Cost(weight=0)])


@strawberry.type(description="A page of a list, in its order, with where it stands.", directives=[Cost(weight=0)])
class Connection(Generic[NodeType]):
    page: strawberry.Private[Page[Any]]
    edges: list[Edge[NodeType]] = strawberry.field(description="The nodes of this page, with their cursors.")
    page_info: PageInfo = strawberry.field(description="Paging position.")

    @strawberry.field(
        description=f"How many items the whole list holds, all pages together (one count: {TOTAL_COUNT_COST} "
        "points).",
        directives=[Cost(weight=TOTAL_COUNT_COST)],
    )
    async def total_count(self) -> int:
        assert self.page.count is not None  # every page of a connection can be counted
        return await self.page.count()

    @classmethod
    def of(cls, page: Page[Row], node: Callable[[Row], NodeType]) -> "Connection[NodeType]":
        """The page's rows as edges, each row made a node by `node`."""
        return cls(
            page=page,
            edges=[
                Edge(cursor=Deferred(cursor), node=node(row))  # type: ignore[arg-type]  # sealed if selected
                for row, cursor in zip(page.rows, page.cursors, strict=True)
            ],
            page_info=PageInfo.of(page),
        )
