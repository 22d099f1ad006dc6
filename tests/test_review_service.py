"""Blind review services on real SQLite and PostgreSQL, over the demo pack: study set-up, the reviewer's
queue, blinding, ownership, revisions, skips, reveal, identity-leak flags, results for the admin."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

import annotation.demo as demo_pack
from annotation.demo.load import load_demo_pack
from db.cases import CaseFilter
from db.errors import Conflict, DomainError, PermissionDenied
from db.schema import AuditEvent, Case, Frame, Judgment, Label, Model, Prediction, ReviewItem, Run, StudyCase, User
from db.users import actor_of, create_user
from review import studies
from review.judging import InvalidJudgment
from review.results import results_csv, study_results

MODELS = ["demo-surg-r1", "demo-surgo-r1", "demo-baseline"]


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    """The demo pack written once: drawing its frames is most of the cost of loading it."""
    return demo_pack.write_demo_pack(tmp_path_factory.mktemp("demo") / "pack")


@pytest.fixture
def demo(session, store, demo_files, monkeypatch):
    """The demo pack loaded, an admin, three study reviewers and one reviewer outside the study."""
    monkeypatch.setattr(demo_pack, "write_demo_pack", lambda folder: demo_files)
    load_demo_pack(session, store, demo_files.folder)
    people = {name: actor_of(create_user(session, name, roles=roles)) for name, roles in [
        ("ada", ["admin"]), ("rev1", ["reviewer"]), ("rev2", ["reviewer"]), ("rev3", ["reviewer"]),
        ("outsider", ["reviewer"]), ("boss", ["admin", "reviewer"])]}
    return SimpleNamespace(session=session, **people)


def _study(demo, **overrides) -> studies.StudySetup:
    settings = dict(name="gozone review", task="gozone", model_names=MODELS,
                    case_filter=CaseFilter(dataset="demo"), reviewers=["rev1", "rev2", "rev3"], k=2, seed=7)
    return studies.create_study(demo.session, demo.ada, **(settings | overrides))


def _items(session, study_id, reviewer=None) -> list[ReviewItem]:
    query = select(ReviewItem).where(ReviewItem.study_id == study_id).order_by(ReviewItem.reviewer_id,
                                                                               ReviewItem.position)
    if reviewer is not None:
        query = query.where(ReviewItem.reviewer_id == reviewer.user_id)
    return list(session.scalars(query))


def _ratings(letters, correct=1) -> dict:
    return {letter: {"correct": correct, "levels": {1: "correct", 2: "wrong", 3: "na"}, "flags": []}
            for letter in letters}


def _judge(demo, actor, study_id, best="A"):  # noqa: ANN202
    state = studies.next_item(demo.session, actor, study_id)
    letters = [o.letter for o in state.item.outputs]
    studies.submit_judgment(demo.session, actor, state.item.token, best, _ratings(letters),
                            time_spent_ms=1500)
    return state


def _model_of(session, prediction_id) -> str:
    return session.scalar(select(Model.name).join(Run, Run.model_id == Model.id)
                          .join(Prediction, Prediction.run_id == Run.id)
                          .where(Prediction.id == prediction_id))


def test_creation_assigns_every_complete_case_to_k_reviewers_and_lists_those_missing_a_prediction(demo):
    s = demo.session
    baseline_run = s.scalar(select(Run.id).join(Model)
                            .where(Model.name == "demo-baseline", Run.task == "gozone"))
    gone = s.scalars(select(Case.id).order_by(Case.id).limit(2)).all()
    s.execute(delete(Prediction).where(Prediction.run_id == baseline_run, Prediction.case_id == gone[0]))
    s.execute(update(Prediction).where(Prediction.run_id == baseline_run, Prediction.case_id == gone[1])
              .values(error="timeout"))
    setup = _study(demo)
    keys = dict(s.execute(select(Case.id, Case.key)).all())
    assert setup.missing == {keys[gone[0]]: ["demo-baseline"], keys[gone[1]]: ["demo-baseline"]}
    stored = {c.case_id: c for c in s.scalars(select(StudyCase).where(StudyCase.study_id == setup.study.id))}
    assert len(stored) == 16 and stored[gone[0]].missing == ["demo-baseline"]
    items = _items(s, setup.study.id)
    per_case = {}
    for item in items:
        per_case.setdefault(item.case_id, set()).add(item.reviewer_id)
    assert set(per_case) == set(stored) - set(gone)  # missing cases are listed, never assigned
    assert all(len(reviewers) == 2 for reviewers in per_case.values())
    assert sorted(setup.assigned) == sorted(per_case) and setup.items == len(items) == 28
    for item in items:  # every letter map holds each study model's prediction of the item's case once
        assert sorted(_model_of(s, p) for p in item.letter_map.values()) == sorted(MODELS)


def test_informativeness_chooses_and_orders_cases(demo):
    s = demo.session
    agreeing, unlabelled = s.scalars(select(Case.id).order_by(Case.id).limit(2)).all()
    same = {"version": 1, "phase": "A", "answer": "A", "levels": {}, "rationale": {},
            "boxes": [{"label": "go zone", "box": [100.0, 100.0, 200.0, 200.0], "clipped": False,
                       "swapped": False}]}
    gozone_runs = s.scalars(select(Run.id).where(Run.task == "gozone")).all()
    s.execute(update(Prediction).where(Prediction.case_id == agreeing, Prediction.run_id.in_(gozone_runs))
              .values(parsed=same))
    s.execute(update(Label).where(Label.case_id == unlabelled).values(is_current=False))
    setup = _study(demo, order_by_informativeness=True, limit=15)
    scores = dict(s.execute(select(StudyCase.case_id, StudyCase.informativeness)
                            .where(StudyCase.study_id == setup.study.id)).all())
    assert agreeing not in scores  # full agreement with a reference scores 0: the one case left out
    assert scores[unlabelled] >= 1 / 3  # no reference label alone adds a third
    assert setup.assigned == sorted(scores, key=lambda c: -scores[c])
    keys = dict(s.execute(select(Case.id, Case.key)).all())
    assert list(setup.scores.items()) == [(keys[c], scores[c]) for c in setup.assigned]  # shown to the admin
    for reviewer in (demo.rev1, demo.rev2, demo.rev3):
        queue = [scores[item.case_id] for item in _items(s, setup.study.id, reviewer)]
        assert queue == sorted(queue, reverse=True)


def test_next_item_resumes_where_the_reviewer_left_off(demo):
    study_id = _study(demo).study.id
    first = _judge(demo, demo.rev1, study_id)
    second = _judge(demo, demo.rev1, study_id)
    state = studies.next_item(demo.session, demo.rev1, study_id)
    queue = _items(demo.session, study_id, demo.rev1)
    assert [first.item.token, second.item.token, state.item.token] == [i.token for i in queue[:3]]
    assert (state.progress.done, state.progress.assigned) == (2, len(queue))
    assert studies.next_item(demo.session, demo.rev1, study_id).item.token == state.item.token  # idempotent


def test_the_blinded_payload_holds_nothing_that_names_a_model(demo):
    s = demo.session
    study_id = _study(demo).study.id
    models = s.scalars(select(Model).where(Model.name.in_(MODELS))).all()
    predictions = s.scalars(select(Prediction).join(Run)
                            .where(Run.model_id.in_([m.id for m in models]))).all()
    words = {w.lower() for m in models for w in (m.name, m.family, m.color, m.box_convention, m.backend) if w}
    words |= {w.lower() for w in ("<think>", "<answer>", "bbox_2d", "<|turn|>", "latency", "tokens", "run_id",
                                  "model", "prediction", "warnings", "color_hex")}
    ids = {str(v) for v in [*(m.id for m in models), *(p.id for p in predictions),
                            *(p.run_id for p in predictions)]}
    ids |= {str(round(p.latency_ms)) for p in predictions if p.latency_ms}
    ids |= {str(p.completion_tokens) for p in predictions if p.completion_tokens}
    frames = {f.sha256 for f in s.scalars(select(Frame))} | {f.path for f in s.scalars(select(Frame))}
    for item in _items(s, study_id, demo.rev1):
        payload = studies.get_item(s, demo.rev1, item.token).to_json()
        text = json.dumps(payload).lower()
        assert not [w for w in words if w in text.replace('"model_', '')], text
        assert set(payload) == {"token", "frame", "question", "outputs"}
        assert payload["token"] == item.token and payload["frame"] == item.frame_token
        assert not [f for f in frames if f.lower() in text]
        for output in payload["outputs"]:
            assert set(output) == {"letter", "color", "answer", "levels", "reasoning", "rationale", "boxes"}
            assert {tuple(sorted(box)) for box in output["boxes"]} <= {("box",)}
        for leaf in _leaves(payload):  # numbers only as box corners; no string is an id
            assert leaf[0] == "box" or not isinstance(leaf[1], int | float), leaf
            assert str(leaf[1]) not in ids or leaf[0] == "box", leaf


def _leaves(value, key=None):  # noqa: ANN001, ANN202
    """(nearest dict key, leaf value) of every scalar in a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v, key)
    elif value is not None:
        yield key, value


