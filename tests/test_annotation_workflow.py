"""Go Zone correction on real SQLite and PostgreSQL: pre-fill, append-only versions, conflicts, queue,
approval and rejection, consensus, bad input."""

from __future__ import annotations

import math
import threading
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

import annotation.demo as demo_pack
from annotation import approval, editor
from annotation.demo.load import load_demo_pack
from annotation.queue import assign_annotators, queue
from annotation.workflow import EditConflict, GoZoneDraft, InvalidAnnotation, head, history, save_version
from db.engine import Database
from db.errors import Conflict, DomainError, PermissionDenied
from db.migrate import upgrade
from db.schema import Annotation, AuditEvent, Case, Label
from db.users import actor_of, create_user
from tests.conftest import create_postgres_database


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    return demo_pack.write_demo_pack(tmp_path_factory.mktemp("demo") / "pack")


@pytest.fixture
def demo(session, store, demo_files):
    load_demo_pack(session, store, demo_files.folder)
    people = {name: actor_of(create_user(session, name, roles=roles)) for name, roles in [
        ("ada", ["admin"]), ("ann", ["annotator"]), ("bob", ["annotator"]), ("cat", ["annotator"]),
        ("chief", ["approver"]), ("res", ["resident"])]}
    cases = session.scalars(select(Case).order_by(Case.key)).all()
    return SimpleNamespace(session=session, cases=cases, case=cases[0], **people)


def _draft(box=(100.0, 120.0, 300.0, 260.0), phase="B", **texts) -> GoZoneDraft:
    return GoZoneDraft(phase=phase, box=box, **({"location": "medial to the gallbladder neck"} | texts))


def test_the_editor_is_prefilled_from_a_model_the_reference_or_empty(demo):
    state = editor.open_editor(demo.session, demo.ann, demo.case.id)
    assert state.base_id is None and state.status is None
    # The most complete proposal first: SurGo-R1 writes phase, box and the four rationale parts.
    assert state.sources[0] == "model:demo-surgo-r1"
    assert set(state.sources[:3]) == {"model:demo-baseline", "model:demo-surg-r1", "model:demo-surgo-r1"}
    assert state.sources[-2:] == ["reference", "empty"]
    assert state.source == "model:demo-surgo-r1" and state.prediction_id is not None
    surgo = editor.open_editor(demo.session, demo.ann, demo.case.id, "model:demo-surgo-r1")
    assert surgo.draft.phase in {"A", "B", "C", "D"} and surgo.draft.box is not None
    assert surgo.draft.location and surgo.draft.critical_risk  # SurGo-style rationale parts came along
    label = demo.session.scalar(select(Label).where(Label.case_id == demo.case.id, Label.is_current))
    reference = editor.open_editor(demo.session, demo.ann, demo.case.id, "reference")
    assert reference.draft.box == label.box and reference.draft.phase == label.phase
    assert editor.open_editor(demo.session, demo.ann, demo.case.id, "empty").draft == GoZoneDraft(None, None)
    assert [p[0] for p in state.phases] == ["A", "B", "C", "D"]
    with pytest.raises(DomainError, match="no pre-fill"):
        editor.open_editor(demo.session, demo.ann, demo.case.id, "model:nobody")


def test_every_save_is_a_new_version_with_its_parent_and_the_history_says_what_changed(demo):
    s, case = demo.session, demo.case
    proposal = editor.open_editor(s, demo.ann, case.id, "model:demo-surgo-r1")
    v1 = save_version(s, demo.ann, case.id, proposal.draft, base_id=None, source=proposal.source,
                      source_prediction_id=proposal.prediction_id)
    v2 = save_version(s, demo.ann, case.id, _draft(), base_id=v1.id)
    v3 = save_version(s, demo.bob, case.id, _draft(next_action="clip the duct"), base_id=v2.id, submit=True)
    assert [(v.version, v.parent_id, v.status) for v in (v1, v2, v3)] == [
        (1, None, "draft"), (2, v1.id, "draft"), (3, v2.id, "submitted")]
    assert v3.source_prediction_id == proposal.prediction_id  # the proposal is carried for the approver
    views = history(s, demo.ann, case.id)
    assert [v.version for v in views] == [3, 2, 1]
    assert views[0].author == "bob" and views[0].changed == ["next_action"]
    assert views[0].iou_to_parent == pytest.approx(1.0)
    assert "box" in views[1].changed
    events = s.scalars(select(AuditEvent.action).where(AuditEvent.entity_type == "annotation")).all()
    assert events.count("annotation.save") == 2 and events.count("annotation.submit") == 1
    assert editor.open_editor(s, demo.ann, case.id).base_id == v3.id  # reopening starts from the head


