"""The Approve tab: a chief surgeon's list of submitted Go Zone versions, each shown against the model's
proposal (boxes overlaid, IoU, phase change, word diff of each text) and, in agreement studies, against the
other annotators; approve (the version becomes the case's reference) or reject with a comment."""

from __future__ import annotations

from typing import Any

import gradio as gr

from annotation import approval
from app import annotation_render as view
from app import auth
from app.errors import user_action
from app.services import Services
from db.errors import DomainError
from db.users import Actor

TITLE = "Approve"
ROLES = frozenset({"approver", "admin"})


class ApproveHandlers:
    def __init__(self, services: Services) -> None:
        self.services = services

    def _actor(self, request: gr.Request) -> Actor:
        return auth.tab_actor(self.services, request, ROLES)

    def _pending(self, actor: Actor) -> tuple[gr.Dropdown, int | None]:
        """The pending list, the oldest selected."""
        with self.services.db.session_scope() as session:
            choices = view.pending_choices(approval.pending(session, actor))
        first = choices[0][1] if choices else None
        return gr.Dropdown(choices=choices, value=first, info=f"{len(choices)} awaiting review"), first

    def populate(self, request: gr.Request) -> Any:
        actor = auth.actor_for(self.services, request)
        if not actor.has(*ROLES):
            return gr.skip()
        return self._pending(actor)[0]

    def show_first(self, annotation_id: int | None, request: gr.Request) -> list[Any]:
        """After page load: the first pending version, for approvers only (others never see the tab)."""
        if not auth.actor_for(self.services, request).has(*ROLES):
            return [gr.skip()] * 3
        return self.show(annotation_id, request)

    def show(self, annotation_id: int | None, request: gr.Request) -> list[Any]:
        actor = self._actor(request)
        if annotation_id is None:
            return ["<i>Nothing awaits review.</i>", None, ""]
        threshold = self.services.settings.annotation_consensus_iou
        with self.services.db.session_scope() as session:
            shown = approval.view(session, actor, int(annotation_id))
            frame = approval.get_case(session, shown.case_id).frame
        image = self.services.frames.open_image(frame)
        return [view.approval_html(shown, threshold), view.approval_image(image, shown), ""]

    def decide(self, approve: bool, annotation_id: int | None, comment: str | None,
               request: gr.Request) -> list[Any]:
        actor = self._actor(request)
        if annotation_id is None:
            raise DomainError("Choose a submitted version first.")
        with self.services.db.session_scope() as session:
            if approve:
                label = approval.approve(session, actor, int(annotation_id), comment,
                                         consensus_iou=self.services.settings.annotation_consensus_iou)
                message = f"Approved: the case's reference label is now {label.source}."
            else:
                approval.reject(session, actor, int(annotation_id), comment or "")
                message = "Rejected: the version went back to its annotator with your comment."
        gr.Info(message)
        dropdown, first = self._pending(actor)
        return [dropdown, *self.show(first, request)[:2], ""]


def build(services: Services) -> None:
    handlers = ApproveHandlers(services)
    with gr.Row():
        pending = gr.Dropdown(label="Submitted versions", choices=[], elem_id="approve-pending", scale=3)
        refresh = gr.Button("Refresh", size="sm", elem_id="approve-refresh", scale=1)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            image = gr.Image(label="Submitted box (solid) over the model proposal (dashed)", type="pil", format="jpeg",
                             interactive=False, height=520, elem_id="approve-image")
        with gr.Column(scale=2):
            details = gr.HTML(elem_id="approve-details", css_template=view.ANNOTATE_CSS)
            comment = gr.Textbox(label="Comment (required to reject)", lines=2, max_length=5000,
                                 elem_id="approve-comment")
            with gr.Row():
                approve = gr.Button("Approve", variant="primary", elem_id="approve-approve")
                reject = gr.Button("Reject", variant="stop", elem_id="approve-reject")

    shown = [details, image, comment]
    gr.on(None, user_action(handlers.populate), outputs=pending, show_progress="hidden").success(
        user_action(handlers.show_first), inputs=pending, outputs=shown)
    refresh.click(user_action(handlers.populate), outputs=pending).success(
        user_action(handlers.show), inputs=pending, outputs=shown)
    pending.input(user_action(handlers.show), inputs=pending, outputs=shown, api_name="approve_show")

    @user_action
    def do_approve(annotation_id: int | None, text: str | None, request: gr.Request) -> list[Any]:
        return handlers.decide(True, annotation_id, text, request)

    @user_action
    def do_reject(annotation_id: int | None, text: str | None, request: gr.Request) -> list[Any]:
        return handlers.decide(False, annotation_id, text, request)

    approve.click(do_approve, inputs=[pending, comment], outputs=[pending, details, image, comment],
                  api_name="approve_approve")
    reject.click(do_reject, inputs=[pending, comment], outputs=[pending, details, image, comment],
                 api_name="approve_reject")
