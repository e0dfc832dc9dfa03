"""The data model: practices, their people and appointments, and the partners they connect to.

Integer primary keys stay inside the database; everything exposed is named by `public_id`
(see `api.ids`). All datetimes are timezone-aware UTC (`UTCDateTime`).
"""

from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from api import reading_horizon
from api.ids import new_public_id
from api.scopes import Scope
from api.timeutil import UTCDateTime, utcnow

# Deterministic constraint names, so that migrations name them the same on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL, INTEGER on SQLite (where only INTEGER PRIMARY KEY autoincrements).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _public_id(kind: str) -> Mapped[str]:
    return mapped_column(String(32), unique=True, default=lambda: new_public_id(kind))


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # A CHECK constraint rather than a native PostgreSQL enum: adding a value is a plain migration.
    return Enum(cls, name=name, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])


# The ledger names practices, patients and appointments by their ids (`disclosures`), and keeps them when
# the record is deleted: an id given again would make the exposure report name someone never shown.
# SQLite reuses the highest id once its row is deleted, unless the table is AUTOINCREMENT; PostgreSQL's
# sequences never reuse one.
NEVER_REUSED_IDS = {"sqlite_autoincrement": True}


class Practice(Base):
    """A medical office or health establishment, and the owner of its patient file."""

    __tablename__ = "practices"
    __table_args__ = (NEVER_REUSED_IDS,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = _public_id("Practice")
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(300))
    timezone: Mapped[str] = mapped_column(String(64), default="Europe/Paris")

    memberships: Mapped[list[PracticeMembership]] = relationship(back_populates="practice")


class Practitioner(Base):
    __tablename__ = "practitioners"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    specialty: Mapped[str] = mapped_column(String(100))
    rpps: Mapped[str] = mapped_column(String(11), unique=True, comment="National professional id (RPPS)")

    memberships: Mapped[list[PracticeMembership]] = relationship(back_populates="practitioner")


