"""An in-process HTTP client for the API, speaking GraphQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

ACCEPT = "application/graphql-response+json, application/json;q=0.9"


@dataclass
class GraphQLResponse:
    status: int
    body: dict[str, Any]
    headers: httpx.Headers

    @property
    def data(self) -> Any:
        return self.body.get("data")

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.body.get("errors") or []

    @property
    def codes(self) -> set[str]:
        return {e.get("extensions", {}).get("code") for e in self.errors}


class ApiClient:
    def __init__(self, app: Any) -> None:
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")

    async def query(
        self, key: str | None, query: str, variables: dict[str, Any] | None = None, **extra: Any
    ) -> GraphQLResponse:
        # What graphql-request and Apollo Client send: the GraphQL over HTTP media type first.
        headers = {"Accept": ACCEPT, **({"Authorization": f"Bearer {key}"} if key else {})}
        payload = {"query": query, "variables": variables or {}, **extra}
        response = await self.http.post("/graphql", json=payload, headers=headers)
        return GraphQLResponse(response.status_code, response.json(), response.headers)

    async def close(self) -> None:
        await self.http.aclose()


def walk(value: Any) -> Any:
    """Every (key, value) pair anywhere in a JSON document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)
