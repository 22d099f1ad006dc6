"""Assignment and letters (pure): coverage k, balanced loads and letters, seeded determinism, extension."""

from __future__ import annotations

from collections import Counter

import pytest

from review.assignment import assign, extend, letter_balance, letter_maps

REVIEWERS = [f"r{i}" for i in range(7)]
CASES = list(range(100, 153))  # 53 cases: loads cannot all be equal


def _loads(items) -> Counter:
    return Counter(reviewer for _, reviewer, _ in items)


@pytest.mark.parametrize(("n_cases", "n_reviewers", "k"), [(53, 7, 3), (10, 3, 3), (1, 4, 2), (40, 20, 1)])
def test_every_case_goes_to_k_distinct_reviewers_and_loads_differ_by_at_most_one(n_cases, n_reviewers, k):
    cases, reviewers = list(range(n_cases)), [f"r{i}" for i in range(n_reviewers)]
    items = assign(cases, reviewers, k, seed=11)
    per_case = Counter(case for case, _, _ in items)
    assert per_case == Counter({case: k for case in cases})
    assert len({(case, reviewer) for case, reviewer, _ in items}) == len(items)  # distinct reviewers per case
    loads = [_loads(items).get(r, 0) for r in reviewers]
    assert max(loads) - min(loads) <= 1
    assert sum(loads) == n_cases * k


def test_positions_count_up_from_zero_per_reviewer_in_a_shuffled_order():
    items = assign(CASES, REVIEWERS, 3, seed=5)
    for reviewer in REVIEWERS:
        mine = sorted((p, c) for c, r, p in items if r == reviewer)
        assert [p for p, _ in mine] == list(range(len(mine)))
    queue = [c for _, c in sorted((p, c) for c, r, p in items if r == "r0")]
    assert queue != sorted(queue)  # shuffled, not in case order


def test_keep_order_keeps_the_priority_order_in_every_queue():
    priority = list(reversed(CASES))
    items = assign(priority, REVIEWERS, 2, seed=5, keep_order=True)
    for reviewer in REVIEWERS:
        queue = [c for _, c in sorted((p, c) for c, r, p in items if r == reviewer)]
        assert queue == [c for c in priority if c in queue]


def test_the_same_seed_gives_the_same_assignment_and_another_seed_another():
    assert assign(CASES, REVIEWERS, 3, seed=1) == assign(CASES, REVIEWERS, 3, seed=1)
    assert assign(CASES, REVIEWERS, 3, seed=1) != assign(CASES, REVIEWERS, 3, seed=2)


def test_k_larger_than_the_reviewers_is_refused():
    with pytest.raises(ValueError, match="k must be"):
        assign(CASES, REVIEWERS[:2], 3, seed=0)


@pytest.mark.parametrize(("n_items", "n_models"), [(60, 3), (40, 2), (100, 5), (120, 4)])
def test_letters_are_exactly_balanced_when_items_are_a_multiple_of_the_models(n_items, n_models):
    items = [(i, f"r{i % 6}", i // 6) for i in range(n_items)]
    models = [f"m{j}" for j in range(n_models)]
    maps = letter_maps(items, models, seed=3)
    assert all(sorted(m.values()) == models for m in maps)  # each item: a permutation of the models
    counts = letter_balance(maps)
    assert set(counts.values()) == {n_items // n_models}
    assert len(counts) == n_models * n_models


@pytest.mark.parametrize("n_items", [61, 62, 97])
def test_letters_are_balanced_within_one_otherwise(n_items):
    items = [(i, f"r{i % 5}", i // 5) for i in range(n_items)]
    counts = letter_balance(letter_maps(items, ["a", "b", "c"], seed=8))
    assert max(counts.values()) - min(counts.values()) <= 1


def test_each_reviewer_sees_each_model_under_each_letter_about_equally():
    items = assign(list(range(90)), ["r0", "r1", "r2"], 2, seed=4)  # 60 items per reviewer
    maps = letter_maps(items, ["a", "b", "c"], seed=4)
    for reviewer in ("r0", "r1", "r2"):
        counts = letter_balance(m for m, (_, r, _) in zip(maps, items, strict=True) if r == reviewer)
        assert max(counts.values()) - min(counts.values()) <= 1


def test_letters_are_seeded():
    items = assign(CASES, REVIEWERS, 3, seed=1)
    assert letter_maps(items, ["a", "b", "c"], seed=9) == letter_maps(items, ["a", "b", "c"], seed=9)
    assert letter_maps(items, ["a", "b", "c"], seed=9) != letter_maps(items, ["a", "b", "c"], seed=10)


def test_extend_with_new_cases_and_reviewers_keeps_existing_items_and_coverage():
    before = assign(CASES, REVIEWERS, 3, seed=1)
    frozen = list(before)
    reviewers = [*REVIEWERS, "new1", "new2"]
    new_cases = list(range(500, 520))
    added = extend(before, new_cases, reviewers, 3, seed=2)
    assert before == frozen  # nothing existing is touched
    assert Counter(c for c, _, _ in added) == Counter({c: 3 for c in new_cases})
    assert not {(c, r) for c, r, _ in added} & {(c, r) for c, r, _ in before}
    # Positions continue after each reviewer's existing ones: no clash with the unique (reviewer, position).
    assert len({(r, p) for _, r, p in [*before, *added]}) == len(before) + len(added)
    # The new reviewers (load 0) are the least loaded: each takes every new case, the old share the rest.
    new_loads = _loads(added)
    assert new_loads["new1"] == new_loads["new2"] == 20
    assert sum(new_loads[r] for r in REVIEWERS) == 20


def test_extend_balances_letters_over_old_and_new_items():
    before = assign(list(range(30)), ["r0", "r1", "r2"], 2, seed=1)  # 60 items
    old_maps = letter_maps(before, ["a", "b", "c"], seed=1)
    added = extend(before, list(range(100, 130)), ["r0", "r1", "r2", "r3"], 2, seed=2)  # 60 more
    new_maps = letter_maps(added, ["a", "b", "c"], seed=2,
                           existing=[(r, m) for (_, r, _), m in zip(before, old_maps, strict=True)])
    assert set(letter_balance([*old_maps, *new_maps]).values()) == {40}
