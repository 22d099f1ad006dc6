"""teaching: collection description, presented task and presenting model; quiz attempts by case

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 05:10:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

TASKS = "task IN ('phase', 'triplet', 'action', 'cvs', 'localization', 'gozone')"


def upgrade() -> None:
    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('description', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('task', sa.String(length=20), server_default='gozone', nullable=False))
        batch_op.add_column(sa.Column('presenter_model_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_collections_presenter_model_id_models'), 'models',
                                    ['presenter_model_id'], ['id'], ondelete='SET NULL')
        batch_op.create_check_constraint(batch_op.f('ck_collections_task_known'), TASKS)

    with op.batch_alter_table('quiz_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quiz_attempts_case_id'), ['case_id'], unique=False)
        batch_op.drop_constraint(batch_op.f('fk_quiz_attempts_collection_id_collections'), type_='foreignkey')
        batch_op.create_foreign_key(batch_op.f('fk_quiz_attempts_collection_id_collections'), 'collections',
                                    ['collection_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    with op.batch_alter_table('quiz_attempts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_quiz_attempts_collection_id_collections'), type_='foreignkey')
        batch_op.create_foreign_key(batch_op.f('fk_quiz_attempts_collection_id_collections'), 'collections',
                                    ['collection_id'], ['id'])
        batch_op.drop_index(batch_op.f('ix_quiz_attempts_case_id'))

    with op.batch_alter_table('collections', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_collections_task_known'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_collections_presenter_model_id_models'), type_='foreignkey')
        batch_op.drop_column('presenter_model_id')
        batch_op.drop_column('task')
        batch_op.drop_column('description')
