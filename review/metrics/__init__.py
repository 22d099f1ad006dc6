"""Benchmark metrics: Go Zone grounding (``grounding``), Surg-R1 task metrics (``tasks``), the case-resampling
bootstrap they share (``bootstrap``), loading predictions and references from the database (``data``) and
per-model leaderboards with the Arena Score (``leaderboard``). Metric definitions are in the docstrings of
``grounding`` and ``tasks``."""
