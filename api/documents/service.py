"""Registering, listing, showing and removing a partner's trusted documents: the use cases of
`partner-api documents ...`, shared with the seeder and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from graphql import GraphQLSchema
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.data.models import Grant, Partner, TrustedDocument
from api.documents.analysis import Analysis, DocumentRefused, analyse
from api.documents.manifests import ManifestEntry, ManifestError, normalized_id, read_manifest
from api.operators.accounts import OperatorError, find_partner
from api.protection.shape_limits import ValidationRules
from api.settings import Settings
from api.timeutil import utcnow
from authz.actors import PartnerActor
from authz.engine import Authorizer

__all__ = ["DocumentChecker", "Registered", "RegistrationRefused", "listed", "register", "remove", "show"]


class RegistrationRefused(OperatorError):
    """Nothing was registered: `problems` names each document at fault and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("nothing was registered:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class DocumentChecker:
    """What registration checks a document against: the schema, the limits and the policy."""

    schema: GraphQLSchema
    settings: Settings
    rules: ValidationRules
    authorizer: Authorizer


@dataclass(frozen=True)
class Registered:
    row: TrustedDocument
    status: str  # added, restored (had been removed) or unchanged


def readable_anywhere(session: Session, authorizer: Authorizer, partner: Partner, now: datetime) -> frozenset[str]:
    """The "Type.field" names some grant of the partner lets it read now (inside its reading horizon),
    as the policy decides for each grant."""
    actor = PartnerActor(partner.id, partner.name, now)
    grants = session.scalars(select(Grant).where(Grant.partner_id == partner.id)).all()
    return frozenset().union(*(authorizer.readable_fields(actor, grant, in_horizon=True) for grant in grants))


def register(session: Session, checker: DocumentChecker, partner_name: str, manifest: bytes) -> list[Registered]:
    """Registers every document of the manifest, or none: RegistrationRefused lists each problem."""
    partner = find_partner(session, partner_name)
    try:
        entries = read_manifest(manifest)
    except ManifestError as error:
        raise RegistrationRefused(error.problems) from None
    readable = readable_anywhere(session, checker.authorizer, partner, utcnow())

    def unreadable(field: str) -> str | None:
        reason = checker.authorizer.field_rules.unreadable(field, readable)
        return None if reason is None else str(reason)

    analysed: list[tuple[ManifestEntry, Analysis]] = []
    problems: list[str] = []
    for entry in entries:
        try:
            analysis = analyse(
                checker.schema, entry.text, checker.settings, checker.rules, checker.authorizer.field_rules, unreadable
            )
        except DocumentRefused as refused:
            label = f"{entry.name or _name_in(entry.text)} ({entry.document_id})"
            problems.extend(f"{label}: {problem}" for problem in refused.problems)
            continue
        analysed.append((entry, analysis))
    if problems:
        raise RegistrationRefused(problems)
    return [_store(session, partner, entry, analysis) for entry, analysis in analysed]


def _name_in(text: str) -> str:
    words = text.split("(")[0].split("{")[0].split()
    return words[1] if len(words) > 1 else "(anonymous)"


def _store(session: Session, partner: Partner, entry: ManifestEntry, analysis: Analysis) -> Registered:
    row = session.scalar(
        select(TrustedDocument).where(
            TrustedDocument.partner_id == partner.id, TrustedDocument.document_id == entry.document_id
        )
    )
    status = "unchanged"
    if row is None:
        row = TrustedDocument(partner_id=partner.id, document_id=entry.document_id, text=entry.text)
        session.add(row)
        status = "added"
    elif row.revoked_at is not None:
        row.revoked_at, row.registered_at, status = None, utcnow(), "restored"
    # Priced and checked anew: the schema, the costs or the partner's grants may have changed.
    row.operation_name = analysis.operation_name
    row.operation_type = analysis.operation_type
    row.cost = analysis.cost
    row.fields = " ".join(analysis.fields)
    row.scopes = "\n".join(analysis.scopes)
    row.manifest_format = entry.manifest_format
    session.flush()
    return Registered(row, status)


def listed(session: Session, partner_name: str, with_removed: bool = False) -> list[TrustedDocument]:
    partner = find_partner(session, partner_name)
    statement = select(TrustedDocument).where(TrustedDocument.partner_id == partner.id)
    if not with_removed:
        statement = statement.where(TrustedDocument.revoked_at.is_(None))
    return list(session.scalars(statement.order_by(TrustedDocument.operation_name, TrustedDocument.id)))


def show(session: Session, partner_name: str, document_id: str) -> TrustedDocument:
    partner = find_partner(session, partner_name)
    wanted = normalized_id(document_id)
    if wanted is None:
        raise OperatorError(f"{document_id!r} is not a document id (sha256:<64 hex digits>)")
    row = session.scalar(
        select(TrustedDocument).where(TrustedDocument.partner_id == partner.id, TrustedDocument.document_id == wanted)
    )
    if row is None:
        raise OperatorError(f"{partner.name} has no document {wanted}")
    return row


def remove(session: Session, partner_name: str, document_id: str) -> TrustedDocument:
    """Revokes the document at once: every worker refuses it on the partner's next request (the
    row stays, for the ledger's records that name it)."""
    row = show(session, partner_name, document_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row
