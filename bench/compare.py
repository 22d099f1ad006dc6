"""Compare tab timings: (1) page request to an interactive Compare tab in headless Chromium, (2) server time
to render a case with three cached predictions (collect, score, panels HTML, legend, boxes drawn, image
encoded), and (3) a browser click on Compare until three panels show.

    python -m bench.compare [--rounds 5] [--keep DIR]

Starts the real app (``surgreview serve --demo``) in a temporary data folder with the helpers of
tests/browser.py, and measures (2) in this process against the same database. Prints medians and ranges.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.browser import browser_missing, launch_browser, login, open_compare, start_app, tick_models

CASE = "demo/demo_vid01/000500"
MODELS = ("demo-surgo-r1", "demo-surg-r1", "demo-baseline")
RENDER_STEPS = ("collect + score (database, frame read)", "panels + legend HTML", "boxes drawn",
                "WEBP encoded")


def _summary(name: str, seconds: list[float]) -> str:
    ms = [s * 1000 for s in seconds]
    return (f"{name:<46} median {statistics.median(ms):8.1f} ms   min {min(ms):8.1f}   max {max(ms):8.1f}"
            f"   (n={len(ms)})")


def render_case_once(data_dir: Path) -> Callable[[], dict[str, float]]:
    """A function that renders CASE with MODELS as the Compare tab does: seconds per step and in total."""
    from sqlalchemy import select

    from app import render
    from app.model_catalog import all_specs
    from app.settings import Settings
    from db.engine import Database
    from db.frames import FrameStore
    from db.schema import Case
    from models.compare import prepare_comparison

    settings = Settings(data_dir=data_dir)
    database, store = Database.from_url(settings.database_url), FrameStore(settings.frames_dir)
    with database.session_scope() as session:
        case_id = session.scalar(select(Case.id).where(Case.key == CASE))
        specs = [all_specs(session, settings)[name] for name in MODELS]

    def once() -> dict[str, float]:
        marks = [time.perf_counter()]
        with database.session_scope() as session:
            comparison = prepare_comparison(session, store, case_id, specs, "gozone")
        assert [v.status for v in comparison.views] == ["cached"] * 3
        marks.append(time.perf_counter())
        render.panels_html(comparison)
        render.legend_html(comparison, MODELS)
        marks.append(time.perf_counter())
        image = render.comparison_image(comparison, MODELS)
        marks.append(time.perf_counter())
        image.save(io.BytesIO(), "WEBP")  # gr.Image's default format for a PIL image it sends
        marks.append(time.perf_counter())
        steps = dict(zip(RENDER_STEPS, (b - a for a, b in zip(marks, marks[1:])), strict=True))
        return {**steps, "total": marks[-1] - marks[0]}

    return once


def browser_rounds(server, rounds: int) -> tuple[list[float], list[float]]:  # noqa: ANN001
    """(page request -> interactive Compare tab, click Compare -> three panels shown) per round."""
    from playwright.sync_api import sync_playwright

    interactive, click_to_panels = [], []
    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        for _ in range(rounds):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            login(page, server, "bench-admin")
            interactive.append(open_compare(page, server))
            page.locator("#compare-case input").click()
            page.locator("ul[role=listbox] li", has_text=CASE).first.click()
            tick_models(page, list(MODELS))
            started = time.perf_counter()
            page.click("#compare-run")
            page.locator("#compare-progress", has_text="3/3 models done").wait_for(timeout=30_000)
            page.locator("#compare-image img").wait_for(state="visible", timeout=30_000)
            click_to_panels.append(time.perf_counter() - started)
            context.close()
        browser.close()
    return interactive, click_to_panels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", type=Path,
                        help="use this data folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    if reason := browser_missing():
        raise SystemExit(f"cannot run the browser part: {reason}")
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        data_dir = args.keep or Path(tmp)
        server = start_app(data_dir, {"bench-admin": ("admin",)})
        try:
            print(f"app started in {server.started_s:.1f} s (demo pack loaded) at {server.url}")
            interactive, clicks = browser_rounds(server, args.rounds)
            once = render_case_once(data_dir)
            once()  # warm: first query plans, vocabulary and font loading
            renders = [once() for _ in range(max(args.rounds, 20))]
        finally:
            server.stop()
    print(_summary("page request -> interactive Compare tab", interactive))
    print(_summary("server render, case with 3 cached predictions", [r["total"] for r in renders]))
    for step in RENDER_STEPS:
        print(_summary(f"  {step}", [r[step] for r in renders]))
    print(_summary("click Compare -> 3 panels and drawing shown", clicks))


if __name__ == "__main__":
    main()
