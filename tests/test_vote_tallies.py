"""Vote tallies on real SQLite and PostgreSQL: every judgment and revision keeps them equal to a recount of
the current judgments' ratings; concurrent judgments of one case are all counted; the migration that made
the table counted the judgments made before it; a recount mends tallies that ratings written directly left
behind; a revision whose old votes are not in the tallies is refused."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import delete, func, select, update

from db.cases import CaseFilter
from db.engine import Database
from db.frames import FrameStore
from db.migrate import downgrade, upgrade
from db.schema import AuditEvent, Case, Model, Prediction, ReviewItem, Run, VoteTally
from db.users import actor_of, create_user
from review import studies
from review.preferences import output_votes, vote_ratings
from review.tallies import COUNTS, TALLY_COLUMNS, TalliesOutOfStep, counted_votes, rebuild_tallies
from tests.conftest import create_postgres_database
from tests.review_app import DEMO_MODELS, load_demo_into

COLUMNS = [c for c in TALLY_COLUMNS if c != "judged_at"]


def _tallies(session, study_id: int) -> pd.DataFrame:
    rows = session.execute(
        select(*(getattr(VoteTally, c) for c in COLUMNS))
        .where(VoteTally.study_id == study_id, VoteTally.reviewers > 0)
        .order_by(VoteTally.prediction_id)
    ).all()
    return pd.DataFrame(rows, columns=COLUMNS)


def _recount(session, study_id: int) -> pd.DataFrame:
    rows = session.execute(counted_votes(study_id)).all()
    return pd.DataFrame([row[: len(COLUMNS)] for row in rows], columns=COLUMNS).sort_values(
        "prediction_id", ignore_index=True
    )


def _study(session, store, k: int = 3):
    """The demo pack, an admin and k reviewers in a running gozone study; (study, reviewers, model of)."""
    load_demo_into(session, store)
    admin = actor_of(create_user(session, "ada", roles=["admin"]))
    reviewers = [actor_of(create_user(session, f"rev{i}", roles=["reviewer"])) for i in range(k)]
    setup = studies.create_study(
        session, admin, name="tallied", task="gozone", model_names=list(DEMO_MODELS),
        case_filter=CaseFilter(dataset="demo"), reviewers=[r.username for r in reviewers], k=k, seed=3,
    )
    model_of = dict(
        session.execute(
            select(Prediction.id, Model.name).join(Run, Run.id == Prediction.run_id).join(Model)
        ).all()
    )
    return setup.study, reviewers, model_of


def _judge(session, reviewer, item: ReviewItem, model_of, number: int) -> None:
    """A judgment whose best pick, correctness and level marks vary with ``number``."""
    letters = sorted(item.letter_map)
    marks = ("correct", "wrong", "na", None)
    ratings = {
        letter: {
            "correct": (number + i) % 2,
            "levels": {n: marks[(number + i + n) % 4] for n in (1, 2, 3)},
            "flags": [],
        }
        for i, letter in enumerate(letters)
    }
    best = None if number % 5 == 4 else letters[number % len(letters)]
    studies.submit_judgment(session, reviewer, item.token, best, ratings)


def test_every_judgment_and_revision_keeps_the_tallies_equal_to_a_recount(session, store):
    study, reviewers, model_of = _study(session, store)
    items = session.scalars(select(ReviewItem).where(ReviewItem.study_id == study.id).order_by(ReviewItem.id))
    items = items.all()
    for number, item in enumerate(items):
        reviewer = next(r for r in reviewers if r.user_id == item.reviewer_id)
        _judge(session, reviewer, item, model_of, number)
    for number, item in enumerate(items[::3]):  # a third revised, one of them twice
        reviewer = next(r for r in reviewers if r.user_id == item.reviewer_id)
        _judge(session, reviewer, item, model_of, number + 7)
    _judge(session, next(r for r in reviewers if r.user_id == items[0].reviewer_id), items[0], model_of, 2)
    tallies = _tallies(session, study.id)
    assert len(tallies) == 48 and tallies["reviewers"].eq(3).all()
    pd.testing.assert_frame_equal(tallies, _recount(session, study.id), check_dtype=False)
    # And equal to the votes of review.stats' row-per-rating frame.
    ratings, dates = vote_ratings(session, study.id)
    keys, names = dict(session.execute(select(Case.id, Case.key)).all()), dict(
        session.execute(select(Model.id, Model.name)).all()
    )
    named = tallies.assign(case=tallies["case_id"].map(keys), model=tallies["model_id"].map(names))
    named = named.sort_values(["case", "model"], ignore_index=True)[["case", "model", *COUNTS]]
    assert named.to_numpy().tolist() == output_votes(ratings)[["case", "model", *COUNTS]].to_numpy().tolist()
    newest = session.scalar(select(VoteTally.judged_at).order_by(VoteTally.judged_at.desc()).limit(1))
    assert newest.replace(tzinfo=None) == max(dates.values()).replace(tzinfo=None)


def test_a_recount_mends_tallies_that_ratings_written_directly_left_behind(session, store):
    study, reviewers, model_of = _study(session, store, k=1)
    items = session.scalars(select(ReviewItem).where(ReviewItem.study_id == study.id)).all()
    for number, item in enumerate(items):
        _judge(session, reviewers[0], item, model_of, number)
    expected = _tallies(session, study.id)
    session.execute(delete(VoteTally).where(VoteTally.prediction_id.in_(expected["prediction_id"][:5].tolist())))
    session.execute(update(VoteTally).values(correct_votes=0))
    assert rebuild_tallies(session, study.id) == 48
    pd.testing.assert_frame_equal(_tallies(session, study.id), expected, check_dtype=False)


def test_a_revision_whose_old_votes_are_not_tallied_is_refused(session, store):
    study, reviewers, model_of = _study(session, store, k=1)
    item = session.scalars(select(ReviewItem).where(ReviewItem.study_id == study.id).limit(1)).one()
    _judge(session, reviewers[0], item, model_of, 0)
    session.execute(delete(VoteTally).where(VoteTally.study_id == study.id))
    with pytest.raises(TalliesOutOfStep, match="recount"):
        _judge(session, reviewers[0], item, model_of, 1)


def test_a_judgment_of_a_prediction_outside_the_study_is_refused(session, store):
    study, reviewers, model_of = _study(session, store, k=1)
    item = session.scalars(select(ReviewItem).where(ReviewItem.study_id == study.id).limit(1)).one()
    stranger = session.scalar(select(Prediction.id).where(Prediction.id.not_in(list(item.letter_map.values())),
                                                          Prediction.case_id != item.case_id).limit(1))
    runs = session.scalar(select(func.count()).select_from(Run))
    other_run = Run(model_id=session.scalar(select(Model.id).limit(1)), task="gozone", prompt_version="x",
                    params={}, params_sha256="1" * 64, status="imported")
    session.add(other_run)
    session.flush()
    session.execute(update(Prediction).where(Prediction.id == stranger).values(run_id=other_run.id))
    item.letter_map = {**item.letter_map, "A": stranger}
    session.flush()
    with pytest.raises(TalliesOutOfStep, match="not one of study"):
        _judge(session, reviewers[0], item, model_of, 0)
    assert runs < session.scalar(select(func.count()).select_from(Run))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh(request, tmp_path):
    """A database of its own, migrated to head: (Database, FrameStore)."""
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path / 'tallies.db'}", None
    else:
        url, drop = create_postgres_database()
    database = Database.from_url(url)
    upgrade(database.engine)
    yield database, FrameStore(tmp_path / "frames")
    database.dispose()
    if drop:
        drop()


def test_the_migration_counts_the_judgments_made_before_it(fresh):
    database, store = fresh
    with database.session_scope() as session:
        study, reviewers, model_of = _study(session, store, k=2)
        for number, item in enumerate(session.scalars(select(ReviewItem).order_by(ReviewItem.id)).all()):
            reviewer = next(r for r in reviewers if r.user_id == item.reviewer_id)
            _judge(session, reviewer, item, model_of, number)
            if number % 4 == 0:
                _judge(session, reviewer, item, model_of, number + 1)
        study_id = study.id
    with database.session_scope() as session:
        kept = _tallies(session, study_id)
        kept_at = session.execute(select(VoteTally.prediction_id, VoteTally.judged_at)).all()
    downgrade(database.engine, "0004")
    upgrade(database.engine)
    with database.session_scope() as session:
        pd.testing.assert_frame_equal(_tallies(session, study_id), kept, check_dtype=False)
        assert sorted(session.execute(select(VoteTally.prediction_id, VoteTally.judged_at)).all()) == sorted(kept_at)


def test_judgments_of_one_case_by_reviewers_at_the_same_time_are_all_counted(fresh):
    database, store = fresh
    with database.session_scope() as session:
        study, reviewers, model_of = _study(session, store, k=3)
        case_id = session.scalar(select(ReviewItem.case_id).where(ReviewItem.study_id == study.id).limit(1))
        items = session.scalars(select(ReviewItem).where(ReviewItem.case_id == case_id)).all()
        work = [(next(r for r in reviewers if r.user_id == i.reviewer_id), i) for i in items]
        study_id = study.id
    start, errors = threading.Barrier(len(work)), []

    def judge(reviewer, item) -> None:  # noqa: ANN001
        try:
            start.wait(10)
            with database.session_scope() as session:
                _judge(session, reviewer, item, model_of, 1)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=judge, args=pair) for pair in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(work) == 3
    with database.session_scope() as session:
        tallies = _tallies(session, study_id)
        assert len(tallies) == 3 and tallies["reviewers"].eq(3).all()
        pd.testing.assert_frame_equal(tallies, _recount(session, study_id), check_dtype=False)


def test_the_tallies_are_in_the_backup_and_a_restore_keeps_them(fresh, tmp_path: Path):
    from db.backup import backup, restore

    database, store = fresh
    with database.session_scope() as session:
        study, reviewers, model_of = _study(session, store, k=1)
        for number, item in enumerate(session.scalars(select(ReviewItem)).all()):
            _judge(session, reviewers[0], item, model_of, number)
        study_id = study.id
    with database.session_scope() as session:
        kept = _tallies(session, study_id)
    archive = tmp_path / "backup.zip"
    backup(database.engine, tmp_path / "frames", archive)
    target = Database.from_url(f"sqlite:///{tmp_path / 'restored.db'}")
    try:
        restore(target.engine, tmp_path / "restored-frames", archive)
        with target.session_scope() as session:
            pd.testing.assert_frame_equal(_tallies(session, study_id), kept, check_dtype=False)
    finally:
        target.dispose()


def test_the_cli_recounts_every_study_and_says_what_it_mended(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from app.cli import cli
    from app.services import Services
    from app.settings import Settings

    monkeypatch.setenv("SURGREVIEW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SURGREVIEW_DATABASE_URL", raising=False)
    services = Services.from_settings(Settings())
    try:
        with services.db.session_scope() as session:
            study, reviewers, model_of = _study(session, services.frames, k=1)
            for number, item in enumerate(session.scalars(select(ReviewItem)).all()):
                _judge(session, reviewers[0], item, model_of, number)
            study_id = study.id
        with services.db.session_scope() as session:
            kept = _tallies(session, study_id)
            gone = kept["prediction_id"][:4].tolist()
            session.execute(delete(VoteTally).where(VoteTally.prediction_id.in_(gone)))
            session.execute(update(VoteTally).where(VoteTally.prediction_id == int(kept["prediction_id"][4]))
                            .values(reviewers=5))
        result = CliRunner().invoke(cli, ["db", "recount-votes"])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "tallied: 48 judged outputs, 5 tallies mended"
        with services.db.session_scope() as session:
            pd.testing.assert_frame_equal(_tallies(session, study_id), kept, check_dtype=False)
            audited = session.scalars(select(AuditEvent).where(AuditEvent.action == "review.tallies_recounted"))
            assert [(a.entity_id, a.payload) for a in audited] == [(str(study_id), {"outputs": 48, "mended": 5})]
        again = CliRunner().invoke(cli, ["db", "recount-votes"])
        assert again.output.strip() == "tallied: 48 judged outputs, 0 tallies mended"
    finally:
        services.close()
