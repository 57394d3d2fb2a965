"""policy, remembered devices, shared terminals

Revision ID: a9b5903837cb
Revises: b51c051f28ac
Create Date: 2026-11-30 03:35:29.199506

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a9b5903837cb'
down_revision = 'b51c051f28ac'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('policy',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enforcement', sa.String(length=10), nullable=False),
    sa.Column('enforcement_since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('operator_enforcement', sa.String(length=10), nullable=False),
    sa.Column('operator_enforcement_since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('grace_days', sa.Integer(), nullable=False),
    sa.Column('allow_remember_device', sa.Boolean(), nullable=False),
    sa.Column('remember_days', sa.Integer(), nullable=False),
    sa.Column('trusted_networks', sa.Text(), nullable=False),
    sa.Column('shared_terminal_skip', sa.Boolean(), nullable=False),
    sa.Column('methods', sa.String(length=32), nullable=False),
    sa.Column('issuer', sa.String(length=100), nullable=False),
    sa.Column('landing_path', sa.String(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policy'))
    )
    op.create_table('shared_terminal',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=80), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shared_terminal')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_shared_terminal_token_hash'))
    )
    op.create_table('remembered_device',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=80), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_remembered_device_member_id_member'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_remembered_device')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_remembered_device_token_hash'))
    )
    with op.batch_alter_table('remembered_device', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_remembered_device_member_id'), ['member_id'], unique=False)



def downgrade():
    with op.batch_alter_table('remembered_device', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_remembered_device_member_id'))

    op.drop_table('remembered_device')
    op.drop_table('shared_terminal')
    op.drop_table('policy')
