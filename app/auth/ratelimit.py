"""Failed sign-in counting, per username and per client address, in a sliding time window.

Kept in memory, per process: with several app processes behind a proxy each counts on its own, so an
attacker gets at most (processes x limit) guesses per window. A shared store (the database or Redis)
would make the limit global; the interface would stay the same.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class FailureLimiter:
    """At most ``limit`` failures per key within ``window_s`` seconds; keys past it are blocked until the
    oldest failure leaves the window. Holds at most ``max_keys`` keys (the stalest are forgotten first)."""

    def __init__(self, limit: int, window_s: float, *, max_keys: int = 10_000,
                 clock: Callable[[], float] | None = None) -> None:
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self.clock = clock or time.monotonic
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def retry_after(self, *keys: str) -> float:
        """Seconds until every key may try again; 0 when none is blocked."""
        now = self.clock()
        with self._lock:
            waits = [times[0] + self.window_s - now for key in keys
                     if len(times := self._recent(key, now)) >= self.limit]
        return max(waits, default=0.0)

    def fail(self, *keys: str) -> None:
        """Count one failure against each key."""
        now = self.clock()
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                times.append(now)
                self._failures.pop(key, None)
                self._failures[key] = times  # re-inserted: dict order is staleness order
            while len(self._failures) > self.max_keys:
                del self._failures[next(iter(self._failures))]

    def reset(self, key: str) -> None:
        """Forget the failures of ``key`` (after a successful sign-in)."""
        with self._lock:
            self._failures.pop(key, None)
