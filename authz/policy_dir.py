"""Which .polar files make the policy: every file of one directory, loaded together.

The server reads `PARTNER_API_POLICY_DIR` (by default the policy shipped in `authz/`); every
policy tool takes `--policy` the same way (`selected_files`), so that checking or testing one
file always means checking or testing it with the rest of its policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from authz.engine import POLICY_DIR

__all__ = ["policy_dir", "policy_files", "selected_files"]


def policy_dir() -> Path:
    """The directory the server loads: `PARTNER_API_POLICY_DIR`, else the shipped policy."""
    from api.settings import get_settings

    return get_settings().policy_dir or POLICY_DIR


def policy_files(directory: Path) -> tuple[Path, ...]:
    """The .polar files of a directory, in name order (the order never changes what a rule means)."""
    return tuple(sorted(directory.glob("*.polar")))


def selected_files(paths: Sequence[Path] | None = None, directory: Path | None = None) -> tuple[Path, ...]:
    """`--policy` as every tool reads it. A directory gives all its files; a file replaces the file
    of the same name in the policy directory (or joins them). Nothing given: the policy directory."""
    paths = list(paths or [])
    directories = [p for p in paths if p.is_dir()]
    chosen = {f.name: f for d in directories or [directory or policy_dir()] for f in policy_files(d)}
    for path in paths:
        if not path.is_dir():
            chosen[path.name] = path  # a missing file or another extension is reported by `policy check`
    return tuple(chosen.values())
