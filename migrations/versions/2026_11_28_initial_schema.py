"""Initial schema: practices and their people, partners and their grants, appointments, defences.

Written from api/data/models.py; tests/data/test_migrations.py checks that the two never drift apart.

Revision ID: d155616e1c9c
Revises:
Create Date: 2026-11-28 23:32:08.591859
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d155616e1c9c"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Integer keys are BIGINT on PostgreSQL; SQLite autoincrements only INTEGER PRIMARY KEY.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# api.timeutil.UTCDateTime: timestamptz on PostgreSQL, naive UTC on SQLite.
UTC_TIME = sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    # A VARCHAR, not a native PostgreSQL enum: adding a value needs no type migration.
    return sa.Enum(*values, name=name, native_enum=False, length=16)


def upgrade() -> None:
    # --- Practices and their people ------------------------------------------------------

    # A medical office: the owner of its patient file.
    op.create_table(
        "practices",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("address", sa.String(300), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_practices"),
        sa.UniqueConstraint("public_id", name="uq_practices_public_id"),
    )

    # A practitioner, across all the practices they work at; never exposed as such.
    op.create_table(
        "practitioners",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("specialty", sa.String(100), nullable=False),
        sa.Column("rpps", sa.String(11), nullable=False, comment="National professional id (RPPS)"),
        sa.PrimaryKeyConstraint("id", name="pk_practitioners"),
        sa.UniqueConstraint("rpps", name="uq_practitioners_rpps"),
    )

    # A practitioner at one practice: what partners see as a Practitioner.
    op.create_table(
        "practice_memberships",
        sa.Column("practice_id", BIG_ID, nullable=False),
        sa.Column("practitioner_id", BIG_ID, nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["practices.id"],
            name="fk_practice_memberships_practice_id_practices", ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["practitioner_id"], ["practitioners.id"],
            name="fk_practice_memberships_practitioner_id_practitioners", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("practice_id", "practitioner_id", name="pk_practice_memberships"),
        sa.UniqueConstraint("public_id", name="uq_practice_memberships_public_id"),
    )
    op.create_index("ix_practice_memberships_practitioner_id", "practice_memberships", ["practitioner_id"])

    # A patient record of one practice's file.
    op.create_table(
        "patients",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("practice_id", BIG_ID, nullable=False),
        sa.Column("first_name", sa.String(100), nullable=False),
        sa.Column("last_name", sa.String(100), nullable=False),
        sa.Column("gender", _enum("gender", "female", "male", "other", "unknown"), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["practices.id"], name="fk_patients_practice_id_practices", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_patients"),
        sa.UniqueConstraint("public_id", name="uq_patients_public_id"),
    )
    op.create_index("ix_patients_practice_id", "patients", ["practice_id"])

    # --- Partners and the practices' consent ---------------------------------------------

    # A third-party software vendor, with an optional override of its cost budget.
    op.create_table(
        "partners",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("status", _enum("partner_status", "active", "suspended"), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("budget_capacity", sa.Integer(), nullable=True, comment="Cost points; NULL: the default"),
        sa.Column("budget_refill_per_second", sa.Float(), nullable=True, comment="NULL: the default"),
        sa.PrimaryKeyConstraint("id", name="pk_partners"),
        sa.UniqueConstraint("name", name="uq_partners_name"),
        sa.UniqueConstraint("public_id", name="uq_partners_public_id"),
    )

    # A partner's API keys: only a hash of the secret part is stored.
    op.create_table(
        "partner_keys",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("partner_id", BIG_ID, nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False, comment="Public part of the key, to find it"),
        sa.Column("secret_hash", sa.String(64), nullable=False, comment="SHA-256 of the secret part, hex"),
        sa.Column("label", sa.String(100), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("last_used_at", UTC_TIME, nullable=True),
        sa.Column("expires_at", UTC_TIME, nullable=True),
        sa.Column("revoked_at", UTC_TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_partner_keys_partner_id_partners", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_partner_keys"),
        sa.UniqueConstraint("prefix", name="uq_partner_keys_prefix"),
    )
    op.create_index("ix_partner_keys_partner_id", "partner_keys", ["partner_id"])

    # A practice's consent for a partner: one boolean column per scope, and an expiry.
    op.create_table(
        "grants",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("partner_id", BIG_ID, nullable=False),
        sa.Column("practice_id", BIG_ID, nullable=False),
        sa.Column("appointments_read", sa.Boolean(), nullable=False),
        sa.Column("appointments_write", sa.Boolean(), nullable=False),
        sa.Column("patients_identity", sa.Boolean(), nullable=False),
        sa.Column("patients_contact", sa.Boolean(), nullable=False),
        sa.Column("appointments_reason", sa.Boolean(), nullable=False),
        sa.Column("granted_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False, comment="Consent always ends"),
        sa.Column("revoked_at", UTC_TIME, nullable=True),
        sa.Column(
            "max_patients_per_window",
            sa.Integer(),
            nullable=True,
            comment="Distinct patients readable per rolling window; NULL: sized from the practice's activity",
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_grants_partner_id_partners", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["practices.id"], name="fk_grants_practice_id_practices", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_grants"),
        sa.UniqueConstraint("public_id", name="uq_grants_public_id"),
    )
    op.create_index("ix_grants_practice_partner", "grants", ["practice_id", "partner_id"])
    # At most one live (unrevoked) grant per partner and practice.
    op.create_index(
        "uq_grants_live_partner_practice",
        "grants",
        ["partner_id", "practice_id"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )

    # --- Appointments and the sync feed --------------------------------------------------

    # The one row writers increment in their transaction (see api.data.models.ChangeCounter).
    op.create_table(
        "change_counter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_change_counter"),
    )
    op.bulk_insert(sa.table("change_counter", sa.column("id"), sa.column("value")), [{"id": 1, "value": 0}])

    # An appointment, with the change sequence number of its last write.
    op.create_table(
        "appointments",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("practice_id", BIG_ID, nullable=False),
        sa.Column("practitioner_id", BIG_ID, nullable=False),
        sa.Column("patient_id", BIG_ID, nullable=False),
        sa.Column("starts_at", UTC_TIME, nullable=False),
        sa.Column("ends_at", UTC_TIME, nullable=False),
        sa.Column(
            "status", _enum("appointment_status", "booked", "arrived", "fulfilled", "cancelled", "noshow"),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True, comment="Medical motive: sensitive health data"),
        sa.Column("internal_note", sa.Text(), nullable=True, comment="Practice-only: never exposed to partners"),
        sa.Column(
            "source_partner_id", BIG_ID, nullable=True,
            comment="Partner that created it; NULL when the practice did",
        ),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.Column(
            "change_seq", sa.BigInteger(), nullable=False, comment="From change_counter: increases with every write"
        ),
        sa.CheckConstraint("ends_at > starts_at", name="ck_appointments_ends_after_start"),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["practices.id"], name="fk_appointments_practice_id_practices", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["practitioner_id"], ["practitioners.id"], name="fk_appointments_practitioner_id_practitioners"
        ),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name="fk_appointments_patient_id_patients"),
        sa.ForeignKeyConstraint(
            ["source_partner_id"], ["partners.id"], name="fk_appointments_source_partner_id_partners"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_appointments"),
        sa.UniqueConstraint("public_id", name="uq_appointments_public_id"),
    )
    op.create_index("ix_appointments_patient_id", "appointments", ["patient_id"])
    # Day views and keyset paging, the sync feed, a practitioner's agenda.
    op.create_index("ix_appointments_practice_starts", "appointments", ["practice_id", "starts_at", "public_id"])
    op.create_index("ix_appointments_practice_change_seq", "appointments", ["practice_id", "change_seq"])
    op.create_index("ix_appointments_practitioner_starts", "appointments", ["practitioner_id", "starts_at"])

    # What remains of a deleted appointment, for the sync feed.
    op.create_table(
        "appointment_tombstones",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False, comment="The deleted appointment's id"),
        sa.Column("practice_id", BIG_ID, nullable=False),
        sa.Column("deleted_at", UTC_TIME, nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["practices.id"],
            name="fk_appointment_tombstones_practice_id_practices", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_appointment_tombstones"),
        sa.UniqueConstraint("public_id", name="uq_appointment_tombstones_public_id"),
    )
    op.create_index(
        "ix_appointment_tombstones_practice_change_seq", "appointment_tombstones", ["practice_id", "change_seq"]
    )

    # A partner's write already done under an idempotency key: a retry gets the same outcome.
    op.create_table(
        "idempotency_records",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("partner_id", BIG_ID, nullable=False),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("operation", sa.String(40), nullable=False),
        sa.Column(
            "request_hash", sa.String(64), nullable=False, comment="SHA-256 of the operation and its input"
        ),
        sa.Column("appointment_id", BIG_ID, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_idempotency_records_partner_id_partners", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["appointment_id"], ["appointments.id"],
            name="fk_idempotency_records_appointment_id_appointments", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_idempotency_records"),
        sa.UniqueConstraint("partner_id", "key", name="uq_idempotency_records_partner_key"),
    )

    # --- Budgets and the extraction defence ----------------------------------------------

    # A partner's token bucket of cost points, shared by every server process.
    op.create_table(
        "partner_budgets",
        sa.Column("partner_id", BIG_ID, nullable=False),
        sa.Column("points", sa.Float(), nullable=False, comment="Available at refilled_at"),
        sa.Column("refilled_at", sa.Float(), nullable=False, comment="Epoch seconds"),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_partner_budgets_partner_id_partners", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("partner_id", name="pk_partner_budgets"),
    )

    # The last time a partner received a patient's data: the distinct-patient budget counts these.
    op.create_table(
        "patient_disclosures",
        sa.Column("partner_id", BIG_ID, nullable=False),
        sa.Column("practice_id", BIG_ID, nullable=False),
        sa.Column("patient_id", BIG_ID, nullable=False),
        sa.Column("disclosed_at", UTC_TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_patient_disclosures_partner_id_partners", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["practices.id"], name="fk_patient_disclosures_practice_id_practices", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name="fk_patient_disclosures_patient_id_patients", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("partner_id", "practice_id", "patient_id", name="pk_patient_disclosures"),
    )
    op.create_index(
        "ix_patient_disclosures_window", "patient_disclosures", ["partner_id", "practice_id", "disclosed_at"]
    )

    # Raised when a partner reaches its distinct-patient limit at a practice: for operators.
    op.create_table(
        "extraction_alerts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("partner_id", BIG_ID, nullable=False),
        sa.Column("practice_id", BIG_ID, nullable=False),
        sa.Column("key_id", BIG_ID, nullable=True),
        sa.Column("raised_at", UTC_TIME, nullable=False),
        sa.Column(
            "patients_in_window", sa.Integer(), nullable=False, comment="Distinct patients already disclosed"
        ),
        sa.Column("patients_refused", sa.Integer(), nullable=False, comment="New patients this request asked for"),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("window_hours", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["partner_id"], ["partners.id"], name="fk_extraction_alerts_partner_id_partners", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["practices.id"], name="fk_extraction_alerts_practice_id_practices", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["partner_keys.id"], name="fk_extraction_alerts_key_id_partner_keys", ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_extraction_alerts"),
    )
    op.create_index("ix_extraction_alerts_partner_id", "extraction_alerts", ["partner_id"])


def downgrade() -> None:
    # Dependents first; dropping a table drops its indexes.
    for table in (
        "extraction_alerts",
        "patient_disclosures",
        "partner_budgets",
        "idempotency_records",
        "appointment_tombstones",
        "appointments",
        "change_counter",
        "grants",
        "partner_keys",
        "partners",
        "patients",
        "practice_memberships",
        "practitioners",
        "practices",
    ):
        op.drop_table(table)
