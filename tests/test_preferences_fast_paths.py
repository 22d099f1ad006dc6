"""The export's fast paths equal the plain ones: the SQL vote reader equals ``output_votes`` over the
row-per-rating reader, built conversations equal ``task_conversation``, rows written from message encodings
equal ``orjson.dumps`` of the row dicts, answers encoded by the C string encoder equal orjson's, votes ordered
by rank equal votes sorted by their strings, and outputs read in bulk equal outputs read one by one."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from db.bundles import ExportFilters
from db.errors import DomainError
from db.schema import Judgment, OutputRating, Prediction, ReviewItem, Study
from models.chat_formats import (
    ConversationBuilder,
    assistant_json,
    assistant_message,
    task_conversation,
    trl_dpo_json,
    trl_dpo_row,
)
from models.vocabularies import load
from review.preferences import output_votes, study_outputs, vote_ratings
from review.preferences.votes import among, study_votes, votes_frame
from tests.test_exports_service import world  # noqa: F401 - the judged study fixture


def test_the_sql_vote_reader_equals_output_votes(world):  # noqa: F811
    study = world.session.scalar(select(Study).where(Study.id == world.study.id))
    predictions, counts, newest = study_votes(world.session, study.id, ExportFilters())
    outputs = study_outputs(world.session, study)
    fast = votes_frame(counts, *outputs.labels(predictions))
    ratings, dates = vote_ratings(world.session, study.id)
    slow = output_votes(ratings)
    assert len(fast) == 48 and list(fast.columns) == list(slow.columns)
    pd.testing.assert_frame_equal(fast.astype(str), slow.astype(str))
    assert newest == max(dates.values())


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
        messages, encoded = builder.encoded(task, vocabulary, turns, phase)
        assert builder.conversation(task, vocabulary, turns, phase) == messages == expected
        assert encoded == [orjson.dumps(m) for m in expected]


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
    predictions, counts, _ = study_votes(world.session, study.id, ExportFilters())
    cases, models, ranks = study_outputs(world.session, study).labels(predictions)
    shuffled = np.random.default_rng(3).permutation(len(predictions))
    by_rank = votes_frame(counts[shuffled], cases[shuffled], models[shuffled], ranks[shuffled])
    by_strings = votes_frame(counts[shuffled], cases[shuffled], models[shuffled])
    pd.testing.assert_frame_equal(by_rank, by_strings)


def test_a_rating_whose_letter_its_item_does_not_have_is_refused_by_the_vote_reader(world):  # noqa: F811
    rating = world.session.scalars(select(OutputRating).limit(1)).one()
    item = world.session.get(ReviewItem, world.session.get(Judgment, rating.judgment_id).item_id)
    item.letter_map = {k: v for k, v in item.letter_map.items() if k != rating.letter}
    world.session.flush()
    with pytest.raises(DomainError, match="names a letter"):
        study_votes(world.session, world.study.id, ExportFilters())
