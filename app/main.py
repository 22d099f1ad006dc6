"""The web host: FastAPI with the Gradio Blocks app mounted under /app."""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.responses import RedirectResponse  # noqa: E402

from app.services import Services  # noqa: E402
from app.tabs import home  # noqa: E402

GRADIO_PATH = "/app"


def build_blocks(services: Services) -> gr.Blocks:
    with gr.Blocks(title="SurgReview") as blocks:
        gr.Markdown("# SurgReview")
        home.build(services)
    return blocks


def build_app(services: Services) -> FastAPI:
    app = FastAPI(title="SurgReview", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{GRADIO_PATH}/")

    return gr.mount_gradio_app(app, build_blocks(services), path=GRADIO_PATH)
