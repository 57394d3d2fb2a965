"""spent pending sign-ins

Revision ID: b51c051f28ac
Revises: 9c2b568fb7fd
Create Date: 2026-11-30 01:24:19.110661

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b51c051f28ac'
down_revision = '9c2b568fb7fd'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('spent_sign_in',
    sa.Column('nonce_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('nonce_hash', name=op.f('pk_spent_sign_in'))
    )
    with op.batch_alter_table('spent_sign_in', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spent_sign_in_expires_at'), ['expires_at'], unique=False)



def downgrade():
    with op.batch_alter_table('spent_sign_in', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spent_sign_in_expires_at'))

    op.drop_table('spent_sign_in')
