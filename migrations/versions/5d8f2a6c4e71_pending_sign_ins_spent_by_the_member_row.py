"""pending sign-ins spent by the member row; the member pages' version


A pending sign-in (password done, second step owed) now carries the member's last passed
second step as it was then, and the step that completes it writes a new one only if it
is still that: the member row spends it, in the UPDATE that restarts the counters. The
table of spent marks, one row per sign-in, is no longer written or read. Pending
sign-ins started before this upgrade must be started again (they last 5 minutes).

``policy.pages_version`` moves on with every change to a member page, so each worker
can keep the menu's listed pages until it moves (it is read with the member).

Revision ID: 5d8f2a6c4e71
Revises: 3c1e5b7d9a20
Create Date: 2026-11-30 13:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5d8f2a6c4e71'
down_revision = '3c1e5b7d9a20'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('policy', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pages_version', sa.Integer(), server_default='0', nullable=False))

    with op.batch_alter_table('spent_sign_in', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spent_sign_in_expires_at'))

    op.drop_table('spent_sign_in')


def downgrade():
    with op.batch_alter_table('policy', schema=None) as batch_op:
        batch_op.drop_column('pages_version')

    op.create_table('spent_sign_in',
    sa.Column('nonce_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('nonce_hash', name=op.f('pk_spent_sign_in'))
    )
    with op.batch_alter_table('spent_sign_in', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spent_sign_in_expires_at'), ['expires_at'], unique=False)
