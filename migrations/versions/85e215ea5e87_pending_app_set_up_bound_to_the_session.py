"""pending app set-up bound to the session

Revision ID: 85e215ea5e87
Revises: 0186d80b1db7
Create Date: 2026-11-30 01:04:52.730665

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '85e215ea5e87'
down_revision = '0186d80b1db7'
branch_labels = None
depends_on = None


def upgrade():
    # Set-ups pending from before get an empty hash: no session can confirm them, so
    # the member simply opens the dialog again (a new secret, bound to that session).
    with op.batch_alter_table('totp_enrolment', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('session_hash', sa.String(length=64), nullable=False, server_default='')
        )


def downgrade():
    with op.batch_alter_table('totp_enrolment', schema=None) as batch_op:
        batch_op.drop_column('session_hash')
