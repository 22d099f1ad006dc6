"""Simulated reviewers and annotators driving the real app (tests/load_harness.py) over HTTP, as browsers do,
and the check of what the database holds against what they were told.

Each simulated user signs in through the form and talks to Gradio's queue exactly like the page does:
``/queue/join`` with a session hash and the event's ``fn_index``, then the ``/queue/data`` event stream, so
``gr.State`` (the item token, the editor's base version) and dropdown choices live in the server's session
state as they do for a browser.

What a client was told is kept in a ``Ledger``: every acknowledged judgment (item token, revision) and
annotation version (case, lane, version), every expected refusal (an edit conflict), every error, and the
latency of each action. ``check_database`` then compares the database with the ledger.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import statistics
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.load_harness import ADMIN, PASSWORD
from tests.web_helpers import csrf_token

LETTERS = ("A", "B", "C", "D", "E")  # the Review tab's slots, in input order
STORED = re.compile(r"Stored: revision (\d+)")
SAVED = re.compile(r"Version (\d+) (submitted for approval|saved as a draft)")
CALL_TIMEOUT_S = 120.0


# --- talking to Gradio as the page does -------------------------------------------------------------------


class Config:
    """The app's Gradio config: events found by the element they are bound to, or by what they fill."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.by_elem = {c.get("props", {}).get("elem_id"): c["id"] for c in raw["components"]
                        if c.get("props", {}).get("elem_id")}
        self.deps = raw["dependencies"]

    def event(self, elem_id: str, trigger: str) -> tuple[int, int]:
        """(fn_index, trigger id) of the event ``trigger`` of the component ``elem_id``."""
        target = self.by_elem[elem_id]
        for dep in self.deps:
            if [target, trigger] in [list(t) for t in dep["targets"]]:
                return dep["id"], target
        raise KeyError(f"no {trigger} event on #{elem_id}")

    def api(self, name: str) -> int:
        return next(dep["id"] for dep in self.deps if dep.get("api_name") == name)

    def load_filling(self, elem_id: str) -> int:
        """The page-load event whose outputs start with ``elem_id`` (a tab's ``populate``)."""
        target = self.by_elem[elem_id]
        for dep in self.deps:
            if any(t[1] == "load" for t in dep["targets"]) and dep["outputs"][:1] == [target]:
                return dep["id"]
        raise KeyError(f"no load event fills #{elem_id}")


@dataclass
class Answer:
    """What one event returned: success, the output values, the error message and the toasts."""

    ok: bool
    data: list[Any] = field(default_factory=list)
    error: str | None = None
    logs: list[str] = field(default_factory=list)


class GradioSession:
    """One browser tab: a session hash on a signed-in client."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.hash = uuid.uuid4().hex[:11]

    async def call(self, fn_index: int, data: list[Any], trigger_id: int | None = None) -> Answer:
        joined = await self.client.post("/app/gradio_api/queue/join", json={
            "data": data, "event_data": None, "fn_index": fn_index, "trigger_id": trigger_id,
            "session_hash": self.hash})
        if joined.status_code != 200:
            return Answer(False, error=f"HTTP {joined.status_code} on join: {joined.text[:300]}")
        event_id = joined.json()["event_id"]
        logs: list[str] = []
        async with self.client.stream("GET", "/app/gradio_api/queue/data",
                                      params={"session_hash": self.hash}) as stream:
            if stream.status_code != 200:
                return Answer(False, error=f"HTTP {stream.status_code} on the event stream")
            async for line in stream.aiter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") not in (None, event_id):
                    continue
                kind = message.get("msg")
                if kind == "log":
                    logs.append(str(message.get("log")))
                elif kind == "process_completed":
                    output = message.get("output") or {}
                    if message.get("success"):
                        return Answer(True, output.get("data") or [], logs=logs)
                    return Answer(False, error=str(output.get("error") or output), logs=logs)
                elif kind in ("unexpected_error", "close_stream") and message.get("event_id") == event_id:
                    return Answer(False, error=str(message.get("message") or kind), logs=logs)
        return Answer(False, error="the event stream ended without an answer", logs=logs)


async def sign_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> None:
    page = await client.get("/login")
    page.raise_for_status()
    done = await client.post("/login", data={"username": username, "password": password,
                                             "csrf_token": csrf_token(page.text)})
    if done.status_code != 303:
        raise RuntimeError(f"sign-in of {username} answered {done.status_code}")


def new_client(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=CALL_TIMEOUT_S, follow_redirects=False,
                             limits=httpx.Limits(max_connections=4, max_keepalive_connections=4))


# --- what the clients were told ---------------------------------------------------------------------------


@dataclass
class Ledger:
    """Everything acknowledged to the simulated users, and every latency, by action."""

    judgments: list[tuple[str, int]] = field(default_factory=list)  # (item token, revision)
    versions: list[tuple[int, int]] = field(default_factory=list)  # (case id, version)
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    started: float = 0.0
    finished: float = 0.0

    def timed(self, action: str, seconds: float) -> None:
        self.latencies[action].append(seconds)

    def error(self, who: str, action: str, message: str) -> None:
        self.errors.append(f"{who} {action}: {message[:400]}")

    def table(self) -> str:
        """p50 / p95 / max latency (ms) and count per action, throughput over the run, errors."""
        span = max(self.finished - self.started, 1e-9)
        lines = [f"{'action':<18}{'count':>7}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'per s':>8}"]
        for action, values in sorted(self.latencies.items()):
            ms = sorted(v * 1000 for v in values)
            lines.append(f"{action:<18}{len(ms):>7}{percentile(ms, 50):>9.0f}{percentile(ms, 95):>9.0f}"
                         f"{ms[-1]:>9.0f}{len(ms) / span:>8.1f}")
        lines.append(f"judgments acknowledged {len(self.judgments)}, versions acknowledged {len(self.versions)}, "
                     f"edit conflicts {self.conflicts}, errors {len(self.errors)} over {span:.1f} s")
        return "\n".join(lines)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[int(q) - 1]


# --- simulated users --------------------------------------------------------------------------------------


def _update(value: Any) -> dict[str, Any]:
    """A component's output as an update dict (a bare value becomes ``{"value": value}``)."""
    return value if isinstance(value, dict) and "__type__" in value else {"value": value}


