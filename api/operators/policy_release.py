"""Putting a policy in force: `partner-api policy reload`, SIGHUP to `serve`, and `serve` at start.

The policy directory is read once and checked (`partner-api policy check`); only a policy that
passes becomes a release, its texts stored as they were checked. Every worker of every server on
the database loads the latest release on its next request (api/http/policy_in_force.py); a refused
policy changes nothing, and the release in force keeps serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.data.models import PolicyRelease
from api.http.policy_in_force import policy_digest, read_checked
from authz.checking import CheckReport

__all__ = ["Release", "release_policy"]


@dataclass(frozen=True)
class Release:
    directory: Path
    report: CheckReport
    release_id: int | None  # the release in force afterwards (None: refused, and none was ever made)
    changed: bool  # a new release was made
    replaced: str | None = None  # a new release's predecessor of another directory: "release 2 of /etc/policy"

    @property
    def summary(self) -> str:
        if not self.report.ok:
            kept = f"release {self.release_id}" if self.release_id else "the policy the server started with"
            return f"{self.report.summary}: not loaded; {kept} keeps serving"
        if not self.changed:
            return f"{self.report.summary}; unchanged: release {self.release_id} is in force"
        replacing = f", replacing {self.replaced}" if self.replaced else ""
        return (
            f"{self.report.summary}; release {self.release_id} of {self.directory.resolve()}{replacing}: "
            "in force on every worker from its next request"
        )


def release_policy(engine: Engine, directory: Path) -> Release:
    """Check the directory's policy and, when it passes and differs from the latest release, release it."""
    texts, report = read_checked(directory)
    with Session(engine) as session, session.begin():
        latest = session.scalars(select(PolicyRelease).order_by(PolicyRelease.id.desc()).limit(1)).first()
        if not report.ok:
            return Release(directory, report, latest.id if latest else None, changed=False)
        digest = policy_digest(texts)
        if latest is not None and latest.digest == digest:
            return Release(directory, report, latest.id, changed=False)
        release = PolicyRelease(digest=digest, sources=texts, directory=str(directory.resolve()))
        session.add(release)
        session.flush()
        replaced = None
        if latest is not None and latest.directory != release.directory:
            replaced = f"release {latest.id} of {latest.directory}"
        return Release(directory, report, release.id, changed=True, replaced=replaced)
