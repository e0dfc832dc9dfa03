"""The integrators' Node tools accept the schema and the partner guide's operations: relay-compiler
with `@connection` on `appointments` (it needs Relay's complete PageInfo), and graphql-codegen's
client preset (typed operations). Both from tests/node, installed by `make test` (npm ci)."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.schema.test_partner_guide import EXAMPLES

ROOT = Path(__file__).resolve().parents[2]
NODE_TOOLS = ROOT / "tests" / "node"
BIN = NODE_TOOLS / "node_modules" / ".bin"
SCHEMA = ROOT / "schema.graphql"
OPERATION = re.compile(r"\b(query|mutation) (\w+)")
CONNECTIONS = ("Day", "DayEnd")  # the guide's pages of appointments, forward and backward


@pytest.fixture(scope="module")
def tools() -> Path:
    if not (BIN / "relay-compiler").exists() or not (BIN / "graphql-codegen").exists():
        pytest.fail("the Node tools are not installed: make tests/node/node_modules/.installed-from-lock")
    return BIN


def guide_operations() -> dict[str, str]:
    """The guide's operations by name (Day, Book, Cancel…)."""
    return {OPERATION.search(query).group(2): query for query, _ in EXAMPLES}


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def relay_project(directory: Path, schema: Path, only: tuple[str, ...] | None = None) -> Path:
    """A Relay project holding every guide operation, `appointments` of Day as a `@connection`.
    Relay names an operation after its module: `Day.ts` holds `DayQuery`."""
    source = directory / "src"
    (source / "__generated__").mkdir(parents=True)
    for name, document in guide_operations().items():
        if only is not None and name not in only:
            continue
        renamed = OPERATION.sub(lambda m: f"{m.group(1)} {m.group(2)}{m.group(1).title()}", document, count=1)
        if name in CONNECTIONS:
            renamed, found = re.subn(
                r"(appointments\([^)]*\))", rf'\1 @connection(key: "{name}_appointments")', renamed
            )
            assert found == 1
        (source / f"{name}.ts").write_text(
            'import { graphql } from "relay-runtime";\nexport const document = graphql`\n' + renamed + "`;\n"
        )
    config = {
        "src": "./src",
        "schema": str(schema),
        "language": "typescript",
        "artifactDirectory": "./src/__generated__",
    }
    (directory / "relay.config.json").write_text(json.dumps(config))
    return directory


def test_relay_compiler_accepts_appointments_as_a_connection(tools, tmp_path):
    project = relay_project(tmp_path, SCHEMA)
    compiled = run([str(tools / "relay-compiler")], project)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    forward = (project / "src" / "__generated__" / "DayQuery.graphql.ts").read_text()
    backward = (project / "src" / "__generated__" / "DayEndQuery.graphql.ts").read_text()
    assert '"key": "Day_appointments"' in forward and '"key": "DayEnd_appointments"' in backward
    # Relay pages a backward connection with the PageInfo fields the schema lacked.
    assert '"name": "hasPreviousPage"' in backward and '"name": "startCursor"' in backward
    assert len(list((project / "src" / "__generated__").glob("*.graphql.ts"))) == len(guide_operations())


def test_relay_compiler_refuses_the_released_schema_without_a_complete_page_info(tools, tmp_path):
    """The check above can fail: with the schema released before PageInfo was completed, the guide's
    forward `Day` page, valid against it, is refused as a connection."""
    project = relay_project(tmp_path, ROOT / "schema-releases" / "released.graphql", only=("Day",))
    compiled = run([str(tools / "relay-compiler")], project)
    output = compiled.stdout + compiled.stderr
    assert compiled.returncode != 0 and ("hasPreviousPage" in output or "startCursor" in output), output


def test_graphql_codegen_types_every_guide_operation(tools, tmp_path):
    documents = tmp_path / "operations"
    documents.mkdir()
    for name, document in guide_operations().items():
        (documents / f"{name}.graphql").write_text(document)
    preset = NODE_TOOLS / "node_modules" / "@graphql-codegen" / "client-preset"
    config = {
        "schema": str(SCHEMA),
        "documents": [f"{documents}/*.graphql"],
        "generates": {f"{tmp_path}/gql/": {"preset": str(preset)}},
    }
    (tmp_path / "codegen.json").write_text(json.dumps(config))
    generated = run([str(tools / "graphql-codegen"), "--config", "codegen.json"], tmp_path)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    types = (tmp_path / "gql" / "graphql.ts").read_text()
    for name, document in guide_operations().items():
        kind = OPERATION.search(document).group(1).title()
        assert f"export type {name}{kind} = " in types
    # The cancellation's payload is a union: a client can tell a refusal from a success.
    cancel = types[types.index("export type CancelMutation = ") :].split(";\n", 1)[0]
    assert "__typename: 'AppointmentCancelled'" in cancel and "__typename: 'WriteRefused'" in cancel
    assert "hasPreviousPage: boolean, startCursor: string | null" in types
