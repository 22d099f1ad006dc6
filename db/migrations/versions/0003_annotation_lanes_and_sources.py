"""annotation: lanes (shared or one per annotator in agreement studies) and the source of each version

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 04:19:24.556835
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('annotation_assignments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lane', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_index(batch_op.f('ix_annotation_assignments_annotator_id'), ['annotator_id'], unique=False)

    with op.batch_alter_table('annotations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lane', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('source', sa.String(length=500), nullable=True))
        batch_op.drop_constraint(batch_op.f('uq_annotations_case_version'), type_='unique')
        batch_op.create_unique_constraint('uq_annotations_case_lane_version', ['case_id', 'lane', 'version'])



def downgrade() -> None:
    with op.batch_alter_table('annotations', schema=None) as batch_op:
        batch_op.drop_constraint('uq_annotations_case_lane_version', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_annotations_case_version'), ['case_id', 'version'])
        batch_op.drop_column('source')
        batch_op.drop_column('lane')

    with op.batch_alter_table('annotation_assignments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_annotation_assignments_annotator_id'))
        batch_op.drop_column('lane')

