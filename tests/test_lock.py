"""requirements.lock is what `make` installs: it must be resolved from pyproject.toml as it stands, and pin
every distribution pyproject.toml names (make lock regenerates it; tools/lock.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tools import lock

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def test_the_lock_was_resolved_from_pyproject_as_it_stands():
    assert lock.recorded_digest() == lock.inputs_digest(), "run `make lock` and commit requirements.lock"


def test_the_lock_pins_every_declared_distribution_with_hashes():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = {_name(r) for r in [*data["project"]["dependencies"], *data["build-system"]["requires"]]}
    for extra in data["project"]["optional-dependencies"].values():
        declared |= {_name(r) for r in extra if _name(r) != "partner-api"}
    text = (ROOT / "requirements.lock").read_text()
    pinned = {_name(m) for m in re.findall(r"^([A-Za-z0-9._-]+)==\S+ \\$", text, re.MULTILINE)}
    assert declared - pinned == set()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 3)[3])
    assert all("--hash=sha256:" in block for block in blocks)


def test_a_changed_requirement_makes_the_lock_stale(tmp_path):
    changed = tmp_path / "pyproject.toml"
    changed.write_text((ROOT / "pyproject.toml").read_text().replace('"httpx>=0.28,<0.29"', '"httpx>=0.28,<0.30"'))
    assert lock.inputs_digest(changed) != lock.inputs_digest()


def test_a_changed_comment_does_not(tmp_path):
    changed = tmp_path / "pyproject.toml"
    changed.write_text((ROOT / "pyproject.toml").read_text().replace("# /metrics", "# the /metrics endpoint"))
    assert lock.inputs_digest(changed) == lock.inputs_digest()
