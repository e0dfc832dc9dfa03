"""The integrators' own Node tools: the sample manifests are what they make, and real clients run
registered documents by id: Apollo Client's persisted-queries link fed by Apollo's manifest, and
graphql-request sending codegen's ids with a request middleware."""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.data.models import AccessRecord
from tests.documents.conftest import APOLLO, CODEGEN, MANIFESTS, ids
from tests.server_process import PARTNER_API, partner_api_env, running_server
from tests.world import window_args

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed (make test needs Node.js 20+)")


@pytest.fixture(scope="module", autouse=True)
def node_tools() -> None:
    if not (NODE_DIR / "node_modules" / ".installed-from-lock").exists():
        pytest.fail("the Node tools are not installed: make tests/node/node_modules/.installed-from-lock")


def node_client(script: str, database_url: str, key: str, manifest: Path, variables: dict[str, Any]) -> Any:
    """What a client script of tests/node answers (its last line, JSON), run against `partner-api serve`."""
    env = partner_api_env(database_url, secret_key="test-secret", graphiql="false")
    with running_server(lambda port: [PARTNER_API, "serve", "--port", str(port)], env) as server:
        ran = subprocess.run(
            [NODE, str(NODE_DIR / script), f"{server.base}/graphql", key, str(manifest), json.dumps(variables)],
            check=True, capture_output=True, text=True, timeout=120,
        )
    return json.loads(ran.stdout.strip().splitlines()[-1])


def test_the_sample_manifests_are_what_the_tools_make_of_the_guides_operations(tmp_path):
    subprocess.run([str(NODE_DIR / "generate-manifests.sh"), str(tmp_path)], check=True, capture_output=True)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in MANIFESTS.iterdir())
    drifted = [name for name in made if not filecmp.cmp(tmp_path / name, MANIFESTS / name, shallow=False)]
    assert drifted == [], f"re-run tests/node/generate-manifests.sh and commit: {drifted}"


def test_apollo_client_runs_registered_documents_by_id(database_url, world, register, trusted_key, sync_engine):
    register("full", APOLLO)
    key = trusted_key("full")
    variables = {
        "Day": {"practiceId": world.practice_id("A"), **window_args()},
        "One": {"id": world.appointments["A"][0]},
    }
    answers = node_client("apollo-trusted-client.mjs", database_url, key, APOLLO, variables)
    assert {name: answer["error"] for name, answer in answers.items()} == {"Me": None, "Day": None, "One": None}
    assert answers["Me"]["data"]["viewer"]["name"] == "full"
    assert len(answers["Day"]["data"]["appointments"]["edges"]) == 6
    assert answers["One"]["data"]["node"]["status"] == "BOOKED"
    # Sent by id, never as text: the ledger names each registered document, and no query was sent.
    with Session(sync_engine) as session:
        sent = session.execute(select(AccessRecord.document_id, AccessRecord.outcome)).all()
    assert sorted(sent) == sorted((ids(APOLLO)[name], "served") for name in ("Me", "Day", "One"))


def test_graphql_request_sends_codegens_document_ids(database_url, world, register, trusted_key, sync_engine):
    register("full", CODEGEN)
    key = trusted_key("full")
    variables = {"Day": {"practiceId": world.practice_id("A"), **window_args()}}
    answers = node_client("graphql-request-trusted-client.mjs", database_url, key, CODEGEN, variables)
    assert (answers["Me"]["error"], answers["Day"]["error"], answers["sentText"]) == (None, None, False)
    assert answers["Me"]["data"]["viewer"]["name"] == "full"
    assert len(answers["Day"]["data"]["appointments"]["edges"]) == 6
    with Session(sync_engine) as session:
        sent = session.execute(select(AccessRecord.document_id, AccessRecord.outcome)).all()
    assert sorted(sent) == sorted((ids(CODEGEN)[name], "served") for name in ("Me", "Day"))
