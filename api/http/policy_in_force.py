"""The policy each request is decided by, swapped in without a restart.

`partner-api policy reload` (or SIGHUP to `serve`) checks the policy directory and, when it passes,
stores its texts as a new policy release (api/operators/policy_release.py). Authentication reads the
latest release id with the key, as it reads the partner's grants version; a worker that sees a newer
one loads that release's texts (the very texts checked) before deciding the request. Everything
derived from the policy lives in `PolicyInForce` and goes with it: the compiled SQL filters and
field sets cached by the `Authorizer`, and the ledger's sensitive field groups.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from api.data.database import make_sync_engine
from api.data.models import PolicyRelease
from api.ledger.disclosure_recorder import FieldGroups, sensitive_field_groups
from api.settings import Settings
from authz.checking import CheckReport, check_sources
from authz.engine import POLICY_DIR, Authorizer, load_texts, new_oso
from authz.polar_source import PolicySources
from authz.policy_dir import policy_files

__all__ = ["LivePolicy", "PolicyInForce", "PolicyRefused", "policy_digest", "read_checked", "starting_policy"]

logger = logging.getLogger("api.policy")


def policy_digest(texts: Mapping[str, str]) -> str:
    """One hash for a policy's texts, file names included: equal digests, equal policies."""
    digest = hashlib.sha256()
    for name in sorted(texts):
        digest.update(f"{len(name)}:{name}{len(texts[name])}:{texts[name]}".encode())
    return digest.hexdigest()


class PolicyRefused(RuntimeError):
    """A policy directory that fails `partner-api policy check`: never loaded."""

    def __init__(self, directory: Path, report: CheckReport) -> None:
        problems = "\n".join(str(p) for p in report.problems if p.severity == "error")
        super().__init__(f"the policy in {directory} is refused ({report.summary}):\n{problems}")
        self.report = report


def read_checked(directory: Path) -> tuple[dict[str, str], CheckReport]:
    """The directory's .polar texts (by file name) and their `policy check` report."""
    files = policy_files(directory)
    sources = PolicySources.read(files)
    report = check_sources(files, sources)
    return {Path(name).name: text for name, text in sources.texts.items()}, report


def starting_policy(settings: Settings) -> LivePolicy:
    """A worker's first policy: the latest release (what `serve` checked and released at its start, or
    a later reload), else the directory of PARTNER_API_POLICY_DIR once it passes `policy check`
    (a worker does not start on a refused policy), else the shipped policy, which its tests check."""
    release = latest_release(settings.database_url)
    if release is not None:
        texts = release.sources
        return LivePolicy(PolicyInForce.of(Authorizer(load_texts(new_oso(), texts)), release.id, release.digest))
    if settings.policy_dir is None:
        texts = {path.name: path.read_text(encoding="utf-8") for path in policy_files(POLICY_DIR)}
    else:
        texts, report = read_checked(settings.policy_dir)
        if not report.ok:
            raise PolicyRefused(settings.policy_dir, report)
    return LivePolicy(PolicyInForce.of(Authorizer(load_texts(new_oso(), texts)), None, policy_digest(texts)))


def latest_release(database_url: str) -> PolicyRelease | None:
    """The policy release in force (the newest), or None before any."""
    engine = make_sync_engine(database_url)
    try:
        with Session(engine) as session:
            return session.scalars(select(PolicyRelease).order_by(PolicyRelease.id.desc()).limit(1)).first()
    except SQLAlchemyError:  # unreachable, or not migrated yet: /readyz says so; the directory serves meanwhile
        logger.warning("no policy release could be read: starting with the policy directory", exc_info=True)
        return None
    finally:
        engine.dispose()


@dataclass(frozen=True)
class PolicyInForce:
    """One policy and what is derived from it; replaced whole, never changed in place."""

    authorizer: Authorizer
    field_groups: FieldGroups
    version: int | None  # the release id; None: the policy the worker started with, before any release
    digest: str | None  # None for a policy given in code (tests)

    @classmethod
    def of(cls, authorizer: Authorizer, version: int | None = None, digest: str | None = None) -> PolicyInForce:
        return cls(
            authorizer, sensitive_field_groups(authorizer.field_scopes, authorizer.purpose_bound), version, digest
        )


class LivePolicy:
    """The worker's policy in force, brought up to the latest release on the request that sees it."""

    def __init__(self, initial: PolicyInForce, *, follows_releases: bool = True) -> None:
        self.current, self.follows_releases = initial, follows_releases
        self._lock = asyncio.Lock()
        self._unloadable: set[int] = set()  # releases that failed to load here: not retried on every request

    async def for_release(self, version: int | None, session: AsyncSession) -> PolicyInForce:
        """The policy of release `version` (the latest, as authentication read it)."""
        if not self.follows_releases or version in (None, self.current.version) or version in self._unloadable:
            return self.current
        async with self._lock:  # one load per worker, however many requests see the release at once
            if version != self.current.version:
                release = await session.get(PolicyRelease, version)
                if release is not None:
                    self._adopt(release)
        return self.current

    def _adopt(self, release: PolicyRelease) -> None:
        if release.digest == self.current.digest:  # the same texts (`serve` releases what it started with)
            self.current = replace(self.current, version=release.id)
            return
        try:
            authorizer = Authorizer(load_texts(new_oso(), release.sources))
        except Exception:  # checked before release, so never expected: the policy in force stays
            logger.exception(
                "policy release %d could not be loaded; release %s stays in force", release.id, self.current.version
            )
            self._unloadable.add(release.id)
            return
        self.current = PolicyInForce.of(authorizer, release.id, release.digest)
        logger.info("policy release %d in force (from %s)", release.id, release.directory)
