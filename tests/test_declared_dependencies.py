"""Every distribution the code imports is declared in pyproject.toml: the service's in
`dependencies`, the tests' and benchmarks' in the `test` extra. An undeclared import works only
while another package happens to pull it in (as `cross_web` and `graphql` once did)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCAL = {"api", "authz", "tests", "bench", "migrations"}


def _imported(folders: list[str]) -> dict[str, set[str]]:
    """Top-level modules imported anywhere under `folders` (including inside functions) -> files."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
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


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return (
        {_normalized(r) for r in project["dependencies"]},
        {_normalized(r) for r in project["optional-dependencies"]["test"]},
    )


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
    assert _undeclared(["api", "authz", "migrations"], runtime) == {}


def test_tests_and_benchmarks_declare_every_distribution_they_import():
    runtime, test = _declared()
    assert _undeclared(["tests", "bench"], runtime | test) == {}


def test_an_undeclared_import_is_caught():
    assert "graphql (graphql-core)" in _undeclared(["api"], set())