class PracticeMembership(Base):
    """A practitioner working at a practice (a practitioner may work at several).

    This is what partners see as a `Practitioner`: its public id names the practitioner *at
    this practice*, so a partner of one practice learns nothing of the others.
    """

    __tablename__ = "practice_memberships"

    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id", ondelete="CASCADE"), primary_key=True)
    practitioner_id: Mapped[int] = mapped_column(
        ForeignKey("practitioners.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    public_id: Mapped[str] = _public_id("Practitioner")

    practice: Mapped[Practice] = relationship(back_populates="memberships")
    practitioner: Mapped[Practitioner] = relationship(back_populates="memberships")


class Gender(enum.StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class Patient(Base):
    """A patient record of one practice's file: the same person at two practices is two records."""

    __tablename__ = "patients"
    __table_args__ = (NEVER_REUSED_IDS,)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = _public_id("Patient")
    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id", ondelete="CASCADE"), index=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    gender: Mapped[Gender] = mapped_column(_enum(Gender, "gender"))
    birth_date: Mapped[date | None] = mapped_column(Date)
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source_partner_id: Mapped[int | None] = mapped_column(
        ForeignKey("partners.id"), comment="Partner that created the record with a booking; NULL when the practice did"
    )


class AppointmentStatus(enum.StrEnum):
    BOOKED = "booked"
    ARRIVED = "arrived"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    NOSHOW = "noshow"


class Appointment(Base):
    __tablename__ = "appointments"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        # The partner's day view and keyset paging: practice, then start time.
        # Cursors carry (starts_at, public_id): no internal id ever leaves the database.
        Index("ix_appointments_practice_starts", "practice_id", "starts_at", "public_id"),
        # The sync feed: practice, then change sequence.
        Index("ix_appointments_practice_change_seq", "practice_id", "change_seq"),
        Index("ix_appointments_practitioner_starts", "practitioner_id", "starts_at"),
        # A patient's appointments in a practice's reading horizon (api/services/horizon.py `patient_inside`).
        Index("ix_appointments_patient_practice_starts", "patient_id", "practice_id", "starts_at"),
        # A partner's own recent bookings (book-then-cancel churn); the practice's own are left out.
        Index(
            "ix_appointments_source_partner_created", "source_partner_id", "practice_id", "created_at",
            sqlite_where=text("source_partner_id IS NOT NULL"), postgresql_where=text("source_partner_id IS NOT NULL"),
        ),
        NEVER_REUSED_IDS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = _public_id("Appointment")
    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id", ondelete="CASCADE"))
    practitioner_id: Mapped[int] = mapped_column(ForeignKey("practitioners.id"))
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[AppointmentStatus] = mapped_column(
        _enum(AppointmentStatus, "appointment_status"), default=AppointmentStatus.BOOKED
    )
    reason: Mapped[str | None] = mapped_column(String(1000), comment="Medical motive: sensitive health data")
    internal_note: Mapped[str | None] = mapped_column(Text, comment="Practice-only: never exposed to partners")
    source_partner_id: Mapped[int | None] = mapped_column(
        ForeignKey("partners.id"), comment="Partner that created it; NULL when the practice did"
    )
    time_set_by_partner_id: Mapped[int | None] = mapped_column(
        ForeignKey("partners.id"),
        comment="Partner that last set its time (booked or rescheduled); NULL when the practice did",
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    change_seq: Mapped[int] = mapped_column(BigInteger, comment="From change_counter: increases with every write")

    practice: Mapped[Practice] = relationship()
    practitioner: Mapped[Practitioner] = relationship()
    patient: Mapped[Patient] = relationship()


class ChangeCounter(Base):
    """One row holding the last change sequence number.

    Writers increment it inside their transaction, so sequence numbers become visible in commit
    order and a sync cursor never skips a change (a database sequence does not guarantee that).
    """

    __tablename__ = "change_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class PrincipalVersion(Base):
    """One row, bumped by triggers on every change that can alter an authenticated key's principal
    (its key, partner, grants, documents, the policy releases): on SQLite, each worker's key cache
    (api/identity/principal_cache.py) checks it on every hit. PostgreSQL notifies the workers instead
    and leaves it at 0."""

    __tablename__ = "principal_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class PartnerStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class Partner(Base):
    """A third-party software vendor connected to practices through grants."""

    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = _public_id("Partner")
    name: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[PartnerStatus] = mapped_column(_enum(PartnerStatus, "partner_status"), default=PartnerStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    budget_capacity: Mapped[int | None] = mapped_column(Integer, comment="Cost points; NULL: the default")
    budget_refill_per_second: Mapped[float | None] = mapped_column(Float, comment="NULL: the default")
    # The API keeps grants between requests under this version (migration 6c1f0e2b9d47).
    grants_version: Mapped[int] = mapped_column(
        Integer, server_default="0", default=0, comment="Bumped by a trigger on every change to the partner's grants"
    )
    quarantine_on_refusal: Mapped[bool] = mapped_column(
        Boolean,
        server_default=text("true"),
        default=True,
        comment="Quarantine a key at its first distinct-patient refusal (api.protection.extraction)",
    )
    # The API keeps registered documents between requests under this version (migration 02fafd39984f).
    documents_version: Mapped[int] = mapped_column(
        Integer,
        server_default="0",
        default=0,
        comment="Bumped by a trigger on every change to the partner's trusted documents",
    )
    tokens_required: Mapped[bool] = mapped_column(
        Boolean,
        server_default=text("false"),
        default=False,
        comment="Refuse its API keys: only OAuth access tokens (api/identity/token_authentication.py)",
    )
    dpop_required: Mapped[bool] = mapped_column(
        Boolean,
        server_default=text("false"),
        default=False,
        comment="Issue and serve its access tokens only bound to a DPoP key: no bearer token",
    )

    keys: Mapped[list[PartnerKey]] = relationship(back_populates="partner")
    grants: Mapped[list[Grant]] = relationship(back_populates="partner")


class KeyMode(enum.StrEnum):
    """What a key may run (docs/partner-guide.md, "Trusted documents")."""

    TRUSTED = "trusted"
    OPEN = "open"

    @property
    def description(self) -> str:
        return {
            KeyMode.TRUSTED: "Runs only your registered documents, sent by id (`documentId`): production keys.",
            KeyMode.OPEN: "Runs any document: for exploring in GraphiQL and for development.",
        }[self]


class PartnerKey(Base):
    """An API key of a partner. Only a SHA-256 hash of the secret is stored."""

    __tablename__ = "partner_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True, comment="Public part of the key, to find it")
    secret_hash: Mapped[str] = mapped_column(String(64), comment="SHA-256 of the secret part, hex")
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    quarantined_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, comment="Refused (KEY_QUARANTINED) from then until an operator releases it"
    )
    mode: Mapped[KeyMode] = mapped_column(
        _enum(KeyMode, "key_mode"),
        server_default=KeyMode.TRUSTED.value,
        default=KeyMode.TRUSTED,
        comment="trusted: registered documents only; open: any document",
    )

    partner: Mapped[Partner] = relationship(back_populates="keys")


class OAuthClient(Base):
    """A partner's OAuth client (client credentials, `private_key_jwt`): its registered public keys
    sign its token requests; no secret of it is ever sent or stored.

    Its credential row (`key_id`: a partner key whose secret nobody knows) carries what a key
    carries, so that one mechanism serves both: revocation, quarantine, and the ledger's `key_id`.
    """

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True, comment="Public: iss and sub of its assertions")
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("partner_keys.id", ondelete="CASCADE"), unique=True)
    jwks_url: Mapped[str | None] = mapped_column(String(500), comment="Where its JWKS was read from, if a URL")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    keys: Mapped[list[OAuthClientKey]] = relationship(back_populates="client")


class OAuthClientKey(Base):
    """One public key of a client, by `kid`: several live at once during a rotation."""

    __tablename__ = "oauth_client_keys"
    __table_args__ = (UniqueConstraint("client_id", "kid"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"))
    kid: Mapped[str] = mapped_column(String(200))
    jwk: Mapped[str] = mapped_column(Text, comment="The public JWK, JSON")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, comment="Refused for assertions from then on")

    client: Mapped[OAuthClient] = relationship(back_populates="keys")


class OAuthSigningKey(Base):
    """A key the server signs access tokens with: the same in every worker and across restarts.
    The newest live one signs; every live one verifies and is published in the JWKS."""

    __tablename__ = "oauth_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    private_jwk: Mapped[str] = mapped_column(
        Text, comment="The private JWK, sealed with the servers' secret (api/identity/key_seal.py)"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UsedJti(Base):
    """The replay cache of client assertions and DPoP proofs, shared by workers: a `jti` is
    recorded by an insert that fails on conflict, and purged once its JWT could no longer be accepted."""

    __tablename__ = "oauth_used_jtis"

    key: Mapped[str] = mapped_column(String(64), primary_key=True, comment="SHA-256 of kind, issuer and jti")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


def _scope_columns() -> type:
    """One boolean column per row of the scope table (`api.scopes`), named `Scope.column`.

    Built from the table rather than written out, so that a new scope cannot lack its column;
    `alembic check` (tests/data/test_migrations.py) then fails until a migration adds it.
    """
    columns = {scope.column: mapped_column(Boolean, nullable=False, default=False) for scope in Scope}
    return type("ScopeColumns", (), columns)


class Grant(_scope_columns(), Base):  # type: ignore[misc]  # a base built at import: see _scope_columns
    """A practice's consent connecting a partner to it, with scopes and an expiry.

    Each scope of `api.scopes.Scope` is a boolean column named after it: the policy reads them
    as plain fields, both in SQL filters and in memory. A revoked grant is kept for the record;
    at most one unrevoked grant exists per partner and practice.
    """

    __tablename__ = "grants"
    __table_args__ = (
        Index(
            "uq_grants_live_partner_practice",
            "partner_id",
            "practice_id",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
        # Row filters join appointments, patients and practices to grants on practice_id.
        Index("ix_grants_practice_partner", "practice_id", "partner_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = _public_id("Grant")
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id", ondelete="CASCADE"))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, comment="Consent always ends")
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An operator's explicit limit of the 24 h window, in place of the computed one (api.protection.extraction).
    max_patients_per_window: Mapped[int | None] = mapped_column(
        Integer, comment="Distinct patients readable per rolling window; NULL: sized from the practice's activity"
    )
    # The reading horizon (api.reading_horizon): identity, contact and reason only near the request time.
    days_back: Mapped[int] = mapped_column(
        Integer,
        server_default=str(reading_horizon.DEFAULT.days_back),
        default=reading_horizon.DEFAULT.days_back,
        comment="Reading horizon: days before the request",
    )
    days_ahead: Mapped[int] = mapped_column(
        Integer,
        server_default=str(reading_horizon.DEFAULT.days_ahead),
        default=reading_horizon.DEFAULT.days_ahead,
        comment="Reading horizon: days after the request",
    )
    history_until: Mapped[datetime | None] = mapped_column(
        UTCDateTime, comment="Reading history (outside the horizon) is allowed until then; NULL: never"
    )
    patients_daily_cap: Mapped[int | None] = mapped_column(
        Integer, comment="Most distinct patients per 24 h the computed limit may reach; NULL: the setting"
    )
    patients_monthly_cap: Mapped[int | None] = mapped_column(
        Integer, comment="Most distinct patients per 30 days the computed limit may reach; NULL: the setting"
    )
    # An operator's explicit change limit, in place of the computed one (api.protection.disruption).
    max_changes_per_day: Mapped[int | None] = mapped_column(
        Integer, comment="Appointments it did not book the partner may change per 24 h; NULL: sized from activity"
    )

    partner: Mapped[Partner] = relationship(back_populates="grants")
    practice: Mapped[Practice] = relationship()

    @property
    def scopes(self) -> frozenset[Scope]:
        return frozenset(scope for scope in Scope if getattr(self, scope.column))

    def set_scopes(self, scopes: set[Scope]) -> None:
        for scope in Scope:
            setattr(self, scope.column, scope in scopes)


class PartnerBudget(Base):
    """A partner's cost points: a token bucket shared by every server process.

    Times are epoch seconds so that the refill arithmetic is one portable SQL expression.
    """

    __tablename__ = "partner_budgets"

    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"), primary_key=True)
    points: Mapped[float] = mapped_column(Float, comment="Available at refilled_at")
    refilled_at: Mapped[float] = mapped_column(Float, comment="Epoch seconds")


class PartnerChange(Base):
    """An appointment a partner cancelled or rescheduled without having booked it, for the change limit
    (api/protection/disruption.py): rows older than its window are deleted as new ones come."""

    __tablename__ = "partner_changes"
    __table_args__ = (Index("ix_partner_changes_partner_practice_at", "partner_id", "practice_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class PatientDisclosure(Base):
    """A patient a partner received data of, with the start of its current stay in each window of the
    distinct-patient budget: counting either window is a range scan of one index."""

    __tablename__ = "patient_disclosures"
    __table_args__ = (
        Index("ix_patient_disclosures_day", "partner_id", "practice_id", "day_first_at"),
        Index("ix_patient_disclosures_month", "partner_id", "practice_id", "month_first_at"),
        # The purge of rows past the longest window, across partners and practices.
        Index("ix_patient_disclosures_month_first_at", "month_first_at"),
    )

    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"), primary_key=True)
    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id", ondelete="CASCADE"), primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True)
    day_first_at: Mapped[datetime] = mapped_column(UTCDateTime, comment="First disclosure in the current 24 h window")
    month_first_at: Mapped[datetime] = mapped_column(
        UTCDateTime, comment="First disclosure in the current 30-day window"
    )


class PracticeActivity(Base):
    """A practice's activity baseline, recomputed at most daily and shared by every worker: the
    distinct patients of a typical week, counting only appointments the practice made itself."""

    __tablename__ = "practice_activity"

    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id", ondelete="CASCADE"), primary_key=True)
    weekly_patients: Mapped[int] = mapped_column(Integer, comment="After the growth bound")
    measured_patients: Mapped[int] = mapped_column(Integer, comment="As measured, before the growth bound")
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertKind(enum.StrEnum):
    WARNING = "warning"  # a fraction of a budget reached
    REFUSAL = "refusal"  # a budget would be exceeded: the patients were refused
    CHURN = "churn"  # the partner cancelled many of its own fresh bookings
    QUARANTINE = "quarantine"  # the key was quarantined
    DISRUPTION = "disruption"  # appointments the partner had not booked, changed: a fraction of the limit, or past it


class ExtractionAlert(Base):
    """An early warning, refusal, churn or quarantine of a partner at a practice: for operators,
    delivered to their webhook through `AlertDelivery`. No personal data."""

    __tablename__ = "extraction_alerts"
    __table_args__ = (
        # "Once per window": the last alert of a kind for a partner and practice.
        Index("ix_extraction_alerts_partner_practice_kind", "partner_id", "practice_id", "kind", "raised_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"), index=True)
    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id", ondelete="CASCADE"))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("partner_keys.id", ondelete="SET NULL"))
    kind: Mapped[AlertKind] = mapped_column(_enum(AlertKind, "alert_kind"), server_default="refusal")
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    patients_in_window: Mapped[int] = mapped_column(
        Integer, comment="Distinct patients already disclosed (churn: bookings cancelled)"
    )
    patients_refused: Mapped[int] = mapped_column(Integer, comment="New patients this request asked for")
    threshold: Mapped[int] = mapped_column(Integer, comment="The budget's limit (churn: cancellations that alert)")
    window_hours: Mapped[int] = mapped_column(Integer)
    fraction: Mapped[float | None] = mapped_column(Float, comment="Of the limit, for a warning")


class AlertDelivery(Base):
    """The transactional outbox of the operators' webhook: inserted with its alert, sent with retries."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_due", "delivered_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("extraction_alerts.id", ondelete="CASCADE"), unique=True)
    message_id: Mapped[str] = mapped_column(
        String(40), unique=True, comment="webhook-id: the receiver's deduplication key"
    )
    payload: Mapped[str] = mapped_column(
        Text, comment="The JSON body, fixed at insertion: every retry signs the same bytes"
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, comment="A sender holds it until then")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AppointmentTombstone(Base):
    """What remains of an appointment the practice deleted: enough for sync feeds to drop it."""

    __tablename__ = "appointment_tombstones"
    __table_args__ = (Index("ix_appointment_tombstones_practice_change_seq", "practice_id", "change_seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, comment="The deleted appointment's id")
    practice_id: Mapped[int] = mapped_column(ForeignKey("practices.id", ondelete="CASCADE"))
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    change_seq: Mapped[int] = mapped_column(BigInteger)


class IdempotencyRecord(Base):
    """A write already done under a partner's idempotency key: a retry gets the same outcome."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("partner_id", "key", name="uq_idempotency_records_partner_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100))
    operation: Mapped[str] = mapped_column(String(40))
    request_hash: Mapped[str] = mapped_column(String(64), comment="SHA-256 of the operation and its input")
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointments.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AccessRecord(Base):
    """The access ledger: one row per request to /graphql, served or refused. No personal data.

    On PostgreSQL, partitioned by month of `at` (api/ledger/partitions.py), its primary key there
    (id, at): a unique constraint must hold the partition key, hence `request_id` is indexed, not unique
    (it is a random UUID, made by the server)."""

    __tablename__ = "access_records"
    __table_args__ = (
        Index("ix_access_records_partner_at", "partner_id", "at"),
        Index("ix_access_records_at", "at"),
        Index("ix_access_records_document", "partner_id", "document_id"),
        Index("ix_access_records_request_id", "request_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id", ondelete="SET NULL"))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("partner_keys.id", ondelete="SET NULL"))
    key_prefix: Mapped[str | None] = mapped_column(
        String(16), comment="The key that authenticated (an OAuth client's credential); else as presented"
    )
    client_id: Mapped[str | None] = mapped_column(String(64), comment="OAuth client of the access token, if one")
    token_jti: Mapped[str | None] = mapped_column(String(64), comment="The access token's jti, if one")
    operation_name: Mapped[str | None] = mapped_column(String(100))
    document_hash: Mapped[str | None] = mapped_column(String(64), comment="SHA-256 of the query text")
    document_id: Mapped[str | None] = mapped_column(
        String(71), comment="The registered document run (sha256:<hex>), when the request named one"
    )
    outcome: Mapped[str] = mapped_column(String(16), comment="served or refused")
    error_code: Mapped[str | None] = mapped_column(String(40), comment="Why refused, or the first error")
    http_status: Mapped[int] = mapped_column(Integer)
    requested_cost: Mapped[int | None] = mapped_column(Integer)
    actual_cost: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[float] = mapped_column(Float)
    client_address: Mapped[str | None] = mapped_column(String(64))


class Disclosure(Base):
    """A record a served request returned: an appointment or a patient, with the field groups
    returned (api.ledger.access.FieldGroup bits), or an appointment and its patient both returned by
    the request, in one row (api.ledger.access `Disclosures.rows`). The values themselves are never
    copied here.

    `at` and `partner_id` are its request's: `at` is the partition key on PostgreSQL, as for
    `access_records` (a month of both is dropped at once, so `access_id` has no foreign key: a
    partitioned table's would make each drop check the other table; the ledger writes both in one
    statement), and (partner_id, at) is the partner report's range, read without the requests."""

    __tablename__ = "disclosures"
    __table_args__ = (
        Index("ix_disclosures_patient", "patient_id"),  # who was shown a patient (exposure report)
        Index("ix_disclosures_partner_at", "partner_id", "at"),  # a partner's period (exposure report)
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    access_id: Mapped[int] = mapped_column(BigId, index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id", ondelete="SET NULL"))
    # The records' ids, without foreign keys: what was shown stays recorded as it was when the practice
    # deletes a record or moves an appointment to another patient's file.
    practice_id: Mapped[int] = mapped_column(BigId)
    appointment_id: Mapped[int | None] = mapped_column(BigId)
    patient_id: Mapped[int | None] = mapped_column(BigId)  # on an appointment's row, always its patient
    field_groups: Mapped[int] = mapped_column(Integer)  # the appointment's on a row naming both
    # On an appointment's row, the groups of its patient's record sent with it (0: none); NULL on a
    # row naming a patient alone.
    patient_field_groups: Mapped[int | None] = mapped_column(Integer)


class PolicyRelease(Base):
    """A policy put in force after passing `partner-api policy check`: its texts, as checked.
    Every worker serves the latest one (api/http/policy_in_force.py)."""

    __tablename__ = "policy_releases"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), comment="SHA-256 of the texts, to tell a change")
    sources: Mapped[dict[str, str]] = mapped_column(JSON, comment="File name -> .polar text, as checked")
    directory: Mapped[str] = mapped_column(String(500), comment="Where the texts were read")
    released_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TrustedDocument(Base):
    """An operation a partner registered from its build's manifest: checked, priced and stored once,
    then run by id (api/documents/). Removing one revokes it; the row stays for the ledger."""

    __tablename__ = "trusted_documents"
    __table_args__ = (UniqueConstraint("partner_id", "document_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"), index=True)
    document_id: Mapped[str] = mapped_column(String(71), comment="sha256:<hex> of the exact text")
    operation_name: Mapped[str | None] = mapped_column(String(100))
    operation_type: Mapped[str] = mapped_column(String(16), comment="query or mutation")
    text: Mapped[str] = mapped_column(Text, comment="The document, exactly as the manifest holds it")
    cost: Mapped[int] = mapped_column(Integer, comment="Worst-case cost, charged on every run")
    fields: Mapped[str] = mapped_column(Text, comment='The "Type.field" names it reads, space-separated')
    scopes: Mapped[str] = mapped_column(Text, comment="The scopes those fields need, space-separated")
    manifest_format: Mapped[str] = mapped_column(String(16), comment="codegen, relay or apollo")
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
