"""The Lua script wrk posts with (bench/http_load.py): its body is the request's JSON, verbatim,
whatever the variables hold; the trusted document is sent by id with its variables and the key."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from api.documents.manifests import document_id_of
from bench.http_load import VARIANTS, lua_script
from bench.run import PAGE

# Lua's long string: `[`, n `=`, `[`, the content verbatim up to the first `]`, n `=`, `]`.
LONG_STRING_BODY = re.compile(r"^wrk\.body = \[(=*)\[(.*?)\]\1\]$", re.DOTALL | re.MULTILINE)
VARIABLES = {"p": "prc_abc", "from": "2020-06-01T00:00:00+00:00", "to": "2020-07-02T00:00:00+00:00"}


def body_of(script: str) -> Any:
    found = LONG_STRING_BODY.search(script)
    assert found, script
    return json.loads(found.group(2))


def test_the_trusted_document_is_posted_by_id_with_its_variables_and_the_trusted_key():
    trusted = next(v for v in VARIANTS if v.name == "trusted-compiled")
    script = lua_script(trusted.payload(PAGE, document_id_of(PAGE), VARIABLES), "pk_trusted.secret")
    assert body_of(script) == {"documentId": document_id_of(PAGE), "variables": VARIABLES}
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script
    assert 'wrk.headers["Authorization"] = "Bearer pk_trusted.secret"' in script


def test_the_page_as_text_is_posted_as_its_query():
    full = next(v for v in VARIANTS if v.name == "full")
    assert body_of(lua_script(full.payload(PAGE, "unused", VARIABLES), "pk_open.secret")) == {
        "query": PAGE,
        "variables": VARIABLES,
    }


@given(st.dictionaries(st.text(), st.text()))
def test_any_variables_reach_wrk_verbatim(variables):
    payload = {"documentId": "sha256:0", "variables": variables}
    assert body_of(lua_script(payload, "k")) == payload


def test_a_body_holding_the_closing_bracket_gets_a_longer_one():
    payload = {"documentId": "sha256:0", "variables": {"p": "]=]", "q": "]]"}}
    assert body_of(lua_script(payload, "k")) == payload