def _choice_values(update: dict[str, Any]) -> list[Any]:
    return [c[1] if isinstance(c, list | tuple) else c for c in update.get("choices") or []]


class Reviewer:
    """Signs in, then repeats: open the next item, rate every output, submit. When the queue is done, it
    revises one of its judged items (a new revision) so that the load stays the same."""

    def __init__(self, url: str, config: Config, username: str, ledger: Ledger, seed: int) -> None:
        self.url, self.config, self.username, self.ledger = url, config, username, ledger
        self.rng = random.Random(seed)
        self.populate = config.load_filling("review-study")
        self.next_event = config.event("review-next", "click")
        self.open_event = config.event("review-items", "input")
        self.submit_event = config.event("review-submit", "click")

    async def run(self, deadline: float) -> None:
        async with new_client(self.url) as client:
            if not await self._step("sign in", sign_in(client, self.username)):
                return
            tab = GradioSession(client)
            shown = await self._call(tab, "load study", self.populate, [])
            if shown is None:
                return
            study = _update(shown.data[0]).get("value")
            judged: list[str] = []
            while time.monotonic() < deadline:
                item = await self._call(tab, "open next item", self.next_event, [study])
                if item is None:
                    return
                token = _update(item.data[2]).get("value")
                if token is None:
                    if not judged:
                        return
                    token = self.rng.choice(judged)
                    item = await self._call(tab, "open own item", self.open_event, [study, token])
                    if item is None:
                        return
                stored = await self._submit(tab, study, item)
                if stored is None:
                    return
                self.ledger.judgments.append((token, stored))
                judged.append(token)

    async def _submit(self, tab: GradioSession, study: int, item: Answer) -> int | None:
        letters = [c for c in _choice_values(_update(item.data[8])) if c != "none"]
        best = self.rng.choice([*letters, "none"])
        rubric: list[Any] = []
        for letter in LETTERS:
            if letter in letters:
                rubric += [self.rng.choice([0, 1]), self.rng.choice(["correct", "wrong", "na"]), None, None, []]
            else:
                rubric += [None, None, None, None, []]
        data = [self.rng.randint(500, 9000), study, None, best, f"{self.username} says so", *rubric]
        answer = await self._call(tab, "submit judgment", self.submit_event, data)
        if answer is None:
            return None
        found = STORED.search(str(_update(answer.data[5]).get("value")))
        if found is None:
            self.ledger.error(self.username, "submit judgment", f"no stored revision shown: {answer.data[5]!r}")
            return None
        return int(found.group(1))

    async def _call(self, tab: GradioSession, action: str, event: int | tuple[int, int],
                    data: list[Any]) -> Answer | None:
        fn_index, trigger = event if isinstance(event, tuple) else (event, None)
        started = time.monotonic()
        try:
            answer = await tab.call(fn_index, data, trigger)
        except (httpx.HTTPError, ValueError) as exc:
            self.ledger.error(self.username, action, f"{type(exc).__name__}: {exc}")
            return None
        self.ledger.timed(action, time.monotonic() - started)
        if not answer.ok:
            self.ledger.error(self.username, action, answer.error or "failed")
            return None
        return answer

    async def _step(self, action: str, awaitable: Any) -> bool:
        started = time.monotonic()
        try:
            await awaitable
        except (httpx.HTTPError, RuntimeError, AssertionError) as exc:
            self.ledger.error(self.username, action, f"{type(exc).__name__}: {exc}")
            return False
        self.ledger.timed(action, time.monotonic() - started)
        return True


