"""The load harness at small scale (tests/load_harness.py, tests/load_users.py; bench/load.py runs it at full
scale): simulated reviewers and annotators work against the real app (a subprocess) over HTTP for a few
seconds, on SQLite and on PostgreSQL. No action may fail (edit conflicts, provoked on purpose, are expected
answers), and the database must hold exactly what the clients were told: every acknowledged judgment and
version once, nothing else, revisions and versions numbered without gaps, parents chained."""

from __future__ import annotations

import pytest

from tests.conftest import create_postgres_database
from tests.load_harness import seed_site, start_server
from tests.load_users import check_database, simulate

REVIEWERS, ANNOTATORS, SECONDS = 10, 3, 10.0


def _load(data_dir, database_url: str) -> None:
    site = seed_site(data_dir, database_url, reviewers=REVIEWERS, annotators=ANNOTATORS, extra_cases=24)
    server = start_server(data_dir, database_url)
    try:
        ledger = simulate(server.url, site.reviewers, site.annotators, SECONDS)
    finally:
        server.stop()
    print(ledger.table())
    assert ledger.errors == [], "\n".join(ledger.errors[:10])
    assert len(ledger.judgments) >= REVIEWERS, "every reviewer should have stored at least one judgment"
    assert len(ledger.versions) >= ANNOTATORS and ledger.conflicts >= 1
    url = database_url or f"sqlite:///{data_dir / 'surgreview.db'}"
    assert check_database(url, ledger, site.reviewers, site.annotators) == []


def test_load_on_sqlite_loses_and_duplicates_nothing(tmp_path):
    _load(tmp_path, "")


@pytest.mark.postgres
def test_load_on_postgresql_loses_and_duplicates_nothing(tmp_path):
    url, drop = create_postgres_database()
    try:
        _load(tmp_path, url)
    finally:
        drop()
