"""The ledger keeps the records it names: every appointment's row names its patient, and no foreign key
lets a deletion in the live tables rewrite what was shown.

An appointment's disclosure named its patient only when the patient's record was sent with it; the
reports found the patient of the others through the live `appointments` row. When the practice then
deleted the appointment (SET NULL) or moved it to another patient's file (a merged duplicate), the
report lost the patient, or named one who was shown nothing; deleting a practice deleted its rows
(CASCADE). Rows naming an appointment alone get its patient, with `patient_field_groups` 0 (the
patient's record was not sent with it); `disclosures` loses its foreign keys to `practices`,
`appointments` and `patients`, and the two indexes that served only them. On PostgreSQL the
partitioned parent's constraints and indexes are its partitions'.

`access_records.key_prefix` now holds the key that authenticated (for an access token, its OAuth
client's credential): its comment says so, and the earlier rows of access tokens, where it was NULL, get
their credential's prefix (their `key_id`), so that `exposure --patient` names one reader per client.

Revision ID: 3f9c2d7e1b58
Revises: 0b7f3c6e2a41
Create Date: 2026-11-30 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3f9c2d7e1b58"
down_revision: str | None = "0b7f3c6e2a41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFERRED = (("practice_id", "practices", "CASCADE"), ("appointment_id", "appointments", "SET NULL"),
            ("patient_id", "patients", "SET NULL"))  # fmt: skip
KEY_PREFIX = {
    "before": "As presented, even when unknown",
    "after": "The key that authenticated (an OAuth client's credential); else as presented",
}


def upgrade() -> None:
    op.execute(
        "UPDATE disclosures SET patient_field_groups = 0, "
        "patient_id = (SELECT a.patient_id FROM appointments a WHERE a.id = disclosures.appointment_id) "
        "WHERE appointment_id IS NOT NULL AND patient_id IS NULL"
    )
    with op.batch_alter_table("disclosures") as batch:
        for column, table, _ in REFERRED:
            batch.drop_constraint(f"fk_disclosures_{column}_{table}", type_="foreignkey")
        batch.drop_index("ix_disclosures_practice")
        batch.drop_index("ix_disclosures_appointment")
    op.execute(
        "UPDATE access_records SET key_prefix = "
        "(SELECT k.prefix FROM partner_keys k WHERE k.id = access_records.key_id) "
        "WHERE key_prefix IS NULL AND client_id IS NOT NULL AND key_id IS NOT NULL"
    )
    _comment(KEY_PREFIX["after"], KEY_PREFIX["before"])


def downgrade() -> None:
    _comment(KEY_PREFIX["before"], KEY_PREFIX["after"])
    op.execute(
        "UPDATE disclosures SET patient_id = NULL, patient_field_groups = NULL "
        "WHERE appointment_id IS NOT NULL AND patient_field_groups = 0"
    )
    # What the foreign keys would have done to the rows of records deleted since.
    op.execute("DELETE FROM disclosures WHERE practice_id NOT IN (SELECT id FROM practices)")
    for column, table, _ in REFERRED[1:]:
        op.execute(f"UPDATE disclosures SET {column} = NULL WHERE {column} NOT IN (SELECT id FROM {table})")
    with op.batch_alter_table("disclosures") as batch:
        batch.create_index("ix_disclosures_practice", ["practice_id"])
        batch.create_index("ix_disclosures_appointment", ["appointment_id"])
        for column, table, on_delete in REFERRED:
            batch.create_foreign_key(f"fk_disclosures_{column}_{table}", table, [column], ["id"], ondelete=on_delete)


def _comment(comment: str, existing: str) -> None:
    if op.get_bind().dialect.name == "postgresql":  # SQLite keeps no comments: no table to rebuild for one
        op.alter_column(
            "access_records", "key_prefix", existing_type=sa.String(16), existing_nullable=True,
            comment=comment, existing_comment=existing,
        )  # fmt: skip
