"""email daily cap: code_send counts every code sent

Revision ID: 9c2b568fb7fd
Revises: 68e2bc2bfdcf
Create Date: 2026-11-30 01:16:23.033221

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '9c2b568fb7fd'
down_revision = '68e2bc2bfdcf'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('code_send',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_code_send_member_id_member'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_code_send'))
    )
    with op.batch_alter_table('code_send', schema=None) as batch_op:
        batch_op.create_index('ix_code_send_channel_sent_at', ['channel', 'sent_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_code_send_member_id'), ['member_id'], unique=False)

    with op.batch_alter_table('sms_send', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sms_send_member_id'))
        batch_op.drop_index(batch_op.f('ix_sms_send_sent_at'))

    # The SMS sent in the last day still count toward the caps.
    op.execute(
        "INSERT INTO code_send (member_id, channel, sent_at) "
        "SELECT member_id, 'sms', sent_at FROM sms_send"
    )
    op.drop_table('sms_send')


def downgrade():
    op.create_table('sms_send',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_sms_send_member_id_member'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sms_send'))
    )
    with op.batch_alter_table('sms_send', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sms_send_sent_at'), ['sent_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sms_send_member_id'), ['member_id'], unique=False)

    with op.batch_alter_table('code_send', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_code_send_member_id'))
        batch_op.drop_index('ix_code_send_channel_sent_at')

    op.execute(
        "INSERT INTO sms_send (member_id, sent_at) "
        "SELECT member_id, sent_at FROM code_send WHERE channel = 'sms'"
    )
    op.drop_table('code_send')