def test_a_stale_save_is_refused_with_the_other_version_and_stores_nothing(demo):
    s, case = demo.session, demo.case
    v1 = save_version(s, demo.ann, case.id, _draft(), base_id=None)
    mine = editor.open_editor(s, demo.ann, case.id)
    theirs = editor.open_editor(s, demo.bob, case.id)
    v2 = save_version(s, demo.bob, case.id, _draft(phase="C"), base_id=theirs.base_id)
    with pytest.raises(EditConflict) as caught:
        save_version(s, demo.ann, case.id, _draft(exposure="typed carefully"), base_id=mine.base_id)
    assert caught.value.current.id == v2.id and "bob saved version 2" in str(caught.value)
    assert isinstance(caught.value, Conflict)
    assert s.scalar(select(func.count()).select_from(Annotation).where(Annotation.case_id == case.id)) == 2
    # The editor keeps the text; saving again on top of the newer version is deliberate and works.
    v3 = save_version(s, demo.ann, case.id, _draft(exposure="typed carefully"), base_id=v2.id)
    assert (v3.version, v3.parent_id, v3.exposure) == (3, v2.id, "typed carefully")
    assert v1.id != v2.id
    with pytest.raises(EditConflict, match="no longer the newest"):
        save_version(s, demo.ann, demo.cases[1].id, _draft(), base_id=v3.id)


@pytest.mark.parametrize("box, message", [
    ((10, 10, 10, 50), "no area"),
    ((float("nan"), 1, 2, 3), "not a finite number"),
    ((0, 0, math.inf, 3), "not a finite number"),
    ((-50, 10, 100, 100), "outside"),
    ((10, 10, 5000, 100), "outside"),
    (("a", 1, 2, 3), "four numbers"),
    ((1, 2, 3), "four numbers"),
])
def test_bad_boxes_are_refused_with_a_clear_message(demo, box, message):
    with pytest.raises(InvalidAnnotation, match=message):
        save_version(demo.session, demo.ann, demo.case.id, _draft(box=box), base_id=None)
    assert head(demo.session, demo.case.id) is None


def test_phase_text_and_submit_rules(demo):
    s, case = demo.session, demo.case
    with pytest.raises(InvalidAnnotation, match="not in the ResGo"):
        save_version(s, demo.ann, case.id, _draft(phase="Z"), base_id=None)
    with pytest.raises(InvalidAnnotation, match="needs a phase and a Go Zone box"):
        save_version(s, demo.ann, case.id, GoZoneDraft(None, None), base_id=None, submit=True)
    with pytest.raises(InvalidAnnotation, match="limit is 5,000"):
        save_version(s, demo.ann, case.id, _draft(location="x" * 5001), base_id=None)
    hostile = "<script>alert(1)</script>'; DROP TABLE annotations; --\x00"
    saved = save_version(s, demo.ann, case.id, _draft(phase="calot triangle dissection", box=(300, 50, 1, 1),
                                                      critical_risk=hostile), base_id=None)
    assert saved.phase == "B" and saved.box == (1.0, 1.0, 300.0, 50.0)  # named phase -> id; corners ordered
    assert saved.critical_risk == hostile.replace("\x00", "\ufffd")  # stored as text, NUL made storable
    edge = save_version(s, demo.ann, case.id, _draft(box=(-1.5, 0, 854.9, 480)), base_id=saved.id)
    assert edge.box == (0.0, 0.0, 854.0, 480.0)  # a drag onto the border is pulled in


