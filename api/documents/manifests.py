"""The persisted-operation manifests partners' build tools emit, read into (id, text) entries.

- graphql-codegen's client-preset (`persisted-documents.json`): `{"sha256:<hex>": "<text>"}`;
- relay-compiler's local persisting (`persistConfig.file`): `{"<hex>": "<text>"}`;
- Apollo's `@apollo/generate-persisted-query-manifest`: `{"format": "apollo-persisted-query-manifest",
  "version": 1, "operations": [{"id", "name", "type", "body"}]}`.

A document's id is `sha256:` and the SHA-256 of its exact text, in lower-case hex: the id a client
sends is then a commitment to the text, whichever tool made it. An entry whose id is not that hash
is refused, saying how to set the tool to SHA-256 when it used another algorithm.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["ManifestEntry", "ManifestError", "document_id_of", "normalized_id", "read_manifest"]

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
DOCUMENT_ID = re.compile(r"sha256:[0-9a-f]{64}")
APOLLO_FORMAT = "apollo-persisted-query-manifest"

# How to make each tool use SHA-256: told with an id of another length (MD5: 32 hex, SHA-1: 40).
SHA256_SETTINGS = {
    "codegen": "graphql-codegen client-preset: presetConfig: { persistedDocuments: { hashAlgorithm: 'sha256' } }",
    "relay": 'relay-compiler: "persistConfig": { "file": "...", "algorithm": "SHA256" }',
    "apollo": "@apollo/generate-persisted-query-manifest: keep its default createOperationId (SHA-256 of the body)",
}


class ManifestError(ValueError):
    """The manifest cannot be registered; `problems` says why, one line per entry at fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ManifestEntry:
    document_id: str  # sha256:<hex>
    text: str
    manifest_format: str  # codegen, relay or apollo
    name: str | None = None  # as the manifest names it (Apollo's does)


def document_id_of(text: str) -> str:
    """The id of a document: `sha256:` and the SHA-256 of its UTF-8 text."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalized_id(value: str) -> str | None:
    """`sha256:<hex>` for an id given as that or as bare hex (Apollo's `sha256Hash`); None otherwise."""
    if DOCUMENT_ID.fullmatch(value):
        return value
    if SHA256_HEX.fullmatch(value):
        return f"sha256:{value}"
    return None


def read_manifest(data: bytes | str) -> list[ManifestEntry]:
    """The entries of a manifest in any of the three formats; ManifestError lists every entry at fault."""
    try:
        manifest = json.loads(data)
    except ValueError as error:
        raise ManifestError([f"the manifest is not JSON: {error}"]) from None
    except RecursionError:  # nested deeper than the JSON parser goes: no tool writes that
        raise ManifestError(["the manifest is nested too deeply to be one"]) from None
    if isinstance(manifest, dict) and manifest.get("format") == APOLLO_FORMAT:
        return _checked(_apollo(manifest), "apollo")
    if isinstance(manifest, dict) and manifest and all(isinstance(v, str) for v in manifest.values()):
        # codegen writes "sha256:<hex>" keys, relay bare hex: the same map otherwise
        kind = "codegen" if all(k.startswith("sha256:") for k in manifest) else "relay"
        return _checked([ManifestEntry(k, v, kind) for k, v in manifest.items()], kind)
    raise ManifestError(
        [
            "not a manifest: expected graphql-codegen's persisted-documents.json or relay-compiler's "
            'persisted queries ({"id": "document text", ...}), or Apollo\'s persisted query manifest '
            f'({{"format": "{APOLLO_FORMAT}", "operations": [...]}})'
        ]
    )


def _hint(kind: str) -> str:
    """How to set the tool to SHA-256; the two id-to-text formats differ only in their keys' prefix."""
    if kind == "apollo":
        return SHA256_SETTINGS["apollo"]
    return f"{SHA256_SETTINGS['codegen']}; or {SHA256_SETTINGS['relay']}"


def _apollo(manifest: dict[str, Any]) -> list[ManifestEntry]:
    if manifest.get("version") != 1 or not isinstance(manifest.get("operations"), list):
        raise ManifestError([f"an {APOLLO_FORMAT} must have version 1 and a list of operations"])
    entries, problems = [], []
    for i, operation in enumerate(manifest["operations"]):
        if not (
            isinstance(operation, dict)
            and isinstance(operation.get("id"), str)
            and isinstance(operation.get("body"), str)
            and isinstance(operation.get("name", ""), (str, type(None)))
        ):
            problems.append(f"operations[{i}]: needs a string `id` and `body`")
            continue
        entries.append(ManifestEntry(operation["id"], operation["body"], "apollo", operation.get("name")))
    if problems:
        raise ManifestError(problems)
    return entries


def _checked(entries: list[ManifestEntry], kind: str) -> list[ManifestEntry]:
    """Each entry under its normalized id, once its id is proven to be the hash of its text."""
    if not entries:
        raise ManifestError(["the manifest holds no document"])
    checked, problems = [], []
    for entry in entries:
        expected = document_id_of(entry.text)
        given = normalized_id(entry.document_id)
        if given is None:
            bare = entry.document_id.removeprefix("sha256:")
            algorithm = {32: "MD5", 40: "SHA-1"}.get(len(bare), "not SHA-256")
            problems.append(
                f"{entry.document_id[:80]}: this id is {algorithm}, not SHA-256; ids must be the SHA-256 of the "
                f"document text. Configure {_hint(kind)}"
            )
        elif given != expected:
            problems.append(f"{entry.document_id}: the id does not match its text (its SHA-256 is {expected})")
        else:
            checked.append(ManifestEntry(given, entry.text, kind, entry.name))
    if problems:
        raise ManifestError(problems)
    return checked
