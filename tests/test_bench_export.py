"""bench.export runs end to end at a small size: it populates a study, exports it, checks the file equals its
records serialized, and prints the figures (their values are reported, never asserted: see bench/README)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_export_benchmark_runs_and_reports_its_figures():
    done = subprocess.run([sys.executable, "-m", "bench.export", "--judgments", "300", "--frames", "4",
                           "--repeat", "2"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DPO export: 100 records from 300 judgments" in done.stdout
    for figure in ("orjson from memory:", "each turn, export / serialize:", "ratio export / serialize",
                   "process CPU time"):
        assert figure in done.stdout, done.stdout
    # The export with a date range counts the votes from the ratings and must give the same bytes.
    assert "counted from the ratings (--since):" in done.stdout and "100 records, the same bytes" in done.stdout