def test_a_reviewer_cannot_reach_another_reviewers_item(demo):
    s = demo.session
    study_id = _study(demo, reveal_policy="after_submit").study.id
    theirs = _items(s, study_id, demo.rev2)[0]
    letters = sorted(theirs.letter_map)
    for actor in (demo.rev1, demo.outsider, demo.boss, demo.ada):
        with pytest.raises(PermissionDenied):
            studies.get_item(s, actor, theirs.token)
        with pytest.raises(PermissionDenied):
            studies.submit_judgment(s, actor, theirs.token, "A", _ratings(letters))
        with pytest.raises(PermissionDenied):
            studies.skip_item(s, actor, theirs.token, "not mine")
        with pytest.raises(PermissionDenied):
            studies.reveal(s, actor, theirs.token)
        with pytest.raises(PermissionDenied):
            studies.frame_for(s, actor, theirs.frame_token)
    with pytest.raises(PermissionDenied):
        studies.next_item(s, demo.outsider, study_id)
    assert s.scalar(select(Judgment.id).where(Judgment.item_id == theirs.id)) is None
    assert studies.frame_for(s, demo.rev2, theirs.frame_token).id == s.get(Case, theirs.case_id).frame_id


def test_revisions_are_kept_and_the_latest_counts(demo):
    s = demo.session
    study_id = _study(demo).study.id
    item = _items(s, study_id, demo.rev1)[0]
    letters = sorted(item.letter_map)
    studies.submit_judgment(s, demo.rev1, item.token, "A", _ratings(letters), comment="first look")
    studies.submit_judgment(s, demo.rev1, item.token, "B", _ratings(letters, correct=0), time_spent_ms=900)
    rows = s.scalars(select(Judgment).where(Judgment.item_id == item.id).order_by(Judgment.revision)).all()
    assert [(j.revision, j.is_current, j.best_letter) for j in rows] == [(1, False, "A"), (2, True, "B")]
    assert all(j.author_id == demo.rev1.user_id for j in rows)
    assert studies.my_judgment(s, demo.rev1, item.token)["best"] == "B"
    results = study_results(s, demo.ada, study_id, n_boot=50)
    selected = results.selected.set_index("model")["selected"]
    assert selected[_model_of(s, item.letter_map["B"])] == 1 and selected.sum() == 1
    assert results.accuracy["correct"].sum() == 0 and len(results.ratings) == 3
    assert studies.next_item(s, demo.rev1, study_id).progress.done == 1
    audited = s.scalars(select(AuditEvent).where(AuditEvent.action == "review.judgment",
                                                 AuditEvent.entity_id == str(item.id))
                        .order_by(AuditEvent.id)).all()
    assert [(a.actor_id, a.payload["revision"], a.payload["best"]) for a in audited] == [
        (demo.rev1.user_id, 1, "A"), (demo.rev1.user_id, 2, "B")]


