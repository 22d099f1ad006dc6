"""The landing tab: what the database holds. The working tabs arrive with later issues."""

from __future__ import annotations

import gradio as gr

from app import auth
from app.errors import user_action
from app.services import Services
from db.overview import overview


def render_overview(services: Services) -> str:
    with services.db.session_scope() as session:
        data = overview(session)
    datasets = "\n".join(f"| {name} | {count} |" for name, count in sorted(data["datasets"].items()))
    return (f"**{data['cases']}** cases, **{data['labels']}** reference labels, **{data['models']}** models, "
            f"**{data['predictions']}** predictions.\n\n| dataset | cases |\n|---|---|\n{datasets}")


TITLE = "Overview"
ROLES = frozenset({"admin", "reviewer", "annotator", "approver", "educator", "resident"})


def build(services: Services) -> None:
    gr.Markdown("Frames of the dataset `demo` are synthetic drawings, not patient data.")

    @user_action
    def current_overview(request: gr.Request) -> str:
        # A user without one of ROLES gets nothing, not even counts in a hidden tab.
        return render_overview(services) if auth.actor_for(services, request).has(*ROLES) else ""

    summary = gr.Markdown(elem_id="overview")
    refresh = gr.Button("Refresh", size="sm")
    # On every page load (triggers=None), so each visitor sees the current counts; never baked into the config.
    gr.on(triggers=None, fn=current_overview, outputs=summary)
    refresh.click(current_overview, outputs=summary)
