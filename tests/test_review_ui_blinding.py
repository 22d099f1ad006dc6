"""Blinding on the wire: every byte the server sends to a reviewer's browser, from the sign-in page to the
stored judgment, holds nothing that identifies a model of the study.

How the capture works: the real app (FastAPI + mounted Gradio) runs in-process under uvicorn, wrapped in an
ASGI recorder that keeps every HTTP response body it sends (pages, /app/config, assets, files, and the
queue/data event streams chunk by chunk, as they leave the server). Headless Chromium drives it as the
reviewer would, with the keyboard. Nothing is missed by the browser's own caching or by streaming.

What is searched for, and why it is safe to search for it:
- model names and families: distinctive strings ("demo-surg-r1", "qwen3-vl"), searched case-insensitively
  as substrings of the decoded bodies; generic words such as "demo" are NOT searched (the dataset is called
  "demo" and a reviewer may see it);
- model, run and prediction ids: before the study is made, the test moves them to distinctive 7-digit
  ranges (7300001..., 7400001..., 7500001...), searched as whole numbers (no digit on either side), so a
  component id or a count can never match by chance; prediction latencies likewise get distinctive values
  (81000xx.25 ms) searched in every format the app could print them;
- frame sha256s (64 hex characters) and the models' registry colours (#rrggbb).
Responses that are byte-for-byte files of the installed Gradio package (its JavaScript, CSS and fonts) are
checked to BE those files and then skipped: they are the same for every user and cannot carry study data, and
bundled chart libraries legitimately contain palette colours such as #1f77b4.
"""

from __future__ import annotations

import gzip
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import brotli
import gradio
import pytest
from sqlalchemy import select

from app.main import build_app
from db.schema import Frame, Judgment, Model, Prediction, ReviewItem, Run
from db.users import create_user, find_user
from tests.browser import login, require_browser
from tests.review_app import DEMO_MODELS, create_demo_study, load_demo
from tests.web_helpers import PASSWORD, make_services, running_server

GRADIO_FRONTEND = Path(gradio.__file__).parent / "templates" / "frontend"
SHIFT = {"models": 7_300_000, "runs": 7_400_000, "predictions": 7_500_000}


@dataclass
class Captured:
    path: str
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)

    def text(self) -> str:
        encoding = self.headers.get("content-encoding", "identity")
        decode = {"identity": bytes, "gzip": gzip.decompress, "br": brotli.decompress}[encoding]
        return decode(bytes(self.body)).decode("latin-1")  # every byte maps to one character: ASCII text stays searchable

    def package_file(self) -> Path | None:
        """The installed Gradio file this response is, byte for byte, or None."""
        for prefix, folder in (("/app/assets/", "assets"), ("/app/static/", "static")):
            if self.path.startswith(prefix):
                candidate = GRADIO_FRONTEND / folder / self.path[len(prefix):].split("?")[0]
                if candidate.is_file() and candidate.read_bytes() == self.text().encode("latin-1"):
                    return candidate
        return None


class Recorder:
    """ASGI middleware that keeps every HTTP response the app sends (and notes any websocket)."""

    def __init__(self, app) -> None:
        self.app, self.responses, self.websockets = app, [], []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            self.websockets.append(scope["path"])
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        query = scope.get("query_string", b"").decode()
        captured = Captured(scope["path"] + (f"?{query}" if query else ""))
        self.responses.append(captured)

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                captured.status = message["status"]
                captured.headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
            elif message["type"] == "http.response.body":
                captured.body += message.get("body", b"")
            await send(message)

        return await self.app(scope, receive, capture)

    def snapshot(self) -> list[Captured]:
        return [Captured(r.path, r.status, dict(r.headers), bytearray(r.body)) for r in self.responses]


def make_identifiers_distinctive(db_path: Path) -> None:
    """Move model, run and prediction ids to distinctive ranges and give every prediction a distinctive
    latency (before any study refers to them)."""
    m, r, p = SHIFT["models"], SHIFT["runs"], SHIFT["predictions"]
    connection = sqlite3.connect(db_path)
    try:
        connection.execute("PRAGMA foreign_keys=OFF")
        with connection:
            connection.execute(f"UPDATE models SET id = id + {m}")
            connection.execute(f"UPDATE runs SET id = id + {r}, model_id = model_id + {m}")
            connection.execute(f"UPDATE predictions SET id = id + {p}, run_id = run_id + {r}, "
                               f"latency_ms = 8100000 + (id % 1000) * 37 + 0.25")
            connection.execute(f"UPDATE annotations SET source_prediction_id = source_prediction_id + {p} "
                               "WHERE source_prediction_id IS NOT NULL")
    finally:
        connection.close()


def forbidden_values(session) -> dict[str, list[str]]:
    """Everything that would identify a model of the study, by kind (see the module docstring)."""
    models = session.scalars(select(Model).where(Model.name.in_(DEMO_MODELS))).all()
    runs = session.scalars(select(Run).where(Run.model_id.in_([m.id for m in models]))).all()
    predictions = session.scalars(select(Prediction).where(Prediction.run_id.in_([r.id for r in runs]))).all()
    latencies = [p.latency_ms for p in predictions if p.latency_ms]
    assert models and all(m.id > SHIFT["models"] for m in models) and len(predictions) == 96
    return {
        "model name": [m.name for m in models] + [m.family for m in models if m.family],
        "model colour": [m.color for m in models if m.color],
        "frame sha256": list(session.scalars(select(Frame.sha256))),
        "id": [str(i) for i in [*(m.id for m in models), *(r.id for r in runs), *(p.id for p in predictions)]],
        "latency": sorted({s for v in latencies for s in (repr(v), f"{v:.0f}", f"{v:,.0f}", f"{v:,.1f}")}),
    }