INVALID = {
    "a letter not rated": ("A", lambda r: r.pop("B")),
    "an unknown letter": ("A", lambda r: r.update(D={"correct": 1})),
    "an unknown best letter": ("Z", lambda r: None),
    "correctness not 0/1": ("A", lambda r: r["A"].update(correct=2)),
    "correctness missing": ("A", lambda r: r["A"].pop("correct")),
    "an unknown level mark": ("A", lambda r: r["A"].update(levels={1: "perfect"})),
    "an unknown level": ("A", lambda r: r["A"].update(levels={4: "correct"})),
    "an unknown flag": ("A", lambda r: r["A"].update(flags=["made-up flag"])),
}


def test_an_invalid_judgment_is_refused_and_nothing_is_stored(demo):
    s = demo.session
    study_id = _study(demo).study.id
    item = _items(s, study_id, demo.rev1)[0]
    for what, (best, change) in INVALID.items():
        ratings = _ratings(sorted(item.letter_map))
        change(ratings)
        with pytest.raises(InvalidJudgment):
            studies.submit_judgment(s, demo.rev1, item.token, best, ratings)
            pytest.fail(f"{what} was accepted")
    assert s.scalar(select(Judgment.id).where(Judgment.item_id == item.id)) is None
    none_acceptable = None
    studies.submit_judgment(s, demo.rev1, item.token, none_acceptable, _ratings(sorted(item.letter_map)))
    assert s.scalar(select(Judgment.none_acceptable).where(Judgment.item_id == item.id))


