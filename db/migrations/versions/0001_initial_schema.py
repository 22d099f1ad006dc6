"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 01:57:30.236179
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('frames',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('format', sa.String(length=10), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=300), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('length(sha256) = 64', name=op.f('ck_frames_sha256_length')),
    sa.CheckConstraint('size_bytes > 0', name=op.f('ck_frames_nonempty')),
    sa.CheckConstraint('width > 0 AND height > 0', name=op.f('ck_frames_positive_size')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_frames')),
    sa.UniqueConstraint('sha256', name=op.f('uq_frames_sha256'))
    )
    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('backend', sa.String(length=30), nullable=False),
    sa.Column('family', sa.String(length=30), nullable=True),
    sa.Column('box_convention', sa.String(length=30), nullable=True),
    sa.Column('location', sa.String(length=1000), nullable=True),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('color', sa.String(length=20), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
    sa.UniqueConstraint('name', name=op.f('uq_models_name'))
    )
    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=150), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=True),
    sa.Column('password_hash', sa.String(length=255), nullable=True),
    sa.Column('oidc_issuer', sa.String(length=500), nullable=True),
    sa.Column('oidc_subject', sa.String(length=255), nullable=True),
    sa.Column('pseudonym', sa.String(length=32), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('oidc_issuer', 'oidc_subject', name='uq_users_oidc_identity'),
    sa.UniqueConstraint('pseudonym', name=op.f('uq_users_pseudonym')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_label', sa.String(length=200), nullable=True),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('entity_type', sa.String(length=50), nullable=True),
    sa.Column('entity_id', sa.String(length=100), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_audit_events_actor_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_events_created_at'), ['created_at'], unique=False)

    op.create_table('cases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=400), nullable=False),
    sa.Column('frame_id', sa.Integer(), nullable=False),
    sa.Column('dataset', sa.String(length=100), nullable=False),
    sa.Column('procedure', sa.String(length=100), nullable=False),
    sa.Column('video', sa.String(length=200), nullable=True),
    sa.Column('frame_index', sa.Integer(), nullable=True),
    sa.Column('timestamp_s', sa.Float(), nullable=True),
    sa.Column('split', sa.String(length=10), nullable=True),
    sa.Column('source_name', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("split IS NULL OR split IN ('train', 'val', 'test')", name=op.f('ck_cases_split_known')),
    sa.CheckConstraint('frame_index IS NULL OR frame_index >= 0', name=op.f('ck_cases_frame_index_nonnegative')),
    sa.ForeignKeyConstraint(['frame_id'], ['frames.id'], name=op.f('fk_cases_frame_id_frames')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases')),
    sa.UniqueConstraint('key', name=op.f('uq_cases_key'))
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cases_dataset'), ['dataset'], unique=False)
        batch_op.create_index('ix_cases_dataset_video', ['dataset', 'video'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_frame_id'), ['frame_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_procedure'), ['procedure'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_split'), ['split'], unique=False)

    op.create_table('collections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('shared', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_collections_owner_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collections')),
    sa.UniqueConstraint('owner_id', 'name', name='uq_collections_owner_name')
    )
    op.create_table('exports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('format', sa.String(length=50), nullable=False),
    sa.Column('filters', sa.JSON(), nullable=False),
    sa.Column('path', sa.String(length=1000), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_exports_created_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exports'))
    )
    op.create_table('runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('task', sa.String(length=20), nullable=False),
    sa.Column('prompt_version', sa.String(length=50), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('params_sha256', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('source', sa.String(length=1000), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('running', 'done', 'failed', 'imported')", name=op.f('ck_runs_status_known')),
    sa.CheckConstraint("task IN ('phase', 'triplet', 'action', 'cvs', 'localization', 'gozone')", name=op.f('ck_runs_task_known')),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_runs_model_id_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs')),
    sa.UniqueConstraint('model_id', 'task', 'prompt_version', 'params_sha256', name='uq_runs_cache_key')
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_runs_model_id'), ['model_id'], unique=False)

    op.create_table('studies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('task', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reviewers_per_case', sa.Integer(), nullable=False),
    sa.Column('rubric', sa.JSON(), nullable=False),
    sa.Column('reveal_policy', sa.String(length=20), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('case_filter', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("reveal_policy IN ('never', 'after_submit')", name=op.f('ck_studies_reveal_known')),
    sa.CheckConstraint("status IN ('draft', 'running', 'closed')", name=op.f('ck_studies_status_known')),
    sa.CheckConstraint("task IN ('phase', 'triplet', 'action', 'cvs', 'localization', 'gozone')", name=op.f('ck_studies_task_known')),
    sa.CheckConstraint('reviewers_per_case >= 1', name=op.f('ck_studies_k_positive')),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_studies_created_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_studies')),
    sa.UniqueConstraint('name', name=op.f('uq_studies_name'))
    )
    op.create_table('user_roles',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.CheckConstraint("role IN ('admin', 'reviewer', 'annotator', 'approver', 'educator', 'resident')", name=op.f('ck_user_roles_role_known')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_roles_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'role', name=op.f('pk_user_roles'))
    )
    op.create_table('annotation_assignments',
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('annotator_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['annotator_id'], ['users.id'], name=op.f('fk_annotation_assignments_annotator_id_users')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_annotation_assignments_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('case_id', 'annotator_id', name=op.f('pk_annotation_assignments'))
    )
    op.create_table('case_tags',
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_tags_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('case_id', 'tag', name=op.f('pk_case_tags'))
    )
    with op.batch_alter_table('case_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_tags_tag'), ['tag'], unique=False)

    op.create_table('collection_items',
    sa.Column('collection_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('teaching_point', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_collection_items_case_id_cases')),
    sa.ForeignKeyConstraint(['collection_id'], ['collections.id'], name=op.f('fk_collection_items_collection_id_collections'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('collection_id', 'case_id', name=op.f('pk_collection_items')),
    sa.UniqueConstraint('collection_id', 'position', name='uq_collection_items_position')
    )
    op.create_table('labels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=500), nullable=False),
    sa.Column('is_current', sa.Boolean(), nullable=False),
    sa.Column('phase', sa.String(length=100), nullable=True),
    sa.Column('phase_raw', sa.String(length=500), nullable=True),
    sa.Column('action', sa.String(length=100), nullable=True),
    sa.Column('triplets', sa.JSON(), nullable=True),
    sa.Column('cvs', sa.JSON(), nullable=True),
    sa.Column('boxes', sa.JSON(), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=True),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('box_x1', sa.Float(), nullable=True),
    sa.Column('box_y1', sa.Float(), nullable=True),
    sa.Column('box_x2', sa.Float(), nullable=True),
    sa.Column('box_y2', sa.Float(), nullable=True),
    sa.Column('location', sa.Text(), nullable=True),
    sa.Column('exposure', sa.Text(), nullable=True),
    sa.Column('next_action', sa.Text(), nullable=True),
    sa.Column('critical_risk', sa.Text(), nullable=True),
    sa.CheckConstraint('(box_x1 IS NULL AND box_y1 IS NULL AND box_x2 IS NULL AND box_y2 IS NULL) OR (box_x1 IS NOT NULL AND box_y1 IS NOT NULL AND box_x2 IS NOT NULL AND box_y2 IS NOT NULL)', name=op.f('ck_labels_box_complete')),
    sa.CheckConstraint('box_x1 IS NULL OR (box_x1 >= 0 AND box_y1 >= 0 AND box_x1 < box_x2 AND box_y1 < box_y2)', name=op.f('ck_labels_box_ordered')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_labels_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labels')),
    sa.UniqueConstraint('case_id', 'source', name='uq_labels_case_source')
    )
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_labels_case_id'), ['case_id'], unique=False)
        batch_op.create_index('uq_labels_one_current', ['case_id'], unique=True, sqlite_where=sa.text('is_current'), postgresql_where=sa.text('is_current'))

    op.create_table('predictions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('raw_text', sa.Text(), nullable=True),
    sa.Column('parsed', sa.JSON(), nullable=True),
    sa.Column('phase', sa.String(length=100), nullable=True),
    sa.Column('answer', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('prompt_tokens', sa.Integer(), nullable=True),
    sa.Column('completion_tokens', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('latency_ms IS NULL OR latency_ms >= 0', name=op.f('ck_predictions_latency_nonnegative')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_predictions_case_id_cases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_predictions_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_predictions')),
    sa.UniqueConstraint('run_id', 'case_id', name='uq_predictions_run_case')
    )
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_predictions_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_predictions_run_id'), ['run_id'], unique=False)

    op.create_table('quiz_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('collection_id', sa.Integer(), nullable=True),
    sa.Column('phase', sa.String(length=100), nullable=True),
    sa.Column('next_action', sa.Text(), nullable=True),
    sa.Column('critical_risk', sa.Text(), nullable=True),
    sa.Column('phase_correct', sa.Boolean(), nullable=True),
    sa.Column('iou', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('box_x1', sa.Float(), nullable=True),
    sa.Column('box_y1', sa.Float(), nullable=True),
    sa.Column('box_x2', sa.Float(), nullable=True),
    sa.Column('box_y2', sa.Float(), nullable=True),
    sa.CheckConstraint('(box_x1 IS NULL AND box_y1 IS NULL AND box_x2 IS NULL AND box_y2 IS NULL) OR (box_x1 IS NOT NULL AND box_y1 IS NOT NULL AND box_x2 IS NOT NULL AND box_y2 IS NOT NULL)', name=op.f('ck_quiz_attempts_box_complete')),
    sa.CheckConstraint('box_x1 IS NULL OR (box_x1 >= 0 AND box_y1 >= 0 AND box_x1 < box_x2 AND box_y1 < box_y2)', name=op.f('ck_quiz_attempts_box_ordered')),
    sa.CheckConstraint('iou IS NULL OR (iou >= 0 AND iou <= 1)', name=op.f('ck_quiz_attempts_iou_range')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_quiz_attempts_case_id_cases')),
    sa.ForeignKeyConstraint(['collection_id'], ['collections.id'], name=op.f('fk_quiz_attempts_collection_id_collections')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_quiz_attempts_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quiz_attempts'))
    )
    with op.batch_alter_table('quiz_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quiz_attempts_user_id'), ['user_id'], unique=False)

    op.create_table('review_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('reviewer_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('letter_map', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_review_items_case_id_cases')),
    sa.ForeignKeyConstraint(['reviewer_id'], ['users.id'], name=op.f('fk_review_items_reviewer_id_users')),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_review_items_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_items')),
    sa.UniqueConstraint('study_id', 'case_id', 'reviewer_id', name='uq_review_items_case_reviewer'),
    sa.UniqueConstraint('study_id', 'reviewer_id', 'position', name='uq_review_items_reviewer_position')
    )
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_items_reviewer_id'), ['reviewer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_review_items_study_id'), ['study_id'], unique=False)

    op.create_table('study_cases',
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('informativeness', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_study_cases_case_id_cases')),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_study_cases_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('study_id', 'case_id', name=op.f('pk_study_cases'))
    )
    op.create_table('study_models',
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_study_models_model_id_models')),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_study_models_run_id_runs')),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_study_models_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('study_id', 'model_id', name=op.f('pk_study_models')),
    sa.UniqueConstraint('study_id', 'position', name='uq_study_models_position')
    )
    op.create_table('study_reviewers',
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_study_reviewers_study_id_studies'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_study_reviewers_user_id_users')),
    sa.PrimaryKeyConstraint('study_id', 'user_id', name=op.f('pk_study_reviewers'))
    )
    op.create_table('annotations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('phase', sa.String(length=100), nullable=True),
    sa.Column('source_prediction_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reviewer_id', sa.Integer(), nullable=True),
    sa.Column('review_comment', sa.Text(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('box_x1', sa.Float(), nullable=True),
    sa.Column('box_y1', sa.Float(), nullable=True),
    sa.Column('box_x2', sa.Float(), nullable=True),
    sa.Column('box_y2', sa.Float(), nullable=True),
    sa.Column('location', sa.Text(), nullable=True),
    sa.Column('exposure', sa.Text(), nullable=True),
    sa.Column('next_action', sa.Text(), nullable=True),
    sa.Column('critical_risk', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('draft', 'submitted', 'approved', 'rejected')", name=op.f('ck_annotations_status_known')),
    sa.CheckConstraint('(box_x1 IS NULL AND box_y1 IS NULL AND box_x2 IS NULL AND box_y2 IS NULL) OR (box_x1 IS NOT NULL AND box_y1 IS NOT NULL AND box_x2 IS NOT NULL AND box_y2 IS NOT NULL)', name=op.f('ck_annotations_box_complete')),
    sa.CheckConstraint('box_x1 IS NULL OR (box_x1 >= 0 AND box_y1 >= 0 AND box_x1 < box_x2 AND box_y1 < box_y2)', name=op.f('ck_annotations_box_ordered')),
    sa.CheckConstraint('version >= 1', name=op.f('ck_annotations_version_positive')),
    sa.ForeignKeyConstraint(['author_id'], ['users.id'], name=op.f('fk_annotations_author_id_users')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_annotations_case_id_cases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['parent_id'], ['annotations.id'], name=op.f('fk_annotations_parent_id_annotations')),
    sa.ForeignKeyConstraint(['reviewer_id'], ['users.id'], name=op.f('fk_annotations_reviewer_id_users')),
    sa.ForeignKeyConstraint(['source_prediction_id'], ['predictions.id'], name=op.f('fk_annotations_source_prediction_id_predictions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_annotations')),
    sa.UniqueConstraint('case_id', 'version', name='uq_annotations_case_version')
    )
    with op.batch_alter_table('annotations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_annotations_case_id'), ['case_id'], unique=False)

    op.create_table('judgments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('is_current', sa.Boolean(), nullable=False),
    sa.Column('best_letter', sa.String(length=1), nullable=True),
    sa.Column('none_acceptable', sa.Boolean(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('time_spent_ms', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('best_letter IS NULL OR length(best_letter) = 1', name=op.f('ck_judgments_best_letter_single')),
    sa.CheckConstraint('revision >= 1', name=op.f('ck_judgments_revision_positive')),
    sa.CheckConstraint('time_spent_ms IS NULL OR time_spent_ms >= 0', name=op.f('ck_judgments_time_nonnegative')),
    sa.ForeignKeyConstraint(['item_id'], ['review_items.id'], name=op.f('fk_judgments_item_id_review_items'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_judgments')),
    sa.UniqueConstraint('item_id', 'revision', name='uq_judgments_item_revision')
    )
    with op.batch_alter_table('judgments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_judgments_item_id'), ['item_id'], unique=False)
        batch_op.create_index('uq_judgments_one_current', ['item_id'], unique=True, sqlite_where=sa.text('is_current'), postgresql_where=sa.text('is_current'))

    op.create_table('output_ratings',
    sa.Column('judgment_id', sa.Integer(), nullable=False),
    sa.Column('letter', sa.String(length=1), nullable=False),
    sa.Column('correct', sa.Integer(), nullable=False),
    sa.Column('level1', sa.String(length=10), nullable=True),
    sa.Column('level2', sa.String(length=10), nullable=True),
    sa.Column('level3', sa.String(length=10), nullable=True),
    sa.Column('flags', sa.JSON(), nullable=False),
    sa.CheckConstraint("level1 IS NULL OR level1 IN ('correct', 'wrong', 'na')", name=op.f('ck_output_ratings_level1_known')),
    sa.CheckConstraint("level2 IS NULL OR level2 IN ('correct', 'wrong', 'na')", name=op.f('ck_output_ratings_level2_known')),
    sa.CheckConstraint("level3 IS NULL OR level3 IN ('correct', 'wrong', 'na')", name=op.f('ck_output_ratings_level3_known')),
    sa.CheckConstraint('correct IN (0, 1)', name=op.f('ck_output_ratings_correct_binary')),
    sa.ForeignKeyConstraint(['judgment_id'], ['judgments.id'], name=op.f('fk_output_ratings_judgment_id_judgments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('judgment_id', 'letter', name=op.f('pk_output_ratings'))
    )


def downgrade() -> None:
    op.drop_table('output_ratings')
    with op.batch_alter_table('judgments', schema=None) as batch_op:
        batch_op.drop_index('uq_judgments_one_current', sqlite_where=sa.text('is_current'), postgresql_where=sa.text('is_current'))
        batch_op.drop_index(batch_op.f('ix_judgments_item_id'))

    op.drop_table('judgments')
    with op.batch_alter_table('annotations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_annotations_case_id'))

    op.drop_table('annotations')
    op.drop_table('study_reviewers')
    op.drop_table('study_models')
    op.drop_table('study_cases')
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_review_items_study_id'))
        batch_op.drop_index(batch_op.f('ix_review_items_reviewer_id'))

    op.drop_table('review_items')
    with op.batch_alter_table('quiz_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quiz_attempts_user_id'))

    op.drop_table('quiz_attempts')
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_predictions_run_id'))
        batch_op.drop_index(batch_op.f('ix_predictions_case_id'))

    op.drop_table('predictions')
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.drop_index('uq_labels_one_current', sqlite_where=sa.text('is_current'), postgresql_where=sa.text('is_current'))
        batch_op.drop_index(batch_op.f('ix_labels_case_id'))

    op.drop_table('labels')
    op.drop_table('collection_items')
    with op.batch_alter_table('case_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_tags_tag'))

    op.drop_table('case_tags')
    op.drop_table('annotation_assignments')
    op.drop_table('user_roles')
    op.drop_table('studies')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_model_id'))

    op.drop_table('runs')
    op.drop_table('exports')
    op.drop_table('collections')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_split'))
        batch_op.drop_index(batch_op.f('ix_cases_procedure'))
        batch_op.drop_index(batch_op.f('ix_cases_frame_id'))
        batch_op.drop_index('ix_cases_dataset_video')
        batch_op.drop_index(batch_op.f('ix_cases_dataset'))

    op.drop_table('cases')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_created_at'))
        batch_op.drop_index(batch_op.f('ix_audit_events_action'))

    op.drop_table('audit_events')
    op.drop_table('users')
    op.drop_table('models')
    op.drop_table('frames')
