"""The export's fast paths equal the plain ones: both SQL vote readers (tallies, ratings) equal
``output_votes`` over the row-per-rating reader, built conversations equal ``task_conversation`` and their
encodings orjson's, an exported DPO row equals ``orjson.dumps`` of the row built from its pair's
conversations, answers encoded by the C string encoder equal orjson's, votes ordered by rank equal votes
sorted by their strings, and outputs read in bulk equal outputs read one by one."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Integer, case, literal, select, union_all

from db.bundles import ExportFilters
from db.errors import DomainError
from db.schema import Case, Judgment, OutputRating, Prediction, ReviewItem, Study
from models.chat_formats import (
    assistant_json,
    assistant_message,
    task_conversation,
    trl_dpo_json,
    trl_dpo_row,
)
from models.conversations import ConversationBuilder, Shape, raw_turns
from models.vocabularies import load
from review.preferences import (
    PairRules,
    common_prompt,
    export_preferences,
    judged_outputs,
    output_votes,
    preference_pairs,
    study_outputs,
    tallied_pairs,
    verdicts,
    vote_ratings,
)
from review.preferences.rows import Rows, dpo_rows
from review.preferences.votes import among, rated_votes, study_votes, verdict_terms, votes_frame
from tests.test_exports_service import world  # noqa: F401 - the judged study fixture


@pytest.mark.parametrize("reader", [study_votes, rated_votes], ids=["tallies", "ratings"])
def test_the_sql_vote_readers_equal_output_votes(world, reader):  # noqa: F811
    study = world.session.scalar(select(Study).where(Study.id == world.study.id))
    votes = reader(world.session, study.id, ExportFilters())
    outputs = study_outputs(world.session, study)
    fast = votes_frame(votes.counts, *outputs.labels(votes.predictions), predictions=votes.predictions)
    ratings, dates = vote_ratings(world.session, study.id)
    slow = output_votes(ratings)
    assert len(fast) == 48 and list(fast.columns) == [*slow.columns, "prediction"]
    pd.testing.assert_frame_equal(fast.drop(columns="prediction").astype(str), slow.astype(str))
    keys = dict(world.session.execute(select(Prediction.id, Case.key).join(Case)).all())
    assert [keys[p] for p in fast["prediction"]] == fast["case"].tolist()
    assert votes.newest == max(dates.values())
    # Without the level counts: the same outputs and counts, and verdicts without level labels.
    short = reader(world.session, study.id, ExportFilters(), levels=False)
    assert short.columns == ("reviewers", "correct_votes", "best_votes")
    assert np.array_equal(short.counts, votes.counts[:, :3]) and np.array_equal(short.models, votes.models)
    judged = verdicts(votes_frame(short.counts, *outputs.labels(short.predictions), columns=short.columns),
                      PairRules())
    assert "level1_label" not in judged and judged["chosen"].sum() == 16


def test_built_conversations_equal_task_conversation():
    builder, resgo, cholec = ConversationBuilder(), load("resgo"), load("cholec80")
    cases = [
        ("gozone", resgo, [], None),
        ("gozone", resgo, ["<answer>B</answer>"], None),
        ("gozone", resgo, ["<answer>B</answer>", "Location: x\n<answer>[]</answer>"], "B"),
        ("gozone", resgo, ["<answer>?</answer>", "<answer>[]</answer>"], None),
        ("phase", cholec, ["a", "b"], None),
    ]
    for task, vocabulary, turns, phase in cases * 2:  # twice: the second time from the builder's cache
        expected = task_conversation(task, vocabulary, turns, phase_id=phase)
        encoded = builder.encoded(task, vocabulary, turns, phase)
        assert builder.conversation(task, vocabulary, turns, phase) == expected
        assert encoded.messages == [orjson.dumps(m) for m in expected]
        assert encoded.shape == Shape.of(expected)
        raw = "\n<|turn|>\n".join(turns)
        assert builder.encoded_raws(task, vocabulary, [(0, raw, phase)]) == {0: encoded if raw.strip() else None}


def test_the_prompt_of_encoded_conversations_equals_common_prompt():
    builder, resgo = ConversationBuilder(), load("resgo")
    conversations = [
        ["<answer>B</answer>", "Location: x\n<answer>[]</answer>"],
        ["<answer>B</answer>", "Location: y\n<answer>[]</answer>"],
        ["<answer>C</answer>", "Location: x\n<answer>[]</answer>"],
        ["<answer>B</answer>"],
    ]
    for a in conversations:
        for b in conversations:
            plain = [builder.conversation("gozone", resgo, turns, turns[0][8]) for turns in (a, b)]
            encoded = [builder.encoded("gozone", resgo, turns, turns[0][8]) for turns in (a, b)]
            assert encoded[0].prompt_length(encoded[1]) == common_prompt(*plain)


def test_a_dpo_row_from_encodings_equals_the_dumped_row():
    builder = ConversationBuilder()
    good = builder.conversation("gozone", load("resgo"), ['<think>"q" \\ é</think><answer>B</answer>', "x\ny"], "B")
    bad = builder.conversation("gozone", load("resgo"), ["<answer>C</answer>", "z"], "C")
    images = ["images/a.png"]
    encode = [orjson.dumps(m) for m in good], [orjson.dumps(m) for m in bad]
    expected = orjson.dumps(trl_dpo_row(good[:1], good[1:], bad[1:], images))
    assert trl_dpo_json(encode[0][:1], encode[0][1:], encode[1][1:], images) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",))))
def test_an_answer_encoded_by_the_c_string_encoder_equals_orjson(text):
    assert assistant_json(text) == orjson.dumps(assistant_message(text))


def test_every_ascii_character_and_a_lone_surrogate_are_encoded_like_orjson():
    text = "".join(map(chr, range(128))) + "é\u2028\u2029\U0001f600"
    assert assistant_json(text) == orjson.dumps(assistant_message(text))
    with pytest.raises(orjson.JSONEncodeError, match="surrogates"):
        assistant_json("a\ud800b")


def test_among_selects_the_rows_of_many_ids_with_one_parameter(world):  # noqa: F811
    session = world.session
    ids = session.scalars(select(Prediction.id).order_by(Prediction.id)).all()
    wanted = ids[::2] + [10**12]  # an id that no row has
    found = session.scalars(select(Prediction.id).where(among(session, Prediction.id, wanted))).all()
    assert sorted(found) == ids[::2]
    assert session.scalars(select(Prediction.id).where(among(session, Prediction.id, []))).all() == []


def test_outputs_read_in_bulk_equal_outputs_read_one_by_one(world):  # noqa: F811
    study = world.session.scalar(select(Study).where(Study.id == world.study.id))
    outputs = study_outputs(world.session, study)
    keys = list(outputs)
    assert keys == sorted(keys) and len(keys) == len(outputs) == 48
    one_by_one = {key: _seen(outputs[key]) for key in keys}
    fresh = study_outputs(world.session, study)
    fresh.load(keys, parsed=False)
    assert fresh._parsed == {} and len(fresh._texts) == 48  # parsed columns are read only when asked for
    assert {key: _seen(fresh[key]) for key in keys} == one_by_one
    unloaded = study_outputs(world.session, study)  # nothing loaded: each output is read when asked for
    assert unloaded.get(keys[0]).raw == one_by_one[keys[0]][0]
    assert ("no such case", keys[0][1]) not in fresh and fresh.get(("no such case", keys[0][1])) is None


def _seen(output):
    return output.raw, output.phase, output.prediction_id, output.parsed_output()


def test_votes_ordered_by_rank_equal_votes_sorted_by_their_strings(world):  # noqa: F811
    study = world.session.scalar(select(Study).where(Study.id == world.study.id))
    votes = study_votes(world.session, study.id, ExportFilters())
    cases, models, ranks = study_outputs(world.session, study, votes).labels(votes.predictions)
    shuffled = np.random.default_rng(3).permutation(len(votes))
    ids = votes.predictions[shuffled]
    by_rank = votes_frame(votes.counts[shuffled], cases[shuffled], models[shuffled], ranks[shuffled],
                          predictions=ids)
    by_strings = votes_frame(votes.counts[shuffled], cases[shuffled], models[shuffled], predictions=ids)
    pd.testing.assert_frame_equal(by_rank, by_strings)


def test_a_rating_whose_letter_its_item_does_not_have_is_refused_by_the_vote_reader(world):  # noqa: F811
    rating = world.session.scalars(select(OutputRating).limit(1)).one()
    item = world.session.get(ReviewItem, world.session.get(Judgment, rating.judgment_id).item_id)
    item.letter_map = {k: v for k, v in item.letter_map.items() if k != rating.letter}
    world.session.flush()
    with pytest.raises(DomainError, match="names a letter"):
        rated_votes(world.session, world.study.id, ExportFilters())


def test_the_dpo_export_equals_rows_dumped_from_each_pairs_conversations(world, tmp_path):  # noqa: F811
    out = tmp_path / "dpo"
    export_preferences(world.session, "cli:test", world.store, "dpo", out)
    lines = (out / "dpo.jsonl").read_bytes().splitlines()
    provenance = [orjson.loads(line) for line in (out / "provenance.jsonl").read_bytes().splitlines()]
    outputs = study_outputs(world.session, world.session.get(Study, world.study.id))
    assert len(lines) == len(provenance) == 16
    for line, made in zip(lines, provenance, strict=True):
        assert line == _dumped_row(outputs, made, None, orjson.loads(line)["images"])


@pytest.mark.parametrize("target", [None, "qwen25", "qwen3"])
def test_dpo_rows_of_two_turn_and_one_turn_outputs_equal_the_dumped_rows(world, target):  # noqa: F811
    """SurGo-R1's two-turn outputs chosen over Surg-R1's one-turn ones (both render for every target)."""
    _, judged, outputs, _ = next(judged_outputs(world.session, ExportFilters(), PairRules()))
    judged = judged.assign(chosen=judged["model"] == "demo-surgo-r1", rejected=judged["model"] == "demo-surg-r1")
    rows = Rows()
    made = list(dpo_rows(judged, outputs, lambda frame: f"images/{frame.sha256}.png", target, rows))
    assert len(made) == len(rows.provenance) == 16 and rows.skipped == {}
    for line, pair in zip(made, rows.provenance, strict=True):
        assert line == _dumped_row(outputs, pair, target, orjson.loads(line)["images"])
        assert len(orjson.loads(line)["chosen"]) == 3  # turn-1 answer, turn-2 prompt, turn-2 answer


def _dumped_row(outputs, pair, target, images) -> bytes:  # noqa: ANN001
    good = outputs[pair["case"], pair["chosen_model"]].conversation(target)
    bad = outputs[pair["case"], pair["rejected_model"]].conversation(target)
    shared = common_prompt(good, bad)
    return orjson.dumps(trl_dpo_row(good[:shared], good[shared:], bad[shared:], images))


_PIECES = ["<answer>B</answer>", "\n<|turn|>\n", "<|turn|>", "\r\n", "\n", " ", "\t", "é", '"', "\\", "x", "\x01", "\u2028"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(_PIECES), max_size=12).map("".join) | st.none(), max_size=8),
    st.sampled_from([("gozone", "resgo"), ("phase", "cholec80")]),
    st.sampled_from(["A", "B", None]),
)
def test_outputs_encoded_in_one_loop_equal_outputs_encoded_one_by_one(raws, task_vocabulary, phase):
    task, vocabulary = task_vocabulary[0], load(task_vocabulary[1])
    rows = [(key, raw, phase) for key, raw in enumerate(raws)]
    builder = ConversationBuilder()
    expected = {
        key: builder.encoded(task, vocabulary, raw_turns(raw), phase) if raw and raw.strip() else None
        for key, raw, _ in rows
    }
    assert ConversationBuilder().encoded_raws(task, vocabulary, rows) == expected


RULES = [
    PairRules(),
    PairRules(min_reviewers=1, ties="keep"),
    PairRules(min_reviewers=3, disagreements="drop"),
    PairRules(min_reviewers=2, ties="keep", disagreements="drop"),
]


@pytest.mark.parametrize("rules", RULES, ids=str)
def test_pairs_decided_by_the_database_equal_pairs_decided_from_the_verdicts(world, rules):  # noqa: F811
    for filters in (ExportFilters(), ExportFilters(study="export study", split="train")):
        tallied = tallied_pairs(world.session, world.study.id, filters, rules)
        _, judged, outputs, newest = next(judged_outputs(world.session, filters, rules))
        pairs = preference_pairs(judged)
        columns = ["case", "chosen", "rejected", "chosen_prediction", "rejected_prediction"]
        assert [pair[:5] for pair in tallied.pairs] == list(pairs[columns].itertuples(index=False, name=None))
        frames = [outputs.cases[case_id][3] for case_id in outputs.case_ids(pairs["chosen_prediction"])]
        assert [pair[5] for pair in tallied.pairs] == frames
        label = judged["label"]
        assert tallied.counts == {
            "outputs": len(judged),
            "chosen": judged["chosen"].sum(),
            "rejected": judged["rejected"].sum(),
            "correct": label.fillna(False).sum(),
            "incorrect": (~label.fillna(True)).sum(),
        }
        assert tallied.newest == newest


# The engine fixture only picks one of the session's engines: nothing in it changes between examples.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7), st.integers(0, 7)), min_size=1, max_size=40),
    st.sampled_from(RULES),
)
def test_the_pair_rules_give_the_same_verdicts_in_sql_and_in_numpy(engine, votes, rules):
    votes = [(total, min(correct, total), min(best, total)) for total, correct, best in votes]
    names = ("n", "reviewers", "correct_votes", "best_votes")
    rows = [select(*(literal(v, Integer).label(c) for c, v in zip(names, (n, *row), strict=True)))
            for n, row in enumerate(votes)]
    table = union_all(*rows).subquery()
    terms = verdict_terms(table.c.reviewers, table.c.correct_votes, table.c.best_votes, rules)
    with engine.connect() as connection:
        query = select(*(case((term, 1), else_=0) for term in terms)).order_by(table.c.n)
        in_sql = connection.execute(query).all()
    arrays = np.array(votes, dtype=np.int64).T
    in_numpy = np.stack(verdict_terms(arrays[0], arrays[1], arrays[2], rules), axis=1).astype(int)
    assert [list(row) for row in in_sql] == in_numpy.tolist()
