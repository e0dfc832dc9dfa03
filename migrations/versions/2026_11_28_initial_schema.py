"""Initial schema: practices and their people, appointments, partners, keys, grants, budgets.

Revision ID: d155616e1c9c
Revises: 
Create Date: 2026-11-28 23:32:08.591859
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Integer keys are BIGINT on PostgreSQL; SQLite autoincrements only INTEGER PRIMARY KEY.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Aware datetimes; api.timeutil.UTCDateTime stores them as naive UTC on SQLite.
UTC_TIME = sa.DateTime(timezone=True)


revision: str = 'd155616e1c9c'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('change_counter',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_change_counter'))
    )
    # The single row writers increment (see api.writes.next_change_seq).
    op.bulk_insert(sa.table('change_counter', sa.column('id'), sa.column('value')), [{'id': 1, 'value': 0}])
    op.create_table('partners',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('status', sa.Enum('active', 'suspended', name='partner_status', native_enum=False, length=16), nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.Column('budget_capacity', sa.Integer(), nullable=True, comment='Cost points; NULL: the default'),
    sa.Column('budget_refill_per_second', sa.Float(), nullable=True, comment='NULL: the default'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partners')),
    sa.UniqueConstraint('name', name=op.f('uq_partners_name')),
    sa.UniqueConstraint('public_id', name=op.f('uq_partners_public_id'))
    )
    op.create_table('practices',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('address', sa.String(length=300), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_practices')),
    sa.UniqueConstraint('public_id', name=op.f('uq_practices_public_id'))
    )
    op.create_table('practitioners',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('first_name', sa.String(length=100), nullable=False),
    sa.Column('last_name', sa.String(length=100), nullable=False),
    sa.Column('specialty', sa.String(length=100), nullable=False),
    sa.Column('rpps', sa.String(length=11), nullable=False, comment='National professional id (RPPS)'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_practitioners')),
    sa.UniqueConstraint('rpps', name=op.f('uq_practitioners_rpps'))
    )
    op.create_table('appointment_tombstones',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False, comment="The deleted appointment's id"),
    sa.Column('practice_id', BIG_ID, nullable=False),
    sa.Column('deleted_at', UTC_TIME, nullable=False),
    sa.Column('change_seq', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['practice_id'], ['practices.id'], name=op.f('fk_appointment_tombstones_practice_id_practices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_appointment_tombstones')),
    sa.UniqueConstraint('public_id', name=op.f('uq_appointment_tombstones_public_id'))
    )
    op.create_index('ix_appointment_tombstones_practice_change_seq', 'appointment_tombstones', ['practice_id', 'change_seq'], unique=False)

    op.create_table('grants',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('partner_id', BIG_ID, nullable=False),
    sa.Column('practice_id', BIG_ID, nullable=False),
    sa.Column('appointments_read', sa.Boolean(), nullable=False),
    sa.Column('appointments_write', sa.Boolean(), nullable=False),
    sa.Column('patients_identity', sa.Boolean(), nullable=False),
    sa.Column('patients_contact', sa.Boolean(), nullable=False),
    sa.Column('appointments_reason', sa.Boolean(), nullable=False),
    sa.Column('granted_at', UTC_TIME, nullable=False),
    sa.Column('expires_at', UTC_TIME, nullable=False, comment='Consent always ends'),
    sa.Column('revoked_at', UTC_TIME, nullable=True),
    sa.Column('max_patients_per_window', sa.Integer(), nullable=True, comment="Distinct patients readable per rolling window; NULL: sized from the practice's activity"),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_grants_partner_id_partners'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['practice_id'], ['practices.id'], name=op.f('fk_grants_practice_id_practices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grants')),
    sa.UniqueConstraint('public_id', name=op.f('uq_grants_public_id'))
    )
    op.create_index('ix_grants_practice_partner', 'grants', ['practice_id', 'partner_id'], unique=False)
    op.create_index('uq_grants_live_partner_practice', 'grants', ['partner_id', 'practice_id'], unique=True, sqlite_where=sa.text('revoked_at IS NULL'), postgresql_where=sa.text('revoked_at IS NULL'))

    op.create_table('partner_budgets',
    sa.Column('partner_id', BIG_ID, nullable=False),
    sa.Column('points', sa.Float(), nullable=False, comment='Available at refilled_at'),
    sa.Column('refilled_at', sa.Float(), nullable=False, comment='Epoch seconds'),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_partner_budgets_partner_id_partners'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('partner_id', name=op.f('pk_partner_budgets'))
    )
    op.create_table('partner_keys',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('partner_id', BIG_ID, nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False, comment='Public part of the key, to find it'),
    sa.Column('secret_hash', sa.String(length=64), nullable=False, comment='SHA-256 of the secret part, hex'),
    sa.Column('label', sa.String(length=100), nullable=True),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.Column('last_used_at', UTC_TIME, nullable=True),
    sa.Column('expires_at', UTC_TIME, nullable=True),
    sa.Column('revoked_at', UTC_TIME, nullable=True),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_partner_keys_partner_id_partners'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partner_keys')),
    sa.UniqueConstraint('prefix', name=op.f('uq_partner_keys_prefix'))
    )
    op.create_index('ix_partner_keys_partner_id', 'partner_keys', ['partner_id'], unique=False)

    op.create_table('patients',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('practice_id', BIG_ID, nullable=False),
    sa.Column('first_name', sa.String(length=100), nullable=False),
    sa.Column('last_name', sa.String(length=100), nullable=False),
    sa.Column('gender', sa.Enum('female', 'male', 'other', 'unknown', name='gender', native_enum=False, length=16), nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.ForeignKeyConstraint(['practice_id'], ['practices.id'], name=op.f('fk_patients_practice_id_practices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patients')),
    sa.UniqueConstraint('public_id', name=op.f('uq_patients_public_id'))
    )
    op.create_index('ix_patients_practice_id', 'patients', ['practice_id'], unique=False)

    op.create_table('practice_memberships',
    sa.Column('practice_id', BIG_ID, nullable=False),
    sa.Column('practitioner_id', BIG_ID, nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['practice_id'], ['practices.id'], name=op.f('fk_practice_memberships_practice_id_practices'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['practitioner_id'], ['practitioners.id'], name=op.f('fk_practice_memberships_practitioner_id_practitioners'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('practice_id', 'practitioner_id', name=op.f('pk_practice_memberships')),
    sa.UniqueConstraint('public_id', name=op.f('uq_practice_memberships_public_id'))
    )
    op.create_index('ix_practice_memberships_practitioner_id', 'practice_memberships', ['practitioner_id'], unique=False)

    op.create_table('appointments',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('practice_id', BIG_ID, nullable=False),
    sa.Column('practitioner_id', BIG_ID, nullable=False),
    sa.Column('patient_id', BIG_ID, nullable=False),
    sa.Column('starts_at', UTC_TIME, nullable=False),
    sa.Column('ends_at', UTC_TIME, nullable=False),
    sa.Column('status', sa.Enum('booked', 'arrived', 'fulfilled', 'cancelled', 'noshow', name='appointment_status', native_enum=False, length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True, comment='Medical motive: sensitive health data'),
    sa.Column('internal_note', sa.Text(), nullable=True, comment='Practice-only: never exposed to partners'),
    sa.Column('source_partner_id', BIG_ID, nullable=True, comment='Partner that created it; NULL when the practice did'),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.Column('updated_at', UTC_TIME, nullable=False),
    sa.Column('change_seq', sa.BigInteger(), nullable=False, comment='From change_counter: increases with every write'),
    sa.CheckConstraint('ends_at > starts_at', name=op.f('ck_appointments_ends_after_start')),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_appointments_patient_id_patients')),
    sa.ForeignKeyConstraint(['practice_id'], ['practices.id'], name=op.f('fk_appointments_practice_id_practices'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['practitioner_id'], ['practitioners.id'], name=op.f('fk_appointments_practitioner_id_practitioners')),
    sa.ForeignKeyConstraint(['source_partner_id'], ['partners.id'], name=op.f('fk_appointments_source_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_appointments')),
    sa.UniqueConstraint('public_id', name=op.f('uq_appointments_public_id'))
    )
    op.create_index('ix_appointments_patient_id', 'appointments', ['patient_id'], unique=False)
    op.create_index('ix_appointments_practice_change_seq', 'appointments', ['practice_id', 'change_seq'], unique=False)
    op.create_index('ix_appointments_practice_starts', 'appointments', ['practice_id', 'starts_at', 'public_id'], unique=False)
    op.create_index('ix_appointments_practitioner_starts', 'appointments', ['practitioner_id', 'starts_at'], unique=False)

    op.create_table('extraction_alerts',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('partner_id', BIG_ID, nullable=False),
    sa.Column('practice_id', BIG_ID, nullable=False),
    sa.Column('key_id', BIG_ID, nullable=True),
    sa.Column('raised_at', UTC_TIME, nullable=False),
    sa.Column('patients_in_window', sa.Integer(), nullable=False, comment='Distinct patients already disclosed'),
    sa.Column('patients_refused', sa.Integer(), nullable=False, comment='New patients this request asked for'),
    sa.Column('threshold', sa.Integer(), nullable=False),
    sa.Column('window_hours', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['key_id'], ['partner_keys.id'], name=op.f('fk_extraction_alerts_key_id_partner_keys'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_extraction_alerts_partner_id_partners'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['practice_id'], ['practices.id'], name=op.f('fk_extraction_alerts_practice_id_practices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_extraction_alerts'))
    )
    op.create_index('ix_extraction_alerts_partner_id', 'extraction_alerts', ['partner_id'], unique=False)

    op.create_table('patient_disclosures',
    sa.Column('partner_id', BIG_ID, nullable=False),
    sa.Column('practice_id', BIG_ID, nullable=False),
    sa.Column('patient_id', BIG_ID, nullable=False),
    sa.Column('disclosed_at', UTC_TIME, nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_patient_disclosures_partner_id_partners'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_patient_disclosures_patient_id_patients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['practice_id'], ['practices.id'], name=op.f('fk_patient_disclosures_practice_id_practices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('partner_id', 'practice_id', 'patient_id', name=op.f('pk_patient_disclosures'))
    )
    op.create_index('ix_patient_disclosures_window', 'patient_disclosures', ['partner_id', 'practice_id', 'disclosed_at'], unique=False)

    op.create_table('idempotency_records',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('partner_id', BIG_ID, nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('operation', sa.String(length=40), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False, comment='SHA-256 of the operation and its input'),
    sa.Column('appointment_id', BIG_ID, nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointments.id'], name=op.f('fk_idempotency_records_appointment_id_appointments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_idempotency_records_partner_id_partners'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_records')),
    sa.UniqueConstraint('partner_id', 'key', name='uq_idempotency_records_partner_key')
    )


def downgrade() -> None:
    op.drop_table('idempotency_records')
    op.drop_index('ix_patient_disclosures_window', table_name='patient_disclosures')

    op.drop_table('patient_disclosures')
    op.drop_index('ix_extraction_alerts_partner_id', table_name='extraction_alerts')

    op.drop_table('extraction_alerts')
    op.drop_index('ix_appointments_practitioner_starts', table_name='appointments')
    op.drop_index('ix_appointments_practice_starts', table_name='appointments')
    op.drop_index('ix_appointments_practice_change_seq', table_name='appointments')
    op.drop_index('ix_appointments_patient_id', table_name='appointments')

    op.drop_table('appointments')
    op.drop_index('ix_practice_memberships_practitioner_id', table_name='practice_memberships')

    op.drop_table('practice_memberships')
    op.drop_index('ix_patients_practice_id', table_name='patients')

    op.drop_table('patients')
    op.drop_index('ix_partner_keys_partner_id', table_name='partner_keys')

    op.drop_table('partner_keys')
    op.drop_table('partner_budgets')
    op.drop_index('uq_grants_live_partner_practice', table_name='grants', sqlite_where=sa.text('revoked_at IS NULL'), postgresql_where=sa.text('revoked_at IS NULL'))
    op.drop_index('ix_grants_practice_partner', table_name='grants')

    op.drop_table('grants')
    op.drop_index('ix_appointment_tombstones_practice_change_seq', table_name='appointment_tombstones')

    op.drop_table('appointment_tombstones')
    op.drop_table('practitioners')
    op.drop_table('practices')
    op.drop_table('partners')
    op.drop_table('change_counter')
