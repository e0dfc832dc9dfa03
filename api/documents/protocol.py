"""Which document a request runs: its own text, or a registered one named by id.

- GraphQL over HTTP's persisted documents: `{"documentId": "sha256:<hex>", "variables": ...}` in a
  POST body, `?documentId=...` in a GET (the view moves it into the request's `extensions`);
- Apollo's `extensions.persistedQuery.sha256Hash`, for lookup only: a hash sent with its query is
  an ad-hoc document, never a registration.

A trusted key runs only registered documents (TRUSTED_DOCUMENTS_ONLY otherwise, HTTP 403); an
open key runs either. An id the partner has not registered (or removed) is PERSISTED_QUERY_NOT_FOUND.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from strawberry.http import GraphQLRequestData

from api.data.models import KeyMode
from api.documents.analysis import DocumentRefused
from api.documents.manifests import normalized_id
from api.documents.registry import DocumentRegistry
from api.errors import ApiError, ErrorCode, bad_input
from api.schema.context import GraphQLContext

__all__ = ["DOCUMENT_ID", "resolve_document"]

DOCUMENT_ID = "documentId"  # the request's key (GraphQL over HTTP), kept among its extensions


def _named_id(extensions: dict[str, Any]) -> object:
    """The id the request names, if any. A request naming it twice, or in a shape this API does not
    know, is refused rather than guessed at: which of two ids runs, or an operation run for real when
    its client asked for a dry run in a value that is not `true`, would be a surprise."""
    if "dryRun" in extensions and not isinstance(extensions["dryRun"], bool):
        raise bad_input("`extensions.dryRun` is true or false.", argument="extensions.dryRun")
    apollo = extensions.get("persistedQuery")
    if apollo is None:
        return extensions.get(DOCUMENT_ID)
    if DOCUMENT_ID in extensions:
        raise bad_input("Name a document once: `documentId` or `extensions.persistedQuery`, not both.")
    if not isinstance(apollo, dict) or apollo.get("version") != 1 or "sha256Hash" not in apollo:
        raise bad_input(
            '`extensions.persistedQuery` is `{"version": 1, "sha256Hash": "<hex>"}`.', argument="persistedQuery"
        )
    return apollo["sha256Hash"]


async def resolve_document(
    request: GraphQLRequestData, context: GraphQLContext, registry: DocumentRegistry
) -> GraphQLRequestData:
    """The request with the text it runs; the registered document, if any, on `context.document`."""
    extensions = request.extensions or {}
    named = _named_id(extensions)
    if request.query:
        if DOCUMENT_ID in extensions:
            raise bad_input("Send either `query` or `documentId`, not both.")
        if context.principal.key_mode == KeyMode.TRUSTED:
            raise ApiError(
                ErrorCode.TRUSTED_DOCUMENTS_ONLY,
                "This key runs only your registered documents: send `documentId` (sha256:<hex> of the document, "
                "from your build's manifest) instead of `query`, or use an open key to explore.",
            )
        return request
    if named is None:
        return request  # no document at all: the view says so
    document_id = normalized_id(named) if isinstance(named, str) else None
    if document_id is None:
        raise bad_input("A document id is `sha256:` followed by 64 lower-case hex digits.", argument=DOCUMENT_ID)
    principal = context.principal
    context.metering.document_id = document_id  # recorded in the ledger, found or not
    try:
        found = await registry.find(context.uow.execute, principal.partner_id, principal.documents_version, document_id)
    except DocumentRefused as refused:  # a field it reads left the schema since it was registered
        raise bad_input(f"Document {document_id} no longer validates: {refused}; register your new build.") from None
    if found is None:
        raise ApiError(
            ErrorCode.PERSISTED_QUERY_NOT_FOUND,
            f"No registered document {document_id}: ask the operator to register your build's manifest.",
            documentId=document_id,
        )
    context.document = found
    return replace(request, query=found.text)
