"""Parser throughput: parse the whole corpus (tests/parser_corpus) repeatedly for about two seconds and print
outputs parsed per second. Goal: >= 10,000/s on a 2-core machine.

    python -m bench.parser [--seconds 2.0] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from pathlib import Path

from models.parsing import parse_output
from models.vocabularies import load

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "parser_corpus"
GOAL_PER_SECOND = 10_000


def corpus_calls() -> list[tuple[str, dict]]:
    """(raw text, keyword arguments of parse_output) per corpus item, vocabularies loaded once."""
    calls = []
    for meta_path in sorted(CORPUS.glob("*.json")):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        raw = meta_path.with_suffix(".txt").read_bytes().decode("utf-8")
        calls.append((raw, {"task": meta["task"], "box_convention": meta["box_convention"],
                            "width": meta["width"], "height": meta["height"],
                            "vocabulary": load(meta["vocabulary"]) if meta["vocabulary"] else None,
                            "input_size": tuple(meta["input_size"]) if meta["input_size"] else None}))
    return calls


def run(calls: list[tuple[str, dict]], seconds: float) -> tuple[int, float]:
    """Parse the corpus round after round until ``seconds`` have passed: (outputs parsed, elapsed)."""
    parsed, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for raw, kwargs in calls:
            parse_output(raw, **kwargs)
        parsed += len(calls)
    return parsed, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--profile", action="store_true", help="print the 15 most expensive functions")
    args = parser.parse_args()
    calls = corpus_calls()
    run(calls, 0.2)  # warm caches (vocabulary tables) before measuring
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(run, calls, args.seconds)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(15)
        return
    parsed, elapsed = run(calls, args.seconds)
    rate = parsed / elapsed
    mean_chars = sum(len(raw) for raw, _ in calls) / len(calls)
    print(f"parser: {parsed} outputs in {elapsed:.2f} s = {rate:,.0f} outputs/s "
          f"({len(calls)} corpus items, mean {mean_chars:.0f} characters; goal {GOAL_PER_SECOND:,}/s: "
          f"{'met' if rate >= GOAL_PER_SECOND else 'NOT met'})")


if __name__ == "__main__":
    main()
