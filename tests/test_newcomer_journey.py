"""A newcomer's first hour, following the README on a fresh clone, in headless Chromium.

The README's first command (`make serve`) is resolved through the Makefile and started in a fresh `git clone`
of this repository (with this checkout's virtual environment: `make test` has just built it, and CI proves the
install itself). Then: sign in as the demo admin with the password the README points to, import a folder of
frames with the README's command, run the demo models in Compare, create a study, review as a surgeon, correct a
Go Zone as the annotator, approve as the chief surgeon, export DPO and SFT data, view the dashboard. A screenshot
of every step is saved under test-artifacts/journey-*.png.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.browser import artifact_path, choose_dropdown, free_port, require_browser

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(900)


def _readme_commands() -> list[str]:
    """The commands of the README's set-up section, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)
            for line in block.splitlines() if line.strip()]


def _serve_command(clone: Path, port: int) -> list[str]:
    """What `make serve` runs last (after installing), with this checkout's Python on the clone's code."""
    # Run under `make test`, a nested make would inherit its flags and print "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    dry = subprocess.run(["make", "--no-print-directory", "-n", "serve", f"VENV={ROOT / '.venv'}",
                          f"PORT={port}"], cwd=clone, env=env, capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()
    serve = shlex.split(dry[-1])
    assert serve[0].endswith("/bin/surgreview") and serve[1:3] == ["serve", "--demo"], dry
    return [sys.executable, "-m", "app", *serve[1:]]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    require_browser()
    assert _readme_commands() == ["make serve", "make test"]  # the README's two set-up commands
    clone = tmp_path_factory.mktemp("journey") / "surgreview"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGREVIEW_")}
    env |= {"GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(clone)}
    port = free_port()
    log = (clone / "serve.log").open("wb")
    process = subprocess.Popen(_serve_command(clone, port), cwd=clone, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, (clone / "serve.log").read_text()[-3000:]
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        raise AssertionError("the app did not start:\n" + (clone / "serve.log").read_text()[-3000:])
    password = re.search(r'password = "([^"]+)"', (clone / "data" / "demo-credentials.txt").read_text()).group(1)
    yield type("Site", (), {"url": url, "clone": clone, "env": env, "password": password})
    process.terminate()
    process.wait(timeout=20)
    log.close()


def _cli(site, *args: str) -> str:
    """A README command line (`surgreview ...`) in the clone."""
    done = subprocess.run([sys.executable, "-m", "app", *args], cwd=site.clone, env=site.env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _sign_in(browser, site, username: str):  # noqa: ANN202
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(f"{site.url}/login")
    page.fill("#username", username)
    page.fill("#password", site.password)
    page.click("#login")
    page.wait_for_url(f"{site.url}/app/**", timeout=30_000)
    page.locator("#header", has_text=f"Signed in as {username}").wait_for(timeout=30_000)
    return page


def _shot(page, step: str) -> None:
    page.screenshot(path=str(artifact_path(f"journey-{step}.png")), full_page=True)


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def test_a_newcomer_follows_the_readme_from_sign_in_to_exports_and_the_dashboard(site, browser, tmp_path):
    admin = _sign_in(browser, site, "admin")
    _shot(admin, "01-admin-signed-in")

    # Import a folder of frames with the README's command; the new dataset appears in the app.
    folder = tmp_path / "my-frames" / "video01"
    folder.mkdir(parents=True)
    for n in range(3):
        Image.new("RGB", (320, 240), (40 * n, 90, 160)).save(folder / f"frame_{n:06d}.png")
    assert "3 imported" in _cli(site, "import", "frames", str(folder.parent), "--dataset", "newcomer")
    _tab(admin, "Compare")
    admin.locator("#compare-models input[type=checkbox]").first.wait_for(state="visible", timeout=30_000)
    admin.reload()
    _tab(admin, "Compare")
    admin.locator("#compare-models input[type=checkbox]").first.wait_for(state="visible", timeout=30_000)
    admin.get_by_text("Or pick existing cases: filters").click()
    choose_dropdown(admin, "compare-filter-dataset", "newcomer")
    admin.locator("#compare-case input").wait_for(timeout=15_000)
    _shot(admin, "02-frames-imported")

    # Run the demo models on a demo case in Compare.
    choose_dropdown(admin, "compare-filter-dataset", "demo")
    choose_dropdown(admin, "compare-case", "demo/demo_vid01/000500")
    for name in ("demo-surg-r1", "demo-surgo-r1", "demo-baseline"):
        admin.locator("#compare-models label", has_text=name).first.click()
    admin.click("#compare-run")
    admin.locator("#compare-panels section").nth(2).wait_for(timeout=60_000)
    _shot(admin, "03-compare")

    # Create a study in the Studies tab: the demo cases, three models, two surgeons, k = 2.
    _tab(admin, "Studies")
    admin.locator("#studies-models input[type=checkbox]").first.wait_for(state="visible", timeout=30_000)
    admin.locator("#studies-name textarea").fill("First study")
    for name in ("demo-surg-r1", "demo-surgo-r1", "demo-baseline"):
        admin.locator("#studies-models label", has_text=name).first.click()
    choose_dropdown(admin, "studies-filter-dataset", "demo")
    for name in ("surgeon1", "surgeon2"):
        admin.locator("#studies-reviewers label", has_text=name).first.click()
    admin.locator("#studies-k input").fill("2")
    admin.click("#studies-create")
    admin.locator("#studies-setup", has_text="16 cases assigned, 32 review items").wait_for(timeout=30_000)
    _shot(admin, "04-study-created")

    # Review as a surgeon, keyboard only: best output, correctness of each, submit, next.
    surgeon = _sign_in(browser, site, "surgeon1")
    for number in (1, 2, 3):
        surgeon.locator("#review-question", has_text=f"Item {number} of 16").wait_for(timeout=30_000)
        surgeon.locator("#review-panel-C section").wait_for(timeout=30_000)
        for key in ("1", "Shift+Digit1", "Shift+Digit2", "Shift+Digit2", "Shift+Digit3", "Enter"):
            surgeon.keyboard.press(key)
        surgeon.locator("#review-status", has_text="Stored: revision 1").wait_for(timeout=15_000)
        if number == 1:
            _shot(surgeon, "05-review")
        surgeon.keyboard.press("n")
    surgeon.context.close()

    # Correct a Go Zone as the demo annotator: drag the pre-filled box, phase with a key, submit.
    annotator = _sign_in(browser, site, "annotator1")
    annotator.locator("#annotate-status", has_text="you start from").wait_for(timeout=30_000)
    canvas = annotator.locator("#annotate-editor canvas").bounding_box()
    middle = (canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2)
    annotator.locator("#annotate-editor button[aria-label='Create box']").click()
    annotator.mouse.move(middle[0] - 120, middle[1] - 80)
    annotator.mouse.down()
    annotator.mouse.move(middle[0] + 120, middle[1] + 80, steps=8)
    annotator.mouse.up()
    annotator.keyboard.press("Digit2")
    annotator.locator("#annotate-location textarea").fill("Inside Calot's triangle, medial to the neck")
    annotator.keyboard.press("Control+Enter")
    annotator.locator("#annotate-status", has_text="Version 1 (awaiting approval)").wait_for(timeout=30_000)
    _shot(annotator, "06-annotated")
    annotator.context.close()

    # Approve as the chief surgeon: the reference label of the case changes.
    chief = _sign_in(browser, site, "chief")
    chief.locator("#approve-details", has_text="version 1 by annotator1").wait_for(timeout=30_000)
    _shot(chief, "07-approve")
    chief.click("#approve-approve")
    chief.locator("#approve-details", has_text="Nothing awaits review").wait_for(timeout=30_000)
    chief.context.close()

    # Export DPO (from the study) and SFT (from approved annotations) in the Export tab.
    admin.reload()
    _tab(admin, "Export")
    admin.locator("#exports-folder textarea").wait_for(timeout=30_000)
    choose_dropdown(admin, "exports-study", "First study")
    admin.locator("#exports-folder textarea").fill("first-dpo")
    admin.get_by_text("Pair rules (preference, process and rejection-sampling data)").click()
    admin.locator("#exports-min-reviewers input").fill("1")
    admin.click("#exports-run")
    admin.locator("#exports-result", has_text="first-dpo").wait_for(timeout=60_000)
    choose_dropdown(admin, "exports-kind", "sft")
    choose_dropdown(admin, "exports-study", "(any)")
    admin.locator("#exports-folder textarea").fill("first-sft")
    admin.locator("#exports-approved input").check()
    admin.click("#exports-run")
    admin.locator("#exports-result", has_text="first-sft").wait_for(timeout=60_000)
    _shot(admin, "08-exported")
    exports = site.clone / "data" / "exports"
    dpo = json.loads((exports / "first-dpo" / "manifest.json").read_text())
    sft = json.loads((exports / "first-sft" / "manifest.json").read_text())
    dpo_rows = (exports / "first-dpo" / "dpo.jsonl").read_text().splitlines()
    assert len(dpo_rows) >= 1 and {"prompt", "chosen", "rejected", "images"} <= set(json.loads(dpo_rows[0]))
    assert sft["filters"]["approved_only"] is True and dpo["filters"]["study"] == "First study"
    sft_rows = [json.loads(line) for line in (exports / "first-sft" / "sft_trl.jsonl").read_text().splitlines()]
    assert len(sft_rows) == 1  # the one approved annotation
    assert all((exports / "first-sft" / image).exists() for image in sft_rows[0]["images"])

    # The dashboard: the leaderboard of the demo models.
    _tab(admin, "Dashboard")
    admin.click("#dashboard-compute")
    admin.locator("#dashboard-plot-leaderboard .js-plotly-plot").wait_for(timeout=60_000)
    assert "demo-surgo-r1" in admin.locator("#dashboard-table").inner_text()
    _shot(admin, "09-dashboard")
    admin.context.close()
