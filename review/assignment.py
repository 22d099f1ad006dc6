"""Who reviews which case, in which order, and which model hides behind which letter. Pure and seeded.

``assign`` deals each case to k distinct reviewers, always to the least-loaded ones (ties broken by the
seeded generator), so reviewer loads never differ by more than one; each reviewer's queue is then shuffled.
``extend`` does the same for new cases on top of existing work, which it never changes. ``letter_maps``
gives each item a permutation of the models over the letters A, B, C...: each item takes a permutation
whose (model, letter) cells are least used so far, which fills the study like stacked Latin squares: every
model sits under every letter equally often when the item count is a multiple of the model count, and
within one otherwise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from itertools import permutations

import numpy as np

LETTERS = "ABCDE"
Item = tuple[Hashable, Hashable, int]  # (case id, reviewer id, position in the reviewer's queue)


def assign(case_ids: Sequence[Hashable], reviewer_ids: Sequence[Hashable], k: int, seed: int, *,
           keep_order: bool = False) -> list[Item]:
    """Each case to exactly ``k`` distinct reviewers, loads within one of each other.

    Returns (case id, reviewer id, position) with positions 0, 1, ... per reviewer: a seeded shuffle, or the
    order of ``case_ids`` when ``keep_order`` (a priority order such as informativeness).
    """
    return extend([], case_ids, reviewer_ids, k, seed, keep_order=keep_order)


def extend(existing: Iterable[Item], new_case_ids: Sequence[Hashable], reviewer_ids: Sequence[Hashable],
           k: int, seed: int, *, keep_order: bool = False) -> list[Item]:
    """Assign ``new_case_ids`` on top of ``existing`` items without changing any of them.

    Every new case goes to ``k`` distinct reviewers among ``reviewer_ids`` (old and new), each time to the
    least-loaded ones counting existing work, so a newly added reviewer takes new cases first. Positions
    continue after each reviewer's last existing position. Returns only the new items.
    """
    reviewers = list(dict.fromkeys(reviewer_ids))
    if not 1 <= k <= len(reviewers):
        raise ValueError(f"k must be between 1 and the number of reviewers ({len(reviewers)}), not {k}")
    if len(set(new_case_ids)) != len(new_case_ids):
        raise ValueError("a case is listed twice")
    existing = list(existing)
    loads = Counter(reviewer for _, reviewer, _ in existing)
    next_position = {r: 1 + max((p for _, rr, p in existing if rr == r), default=-1) for r in reviewers}
    taken = {(case, reviewer) for case, reviewer, _ in existing}
    rng = np.random.default_rng(seed)
    queues = _deal(new_case_ids, reviewers, [loads[r] for r in reviewers], k, rng, taken)
    items: list[Item] = []
    for index, reviewer in enumerate(reviewers):
        queue = queues[index]
        if not keep_order:
            queue = [queue[i] for i in rng.permutation(len(queue))]
        start = next_position[reviewer]
        items += [(case, reviewer, start + offset) for offset, case in enumerate(queue)]
    return items


def _deal(case_ids: Sequence[Hashable], reviewers: list[Hashable], loads: list[int], k: int,
          rng: np.random.Generator, taken: set[tuple[Hashable, Hashable]]) -> list[list[Hashable]]:
    """Per reviewer (by index), the new cases dealt to them, each case to the k least-loaded reviewers."""
    load = np.array(loads, dtype=np.int64)
    queues: list[list[Hashable]] = [[] for _ in reviewers]
    for case in case_ids:
        blocked = np.array([(case, r) in taken for r in reviewers], dtype=bool)
        if (~blocked).sum() < k:
            raise ValueError(f"case {case!r} cannot reach {k} distinct reviewers")
        # Least load first; random among equal loads; reviewers who already have the case last.
        order = np.lexsort((rng.random(len(reviewers)), load, blocked))[:k]
        for index in order:
            queues[index].append(case)
        load[order] += 1
    return queues


def letter_maps(items: Sequence[Item], model_ids: Sequence[Hashable], seed: int, *,
                existing: Iterable[tuple[Hashable, Mapping[str, Hashable]]] = (),
                ) -> list[dict[str, Hashable]]:
    """One {letter: model id} map per item, in the order of ``items``.

    Each item takes, among all permutations of the models, one that uses the least-used (model, letter)
    cells of the whole study so far (``existing`` = (reviewer id, letter map) of earlier items), then the
    least-used cells of its reviewer; ties are broken by the seeded generator. From an empty start every
    model appears under every letter equally often whenever the item count is a multiple of the model count,
    and within one otherwise.
    """
    models = list(model_ids)
    n = len(models)
    if not 2 <= n <= len(LETTERS) or len(set(models)) != n:
        raise ValueError(f"a study compares 2 to {len(LETTERS)} distinct models, not {models}")
    index = {m: i for i, m in enumerate(models)}
    perms = np.array(list(permutations(range(n))))  # perms[p, letter] = model index
    letters = np.arange(n)
    overall = np.zeros((n, n), dtype=np.int64)
    per_reviewer: dict[Hashable, np.ndarray] = {}
    for reviewer, mapping in existing:
        cells = [(index[model], LETTERS.index(letter)) for letter, model in mapping.items()]
        for counts in (overall, per_reviewer.setdefault(reviewer, np.zeros((n, n), dtype=np.int64))):
            for cell in cells:
                counts[cell] += 1
    rng = np.random.default_rng(seed)
    maps = []
    for _, reviewer, _ in items:
        mine = per_reviewer.setdefault(reviewer, np.zeros((n, n), dtype=np.int64))
        study_cost = overall[perms, letters].sum(axis=1)
        candidates = np.flatnonzero(study_cost == study_cost.min())
        reviewer_cost = mine[perms[candidates], letters].sum(axis=1)
        best = candidates[reviewer_cost == reviewer_cost.min()]
        chosen = perms[best[rng.integers(len(best))]]
        overall[chosen, letters] += 1
        mine[chosen, letters] += 1
        maps.append({LETTERS[letter]: models[chosen[letter]] for letter in range(n)})
    return maps


def letter_balance(maps: Iterable[Mapping[str, Hashable]]) -> Counter[tuple[Hashable, str]]:
    """How often each (model id, letter) pair occurs in ``maps``."""
    return Counter((model, letter) for mapping in maps for letter, model in mapping.items())
