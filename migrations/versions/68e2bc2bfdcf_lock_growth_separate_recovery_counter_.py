"""lock growth, separate recovery counter, permanent lock

Revision ID: 68e2bc2bfdcf
Revises: 85e215ea5e87
Create Date: 2026-11-30 01:12:53.680257

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '68e2bc2bfdcf'
down_revision = '85e215ea5e87'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('member', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tfa_locks', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('recovery_failures', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('recovery_locked_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('recovery_locks', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('tfa_streak', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('tfa_blocked_at', sa.DateTime(timezone=True), nullable=True))



def downgrade():
    with op.batch_alter_table('member', schema=None) as batch_op:
        batch_op.drop_column('tfa_blocked_at')
        batch_op.drop_column('tfa_streak')
        batch_op.drop_column('recovery_locks')
        batch_op.drop_column('recovery_locked_until')
        batch_op.drop_column('recovery_failures')
        batch_op.drop_column('tfa_locks')

