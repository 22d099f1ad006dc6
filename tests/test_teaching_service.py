"""Teaching services on real SQLite and PostgreSQL with the demo pack loaded: collections (create, search and
add, order, notes, share), presentation slides, quiz attempts scored and stored, results, and who may do what
(a resident never reads another resident's attempts, nor the expert answer before submitting)."""

from __future__ import annotations

from dataclasses import fields

import pytest
from sqlalchemy import func, select

import annotation.demo
from annotation.demo.load import load_demo_pack
from db.cases import CaseFilter, find_case_ids
from db.errors import Conflict, NotFound, PermissionDenied
from db.schema import AuditEvent, Case, Label, QuizAttempt
from db.users import actor_of, create_user
from models.boxes import Box, iou
from review.teaching import collections as col
from review.teaching.presentation import Place, move, present, visible_boxes
from review.teaching.quiz import (
    QuizQuestion,
    TeachingError,
    attempt_feedback,
    quiz_question,
    submit_attempt,
)
from review.teaching.results import attempts_table, residents, teaching_results

CASE = "demo/demo_vid01/000500"


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    return annotation.demo.write_demo_pack(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def demo(session, store, pack, monkeypatch):
    """The demo pack and one user per teaching role (two residents, two educators, a reviewer)."""
    monkeypatch.setattr(annotation.demo, "write_demo_pack", lambda folder: pack)
    load_demo_pack(session, store, pack.folder)
    users = {name: actor_of(create_user(session, name, roles=roles)) for name, roles in {
        "edu": ("educator",), "edu2": ("educator",), "res1": ("resident",), "res2": ("resident",),
        "rev": ("reviewer",)}.items()}
    return session, users


def _case(session, key: str = CASE) -> Case:
    return session.scalar(select(Case).where(Case.key == key))


def _collection(session, users, *, shared=True, keys=(CASE,), presenter="demo-surg-r1"):
    collection = col.create_collection(session, users["edu"], "Calot basics", shared=shared,
                                       presenter=presenter)
    for key in keys:
        col.add_to_collection(session, users["edu"], collection.id, _case(session, key).id)
    return collection


def test_an_educator_builds_orders_and_annotates_a_collection(demo):
    session, users = demo
    edu = users["edu"]
    collection = col.create_collection(session, edu, "  Phase   B  ", description="Calot's triangle")
    assert collection.name == "Phase B" and not collection.shared and collection.task == "gozone"
    found = find_case_ids(session, CaseFilter(dataset="demo", phase="B"))
    assert len(found) == 4
    assert col.add_cases(session, edu, collection.id, [*found, found[0]]) == 4
    assert col.add_cases(session, edu, collection.id, found) == 0  # already there: nothing twice
    with pytest.raises(Conflict, match="already in"):
        col.add_to_collection(session, edu, collection.id, found[0])
    items = col.collection_items(session, edu, collection.id)
    assert [i.position for i in items] == [1, 2, 3, 4] and [i.case_id for i in items] == list(found)
    assert {i.reference_phase for i in items} == {"B"}

    assert col.move_item(session, edu, collection.id, found[3], -10) == 1  # stops at the top
    col.reorder(session, edu, collection.id, [found[3], found[2], found[1], found[0]])
    col.remove_from_collection(session, edu, collection.id, found[2])
    items = col.collection_items(session, edu, collection.id)
    assert [(i.case_id, i.position) for i in items] == [(found[3], 1), (found[1], 2), (found[0], 3)]
    with pytest.raises(TeachingError, match="exactly once"):
        col.reorder(session, edu, collection.id, [found[3], found[1]])

    col.set_item_notes(session, edu, collection.id, found[1], notes="Point at the cystic plate",
                       teaching_point="Never the liver bed")
    item = col.collection_items(session, edu, collection.id)[1]
    assert (item.notes, item.teaching_point) == ("Point at the cystic plate", "Never the liver bed")
    with pytest.raises(Conflict, match="already have"):
        col.create_collection(session, edu, "Phase B")
    assert session.scalar(select(func.count()).select_from(AuditEvent)
                          .where(AuditEvent.action.like("teaching.%"))) >= 9


def test_add_by_case_key_and_presenter_choices(demo):
    session, users = demo
    collection = col.create_collection(session, users["edu"], "By key")
    case = col.find_case(session, f"  {CASE} ")
    col.add_to_collection(session, users["edu"], collection.id, case.id)
    with pytest.raises(NotFound):
        col.find_case(session, "demo/nope/1")
    assert col.presenter_choices(session, "gozone") == ["demo-baseline", "demo-surg-r1", "demo-surgo-r1"]
    updated = col.update_collection(session, users["edu"], collection.id, presenter="demo-surgo-r1",
                                    shared=True)
    assert updated.shared and updated.presenter_model_id is not None
    with pytest.raises(NotFound, match="no model"):
        col.update_collection(session, users["edu"], collection.id, presenter="gpt-17")


def test_sharing_decides_who_sees_a_collection_and_only_its_owner_edits_it(demo):
    session, users = demo
    private = col.create_collection(session, users["edu"], "Private")
    shared = _collection(session, users, shared=True)
    names = lambda who: [c.name for c in col.visible_collections(session, users[who])]  # noqa: E731
    assert names("edu") == ["Calot basics", "Private"]
    assert names("edu2") == ["Calot basics"] and names("res1") == ["Calot basics"]
    for who in ("edu2", "res1"):
        with pytest.raises(NotFound):
            col.get_collection(session, users[who], private.id)
    with pytest.raises(PermissionDenied, match="Only the educator who made"):
        col.add_to_collection(session, users["edu2"], shared.id, _case(session, "demo/demo_vid02/000000").id)
    with pytest.raises(PermissionDenied, match="educator"):
        col.create_collection(session, users["res1"], "Mine")
    with pytest.raises(PermissionDenied, match="educator"):
        col.collection_items(session, users["res1"], shared.id)  # notes and teaching points stay hidden
    with pytest.raises(PermissionDenied):
        col.visible_collections(session, users["rev"])


def test_a_presentation_reveals_the_case_step_by_step(demo, pack):
    session, users = demo
    collection = _collection(session, users, keys=(CASE, "demo/demo_vid02/000000"))
    col.set_item_notes(session, users["edu"], collection.id, _case(session).id, notes="ask first",
                       teaching_point="Stay in the triangle")
    slide = present(session, users["edu"], collection.id, Place(1, 0))
    assert slide.presenter == "demo-surg-r1" and slide.total == 2 and slide.notes == "ask first"
    assert slide.revealed.steps == ("question", "level1", "level2", "level3", "answer", "reference",
                                    "contrast",
                                    "teaching_point")
    assert visible_boxes(slide) == []
    reference = next(c for c in pack.cases if c.key == CASE)
    slide = present(session, users["edu"], collection.id, Place(1, 5))
    assert slide.revealed.current == "reference"
    [expert] = [b for b in visible_boxes(slide) if b.reference]
    assert expert.box.as_tuple() == pytest.approx(reference.box.as_tuple())
    assert slide.material.expert.phase == reference.phase and set(slide.material.expert.rationale) == {
        "location", "exposure", "next_action", "critical_risk"}
    # Keyboard-style moves: past the last step comes the next case; back from its question, this one again.
    last = move(session, users["edu"], collection.id, Place(1, 7), "next_step")
    assert (last.position, last.revealed.step) == (2, 0)
    back = move(session, users["edu"], collection.id, last.place, "prev_step")
    assert (back.position, back.revealed.current) == (1, "teaching_point")
    # Another presenter for contrast; the collection's own presenter is only the default.
    other = present(session, users["edu"], collection.id, Place(1, 0), presenter="demo-baseline")
    assert other.presenter == "demo-baseline" and "level1" not in other.revealed.steps
    # The other educator may present a shared collection; residents and reviewers may not present.
    assert present(session, users["edu2"], collection.id, Place(2, 0)).position == 2
    for who in ("res1", "rev"):
        with pytest.raises(PermissionDenied):
            present(session, users[who], collection.id, Place(1, 0))


def test_a_quiz_question_holds_nothing_of_the_answer(demo):
    session, users = demo
    collection = _collection(session, users)
    question = quiz_question(session, users["res1"], collection.id, 1)
    assert {f.name for f in fields(QuizQuestion)} == {
        "collection_id", "collection_name", "position", "total", "case_id", "case_key", "question", "phases",
        "width", "height", "attempts", "frame"}
    assert [p for p, _ in question.phases] == ["A", "B", "C", "D"] and question.attempts == 0
    assert (question.width, question.height) == (854, 480)
    with pytest.raises(PermissionDenied, match="resident"):
        quiz_question(session, users["edu"], collection.id, 1)
    private = col.create_collection(session, users["edu"], "Hidden", shared=False)
    col.add_to_collection(session, users["edu"], private.id, _case(session).id)
    with pytest.raises(NotFound):
        quiz_question(session, users["res1"], private.id, 1)


def test_a_quiz_attempt_is_scored_stored_and_answered_with_the_expert_and_the_model(demo, pack):
    session, users = demo
    collection = _collection(session, users)
    col.set_item_notes(session, users["edu"], collection.id, _case(session).id, notes=None,
                       teaching_point="Stay in the triangle")
    reference = next(c for c in pack.cases if c.key == CASE)
    drawn = (reference.box.x1 + 20, reference.box.y1, reference.box.x2 + 20, reference.box.y2)
    feedback = submit_attempt(session, users["res1"], collection.id, _case(session).id, phase=reference.phase,
                              box=drawn, next_action="clip the duct", critical_risk="the CBD")
    assert feedback.score.phase_correct is True
    assert feedback.score.iou == pytest.approx(iou(Box(*drawn), reference.box))
    assert feedback.score.hardcore_iou == feedback.score.iou
    assert feedback.expert.phase == reference.phase and feedback.expert.rationale["critical_risk"]
    [model] = feedback.outputs
    assert model.model == "demo-surg-r1" and set(model.levels) == {1, 2, 3}
    assert feedback.teaching_point == "Stay in the triangle"
    stored = session.get(QuizAttempt, feedback.attempt_id)
    assert stored.box == pytest.approx(drawn) and stored.phase_correct
    assert stored.next_action == "clip the duct"

    wrong = next(p for p in "ABCD" if p != reference.phase)
    hard = submit_attempt(session, users["res1"], collection.id, _case(session).id, phase=wrong, box=drawn)
    assert hard.score.phase_correct is False and hard.score.iou > 0.3 and hard.score.hardcore_iou == 0.0
    assert quiz_question(session, users["res1"], collection.id, 1).attempts == 2

    # Boxes are fitted to the frame (corners ordered, clipped); nothing to score is refused.
    clipped = submit_attempt(session, users["res1"], collection.id, _case(session).id, phase="A",
                             box=(900, 500, 700, 300))
    assert clipped.box == Box(700, 300, 854, 480)
    with pytest.raises(TeachingError, match="Pick the phase"):
        submit_attempt(session, users["res1"], collection.id, _case(session).id, phase=None, box=drawn)
    with pytest.raises(TeachingError, match="Draw the Go Zone"):
        submit_attempt(session, users["res1"], collection.id, _case(session).id, phase="A", box=None)
    with pytest.raises(TeachingError, match="cannot be scored"):
        submit_attempt(session, users["res1"], collection.id, _case(session).id, phase="A",
                       box=(900, 500, 1000, 600))
    with pytest.raises(NotFound, match="not part of this quiz"):
        submit_attempt(session, users["res1"], collection.id, _case(session, "demo/demo_vid02/000000").id,
                       phase="A", box=drawn)
    with pytest.raises(PermissionDenied):
        submit_attempt(session, users["edu"], collection.id, _case(session).id, phase="A", box=drawn)


def test_a_resident_reads_only_their_own_attempts_and_results(demo):
    session, users = demo
    collection = _collection(session, users, keys=(CASE, "demo/demo_vid02/000000"))
    case_ids = col.item_case_ids(session, collection.id)
    mine = submit_attempt(session, users["res1"], collection.id, case_ids[0], phase="B", box=(10, 10, 200,
                                                                                              200))
    theirs = submit_attempt(session, users["res2"], collection.id, case_ids[1], phase="C", box=(10, 10, 90,
                                                                                                90))
    assert attempt_feedback(session, users["res1"], mine.attempt_id).attempt_id == mine.attempt_id
    with pytest.raises(NotFound):
        attempt_feedback(session, users["res1"], theirs.attempt_id)
    assert attempt_feedback(session, users["edu"], theirs.attempt_id).resident == "res2"

    own = attempts_table(session, users["res1"])
    assert list(own["resident"]) == ["res1"]
    with pytest.raises(PermissionDenied, match="your own"):
        attempts_table(session, users["res1"], resident="res2")
    assert sorted(attempts_table(session, users["edu"])["resident"]) == ["res1", "res2"]
    assert list(attempts_table(session, users["edu"], resident="res2")["case"]) == [case_ids[1]]
    with pytest.raises(PermissionDenied):
        residents(session, users["res1"])
    assert residents(session, users["edu"])[:2] == ["res1", "res2"]


def test_results_summarise_residents_cases_confusions_and_time(demo):
    session, users = demo
    collection = _collection(session, users, keys=(CASE, "demo/demo_vid02/000000"))
    case_ids = col.item_case_ids(session, collection.id)
    phases = {c: session.scalar(select(Label.phase).where(Label.case_id == c,
                                                          Label.is_current)) for c in case_ids}
    boxes = {c: session.scalar(select(Label).where(Label.case_id == c,
                                                   Label.is_current)).box for c in case_ids}
    wrong = {c: next(p for p in "ABCD" if p != phases[c]) for c in case_ids}
    # res1: case 0 wrong then right (exact box); case 1 right. res2: case 0 right.
    submit_attempt(session, users["res1"], collection.id, case_ids[0], phase=wrong[case_ids[0]],
                   box=boxes[case_ids[0]])
    submit_attempt(session, users["res1"], collection.id, case_ids[0], phase=phases[case_ids[0]],
                   box=boxes[case_ids[0]])
    submit_attempt(session, users["res1"], collection.id, case_ids[1], phase=phases[case_ids[1]],
                   box=boxes[case_ids[1]])
    submit_attempt(session, users["res2"], collection.id, case_ids[0], phase=phases[case_ids[0]],
                   box=boxes[case_ids[0]])

    results = teaching_results(session, users["edu"])
    attempts = results.attempts
    assert list(attempts["attempt_no"]) == [1, 2, 1, 1] and list(attempts["first"]) == [True, False, True,
                                                                                        True]
    by_resident = results.residents.set_index("resident")
    assert by_resident.loc["res1", "attempts"] == 3 and by_resident.loc["res1", "cases"] == 2
    assert by_resident.loc["res1", "phase_accuracy"] == pytest.approx(2 / 3)
    assert by_resident.loc["res1", "mean_hardcore_iou"] == pytest.approx(2 / 3)
    # Hardest first, over first attempts only: case 0 was missed by res1's first attempt.
    key0 = session.get(Case, case_ids[0]).key
    assert results.cases.iloc[0]["case_key"] == key0 and results.cases.iloc[0]["mean_hardcore_iou"] == 0.5
    confusions = {(r.reference_phase, r.phase): r.count for r in results.confusions.itertuples()}
    assert confusions[(phases[case_ids[0]], wrong[case_ids[0]])] == 1 and sum(confusions.values()) == 4
    timeline = results.timeline[results.timeline["resident"] == "res1"]
    assert list(timeline["n"]) == [1, 2, 3] and list(timeline["rolling"]) == pytest.approx([0, 0.5, 2 / 3])
    # The resident's own results: theirs only.
    assert set(teaching_results(session, users["res2"]).attempts["resident"]) == {"res2"}


def test_deleting_a_collection_keeps_the_attempts(demo):
    session, users = demo
    collection = _collection(session, users)
    feedback = submit_attempt(session, users["res1"], collection.id, _case(session).id, phase="B",
                              box=(10, 10, 100, 100))
    with pytest.raises(PermissionDenied):
        col.delete_collection(session, users["edu2"], collection.id)
    col.delete_collection(session, users["edu"], collection.id)
    session.expire_all()
    assert session.get(QuizAttempt, feedback.attempt_id).collection_id is None
    assert col.visible_collections(session, users["edu"]) == []
    assert len(attempts_table(session, users["res1"])) == 1


def test_the_demo_collection_is_shared_two_cases_per_phase_and_made_once(demo):
    from review.teaching.demo import DEMO_COLLECTION, ensure_demo_collection

    session, users = demo
    assert ensure_demo_collection(session, "res1") is None  # not an educator
    collection = ensure_demo_collection(session, "edu")
    assert ensure_demo_collection(session, "edu").id == collection.id
    items = col.collection_items(session, users["edu"], collection.id)
    assert [i.reference_phase for i in items] == ["A", "A", "B", "B", "C", "C", "D", "D"]
    assert all(i.teaching_point and "Go Zone" in i.teaching_point for i in items)
    assert [c.name for c in col.visible_collections(session, users["res1"])] == [DEMO_COLLECTION]
    slide = present(session, users["edu"], collection.id, Place(1, 0))
    assert slide.presenter == "demo-surg-r1" and slide.revealed.steps[-1] == "teaching_point"