def test_a_skipped_item_leaves_the_queue_but_can_still_be_judged(demo):
    s = demo.session
    study_id = _study(demo).study.id
    first = studies.next_item(s, demo.rev1, study_id).item
    with pytest.raises(DomainError):
        studies.skip_item(s, demo.rev1, first.token, "  ")
    progress = studies.skip_item(s, demo.rev1, first.token, "frame too dark")
    assert (progress.done, progress.skipped) == (0, 1)
    assert studies.next_item(s, demo.rev1, study_id).item.token != first.token
    studies.submit_judgment(s, demo.rev1, first.token, "A", _ratings([o.letter for o in first.outputs]))
    with pytest.raises(Conflict):
        studies.skip_item(s, demo.rev1, first.token, "changed my mind")
    assert studies.next_item(s, demo.rev1, study_id).progress.done == 1


@pytest.mark.parametrize("policy", ["never", "after_submit"])
def test_reveal_only_after_submit_and_only_when_the_study_allows_it(demo, policy):
    s = demo.session
    study_id = _study(demo, reveal_policy=policy).study.id
    item = _items(s, study_id, demo.rev1)[0]
    with pytest.raises(PermissionDenied):
        studies.reveal(s, demo.rev1, item.token)
    studies.submit_judgment(s, demo.rev1, item.token, "A", _ratings(sorted(item.letter_map)))
    if policy == "never":
        with pytest.raises(PermissionDenied):
            studies.reveal(s, demo.rev1, item.token)
    else:
        assert studies.reveal(s, demo.rev1, item.token) == {
            letter: _model_of(s, prediction_id) for letter, prediction_id in item.letter_map.items()}


def test_an_output_naming_its_model_is_flagged_for_the_admin(demo):
    s = demo.session
    case_id = s.scalar(select(Case.id).order_by(Case.id).limit(1))
    prediction = s.scalar(select(Prediction).join(Run).join(Model).where(
        Model.name == "demo-surg-r1", Run.task == "gozone", Prediction.case_id == case_id))
    prediction.parsed = {**prediction.parsed, "levels": {**prediction.parsed["levels"],
                                                          "3": "As a Qwen model, I find phase B."}}
    s.flush()
    setup = _study(demo)
    key = s.get(Case, case_id).key
    assert setup.leaks == {key: [{"model": "demo-surg-r1", "terms": ["Qwen"]}]}
    assert s.get(StudyCase, (setup.study.id, case_id)).identity_leaks == setup.leaks[key]
    leaks = study_results(s, demo.ada, setup.study.id, n_boot=10).leaks
    assert leaks.values.tolist() == [[key, "demo-surg-r1", "Qwen"]]


