"""review: item tokens, queue state and skips, judgment authors, missing and leaking study cases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 02:32:00.685306
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('judgments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('author_id', sa.Integer(), nullable=False))
        batch_op.create_foreign_key(batch_op.f('fk_judgments_author_id_users'), 'users', ['author_id'], ['id'])

    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token', sa.String(length=32), nullable=False))
        batch_op.add_column(sa.Column('frame_token', sa.String(length=32), nullable=False))
        batch_op.add_column(sa.Column('state', sa.String(length=10), server_default='open', nullable=False))
        batch_op.add_column(sa.Column('skipped_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('skipped_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_review_items_queue', ['study_id', 'reviewer_id', 'state', 'position'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_review_items_frame_token'), ['frame_token'])
        batch_op.create_unique_constraint(batch_op.f('uq_review_items_token'), ['token'])
        batch_op.create_check_constraint(batch_op.f('ck_review_items_state_known'),
                                         "state IN ('open', 'judged', 'skipped')")

    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('order_by_informativeness', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('case_limit', sa.Integer(), nullable=True))

    with op.batch_alter_table('study_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('missing', sa.JSON(), server_default=sa.text("'[]'"), nullable=False))
        batch_op.add_column(sa.Column('identity_leaks', sa.JSON(), server_default=sa.text("'[]'"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('study_cases', schema=None) as batch_op:
        batch_op.drop_column('identity_leaks')
        batch_op.drop_column('missing')

    with op.batch_alter_table('studies', schema=None) as batch_op:
        batch_op.drop_column('case_limit')
        batch_op.drop_column('order_by_informativeness')

    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_review_items_state_known'), type_='check')
        batch_op.drop_constraint(batch_op.f('uq_review_items_token'), type_='unique')
        batch_op.drop_constraint(batch_op.f('uq_review_items_frame_token'), type_='unique')
        batch_op.drop_index('ix_review_items_queue')
        batch_op.drop_column('skipped_at')
        batch_op.drop_column('skipped_reason')
        batch_op.drop_column('state')
        batch_op.drop_column('frame_token')
        batch_op.drop_column('token')

    with op.batch_alter_table('judgments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_judgments_author_id_users'), type_='foreignkey')
        batch_op.drop_column('author_id')