def test_roles_and_assignments_decide_who_may_edit(demo):
    s = demo.session
    with pytest.raises(PermissionDenied):
        save_version(s, demo.res, demo.case.id, _draft(), base_id=None)
    with pytest.raises(PermissionDenied):
        assign_annotators(s, demo.ann, [demo.case.id], [demo.ann.user_id])
    assert assign_annotators(s, demo.ada, [c.id for c in demo.cases[:4]], [demo.ann.user_id, demo.bob.user_id]) == 4
    first = demo.cases[0].id
    owner, other = ((demo.ann, demo.bob) if first in [r.case_id for r in queue(s, demo.ann)]
                    else (demo.bob, demo.ann))
    with pytest.raises(PermissionDenied, match="assigned to other annotators"):
        save_version(s, other, first, _draft(), base_id=None)
    save_version(s, owner, first, _draft(), base_id=None)
    save_version(s, demo.ada, first, _draft(phase="A"), base_id=head(s, first).id)  # admins may fix any case
    assert len(queue(s, demo.ann)) == 2 and len(queue(s, demo.bob)) == 2  # loads balanced
    assert [r.state for r in queue(s, owner) if r.case_id == first] == ["draft"]
    assert all(r.state == "todo" for r in queue(s, owner, state="todo"))
    with pytest.raises(DomainError, match="Unknown state"):
        queue(s, owner, state="bogus")
    with pytest.raises(DomainError, match="not active annotators"):
        assign_annotators(s, demo.ada, [first], [demo.chief.user_id])


def test_approval_makes_the_version_the_reference_and_rejection_returns_it(demo):
    s, case = demo.session, demo.case
    proposal = editor.open_editor(s, demo.ann, case.id, "model:demo-surgo-r1")
    v1 = save_version(s, demo.ann, case.id, _draft(location="new words here"), base_id=None,
                      source=proposal.source, source_prediction_id=proposal.prediction_id, submit=True)
    assert [r.annotation_id for r in approval.pending(s, demo.chief)] == [v1.id]
    with pytest.raises(PermissionDenied):
        approval.pending(s, demo.ann)
    shown = approval.view(s, demo.chief, v1.id)
    assert shown.proposal_model == "demo-surgo-r1" and shown.iou_to_proposal is not None
    assert shown.phase_changed == (proposal.draft.phase != "B")
    assert ("+", "new words here") in shown.text_diff["location"] or any(
        op == "+" for op, _ in shown.text_diff["location"])
    with pytest.raises(PermissionDenied):
        approval.approve(s, demo.ann, v1.id)
    with pytest.raises(DomainError, match="needs a comment"):
        approval.reject(s, demo.chief, v1.id, "  ")
    approval.reject(s, demo.chief, v1.id, "The box covers the liver bed; keep it in the triangle.")
    assert [r.state for r in queue(s, demo.ada)] == []  # the admin has no assignments
    assert editor.open_editor(s, demo.ann, case.id).review_comment.startswith("The box covers")
    assert approval.pending(s, demo.chief) == []
    with pytest.raises(Conflict, match="rejected, not awaiting review"):
        approval.approve(s, demo.chief, v1.id)
    v2 = save_version(s, demo.ann, case.id, _draft(box=(150, 150, 250, 250)), base_id=v1.id, submit=True)
    old = s.scalar(select(Label).where(Label.case_id == case.id, Label.is_current))
    label = approval.approve(s, demo.chief, v2.id, "good")
    s.refresh(old)
    assert old.is_current is False and label.is_current and label.source == f"annotation:{v2.id}"
    assert (label.phase, label.box, label.location) == ("B", (150.0, 150.0, 250.0, 250.0), v2.location)
    assert s.get(Annotation, v2.id).status == "approved" and s.get(Annotation, v2.id).reviewer_id == demo.chief.user_id


def test_nobody_approves_their_own_work_or_a_superseded_version(demo):
    s, case = demo.session, demo.case
    both = actor_of(create_user(s, "both", roles=["annotator", "approver"]))
    mine = save_version(s, both, case.id, _draft(), base_id=None, submit=True)
    assert approval.pending(s, both) == []
    with pytest.raises(PermissionDenied, match="your own"):
        approval.approve(s, both, mine.id)
    newer = save_version(s, demo.ann, case.id, _draft(phase="C"), base_id=mine.id, submit=True)
    with pytest.raises(Conflict, match="review the newest"):
        approval.approve(s, demo.chief, mine.id)
    assert approval.approve(s, demo.chief, newer.id).phase == "C"


