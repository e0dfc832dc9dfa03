"""The price of a request read from its body alone, before authentication and the database.

Used only for a partner whose budget is cooling down (api/protection/key_gates.py): the gate
refuses at once what the bucket cannot pay, and lets cheaper requests through. It is the same cost
model as the charge (api/protection/cost_and_budget.py), on the same schema and variables; any
document it cannot price (malformed, invalid variables, a persisted document id...) gets None and goes
through the normal path, where the view refuses it, free of charge, or prices it for real.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from graphql import FragmentDefinitionNode, GraphQLSchema, get_operation_ast, parse
from graphql.execution.values import get_variable_values

from api.protection.cost import CostModel

__all__ = ["price_of"]


def _operation(body: bytes | None, query_params: Mapping[str, str]) -> dict[str, Any] | None:
    if body:
        try:
            operation = json.loads(body)
        except (ValueError, RecursionError):
            return None
        return operation if isinstance(operation, dict) else None
    return dict(query_params) if "query" in query_params else None


def price_of(schema: GraphQLSchema, body: bytes | None, query_params: Mapping[str, str], max_tokens: int) -> int | None:
    """The requested cost of the operation the request carries, or None when it cannot be priced here."""
    operation = _operation(body, query_params)
    query, name = (operation or {}).get("query"), (operation or {}).get("operationName")
    variables = (operation or {}).get("variables") or {}
    if isinstance(variables, str):  # a GET request's variables are JSON text
        try:
            variables = json.loads(variables)
        except (ValueError, RecursionError):
            return None
    if not isinstance(query, str) or not isinstance(name, (str, type(None))) or not isinstance(variables, dict):
        return None
    try:
        document = parse(query, max_tokens=max_tokens, no_location=True)
        definition = get_operation_ast(document, name)
        if definition is None:
            return None
        coerced = get_variable_values(schema, definition.variable_definitions or (), variables, hide_suggestions=True)
        if isinstance(coerced, list):
            return None
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        return CostModel.of(schema).requested_cost(definition, fragments, coerced.coerced)
    except Exception:  # anything the view would refuse itself (syntax, unknown fields, cycles): not priced here
        return None
