"""The export's fast paths equal the plain ones: the SQL vote reader equals ``output_votes`` over the
row-per-rating reader, built conversations equal ``task_conversation``, and rows written from message
encodings equal ``orjson.dumps`` of the row dicts."""

from __future__ import annotations

import orjson
import pandas as pd
from sqlalchemy import select

from db.bundles import ExportFilters
from db.schema import Study
from models.chat_formats import ConversationBuilder, task_conversation, trl_dpo_json, trl_dpo_row
from models.vocabularies import load
from review.preferences import output_votes, study_outputs, vote_ratings
from review.preferences.votes import study_votes, votes_frame
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