def leaks(responses: list[Captured], forbidden: dict[str, list[str]]) -> list[str]:
    found = []
    for response in responses:
        if response.package_file() is not None:
            continue
        text = response.text()
        for kind, values in forbidden.items():
            for value in values:
                numeric = value.replace(",", "").replace(".", "").isdigit()
                pattern = rf"(?<![\d.,]){re.escape(value)}(?![\d])" if numeric else re.escape(value)
                if re.search(pattern, text, re.IGNORECASE):
                    found.append(f"{kind} {value!r} in {response.path}")
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    require_browser()
    data_dir = tmp_path_factory.mktemp("blind") / "data"
    services = make_services(data_dir)
    load_demo(services.db, services.frames)
    make_identifiers_distinctive(data_dir / "surgreview.db")
    with services.db.session_scope() as session:
        for name, roles in {"blind-admin": ("admin",), "blind-rev1": ("reviewer",),
                            "blind-rev2": ("reviewer",)}.items():
            create_user(session, name, password=PASSWORD, roles=roles)
    study_id = create_demo_study(services.db, "blind-admin", "Wire check", ["blind-rev1", "blind-rev2"], k=2,
                                 reveal_policy="after_submit")
    with services.db.session_scope() as session:
        forbidden = forbidden_values(session)
    recorder = Recorder(build_app(services))
    with running_server(recorder) as url:
        yield SimpleNamespace(url=url, recorder=recorder, services=services, study_id=study_id,
                              forbidden=forbidden)
    services.close()


def _judgments(site, username: str) -> list[Judgment]:
    with site.services.db.session_scope() as session:
        return list(session.scalars(select(Judgment).join(ReviewItem, ReviewItem.id == Judgment.item_id)
                                    .where(ReviewItem.study_id == site.study_id,
                                           Judgment.author_id == find_user(session, username).id)))


def test_no_model_identity_reaches_the_reviewer_before_the_judgment_is_stored(site, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    browser_urls: list[str] = []
    page.on("response", lambda response: browser_urls.append(response.url))
    site.recorder.responses.clear()

    login(page, SimpleNamespace(url=site.url), "blind-rev1", PASSWORD)
    page.locator("#review-panel-C section").wait_for(timeout=30_000)
    assert not _judgments(site, "blind-rev1")
    for key in ("2", "Shift+Digit1", "Shift+Digit2", "Shift+Digit3", "Shift+Digit3", "7", "Enter"):
        page.keyboard.press(key)
    page.locator("#review-status", has_text="Stored: revision 1").wait_for(timeout=15_000)
    sent = site.recorder.snapshot()  # everything sent up to the moment the stored judgment is shown

    [judgment] = _judgments(site, "blind-rev1")
    assert judgment.best_letter == "B" and 0 < judgment.time_spent_ms < 120_000
    problems = leaks(sent, site.forbidden)
    assert not problems, "identity leaked to the reviewer before the judgment was stored:\n" + "\n".join(problems)
    assert not site.recorder.websockets

    # The capture really holds the event payloads: the item's outputs came through the queue's stream ...
    streams = "".join(r.text() for r in sent if "/queue/data" in r.path)
    assert "Output A" in streams and "Output C" in streams and "Level 1 - perceptual grounding" in streams
    # ... and the browser received nothing the recorder did not see.
    recorded = {r.path.split("?")[0] for r in sent}
    missed = {u for u in browser_urls if u.startswith(site.url) and
              u[len(site.url):].split("?")[0].replace("%3D", "=") not in recorded}
    assert not missed, missed
    assert sum(r.package_file() is not None for r in sent) > 10  # Gradio's own files, verified byte for byte

    # After the judgment, this open-review study reveals the models: the same search now finds them, so the
    # search above could have failed.
    page.keyboard.press("r")
    page.locator("#review-revealed", has_text="Revealed after your judgment").wait_for(timeout=15_000)
    revealed = leaks(site.recorder.snapshot()[len(sent):], {"model name": list(DEMO_MODELS)})
    assert len({line.split("'")[1] for line in revealed}) == 3, revealed
    context.close()


def test_the_search_matches_whole_numbers_and_names_and_skips_only_verified_gradio_files():
    def response(path: str, body: bytes) -> Captured:
        return Captured(path, 200, {"content-type": "text/plain"}, bytearray(body))

    forbidden = {"id": ["7500001"], "latency": ["8,100,037"], "model name": ["demo-surg-r1"]}
    hits = leaks([response("/a", b'{"value": 7500001}'), response("/b", b"took 8,100,037 ms"),
                  response("/c", b"<b>DEMO-SURG-R1</b>")], forbidden)
    assert hits == ["id '7500001' in /a", "latency '8,100,037' in /b", "model name 'demo-surg-r1' in /c"]
    assert leaks([response("/d", b"17500001 75000012 18,100,037 demo-surgo-r1")], forbidden) == []
    asset = next((GRADIO_FRONTEND / "assets").glob("*.js"))
    assert response(f"/app/assets/{asset.name}", asset.read_bytes()).package_file() == asset
    assert response(f"/app/assets/{asset.name}", asset.read_bytes() + b"7500001").package_file() is None
