"""Load: simulated reviewers and annotators working against the real app over HTTP on loopback.

    .venv/bin/python -m bench.load                          # 50 reviewers, 10 annotators, 60 s, SQLite and PostgreSQL
    .venv/bin/python -m bench.load --reviewers 10 --annotators 3 --seconds 10 --no-postgres
    .venv/bin/python -m bench.load --concurrency 8          # GRADIO_DEFAULT_CONCURRENCY_LIMIT for the app

For each database, in a temporary data folder: seeds the site (users, the demo pack plus ``--cases``
synthetic frames with the demo models' outputs replayed, a study of the three demo models with ``--k``
reviewers per case, four cases per annotator), starts ``python -m app serve`` in a subprocess, runs every
simulated user at once for ``--seconds`` (tests/load_users.py: reviewers open the next item and submit a
judgment; annotators open a case, save drafts, provoke edit conflicts from a second tab, submit), stops the
app and checks the database against what the clients were told. Prints per action the count, p50, p95 and
max latency and the rate; the judgments and versions acknowledged; conflicts (expected answers) and errors.
The exit status is 1 when any error or database problem was found.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.load_harness import seed_site, start_server
from tests.load_users import check_database, simulate


def run_one(label: str, data_dir: Path, database_url: str, args: argparse.Namespace) -> bool:
    """Seed, serve, load, check one database; print the table. True when clean."""
    started = time.perf_counter()
    site = seed_site(data_dir, database_url, reviewers=args.reviewers, annotators=args.annotators,
                     extra_cases=args.cases, k=args.k)
    seeded = time.perf_counter() - started
    env = {"GRADIO_DEFAULT_CONCURRENCY_LIMIT": str(args.concurrency)} if args.concurrency else {}
    server = start_server(data_dir, database_url, env=env)
    try:
        ledger = simulate(server.url, site.reviewers, site.annotators, args.seconds)
    finally:
        server.stop()
    url = database_url or f"sqlite:///{data_dir / 'surgreview.db'}"
    problems = check_database(url, ledger, site.reviewers, site.annotators)
    print(f"\n## {label}: {len(site.reviewers)} reviewers, {len(site.annotators)} annotators, {args.seconds:g} s; "
          f"{site.cases} cases, {site.items} review items (seeded in {seeded:.0f} s)")
    print(ledger.table())
    for error in ledger.errors[:20]:
        print(f"  error: {error}")
    print(f"database check: {'clean' if not problems else f'{len(problems)} problems'}")
    for problem in problems[:20]:
        print(f"  problem: {problem}")
    return not ledger.errors and not problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviewers", type=int, default=50)
    parser.add_argument("--annotators", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cases", type=int, default=200, help="synthetic cases besides the 16 demo cases")
    parser.add_argument("--k", type=int, default=3, help="reviewers per case")
    parser.add_argument("--concurrency", type=int, default=0,
                        help="GRADIO_DEFAULT_CONCURRENCY_LIMIT for the app (0: Gradio's default, 1 per event)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()

    clean = True
    folder = Path(tempfile.mkdtemp(prefix="surgreview-load-"))
    try:
        if not args.no_sqlite:
            clean &= run_one("SQLite", folder / "sqlite", "", args)
        if not args.no_postgres:
            from tests.conftest import create_postgres_database

            try:
                url, drop = create_postgres_database()
            except BaseException as exc:  # noqa: BLE001 - pytest's skip (a BaseException): no server answers
                print(f"\n## PostgreSQL: skipped ({exc})")
            else:
                try:
                    clean &= run_one("PostgreSQL", folder / "postgres", url, args)
                finally:
                    drop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
