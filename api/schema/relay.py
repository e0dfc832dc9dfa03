"""Relay's shapes: the `Node` interface and paged connections (`Connection[Practice]` is the
schema's `PracticeConnection`, its edges `PracticeEdge`: strawberry names a generic by its node)."""

from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

import strawberry

from api.protection.cost import Cost, ListSize
from api.schema import constraints
from api.schema.deferred import Deferred
from api.services.reads import Page

NodeType = TypeVar("NodeType")
Row = TypeVar("Row")


# The arguments of every paged field, and its cost directive: `first` items, each an edge.
First = Annotated[int, strawberry.argument(description="Page size, 1 to 100.")]
After = Annotated[
    str | None, strawberry.argument(description="`endCursor` of the previous page.", directives=[constraints.CURSOR])
]
PAGED = ListSize(slicing_arguments=["first"], sized_fields=["edges"])


@strawberry.interface(description="An object with a stable, opaque global id, fetchable with `node(id:)`.")
class Node:
    id: strawberry.ID = strawberry.field(description="Opaque global id: `<kind>_<random>`. Never sequential.")


@strawberry.type(description="Where a page of a connection stands.", directives=[Cost(weight=0)])
class PageInfo:
    has_next_page: bool = strawberry.field(description="True when another page follows `endCursor`.")
    end_cursor: str | None = strawberry.field(
        description="Pass as `after` to get the next page (as `since` to the change feed, where it is set even "
        "when the page is empty). Bound to this query and to your key."
    )

    @classmethod
    def of(cls, page: Page[Any]) -> "PageInfo":
        return cls(has_next_page=page.has_next_page, end_cursor=page.end_cursor)


@strawberry.type(description="One edge of a connection: a node and its position.", directives=[Cost(weight=0)])
class Edge(Generic[NodeType]):
    cursor: str = strawberry.field(description="Position of this edge, for `after` (for `since` in the change feed).")
    node: NodeType = strawberry.field(description="The node.")


@strawberry.type(description="A page of a list, in its order, with where it stands.", directives=[Cost(weight=0)])
class Connection(Generic[NodeType]):
    edges: list[Edge[NodeType]] = strawberry.field(description="The nodes of this page, with their cursors.")
    page_info: PageInfo = strawberry.field(description="Paging position.")

    @classmethod
    def of(cls, page: Page[Row], node: Callable[[Row], NodeType]) -> "Connection[NodeType]":
        """The page's rows as edges, each row made a node by `node`."""
        return cls(
            edges=[
                Edge(cursor=Deferred(cursor), node=node(row))  # type: ignore[arg-type]  # signed if selected
                for row, cursor in zip(page.rows, page.cursors, strict=True)
            ],
            page_info=PageInfo.of(page),
        )
