"""Known GraphQL denial-of-service shapes: each is answered in bounded time, most with a 400 naming
the limit it crossed.

Time is measured as a ratio in the same test, never as an absolute: a hostile request must be
answered in less time than 10 trivial requests of the same key. Every document is made unique (a
comment) so that neither the parser's nor the validation's cache answers in its place.
"""

from __future__ import annotations

import itertools
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any

import pytest

from api.protection.shape_limits import CACHED_TEXT, limit_rules, parsed, validated
from api.schema import schema
from api.settings import Settings

_unique = itertools.count()


def bomb(levels: int, width: int, leaf: str = "viewer { name }", spread: str = "") -> str:
    """`{ ...F<levels> }`, each fragment spreading the previous one `width` times: width^levels leaves."""
    fragments = [f"fragment F0 on Query {{ {leaf} }}"]
    fragments += [
        f"fragment F{i} on Query {{ {' '.join([f'...F{i - 1}{spread}'] * width)} }}" for i in range(1, levels + 1)
    ]
    return f"{{ ...F{levels} }} " + " ".join(fragments)


def nested_input(depth: int) -> str:
    return "{ viewer { name } } query Deep { node(id: " + "{ a: " * depth + "1" + " }" * depth + ") { id } }"


@dataclass
class Shape:
    name: str
    query: str
    status: int = 400
    limits: set[str | None] = field(default_factory=set)  # one of these is named by the refusal (None: a spec error)
    variables: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    codes: set[str] = field(default_factory=lambda: {"BAD_USER_INPUT"})
    trivial_requests: int = 10  # answered in less time than this many trivial requests


SHAPES = [
    Shape("fragment bomb, deep: 2 spreads x 40 levels", bomb(40, 2), limits={"selections"}),
    Shape("fragment bomb, wide: 20 spreads x 8 levels", bomb(8, 20), limits={"selections"}),
    Shape(
        "fragment bomb with a deep leaf",
        bomb(30, 2, "viewer { grants { practice { id name } } }"),
        limits={"selections"},
    ),
    Shape(
        "aliases x fragments",
        "{ ...F } fragment F on Query { viewer { "
        + " ".join(f"a{i}: name" for i in range(20))
        + " } } ".replace("{ ...F }", "{ " + " ".join(f"x{i}: viewer {{ name }}" for i in range(0)) + "...F }")
        + bomb(12, 2, "...F"),
        limits={"aliases", "selections"},
    ),
    Shape(
        "directives on fragment spreads",
        "{ ...F @include(if: true) @skip(if: false) @include(if: true) } fragment F on Query { viewer { name } }",
        limits={"directives"},
    ),
    Shape(
        "directives on a fragment bomb",
        bomb(30, 2, spread=" @include(if: true) @skip(if: false)"),
        limits={"selections"},
    ),
    Shape(
        "directives on inline fragments",
        "{ ... @include(if: true) @skip(if: false) @include(if: true) { viewer { name } } }",
        limits={"directives"},
    ),
    # 2,800 tokens, near the token limit: parsing them is most of the cost.
    Shape(
        "700 declared variables",
        "query(" + " ".join(f"$v{i}: Int" for i in range(700)) + ") { viewer { name } }",
        limits={"validation"},
        trivial_requests=20,
    ),
    Shape(
        "a huge list in the variables",
        "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
        variables={"ids": ["apt_x"] * 5000},
        codes={"COST_LIMIT_EXCEEDED"},
        limits={"cost"},
    ),
    Shape(
        "circular fragments",
        "{ ...A } fragment A on Query { ...B viewer { name } } fragment B on Query { ...A ...A }",
        limits={None},
    ),
    Shape(
        "circular fragment bomb",
        bomb(30, 2).replace(
            "fragment F0 on Query { viewer { name } }", "fragment F0 on Query { viewer { name } ...F30 }"
        ),
        limits={"selections", None},
    ),
    Shape(
        "selections nested past the parser's limit",
        "{ " + "viewer { " * 300 + "name" + " }" * 300 + " }",
        limits={"nesting"},
    ),
    Shape("deeply nested input object", nested_input(600), limits={"nesting"}, extra={"operationName": "Deep"}),
    Shape(
        "nested input object under the parser's limit",
        nested_input(150),
        limits={None},
        extra={"operationName": "Deep"},
    ),
    # Refused once parsed: what it costs is parsing 2,100 tokens, bounded by the token limit.
    Shape(
        "300 operations in one document",
        " ".join(f"query Q{i} {{ viewer {{ name }} }}" for i in range(300)),
        limits={"operations"},
        extra={"operationName": "Q150"},
        trivial_requests=20,
    ),
    Shape(
        "20 operations in one document",
        " ".join(f"query Q{i} {{ viewer {{ name }} }}" for i in range(20)),
        status=200,
        extra={"operationName": "Q10"},
    ),
    Shape(
        "400 fragments in one operation",
        "{ "
        + " ".join(f"...F{i}" for i in range(400))
        + " } "
        + " ".join(f"fragment F{i} on Query {{ viewer {{ name }} }}" for i in range(400)),
        limits={"tokens", "selections"},
    ),
    Shape("1,000 __typename fields", "{ " + "__typename " * 1000 + "}", limits={"selections"}),
    # graphql-core's OverlappingFieldsCanBeMerged compares the fields merged into one response field
    # pairwise, with their sub-selections: their number is bounded first (it used to be served, at
    # the square of the count; 166 of these last took half a second).
    Shape("400 __typename fields", "{ " + "__typename " * 400 + "}", limits={"fieldRepeats"}),
    Shape("166 viewer { grants { id } }", "{ " + "viewer { grants { id } } " * 166 + "}", limits={"fieldRepeats"}),
    # graphql-core compares the merged fields of every fragment definition, spread or not: an unused
    # one is refused first (it took 425 ms, never reached by the limits, which measure operations).
    Shape(
        "an unused fragment merging 166 fields",
        "{ __typename } fragment X on Query { " + "viewer { grants { id } } " * 166 + "}",
        limits={None},
    ),
    Shape(
        "100 fragments merging one field",
        " ".join(f"fragment F{i} on Query {{ viewer {{ grants {{ id }} }} }}" for i in range(100))
        + " { " + " ".join(f"...F{i}" for i in range(100)) + " }",
        limits={"fieldRepeats"},
    ),
    Shape(
        "introspection cycle",
        "{ __schema { types { fields { type { fields { type { fields { type { name } } } } } } } } }",
        limits={"introspectionDepth"},
    ),
]


