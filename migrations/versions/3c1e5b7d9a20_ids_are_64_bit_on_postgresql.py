"""ids are 64-bit on PostgreSQL

Every id (and every foreign key to one) becomes BIGINT on PostgreSQL, its sequence too,
so ids up to 2**63 - 1 are valid on every backend, as on SQLite (whose INTEGER PRIMARY
KEY is already 64-bit: nothing changes there). Before, an id from an address above
2**31 - 1 (e.g. /admin/pages/2147483648/edit) made PostgreSQL refuse the query
("integer out of range") and the page fail with a 500 instead of a 404.

On PostgreSQL this rewrites each table once (the time of a copy of the database); the
downgrade fails if an id above 2**31 - 1 has been used since.

Revision ID: 3c1e5b7d9a20
Revises: 7a41d1157fe0
Create Date: 2026-12-02 10:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '3c1e5b7d9a20'
down_revision = '7a41d1157fe0'
branch_labels = None
depends_on = None

# table: its id columns (its own id first, then its foreign keys to member.id)
COLUMNS = {
    'member': ['id'],
    'member_page': ['id'],
    'policy': ['id'],
    'shared_terminal': ['id'],
    'audit_event': ['actor_id', 'subject_id'],  # its own id already was BIGINT
    'code_send': ['id', 'member_id'],
    'contact_method': ['id', 'member_id'],
    'one_time_code': ['id', 'member_id'],
    'passkey': ['id', 'member_id'],
    'password_reset': ['id', 'member_id'],
    'recovery_code': ['id', 'member_id'],
    'remembered_device': ['id', 'member_id'],
    'totp_credential': ['id', 'member_id'],
    'totp_enrolment': ['id', 'member_id'],
    'webauthn_challenge': ['id', 'member_id'],
}


def _retype(sql_type):
    if op.get_bind().dialect.name != 'postgresql':
        return  # SQLite: INTEGER is 64-bit already
    for table, columns in COLUMNS.items():
        changes = ', '.join(f'ALTER COLUMN {column} TYPE {sql_type}' for column in columns)
        op.execute(f'ALTER TABLE {table} {changes}')
        if 'id' in columns:
            op.execute(
                f"DO $$ BEGIN EXECUTE format('ALTER SEQUENCE %s AS {sql_type}', "
                f"pg_get_serial_sequence('{table}', 'id')); END $$"
            )


def upgrade():
    _retype('BIGINT')


def downgrade():
    _retype('INTEGER')
