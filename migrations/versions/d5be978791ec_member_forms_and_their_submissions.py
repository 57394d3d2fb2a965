"""member forms and their submissions

Forms inside the member area (issue 15): a form's three page bodies and its fields (JSON),
and the members' submissions, a draft at the confirm step until sent once.

Revision ID: d5be978791ec
Revises: e3b7c41a9d25
Create Date: 2026-11-30 15:59:42.236257

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd5be978791ec'
down_revision = 'e3b7c41a9d25'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('member_form',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('is_open', sa.Boolean(), server_default='1', nullable=False),
    sa.Column('require_2fa', sa.String(length=8), server_default='off', nullable=False),
    sa.Column('step_up_minutes', sa.Integer(), server_default='0', nullable=False),
    sa.Column('input_body', sa.Text(), nullable=False),
    sa.Column('confirm_body', sa.Text(), nullable=False),
    sa.Column('thanks_body', sa.Text(), nullable=False),
    sa.Column('fields', sa.Text(), nullable=False),
    sa.Column('listed', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('menu_order', sa.Integer(), server_default='0', nullable=False),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_member_form')),
    sa.UniqueConstraint('slug', name=op.f('uq_member_form_slug'))
    )
    op.create_table('form_submission',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('form_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('login_id', sa.String(length=64), nullable=False),
    sa.Column('member_name', sa.String(length=200), nullable=False),
    sa.Column('answers', sa.Text(), nullable=False),
    sa.Column('form_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('second_step_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stepped_up', sa.Boolean(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['form_id'], ['member_form.id'], name=op.f('fk_form_submission_form_id_member_form'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_form_submission_member_id_member'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_form_submission'))
    )
    with op.batch_alter_table('form_submission', schema=None) as batch_op:
        batch_op.create_index('ix_form_submission_form_sent', ['form_id', 'submitted_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_form_submission_member_id'), ['member_id'], unique=False)



def downgrade():
    with op.batch_alter_table('form_submission', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_form_submission_member_id'))
        batch_op.drop_index('ix_form_submission_form_sent')

    op.drop_table('form_submission')
    op.drop_table('member_form')