class Annotator(Reviewer):
    """Signs in, then repeats: open one of its cases, move the box, save a draft (sometimes from a second
    tab first, so the first tab's save runs into an edit conflict and is saved again on top), and now and
    then submit for approval."""

    STALE_SHARE = 0.25
    SUBMIT_SHARE = 0.2

    def __init__(self, url: str, config: Config, username: str, ledger: Ledger, seed: int) -> None:
        self.url, self.config, self.username, self.ledger = url, config, username, ledger
        self.rng = random.Random(seed)
        self.populate = config.load_filling("annotate-case")
        self.open_event = config.event("annotate-case", "input")
        self.save_event = config.event("annotate-save", "click")
        self.submit_event = config.event("annotate-submit", "click")

    async def run(self, deadline: float) -> None:
        async with new_client(self.url) as client:
            if not await self._step("sign in", sign_in(client, self.username)):
                return
            tabs = [GradioSession(client), GradioSession(client)]
            cases = None
            for tab in tabs:
                shown = await self._call(tab, "load queue", self.populate, [])
                if shown is None:
                    return
                cases = _choice_values(_update(shown.data[0]))
            while cases and time.monotonic() < deadline:
                case = self.rng.choice(cases)
                first = await self._open(tabs[0], case)
                if first is None:
                    return
                if self.rng.random() < self.STALE_SHARE:
                    other = await self._open(tabs[1], case)
                    if other is None or not await self._save(tabs[1], case, other, submit=False):
                        return
                    conflict = await self._save(tabs[0], case, first, submit=False, expect_conflict=True)
                    if not conflict:
                        return
                if not await self._save(tabs[0], case, first, submit=self.rng.random() < self.SUBMIT_SHARE):
                    return

    async def _open(self, tab: GradioSession, case: int) -> Answer | None:
        return await self._call(tab, "open case", self.open_event, [case])

    async def _save(self, tab: GradioSession, case: int, opened: Answer, *, submit: bool,
                    expect_conflict: bool = False) -> bool:
        editor = dict(_update(opened.data[1]).get("value") or {})
        image = editor.get("image")
        width, height = 854, 480
        x1, y1 = self.rng.randint(0, width // 2), self.rng.randint(0, height // 2)
        box = {"xmin": x1, "ymin": y1, "xmax": x1 + self.rng.randint(40, width // 2),
               "ymax": y1 + self.rng.randint(40, height // 2), "label": "Go Zone", "color": "#00a86b"}
        phases = _choice_values(_update(opened.data[2]))
        texts = [f"{self.username} {self.rng.random():.6f}", "", "", ""]
        data = [None, {"image": image, "boxes": [box], "orientation": 0}, self.rng.choice(phases), *texts]
        action = "submit version" if submit else ("stale save" if expect_conflict else "save draft")
        event = self.submit_event if submit else self.save_event
        answer = await self._call(tab, action, event, data)
        if answer is None:
            return False
        conflict = _update(answer.data[-1])
        if conflict.get("visible") and conflict.get("value"):
            if not expect_conflict:
                self.ledger.error(self.username, action, "an edit conflict where none was provoked")
                return False
            self.ledger.conflicts += 1
            return True
        saved = next((SAVED.search(log) for log in answer.logs if SAVED.search(log)), None)
        if saved is None:
            self.ledger.error(self.username, action, f"no saved version announced: {answer.logs!r}")
            return False
        if expect_conflict:
            self.ledger.error(self.username, action, "a save on a stale base was stored")
            return False
        self.ledger.versions.append((int(case), int(saved.group(1))))
        return True


async def fetch_config(url: str) -> Config:
    async with new_client(url) as client:
        await sign_in(client, ADMIN)
        response = await client.get("/app/config")
        response.raise_for_status()
        return Config(response.json())


async def _simulate(url: str, reviewers: list[str], annotators: list[str], seconds: float,
                    ledger: Ledger) -> None:
    config = await fetch_config(url)
    users: list[Reviewer] = [Reviewer(url, config, name, ledger, seed=i) for i, name in enumerate(reviewers)]
    users += [Annotator(url, config, name, ledger, seed=1000 + i) for i, name in enumerate(annotators)]
    ledger.started = time.monotonic()
    deadline = ledger.started + seconds
    await asyncio.gather(*(user.run(deadline) for user in users))
    ledger.finished = time.monotonic()


def simulate(url: str, reviewers: list[str], annotators: list[str], seconds: float,
             ledger: Ledger | None = None) -> Ledger:
    """Run every reviewer and annotator against the app at ``url`` for ``seconds`` (each finishes the action
    it is in, and stops at its first error); returns the ledger (``ledger`` when given, which another thread
    may watch while the users work)."""
    ledger = ledger if ledger is not None else Ledger()
    asyncio.run(_simulate(url, reviewers, annotators, seconds, ledger))
    return ledger


# --- what the database holds afterwards -------------------------------------------------------------------


def check_database(database_url: str, ledger: Ledger, reviewers: list[str], annotators: list[str], *,
                   allow_unacknowledged: int = 0) -> list[str]:
    """Every problem found comparing the database with what the clients were told (empty when consistent):
    each acknowledged judgment and version present exactly once and nothing else written by these users
    (up to ``allow_unacknowledged`` rows may be stored unacknowledged: writes whose answer a killed server
    never sent);
    revisions and versions numbered 1..n, one current judgment per item (the newest), every output of an
    item rated, judged items marked judged; each version's parent the previous version of its lane."""
    from sqlalchemy import select

    from db.engine import Database
    from db.schema import Annotation, Judgment, OutputRating, ReviewItem, User

    problems: list[str] = []
    database = Database.from_url(database_url)
    try:
        with database.session_scope() as session:
            ids = dict(session.execute(select(User.username, User.id).where(
                User.username.in_([*reviewers, *annotators]))).all())
            rows = session.execute(
                select(ReviewItem.token, ReviewItem.state, ReviewItem.letter_map, Judgment.id, Judgment.revision,
                       Judgment.is_current, Judgment.author_id, ReviewItem.reviewer_id)
                .join(Judgment, Judgment.item_id == ReviewItem.id)
                .where(ReviewItem.reviewer_id.in_([ids[r] for r in reviewers if r in ids]))).all()
            ratings = Counter(session.scalars(select(OutputRating.judgment_id).where(
                OutputRating.judgment_id.in_([r.id for r in rows]))))
            versions = session.scalars(select(Annotation).where(
                Annotation.author_id.in_([ids[a] for a in annotators if a in ids]))).all()
            lanes = defaultdict(list)
            for row in session.scalars(select(Annotation).where(
                    Annotation.case_id.in_({v.case_id for v in versions}))):
                lanes[(row.case_id, row.lane)].append(row)
        problems += _judgment_problems(rows, ratings, ledger)
        problems += _version_problems(versions, lanes, ledger)
    finally:
        database.dispose()
    unacknowledged = [p for p in problems if p.endswith("never acknowledged")]
    if len(unacknowledged) <= allow_unacknowledged:
        problems = [p for p in problems if p not in unacknowledged]
    return problems


def _judgment_problems(rows: list[Any], ratings: Counter, ledger: Ledger) -> list[str]:
    problems = []
    stored = Counter((r.token, r.revision) for r in rows)
    told = Counter(ledger.judgments)
    problems += [f"judgment {k} acknowledged {n}x but stored {stored[k]}x" for k, n in told.items()
                 if stored[k] != n]
    problems += [f"judgment {k} stored but never acknowledged" for k in stored if k not in told]
    by_item = defaultdict(list)
    for row in rows:
        by_item[row.token].append(row)
        if ratings[row.id] != len(row.letter_map):
            problems.append(f"judgment {row.token}#{row.revision} has {ratings[row.id]} ratings, "
                            f"not {len(row.letter_map)}")
        if row.author_id != row.reviewer_id:
            problems.append(f"judgment {row.token}#{row.revision} written by another user")
    for token, item_rows in by_item.items():
        revisions = sorted(r.revision for r in item_rows)
        current = [r.revision for r in item_rows if r.is_current]
        if revisions != list(range(1, len(revisions) + 1)):
            problems.append(f"item {token} has revisions {revisions}")
        if current != [revisions[-1]]:
            problems.append(f"item {token} has current revisions {current} of {revisions}")
        if item_rows[0].state != "judged":
            problems.append(f"item {token} is {item_rows[0].state} with a judgment")
    return problems


def _version_problems(versions: list[Any], lanes: dict, ledger: Ledger) -> list[str]:
    problems = []
    stored = Counter((v.case_id, v.version) for v in versions)
    told = Counter(ledger.versions)
    problems += [f"version {k} acknowledged {n}x but stored {stored[k]}x" for k, n in told.items()
                 if stored[k] != n]
    problems += [f"version {k} stored but never acknowledged" for k in stored if k not in told]
    for (case_id, lane), rows in lanes.items():
        rows = sorted(rows, key=lambda r: r.version)
        if [r.version for r in rows] != list(range(1, len(rows) + 1)):
            problems.append(f"case {case_id} lane {lane} has versions {[r.version for r in rows]}")
        for parent, child in zip([None, *rows], rows, strict=False):
            if child.parent_id != (parent.id if parent else None):
                problems.append(f"case {case_id} version {child.version} has parent {child.parent_id}")
    return problems
