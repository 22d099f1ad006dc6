"""HTML and images of the Annotate and Approve tabs: version history, conflicts, diffs, agreement.

Every text that came from a user or a model goes through ``esc``: it is shown as text, never as markup.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from annotation.approval import Agreement, ApprovalView, PendingRow
from annotation.editor import EditorState
from annotation.queue import QueueRow
from annotation.workflow import TEXT_FIELDS, TEXT_LABELS, GoZoneDraft, OtherVersion, VersionView
from app.render import DrawnBox, draw_boxes, esc
from db.errors import DomainError
from models.boxes import Box

HISTORY_COLORS = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#4d7c0f", "#be185d")
EDIT_COLOR = (37, 99, 235)
STATE_BADGES = {"todo": "to do", "draft": "draft", "submitted": "awaiting approval", "rejected": "rejected",
                "approved": "approved"}

ANNOTATE_CSS = """
.sr-history table, .sr-approval table { border-collapse: collapse; font-size: 0.9em; width: 100%; }
.sr-history td, .sr-history th, .sr-approval td, .sr-approval th {
  border-bottom: 1px solid #8884; padding: 3px 6px; text-align: left; vertical-align: top; }
.sr-swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px; vertical-align: middle; }
.sr-conflict { border: 2px solid #d97706; border-radius: 8px; padding: 8px 12px; }
.sr-diff del { background: #fecaca66; } .sr-diff ins { background: #bbf7d066; text-decoration: none; }
.sr-rejected { border-left: 4px solid #dc2626; padding-left: 8px; }
#annotate-editor button[aria-label^="Rotate"] { display: none; }
"""


def queue_choices(rows: Sequence[QueueRow]) -> list[tuple[str, int]]:
    return [(f"{row.case_key} · {STATE_BADGES[row.state]}", row.case_id) for row in rows]


def pending_choices(rows: Sequence[PendingRow]) -> list[tuple[str, int]]:
    return [(f"{row.case_key} · v{row.version} by {row.author}"
             + (f" · {row.lanes} annotators" if row.lanes > 1 else ""), row.annotation_id) for row in rows]


def box_text(box: tuple[float, float, float, float] | None) -> str:
    return "no box" if box is None else "({:.0f}, {:.0f}) - ({:.0f}, {:.0f})".format(*box)


def editor_value(image: Image.Image | str, draft: GoZoneDraft) -> dict:
    """The image_annotator value: the frame (an image or a file in Gradio's cache) and at most one box."""
    boxes = []
    if draft.box is not None:
        x1, y1, x2, y2 = draft.box
        boxes.append({"xmin": round(x1), "ymin": round(y1), "xmax": round(x2), "ymax": round(y2),
                      "label": "Go Zone", "color": EDIT_COLOR})
    return {"image": image, "boxes": boxes}


def box_of(value: dict | None) -> tuple[float, float, float, float] | None:
    """The Go Zone box the annotator left on the frame (the last one drawn), or None. Raises DomainError
    for a rotated frame: its box coordinates would not be those of the stored frame."""
    if (value or {}).get("orientation"):
        raise DomainError("The frame is shown rotated; rotate it back upright before saving.")
    boxes = (value or {}).get("boxes") or []
    if not boxes:
        return None
    box = boxes[-1]
    if not isinstance(box, dict) or not {"xmin", "ymin", "xmax", "ymax"} <= box.keys():
        raise DomainError("A box is four numbers: x1, y1, x2, y2 in pixels of the frame.")
    return (box["xmin"], box["ymin"], box["xmax"], box["ymax"])


def status_html(state: EditorState, phase_name: str | None = None) -> str:
    base = ("No version saved yet: you start from " + esc(state.source) if state.base_id is None
            else f"Version {state.base_version} ({esc(STATE_BADGES.get(state.status or '', state.status))})")
    parts = [f"<div><b>{esc(state.case_key)}</b> · {state.width} x {state.height} px · {base}</div>"]
    if state.status == "rejected" and state.review_comment:
        parts.append(f'<div class="sr-rejected">Returned by the approver: {esc(state.review_comment)}</div>')
    if phase_name:
        parts.append(f"<div>Phase: {esc(phase_name)}</div>")
    return "".join(parts)


def history_html(views: Sequence[VersionView]) -> str:
    if not views:
        return '<div class="sr-history"><i>No versions yet.</i></div>'
    rows = []
    for index, view in enumerate(views):
        color = HISTORY_COLORS[index % len(HISTORY_COLORS)]
        changed = ", ".join(view.changed) or "nothing"
        iou = "" if view.iou_to_parent is None else f" (box IoU to previous {view.iou_to_parent:.2f})"
        review = (f"<br>{esc(view.status)} by {esc(view.reviewer)}: {esc(view.review_comment or '')}"
                  if view.reviewer else "")
        texts = "".join(f"<br><small>{TEXT_LABELS[name]}: {esc(getattr(view.draft, name) or '-')}</small>"
                        for name in TEXT_FIELDS if name in view.changed)
        rows.append(
            f'<tr><td><span class="sr-swatch" style="background:{color}"></span> v{view.version}</td>'
            f"<td>{esc(view.author)}</td><td>{view.created_at:%Y-%m-%d %H:%M}</td><td>{esc(view.status)}</td>"
            f"<td>{esc(view.draft.phase or '-')}</td><td>changed: {esc(changed)}{iou}"
            f"{texts}<br><small>from {esc(view.source or '')}</small>{review}</td></tr>")
    return ('<div class="sr-history"><table><tr><th>version</th><th>who</th><th>when (UTC)</th>'
            f"<th>status</th><th>phase</th><th>what</th></tr>{''.join(rows)}</table></div>")


def history_image(image: Image.Image, views: Sequence[VersionView], limit: int = len(HISTORY_COLORS)) -> Image.Image:
    """The frame with the box of each of the newest ``limit`` versions in its history colour."""
    drawn = [DrawnBox(f"v{view.version}", HISTORY_COLORS[index % len(HISTORY_COLORS)], Box(*view.draft.box))
             for index, view in enumerate(views[:limit]) if view.draft.box is not None]
    return draw_boxes(image, drawn[::-1])


def conflict_html(other: OtherVersion | None) -> str:
    if other is None:
        return ('<div class="sr-conflict">The version you started from is gone; your text is kept. '
                "Save again to store it.</div>")
    texts = "".join(f"<li><b>{TEXT_LABELS[name]}</b>: {esc(getattr(other.draft, name) or '-')}</li>"
                    for name in TEXT_FIELDS)
    return (f'<div class="sr-conflict"><b>{esc(other.author or "Someone")} saved version {other.version}</b> '
            "while you were editing. Your editor still holds your work; saving again puts it on top of theirs."
            f"<ul><li><b>Phase</b>: {esc(other.draft.phase or '-')}</li>"
            f"<li><b>Box</b>: {box_text(other.draft.box)}</li>{texts}</ul></div>")


def _diff_html(ops: Sequence[tuple[str, str]]) -> str:
    tags = {"=": "{}", "-": "<del>{}</del>", "+": "<ins>{}</ins>"}
    return " ".join(tags[op].format(esc(text)) for op, text in ops) or "<i>empty</i>"


def agreement_html(agreement: Agreement | None, threshold: float) -> str:
    if agreement is None:
        return ""
    lanes = "".join(f"<tr><td>{esc(v.author)}</td><td>{esc(v.status)}</td><td>{esc(v.draft.phase or '-')}</td>"
                    f"<td>{box_text(v.draft.box)}</td></tr>" for v in agreement.lanes)
    pairs = "".join(f"<li>{esc(a)} / {esc(b)}: {'-' if v is None else f'{v:.2f}'}</li>"
                    for a, b, v in agreement.pairwise)
    verdict = ("consensus reached" if agreement.consensus(threshold)
               else f"no consensus (needs one phase and IoU >= {threshold:.2f} for every pair)")
    return (f"<h4>Agreement of {len(agreement.lanes)} annotators: {verdict}</h4>"
            f"<table><tr><th>annotator</th><th>status</th><th>phase</th><th>box</th></tr>{lanes}</table>"
            f"<ul>{pairs}</ul>")


def approval_html(view: ApprovalView, threshold: float) -> str:
    """The submitted version against the model proposal: IoU, phase change, word diff of each text."""
    if view.proposal is None:
        head = "<p>This version did not start from a model proposal.</p>"
    else:
        change = "changed" if view.phase_changed else "kept"
        head = (f"<p>Against the proposal of <b>{esc(view.proposal_model)}</b>: box IoU "
                f"<b>{(view.iou_to_proposal or 0):.2f}</b>; phase {change} "
                f"({esc(view.proposal.phase or '-')} &rarr; {esc(view.draft.phase or '-')}).</p>")
    rows = "".join(f"<tr><th>{TEXT_LABELS[name]}</th><td class=\"sr-diff\">{_diff_html(view.text_diff[name])}"
                   "</td></tr>" for name in TEXT_FIELDS)
    return (f'<div class="sr-approval"><p><b>{esc(view.case_key)}</b> · version {view.version} by '
            f"{esc(view.author)} · {esc(view.status)} · phase <b>{esc(view.draft.phase or '-')}</b> · box "
            f"{box_text(view.draft.box)}</p>{head}<table>{rows}</table>"
            f"{agreement_html(view.agreement, threshold)}</div>")


def approval_image(image: Image.Image, view: ApprovalView) -> Image.Image:
    """The submitted box (solid) over the model proposal (dashed) and other annotators' boxes."""
    boxes = []
    if view.agreement is not None:
        boxes += [DrawnBox(v.author, HISTORY_COLORS[(i + 2) % len(HISTORY_COLORS)], Box(*v.draft.box))
                  for i, v in enumerate(view.agreement.lanes)
                  if v.draft.box is not None and v.annotation_id != view.annotation_id]
    if view.draft.box is not None:
        boxes.append(DrawnBox(f"v{view.version}", HISTORY_COLORS[0], Box(*view.draft.box)))
    proposal = view.proposal.box if view.proposal is not None else None
    return draw_boxes(image, boxes, Box(*proposal) if proposal else None,
                      reference_label=f"proposal: {view.proposal_model}")
