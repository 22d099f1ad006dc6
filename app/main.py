"""The web host: FastAPI with login in front and the Gradio Blocks app mounted under /app.

Every route is guarded (app/auth.py): the login pages and health check are the only ones open. Each tab is
a module of app/tabs exposing ``ROLES`` (who sees it) and ``build(services)``; tabs a user's roles do not
allow are hidden when the page loads, and every handler checks the role again on the server.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.responses import RedirectResponse  # noqa: E402
from sqlalchemy import text  # noqa: E402

from app import auth  # noqa: E402
from app.errors import install_error_handlers, user_action  # noqa: E402
from app.services import Services  # noqa: E402
from app.tabs import annotate, approve, compare, dashboard, exports, home, review, studies, teach  # noqa: E402

GRADIO_PATH = "/app"
EVENT_CONCURRENCY = 8
TABS = [home, review, annotate, approve, teach, compare, dashboard, studies, exports]
# (roles, tab id): the tab opened on page load for a user holding one of the roles, first match wins.
LANDING = [(frozenset({"reviewer"}), "review"), (frozenset({"annotator"}), "annotate"),
           (frozenset({"approver"}), "approve"), (frozenset({"educator", "resident"}), "teach")]


def build_blocks(services: Services) -> gr.Blocks:
    with gr.Blocks(title="SurgReview") as blocks:
        header = gr.Markdown("# SurgReview", elem_id="header")
        tabs = []
        with gr.Tabs(elem_id="tabs") as tab_set:
            for module in TABS:
                # Hidden until the page load has checked the user's roles.
                name = module.__name__.rsplit(".", 1)[-1]
                with gr.Tab(module.TITLE, id=name, elem_id=f"tab-{name}", visible=False) as tab:
                    module.build(services)
                tabs.append((tab, module.ROLES))

        @user_action
        def show_allowed(request: gr.Request):  # noqa: ANN202
            actor = auth.actor_for(services, request)
            visible = [gr.Tab(visible=bool(actor.roles & roles)) for _, roles in tabs]
            return [gr.Markdown(f"# SurgReview\nSigned in as **{actor.username}** "
                                f"({', '.join(sorted(actor.roles)) or 'no role'}) · [Sign out](/logout)"),
                    *visible]

        @user_action
        def land(request: gr.Request):  # noqa: ANN202
            """Open the first working tab the user's roles call for (a reviewer lands on their queue)."""
            roles = auth.actor_for(services, request).roles
            landing = next((tab_id for wanted, tab_id in LANDING if roles & wanted), None)
            return gr.Tabs(selected=landing) if landing else gr.skip()

        blocks.load(show_allowed, outputs=[header, *(tab for tab, _ in tabs)]).success(
            land, outputs=tab_set, show_progress="hidden")
    # Gradio runs one call per event at a time unless told otherwise: 50 reviewers pressing Submit queued
    # behind each other for seconds. Handlers hold no shared state (a session per call), so let several run.
    blocks.queue(default_concurrency_limit=EVENT_CONCURRENCY)
    return blocks


def build_app(services: Services) -> FastAPI:
    app = FastAPI(title="SurgReview", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    auth.install(app, services, protected_prefix=GRADIO_PATH)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        with services.db.session_scope() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{GRADIO_PATH}/", status_code=303)

    # Gradio refuses a larger upload before writing it to its temp folder; the frame store checks again.
    return gr.mount_gradio_app(app, build_blocks(services), path=GRADIO_PATH,
                               auth_dependency=auth.gradio_user, max_file_size=services.settings.max_image_bytes)
