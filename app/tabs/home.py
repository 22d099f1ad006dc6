"""The landing tab: what the database holds. The working tabs arrive with later issues."""

from __future__ import annotations

import gradio as gr

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
    # A callable value is evaluated on every page load, so each visitor sees the current counts.
    summary = gr.Markdown(value=lambda: render_overview(services), elem_id="overview")
    refresh = gr.Button("Refresh", size="sm")
    refresh.click(lambda: render_overview(services), outputs=summary)
