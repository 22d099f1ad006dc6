"""A reviewer's screens (review.queue) on real SQLite and PostgreSQL over the demo pack: their studies only,
resume at the first open item, step back to revise, progress, and refusals for other people's items."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from db.cases import CaseFilter
from db.errors import NotFound, PermissionDenied
from db.users import actor_of, create_user
from review import studies
from review.queue import my_studies, screen
from tests.review_app import DEMO_MODELS, load_demo_into


@pytest.fixture
def demo(session, store):
    load_demo_into(session, store)
    people = {name: actor_of(create_user(session, name, roles=roles)) for name, roles in [
        ("ada", ["admin"]), ("rev1", ["reviewer"]), ("rev2", ["reviewer"]), ("outsider", ["reviewer"])]}
    made = [studies.create_study(session, people["ada"], name=name, task="phase", model_names=DEMO_MODELS[:2],
                                 case_filter=CaseFilter(dataset="demo", limit=6), reviewers=["rev1", "rev2"],
                                 k=1, seed=1, reveal_policy=policy).study.id
            for name, policy in (("first", "never"), ("second", "after_submit"))]
    return SimpleNamespace(session=session, study_ids=made, **people)


def _judge(demo, shown, best="A") -> None:
    ratings = {o.letter: {"correct": 1} for o in shown.item.outputs}
    studies.submit_judgment(demo.session, demo.rev1, shown.item.token, best, ratings, time_spent_ms=10)


def test_a_reviewer_lists_only_their_studies_with_the_rubric_and_reveal_policy(demo):
    listed = my_studies(demo.session, demo.rev1)
    assert [s.name for s in listed] == ["second", "first"]
    assert listed[0].reveal_after_submit and not listed[1].reveal_after_submit
    assert listed[0].levels == (1, 2, 3) and "hallucination" in listed[0].flags
    assert my_studies(demo.session, demo.outsider) == []
    with pytest.raises(PermissionDenied):
        my_studies(demo.session, demo.ada)


def test_the_screen_resumes_at_the_first_open_item_and_steps_back_to_revise(demo):
    study_id = demo.study_ids[0]
    first = screen(demo.session, demo.rev1, study_id)
    assert (first.entry.position, first.entry.state, first.judgment) == (1, "open", None)
    assert first.progress.assigned == len(first.entries) == 3
    _judge(demo, first, best="B")
    second = screen(demo.session, demo.rev1, study_id)
    assert (second.entry.position, second.progress.done) == (2, 1)
    back = screen(demo.session, demo.rev1, study_id, second.item.token, step=-1)
    assert back.item.token == first.item.token and back.judgment["best"] == "B"
    assert screen(demo.session, demo.rev1, study_id, first.item.token, step=-1).entry.position == 1  # clamped
    _judge(demo, second)
    _judge(demo, screen(demo.session, demo.rev1, study_id))
    done = screen(demo.session, demo.rev1, study_id)
    assert done.item is None and done.progress.done == 3
    assert screen(demo.session, demo.rev1, study_id, None, step=-1).entry.position == 3  # from the end


def test_other_peoples_items_and_studies_are_refused(demo):
    first, second = demo.study_ids
    theirs = screen(demo.session, demo.rev1, first).item.token
    with pytest.raises(PermissionDenied, match="another reviewer's queue"):
        screen(demo.session, demo.rev2, first, theirs)
    with pytest.raises(PermissionDenied, match="another reviewer's queue"):
        screen(demo.session, demo.rev2, first, theirs, step=-1)
    with pytest.raises(PermissionDenied, match="not a reviewer of this study"):
        screen(demo.session, demo.outsider, first)
    with pytest.raises(NotFound, match="no such item in this study"):
        screen(demo.session, demo.rev1, second, theirs)  # their own token, but of the other study
