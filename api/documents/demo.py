"""The demo's trusted key: Logimed's build registered (the partner guide's operations, as
graphql-codegen's client-preset emits them: tests/node/client/), and a key that runs only those.
The demo's other keys stay open, for exploring in GraphiQL."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.documents import service
from api.operators import accounts

__all__ = ["DEMO_MANIFEST", "DEMO_PARTNER", "add_trusted_demo_key"]

DEMO_PARTNER = "Logimed"
# A copy of tests/node/client/manifests/codegen-persisted-documents.json (tests/documents/ checks it).
DEMO_MANIFEST = Path(__file__).with_name("demo-persisted-documents.json")


def add_trusted_demo_key(engine: Engine, checker: service.DocumentChecker, keys: dict[str, Any]) -> dict[str, Any]:
    """Registers the sample manifest for the demo partner and issues it a trusted key, once; returns
    what the keys file says of it (`trusted_key`, and each registered document's id by operation)."""
    entry: dict[str, Any] = keys.get(DEMO_PARTNER, {})
    if "trusted_key" in entry:
        return entry
    with Session(engine, expire_on_commit=False) as session, session.begin():
        registered = service.register(session, checker, DEMO_PARTNER, DEMO_MANIFEST.read_bytes())
        key = accounts.issue_partner_key(session, DEMO_PARTNER, label="demo, trusted")
    entry["trusted_key"] = key.token
    entry["documents"] = {
        r.row.operation_name or re.sub(r"\W", "", r.row.document_id): r.row.document_id for r in registered
    }
    keys[DEMO_PARTNER] = entry
    return entry
