"""Manifests as the integrators' tools write them: read, and refused when an id is not its text's SHA-256."""

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.documents.manifests import ManifestError, document_id_of, normalized_id, read_manifest

MANIFESTS = Path(__file__).resolve().parents[1] / "node" / "client" / "manifests"
SAMPLES = {
    "codegen": MANIFESTS / "codegen-persisted-documents.json",
    "relay": MANIFESTS / "relay-persisted-queries.json",
    "apollo": MANIFESTS / "apollo-persisted-query-manifest.json",
}


@pytest.mark.parametrize("kind", SAMPLES)
def test_each_tools_manifest_is_read_with_sha256_ids(kind):
    entries = read_manifest(SAMPLES[kind].read_bytes())
    assert {e.manifest_format for e in entries} == {kind}
    assert len(entries) == 5
    for entry in entries:
        assert entry.document_id == "sha256:" + hashlib.sha256(entry.text.encode()).hexdigest()


def test_an_id_that_is_not_the_hash_of_its_text_is_refused():
    manifest = json.loads(SAMPLES["codegen"].read_text())
    first = next(iter(manifest))
    manifest[first] = manifest[first].replace("status", "reason")  # the text changed after hashing
    with pytest.raises(ManifestError) as refused:
        read_manifest(json.dumps(manifest))
    assert refused.value.problems == [
        f"{first}: the id does not match its text (its SHA-256 is {document_id_of(manifest[first])})"
    ]


@pytest.mark.parametrize(("length", "algorithm"), [(32, "MD5"), (40, "SHA-1")])
def test_another_algorithm_is_refused_with_how_to_configure_sha256(length, algorithm):
    manifest = {"a" * length: "query Me { viewer { name } }"}
    with pytest.raises(ManifestError) as refused:
        read_manifest(json.dumps(manifest))
    (problem,) = refused.value.problems
    assert f"this id is {algorithm}, not SHA-256" in problem
    assert "hashAlgorithm: 'sha256'" in problem and '"algorithm": "SHA256"' in problem


def test_an_apollo_entry_with_a_foreign_id_says_how_to_fix_it():
    manifest = {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [{"id": "b" * 64, "name": "Me", "type": "query", "body": "query Me { viewer { name } }"}],
    }
    with pytest.raises(ManifestError, match="the id does not match its text"):
        read_manifest(json.dumps(manifest))


@pytest.mark.parametrize("data", ["not json", "[]", "{}", '{"a": 1}', '{"format": "apollo-persisted-query-manifest"}'])
def test_what_is_not_a_manifest_is_refused_plainly(data):
    with pytest.raises(ManifestError):
        read_manifest(data)


@given(st.text())
def test_every_text_is_its_own_id_and_no_other(text):
    entry = read_manifest(json.dumps({document_id_of(text): text}))[0] if text else None
    if entry is not None:
        assert entry.document_id == document_id_of(text)
    other = text + " "
    with pytest.raises(ManifestError):
        read_manifest(json.dumps({document_id_of(text): other}))


@given(st.text(max_size=80))
def test_only_sha256_ids_are_accepted_as_document_ids(value):
    normalized = normalized_id(value)
    assert normalized is None or (len(normalized) == 71 and normalized.startswith("sha256:"))