def test_consensus_needs_every_lane_same_phase_and_overlapping_boxes(demo):
    s, case = demo.session, demo.case
    assign_annotators(s, demo.ada, [case.id], [demo.ann.user_id, demo.bob.user_id, demo.cat.user_id], per_case=3)
    # Independent lanes: nobody starts from a colleague's box.
    a = save_version(s, demo.ann, case.id, _draft(box=(100, 100, 300, 300)), base_id=None, submit=True)
    assert editor.open_editor(s, demo.bob, case.id).base_id is None
    b = save_version(s, demo.bob, case.id, _draft(box=(110, 100, 300, 310)), base_id=None, submit=True)
    with pytest.raises(Conflict, match="not every annotator has submitted"):
        approval.approve(s, demo.chief, a.id)
    c = save_version(s, demo.cat, case.id, _draft(box=(500, 300, 700, 450), phase="C"), base_id=None, submit=True)
    agreed = approval.view(s, demo.chief, a.id).agreement
    assert agreed.phases_agree is False and agreed.min_iou == 0.0 and len(agreed.pairwise) == 3
    with pytest.raises(Conflict, match=r"phases differ .*lowest pairwise IoU is 0.00"):
        approval.approve(s, demo.chief, a.id)
    approval.reject(s, demo.chief, c.id, "Outlier: redo")
    c2 = save_version(s, demo.cat, case.id, _draft(box=(100, 105, 305, 300)), base_id=c.id, submit=True)
    agreed = approval.view(s, demo.chief, a.id).agreement
    assert agreed.phases_agree and agreed.min_iou > 0.85 and agreed.consensus(0.5)
    with pytest.raises(Conflict, match="under 0.95"):
        approval.approve(s, demo.chief, a.id, consensus_iou=0.95)
    label = approval.approve(s, demo.chief, b.id)
    assert label.source == f"annotation:{b.id}"
    assert {s.get(Annotation, i).status for i in (a.id, b.id, c2.id)} == {"approved"}


@pytest.mark.postgres
def test_two_sessions_racing_on_the_same_parent_cannot_both_win(tmp_path, demo_files):
    """Both pass the head check before either commits; the unique version key makes the loser conflict."""
    url, drop = create_postgres_database()
    database = Database.from_url(url)
    try:
        upgrade(database.engine)
        from db.frames import FrameStore

        store = FrameStore(tmp_path / "frames")
        with database.session_scope() as s:
            load_demo_pack(s, store, demo_files.folder)
            ann = actor_of(create_user(s, "ann", roles=["annotator"]))
            bob = actor_of(create_user(s, "bob", roles=["annotator"]))
            case_id = s.scalar(select(Case.id).order_by(Case.key).limit(1))
            base = save_version(s, ann, case_id, _draft(), base_id=None).id
        first_flushed, results = threading.Event(), {}

        def save(actor, name, wait_before_commit):  # noqa: ANN001
            try:
                with database.session_scope() as s:
                    save_version(s, actor, case_id, _draft(location=name), base_id=base)
                    if wait_before_commit:
                        first_flushed.set()
                        threading.Event().wait(0.5)  # hold the row so the other insert must wait for us
                results[name] = "saved"
            except EditConflict as exc:
                results[name] = exc

        winner = threading.Thread(target=save, args=(ann, "ann", True))
        winner.start()
        first_flushed.wait(10)
        save(bob, "bob", False)  # its head check still sees version 1: the unique key decides
        winner.join(10)
        assert results["ann"] == "saved"
        assert isinstance(results["bob"], EditConflict) and results["bob"].current.version == 2
        with database.session_scope() as s:
            assert s.scalars(select(Annotation.location).where(Annotation.version == 2)).all() == ["ann"]
    finally:
        database.dispose()
        drop()
