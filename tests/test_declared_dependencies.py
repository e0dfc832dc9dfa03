"""Every distribution the code imports is declared in pyproject.toml: the service's in
`dependencies`, the tests' and benchmarks' in the `test` extra. An undeclared import works only
while another package happens to pull it in (as `cross_web` and `graphql` once did).

The optional extras (`demo`: the seeder, `tracing`: OpenTelemetry) are imported only by the modules that need
them, so that a service installed without them starts."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCAL = {"api", "authz", "tests", "bench", "migrations", "tools"}
# extra -> the only modules of the service that may import its distributions (lazily imported by the others).
OPTIONAL = {"demo": {"api/data/seed.py"}, "tracing": {"api/http/tracing.py"}}


def _imported(folders: list[str]) -> dict[str, set[str]]:
    """Top-level modules imported anywhere under `folders` (including inside functions) -> files."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            # Imported for the type checker only: nothing needs to be installed at run time.
            typing_only = {
                id(inner)
                for node in ast.walk(tree)
                if isinstance(node, ast.If) and ast.unparse(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}
                for inner in ast.walk(node)
            }
            for node in ast.walk(tree):
                if id(node) in typing_only:
                    continue
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top not in sys.stdlib_module_names and top not in LOCAL:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _normalized(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name is not None, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def _declared(extra: str = "test") -> tuple[set[str], set[str]]:
    """The runtime distributions, and the extra's (with those of the extras it names, `partner-api[demo]`)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements, named = list(extras[extra]), set()
    while requirements:
        requirement = requirements.pop()
        if _normalized(requirement) == "partner-api":
            for other in re.findall(r"[\w-]+", requirement.partition("[")[2].partition("]")[0]):
                if other not in named:
                    named.add(other)
                    requirements.extend(extras[other])
        else:
            named.add(_normalized(requirement))
    return {_normalized(r) for r in project["dependencies"]}, named - set(extras)


def _undeclared(folders: list[str], declared: set[str]) -> dict[str, set[str]]:
    distributions = packages_distributions()
    missing = {}
    for module, files in sorted(_imported(folders).items()):
        providers = {_normalized(d) for d in distributions.get(module, [])}
        if not providers & declared:
            missing[f"{module} ({', '.join(sorted(providers)) or 'not installed'})"] = files
    return missing


def test_the_service_declares_every_distribution_it_imports():
    runtime, _ = _declared()
    optional = set().union(*(_declared(extra)[1] for extra in OPTIONAL))
    assert _undeclared(["api", "authz", "migrations"], runtime | optional) == {}


def test_only_the_modules_that_need_an_optional_extra_import_it():
    runtime, _ = _declared()
    for extra, modules in OPTIONAL.items():
        others = set().union(*(_declared(other)[1] for other in OPTIONAL if other != extra))
        importers = set().union(*_undeclared(["api", "authz", "migrations"], runtime | others).values())
        assert importers <= modules, extra
        assert importers, f"no module imports the {extra} extra any more: drop it or OPTIONAL's entry"


def test_tests_and_benchmarks_declare_every_distribution_they_import():
    runtime, test = _declared()
    assert _undeclared(["tests", "bench"], runtime | test) == {}


def test_an_undeclared_import_is_caught():
    assert "graphql (graphql-core)" in _undeclared(["api"], set())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_seeding_without_the_demo_extra_says_how_to_install_it(cli, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "faker" else find_spec(name, *a))
    result = cli("seed", "--size", "small")
    assert result.exit_code == 1 and "pip install 'partner-api[demo]'" in result.output
