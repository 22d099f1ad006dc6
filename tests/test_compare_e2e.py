"""The Compare tab in a real browser against the real app (``surgreview serve --demo`` in a subprocess):
upload a demo frame, compare two demo models on the Go Zone task, see both panels and the drawn boxes; hostile
model text stays text; reviewers never see the tab and the server refuses them the action."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.browser import (
    artifact_path,
    choose_dropdown,
    login,
    open_compare,
    require_browser,
    start_app,
    tick_models,
)

HOSTILE = ('<script>window.__pwned = 1</script> <img src=x onerror="window.__pwned = 2"> '
           "[click](javascript:alert(1)) ${alert(1)} {{value}}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    server = start_app(tmp_path_factory.mktemp("compare-e2e"), {"cmp-admin": ("admin",),
                                                                "cmp-reviewer": ("reviewer",)})
    yield server
    server.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    yield page
    context.close()


def _run(page, models: list[str]) -> None:
    tick_models(page, models)
    page.click("#compare-run")
    for name in models:
        page.locator(f'#compare-panels section[data-model="{name}"]').wait_for(timeout=30_000)
    done = f"{len(models)}/{len(models)} models done"
    page.locator("#compare-progress", has_text=done).wait_for(timeout=30_000)


def test_two_demo_models_compared_on_an_uploaded_frame(server, page):
    login(page, server, "cmp-admin")
    interactive_s = open_compare(page, server)
    frame = server.data_dir / "demo" / "frames" / "demo_vid01" / "frame_000500.png"
    page.set_input_files("#compare-upload input[type=file]", str(frame))
    status = page.locator("#compare-upload-status", has_text="frame_000500.png: new case uploads/")
    status.wait_for(timeout=30_000)
    choose_dropdown(page, "compare-task", "Go Zone (phase-then-go)")
    _run(page, ["demo-surgo-r1", "demo-baseline"])

    panels = page.locator("#compare-panels")
    for name in ("demo-surgo-r1", "demo-baseline"):
        panel = panels.locator(f'section[data-model="{name}"]')
        assert panel.is_visible() and name in panel.inner_text()
        assert "Answer:" in panel.inner_text()
    surgo = panels.locator('section[data-model="demo-surgo-r1"]').inner_text()
    assert "Location" in surgo and "Critical risk" in surgo and "from cache" in surgo
    image = page.locator("#compare-image img")
    image.wait_for(state="visible", timeout=30_000)
    assert image.evaluate("img => img.complete && img.naturalWidth") == 854
    legend = page.locator("#compare-legend").inner_text()
    assert "demo-surgo-r1: 1 box" in legend and "demo-baseline: 1 box" in legend
    page.screenshot(path=str(artifact_path("compare.png")), full_page=True)

    # Hide one model in the drawing: redrawn from what is stored, nothing is run again.
    before = image.get_attribute("src")
    page.locator("#compare-shown label", has_text="demo-baseline").click()
    page.locator("#compare-legend", has_text="(hidden)").wait_for(timeout=15_000)
    page.wait_for_function("src => document.querySelector('#compare-image img').src !== src", arg=before)
    assert "demo-baseline: 1 box (hidden)" in page.locator("#compare-legend").inner_text()
    timings = {"page_to_interactive_compare_s": interactive_s, "server_start_s": server.started_s}
    artifact_path("compare-timings.json").write_text(json.dumps(timings))


def test_hostile_model_text_is_shown_as_text_and_never_runs(server, page):
    from annotation.importers.predictions import import_predictions
    from app.settings import Settings
    from db.engine import Database
    from models.runner import parse_pending

    recorded = server.data_dir / "hostile.jsonl"
    line = {"case": "demo/demo_vid01/000500", "model": "hostile-model", "task": "gozone", "color": "#ff00ff",
            "raw": f"<think> Level 1: {HOSTILE} </think> <answer> {HOSTILE} </answer>"}
    recorded.write_text(json.dumps(line) + "\n")
    database = Database.from_url(Settings(data_dir=server.data_dir).database_url)
    with database.session_scope() as session:
        import_predictions(session, recorded)
        parse_pending(session)
    database.dispose()

    login(page, server, "cmp-admin")
    open_compare(page, server)
    choose_dropdown(page, "compare-case", "demo/demo_vid01/000500")
    _run(page, ["hostile-model"])
    panel = page.locator('#compare-panels section[data-model="hostile-model"]')
    text = panel.inner_text()
    assert "<script>window.__pwned = 1</script>" in text and "[click](javascript:alert(1))" in text
    assert "${alert(1)}" in text and "{{value}}" in text
    assert panel.locator("script, img, a").count() == 0
    assert page.evaluate("window.__pwned") is None and page.dialogs == []


def test_reviewers_do_not_see_the_tab_and_the_server_refuses_them(server, page):
    login(page, server, "cmp-reviewer")
    page.goto(f"{server.url}/app/")
    page.get_by_role("tab", name="Overview").wait_for(timeout=30_000)
    page.wait_for_timeout(500)  # the role check on page load has run
    assert page.get_by_role("tab", name="Compare").count() == 0 or not page.get_by_role(
        "tab", name="Compare").is_visible()
    # Calling a handler directly with the reviewer's session is refused on the server (the case list would
    # otherwise name the cases).
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=server.url, cookies=cookies, timeout=30) as client:
        started = client.post("/app/gradio_api/call/list_cases", json={"data": ["(any)"] * 5})
        assert started.status_code == 200, started.text
        events = client.get(f"/app/gradio_api/call/list_cases/{started.json()['event_id']}").text
    assert "event: error" in events and "needs the" in events and "demo/" not in events


def test_three_models_on_a_filtered_demo_case_with_the_dashed_reference(server, page):
    login(page, server, "cmp-admin")
    open_compare(page, server)
    page.get_by_text("Or pick existing cases: filters").click()
    choose_dropdown(page, "compare-filter-dataset", "demo")
    page.locator("#compare-case", has_text="16 matching cases").wait_for(timeout=15_000)
    choose_dropdown(page, "compare-filter-phase", "B")
    page.locator("#compare-case", has_text="4 matching cases").wait_for(timeout=15_000)
    choose_dropdown(page, "compare-case", "demo/demo_vid01/000500")
    _run(page, ["demo-surgo-r1", "demo-surg-r1", "demo-baseline"])
    assert page.locator("#compare-panels section").count() == 3
    surg_r1 = page.locator('#compare-panels section[data-model="demo-surg-r1"]').inner_text()
    assert "Level 1 - perceptual grounding" in surg_r1 and "Level 3 - contextual reasoning" in surg_r1
    legend = page.locator("#compare-legend").inner_text()
    assert legend.count("IoU 0.") == 3 and "reference Go Zone (dashed)" in legend
    header = page.locator("#compare-panels").inner_text()
    assert "reference phase B - Dissection of Calot's Triangle" in header
    page.screenshot(path=str(artifact_path("compare-demo-case.png")), full_page=True)