def _limits(body: dict[str, Any]) -> set[str | None]:
    named = set()
    for error in body.get("errors") or []:
        extensions = error.get("extensions", {})
        named.add("cost" if extensions.get("code") == "COST_LIMIT_EXCEEDED" else extensions.get("limit"))
    return named


async def _timed(api, key: str, query: str, variables: dict[str, Any], **extra: Any) -> tuple[float, Any]:
    # This process's CPU time (the app runs in it): the shared machine's other work does not count.
    started = time.process_time()
    response = await api.query(key, f"{query}\n# {next(_unique)}", variables, **extra)
    return time.process_time() - started, response


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.name for shape in SHAPES])
async def test_hostile_document_is_answered_in_less_time_than_a_few_trivial_requests(api, world, shape: Shape):
    key = world.keys["full"]
    await _timed(api, key, "{ viewer { name } }", {})  # the first request of a worker warms its caches
    trivial = 0.0
    for _ in range(shape.trivial_requests):
        elapsed, response = await _timed(api, key, "{ viewer { name } }", {})
        assert response.status == 200
        trivial += elapsed
    hostile = []
    for _ in range(3):  # the fastest of three: the machine is shared, a pause is not the request's doing
        elapsed, response = await _timed(api, key, shape.query, shape.variables, **shape.extra)
        hostile.append(elapsed)
        assert response.status == shape.status, response.body
        assert "Traceback" not in str(response.body)
        if shape.status == 400:
            assert response.codes == shape.codes, response.body
            assert _limits(response.body) & shape.limits, response.body
    assert min(hostile) < trivial, (
        f"{shape.name}: {min(hostile):.4f} s against {trivial:.4f} s for {shape.trivial_requests} trivial requests"
    )


def test_the_bomb_would_select_more_than_a_trillion_fields():
    """What the 40-level bomb stands for, counted without expanding it."""
    from graphql import parse

    from api.protection.rules._measure import fragments_of
    from api.protection.rules.max_selections import Selections

    document = parse(bomb(40, 2))
    operation = document.definitions[0]
    assert Selections(fragments_of(document)).of(operation.selection_set) == 2**40 * 2  # viewer and name per leaf
    assert len(bomb(40, 2)) < 1700


def test_the_cost_of_a_fragment_bomb_is_priced_without_expanding_it(monkeypatch):
    """The pricer visits each fragment once per type: doubling a bomb's levels from 20 to 40 doubles
    the fields it prices (not 2^20 times), and the price is still the full exponential one. Validation
    refuses such a document before it is priced; the pricer must not rely on it. Work is counted, not timed."""
    from graphql import parse

    from api.protection import cost as cost_module
    from api.protection.cost import CostModel
    from api.protection.rules._measure import fragments_of
    from api.schema import schema

    model = CostModel.of(schema._schema)
    priced_fields = 0
    field_cost = cost_module._Pricer._field_cost

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal priced_fields
        priced_fields += 1
        return field_cost(self, *args, **kwargs)

    monkeypatch.setattr(cost_module._Pricer, "_field_cost", counted)

    def priced(query: str) -> tuple[int, int]:
        nonlocal priced_fields
        document, priced_fields = parse(query), 0
        cost = model.requested_cost(document.definitions[0], fragments_of(document), {})
        return priced_fields, cost

    (half, _), (whole, cost) = priced(bomb(20, 2)), priced(bomb(40, 2))
    assert cost == 2**40 * priced("{ viewer { name } }")[1]
    assert whole <= 2 * half + 4, f"40 levels: {whole} fields priced, 20 levels: {half}"


def test_the_parsed_documents_a_worker_keeps_are_bounded_by_their_text():
    """A parsed document weighs about 120 times its text: 1,200 distinct 15 KB documents, each refused
    for its size and charged nothing, grew a worker past 1 GB under the parser cache's bound of 512
    entries (and the validation cache kept as many)."""
    rules = limit_rules(Settings())
    documents = [f"# {next(_unique)}\n{{ viewer {{ {'name ' * 2980}}} }}" for _ in range(120)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for text in documents:
            assert validated(schema._schema, text, parsed(text, 3000), rules)  # refused: too many selections
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Both caches bounded by CACHED_TEXT characters of text each: about 35 of these documents (1.8 MB each
    # parsed), where 512 entries kept all 120 (220 MB).
    assert kept < 2 * CACHED_TEXT * 130, f"{kept / 1e6:.0f} MB kept for {len(documents)} documents"
