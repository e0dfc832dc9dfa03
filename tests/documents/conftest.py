"""Trusted documents in tests: the sample manifests, registration, trusted keys, requests by id."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.documents import service
from api.documents.manifests import read_manifest
from api.operators import accounts as operators
from api.protection.shape_limits import limit_rules
from api.schema import schema
from api.settings import Settings
from authz.engine import Authorizer
from tests.client import ACCEPT, GraphQLResponse

MANIFESTS = Path(__file__).resolve().parents[1] / "node" / "client" / "manifests"
CODEGEN = MANIFESTS / "codegen-persisted-documents.json"
RELAY = MANIFESTS / "relay-persisted-queries.json"
APOLLO = MANIFESTS / "apollo-persisted-query-manifest.json"
AUTHORIZER = Authorizer()  # the policy, compiled once for the whole module


def make_checker(**settings: Any) -> service.DocumentChecker:
    configured = Settings(**settings)
    return service.DocumentChecker(schema._schema, configured, limit_rules(configured), AUTHORIZER)


def ids(manifest: Path) -> dict[str, str]:
    """Each operation's document id, by its name as written ("Day", or relay's "DayQuery")."""
    return {re.search(r"(?:query|mutation) (\w+)", e.text).group(1): e.document_id  # type: ignore[union-attr]
            for e in read_manifest(manifest.read_bytes())}


@pytest.fixture
def register(sync_engine: Engine) -> Callable[..., list[service.Registered]]:
    def run(partner: str, manifest: Path | bytes | str, **settings: Any) -> list[service.Registered]:
        data = manifest.read_bytes() if isinstance(manifest, Path) else manifest
        with Session(sync_engine, expire_on_commit=False) as session, session.begin():
            return service.register(session, make_checker(**settings), partner, data)

    return run


@pytest.fixture
def trusted_key(sync_engine: Engine) -> Callable[[str], str]:
    def issue(partner: str) -> str:
        with Session(sync_engine) as session, session.begin():
            return operators.issue_partner_key(session, partner, label="production").token  # trusted by default

    return issue


async def by_id(
    api: Any, key: str, document_id: str, variables: dict[str, Any] | None = None, method: str = "POST", **extra: Any
) -> GraphQLResponse:
    """A request naming a registered document, as GraphQL over HTTP specifies it."""
    import json

    headers = {"Authorization": f"Bearer {key}", "Accept": ACCEPT}
    if method == "GET":
        params = {"documentId": document_id, **({"variables": json.dumps(variables)} if variables else {})}
        params.update({k: json.dumps(v) for k, v in extra.items()})
        response = await api.http.get("/graphql", params=params, headers=headers)
    else:
        payload = {"documentId": document_id, "variables": variables or {}, **extra}
        response = await api.http.post("/graphql", json=payload, headers=headers)
    return GraphQLResponse(response.status_code, response.json(), response.headers)


