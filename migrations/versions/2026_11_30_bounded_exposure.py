"""Bounded exposure: the distinct-patient budget over 24 h and 30 days, a practice's activity
baseline stored once a day, per-grant caps, key quarantine, alert kinds and the webhook outbox,
and an index of partners' own bookings for the book-then-cancel churn alert.

The patient windows keep their rows: a patient's first disclosure in the 24 h window also starts
its 30-day stay (the closest history there is), so no partner gets a fresh window at the upgrade.

Revision ID: 8e3b51d07a2c
Revises: 8e41c7a2f5d3
Create Date: 2026-11-30 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8e3b51d07a2c"
down_revision: str | None = "8e41c7a2f5d3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("patient_disclosures") as batch:
        batch.drop_index("ix_patient_disclosures_window")
        batch.drop_index("ix_patient_disclosures_disclosed_at")
        batch.alter_column(
            "disclosed_at", new_column_name="day_first_at", existing_type=UTC, existing_nullable=False,
            comment="First disclosure in the current 24 h window",
        )
        batch.add_column(
            sa.Column("month_first_at", UTC, nullable=True, comment="First disclosure in the current 30-day window")
        )
    op.execute("UPDATE patient_disclosures SET month_first_at = day_first_at")
    with op.batch_alter_table("patient_disclosures") as batch:
        batch.alter_column("month_first_at", existing_type=UTC, nullable=False)
        batch.create_index("ix_patient_disclosures_day", ["partner_id", "practice_id", "day_first_at"])
        batch.create_index("ix_patient_disclosures_month", ["partner_id", "practice_id", "month_first_at"])
        batch.create_index("ix_patient_disclosures_month_first_at", ["month_first_at"])

    op.create_table(
        "practice_activity",
        sa.Column("practice_id", BigId, nullable=False),
        sa.Column("weekly_patients", sa.Integer(), nullable=False, comment="After the growth bound"),
        sa.Column("measured_patients", sa.Integer(), nullable=False, comment="As measured, before the growth bound"),
        sa.Column("computed_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["practices.id"], name="fk_practice_activity_practice_id_practices", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("practice_id", name="pk_practice_activity"),
    )
    # Plain ADD COLUMN, never a batch: on SQLite, rebuilding grants or partners would lose or break
    # the grants_version triggers.
    op.add_column(
        "grants",
        sa.Column(
            "patients_daily_cap",
            sa.Integer(),
            nullable=True,
            comment="Most distinct patients per 24 h the computed limit may reach; NULL: the setting",
        ),
    )
    op.add_column(
        "grants",
        sa.Column(
            "patients_monthly_cap",
            sa.Integer(),
            nullable=True,
            comment="Most distinct patients per 30 days the computed limit may reach; NULL: the setting",
        ),
    )
    op.add_column(
        "partners",
        sa.Column(
            "quarantine_on_refusal",
            sa.Boolean(),
            server_default=sa.text("true"),
            nullable=False,
            comment="Quarantine a key at its first distinct-patient refusal (api.protection.extraction)",
        ),
    )
    op.add_column(
        "partner_keys",
        sa.Column(
            "quarantined_at",
            UTC,
            nullable=True,
            comment="Refused (KEY_QUARANTINED) from then until an operator releases it",
        ),
    )

    with op.batch_alter_table("extraction_alerts") as batch:
        batch.add_column(
            sa.Column(
                "kind",
                sa.Enum("warning", "refusal", "churn", "quarantine", name="alert_kind", native_enum=False, length=16),
                server_default="refusal",
                nullable=False,
            )
        )
        batch.add_column(sa.Column("fraction", sa.Float(), nullable=True, comment="Of the limit, for a warning"))
        batch.alter_column(
            "patients_in_window",
            existing_type=sa.Integer(),
            existing_nullable=False,
            comment="Distinct patients already disclosed (churn: bookings cancelled)",
            existing_comment="Distinct patients already disclosed",
        )
        batch.alter_column(
            "threshold",
            existing_type=sa.Integer(),
            existing_nullable=False,
            comment="The budget's limit (churn: cancellations that alert)",
        )
        batch.create_index(
            "ix_extraction_alerts_partner_practice_kind", ["partner_id", "practice_id", "kind", "raised_at"]
        )

    op.create_table(
        "alert_deliveries",
        sa.Column("id", BigId, nullable=False),
        sa.Column("alert_id", BigId, nullable=False),
        sa.Column("message_id", sa.String(40), nullable=False, comment="webhook-id: the receiver's deduplication key"),
        sa.Column(
            "payload",
            sa.Text(),
            nullable=False,
            comment="The JSON body, fixed at insertion: every retry signs the same bytes",
        ),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("next_attempt_at", UTC, nullable=False),
        sa.Column("claimed_until", UTC, nullable=True, comment="A sender holds it until then"),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("delivered_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["extraction_alerts.id"],
            name="fk_alert_deliveries_alert_id_extraction_alerts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alert_deliveries"),
        sa.UniqueConstraint("alert_id", name="uq_alert_deliveries_alert_id"),
        sa.UniqueConstraint("message_id", name="uq_alert_deliveries_message_id"),
    )
    op.create_index("ix_alert_deliveries_due", "alert_deliveries", ["delivered_at", "next_attempt_at"])
    op.create_index(
        "ix_appointments_source_partner_created",
        "appointments",
        ["source_partner_id", "practice_id", "created_at"],
        sqlite_where=sa.text("source_partner_id IS NOT NULL"),
        postgresql_where=sa.text("source_partner_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_appointments_source_partner_created", table_name="appointments")
    op.drop_index("ix_alert_deliveries_due", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    with op.batch_alter_table("extraction_alerts") as batch:
        batch.drop_index("ix_extraction_alerts_partner_practice_kind")
        batch.alter_column(
            "threshold",
            existing_type=sa.Integer(),
            existing_nullable=False,
            comment=None,
            existing_comment="The budget's limit (churn: cancellations that alert)",
        )
        batch.alter_column(
            "patients_in_window",
            existing_type=sa.Integer(),
            existing_nullable=False,
            comment="Distinct patients already disclosed",
            existing_comment="Distinct patients already disclosed (churn: bookings cancelled)",
        )
        batch.drop_column("fraction")
        batch.drop_column("kind")
    # DROP COLUMN without a rebuild (SQLite 3.35+), for the triggers on grants and partners.
    op.drop_column("partner_keys", "quarantined_at")
    op.drop_column("partners", "quarantine_on_refusal")
    op.drop_column("grants", "patients_monthly_cap")
    op.drop_column("grants", "patients_daily_cap")
    op.drop_table("practice_activity")
    with op.batch_alter_table("patient_disclosures") as batch:
        batch.drop_index("ix_patient_disclosures_month_first_at")
        batch.drop_index("ix_patient_disclosures_month")
        batch.drop_index("ix_patient_disclosures_day")
        batch.drop_column("month_first_at")
        batch.alter_column(
            "day_first_at", new_column_name="disclosed_at", existing_type=UTC, existing_nullable=False, comment=None
        )
    op.create_index(
        "ix_patient_disclosures_window", "patient_disclosures", ["partner_id", "practice_id", "disclosed_at"]
    )
    op.create_index("ix_patient_disclosures_disclosed_at", "patient_disclosures", ["disclosed_at"])
