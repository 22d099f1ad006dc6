"""vote tallies: per study and output, the votes of the current judgments, counted from the ratings so far

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:50:31.863455
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# The votes of every study's current judgments so far, one row per (study, output); from here on
# review.tallies keeps them in step with each judgment. Plain SQL that SQLite (3.38+) and PostgreSQL share.
BACKFILL = """
INSERT INTO vote_tallies (study_id, prediction_id, case_id, model_id, reviewers, correct_votes, best_votes,
                          level1_correct, level1_wrong, level2_correct, level2_wrong, level3_correct, level3_wrong,
                          judged_at)
SELECT i.study_id, p.id, i.case_id, sm.model_id, count(*), sum(r.correct),
       sum(CASE WHEN j.best_letter = r.letter THEN 1 ELSE 0 END),
       sum(CASE WHEN r.level1 = 'correct' THEN 1 ELSE 0 END), sum(CASE WHEN r.level1 = 'wrong' THEN 1 ELSE 0 END),
       sum(CASE WHEN r.level2 = 'correct' THEN 1 ELSE 0 END), sum(CASE WHEN r.level2 = 'wrong' THEN 1 ELSE 0 END),
       sum(CASE WHEN r.level3 = 'correct' THEN 1 ELSE 0 END), sum(CASE WHEN r.level3 = 'wrong' THEN 1 ELSE 0 END),
       max(j.created_at)
FROM output_ratings r
JOIN judgments j ON j.id = r.judgment_id AND j.is_current
JOIN review_items i ON i.id = j.item_id
JOIN predictions p ON p.id = CAST(i.letter_map ->> r.letter AS BIGINT)
JOIN study_models sm ON sm.study_id = i.study_id AND sm.run_id = p.run_id
GROUP BY i.study_id, p.id, i.case_id, sm.model_id
"""


def upgrade() -> None:
    op.create_table('vote_tallies',
    sa.Column('study_id', sa.Integer(), nullable=False),
    sa.Column('prediction_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('reviewers', sa.Integer(), nullable=False),
    sa.Column('correct_votes', sa.Integer(), nullable=False),
    sa.Column('best_votes', sa.Integer(), nullable=False),
    sa.Column('level1_correct', sa.Integer(), nullable=False),
    sa.Column('level1_wrong', sa.Integer(), nullable=False),
    sa.Column('level2_correct', sa.Integer(), nullable=False),
    sa.Column('level2_wrong', sa.Integer(), nullable=False),
    sa.Column('level3_correct', sa.Integer(), nullable=False),
    sa.Column('level3_wrong', sa.Integer(), nullable=False),
    sa.Column('judged_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('best_votes >= 0 AND best_votes <= reviewers', name=op.f('ck_vote_tallies_best_votes_counted')),
    sa.CheckConstraint('correct_votes >= 0 AND correct_votes <= reviewers', name=op.f('ck_vote_tallies_correct_votes_counted')),
    sa.CheckConstraint('level1_correct >= 0 AND level1_wrong >= 0 AND level1_correct + level1_wrong <= reviewers', name=op.f('ck_vote_tallies_level1_counted')),
    sa.CheckConstraint('level2_correct >= 0 AND level2_wrong >= 0 AND level2_correct + level2_wrong <= reviewers', name=op.f('ck_vote_tallies_level2_counted')),
    sa.CheckConstraint('level3_correct >= 0 AND level3_wrong >= 0 AND level3_correct + level3_wrong <= reviewers', name=op.f('ck_vote_tallies_level3_counted')),
    sa.CheckConstraint('reviewers >= 0', name=op.f('ck_vote_tallies_reviewers_nonnegative')),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_vote_tallies_case_id_cases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_vote_tallies_model_id_models')),
    sa.ForeignKeyConstraint(['prediction_id'], ['predictions.id'], name=op.f('fk_vote_tallies_prediction_id_predictions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['study_id'], ['studies.id'], name=op.f('fk_vote_tallies_study_id_studies'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('study_id', 'prediction_id', name=op.f('pk_vote_tallies'))
    )
    op.create_index('ix_vote_tallies_case', 'vote_tallies', ['study_id', 'case_id'], unique=False)
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_index('ix_vote_tallies_case', table_name='vote_tallies')
    op.drop_table('vote_tallies')