def test_results_are_for_the_admin_only_and_show_pseudonyms_not_usernames(demo):
    s = demo.session
    study_id = _study(demo).study.id
    for reviewer in (demo.rev1, demo.rev2):
        _judge(demo, reviewer, study_id)
    for actor in (demo.rev1, demo.outsider):
        with pytest.raises(PermissionDenied):
            study_results(s, actor, study_id)
        with pytest.raises(PermissionDenied):
            results_csv(s, actor, study_id)
    csv = results_csv(s, demo.ada, study_id, n_boot=20)
    assert "rev1" not in csv and "rev2" not in csv and demo.rev1.username not in csv
    pseudonyms = {u.pseudonym for u in s.scalars(select(User).where(User.username.in_(["rev1", "rev2"])))}
    assert {line.split(",")[2] for line in csv.splitlines()[1:]} == pseudonyms
    assert set(MODELS) <= set(csv.replace("\n", ",").split(","))  # unblinded for the admin
    progress = study_results(s, demo.ada, study_id, n_boot=20).progress.set_index("reviewer")
    assert progress["judged"].sum() == 2 and set(progress.index) >= pseudonyms


def test_adding_reviewers_and_cases_keeps_every_existing_item(demo):
    s = demo.session
    setup = _study(demo, limit=8)
    study_id = setup.study.id
    _judge(demo, demo.rev1, study_id)
    before = {(i.id, i.case_id, i.reviewer_id, i.position, json.dumps(i.letter_map), i.token, i.state)
              for i in _items(s, study_id)}
    rev4 = create_user(s, "rev4", roles=["reviewer"]).id
    assert studies.add_reviewers(s, demo.ada, study_id, ["rev4", "rev1"]) == [rev4]  # rev1 is already in
    added = studies.add_cases(s, demo.ada, study_id, CaseFilter(dataset="demo"))
    s.expire_all()
    after = _items(s, study_id)
    assert before <= {(i.id, i.case_id, i.reviewer_id, i.position, json.dumps(i.letter_map), i.token, i.state)
                      for i in after}
    new = [i for i in after if i.case_id in set(added.assigned)]
    assert len(added.assigned) == 8 and len(new) == 16 == added.items
    assert sum(i.reviewer_id == rev4 for i in new) == 8  # the new, least-loaded reviewer takes every new case


def test_only_admins_create_studies_and_only_reviewers_review(demo):
    with pytest.raises(PermissionDenied):
        studies.create_study(demo.session, demo.rev1, name="x", task="gozone", model_names=MODELS,
                             case_filter=CaseFilter(dataset="demo"), reviewers=["rev1", "rev2"], k=1)
    with pytest.raises(DomainError, match="not an active reviewer"):
        _study(demo, reviewers=["rev1", "ada"], k=1)
    with pytest.raises(DomainError, match="2 to 5"):
        _study(demo, model_names=MODELS[:1])
    _study(demo)
    with pytest.raises(Conflict):
        _study(demo)


def test_the_schema_refuses_an_unknown_item_state(demo):
    study_id = _study(demo).study.id
    with pytest.raises(IntegrityError):
        demo.session.execute(update(ReviewItem).where(ReviewItem.study_id == study_id).values(state="lost"))


def test_a_closed_study_takes_no_more_judgments(demo):
    s = demo.session
    study_id = _study(demo).study.id
    item = studies.next_item(s, demo.rev1, study_id).item
    letters = [o.letter for o in item.outputs]
    with pytest.raises(InvalidJudgment):
        studies.submit_judgment(s, demo.rev1, item.token, "A", _ratings(letters), time_spent_ms=-5)
    with pytest.raises(PermissionDenied):
        studies.close_study(s, demo.rev1, study_id)
    studies.close_study(s, demo.ada, study_id)
    with pytest.raises(Conflict):
        studies.submit_judgment(s, demo.rev1, item.token, "A", _ratings(letters))
    assert studies.next_item(s, demo.rev1, study_id).item is None
    with pytest.raises(Conflict):
        studies.add_cases(s, demo.ada, study_id, CaseFilter(dataset="demo"))
