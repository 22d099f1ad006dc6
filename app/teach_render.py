"""Rendering the Teach tab: a presented slide (only what its reveal step has uncovered), a quiz question, quiz
feedback, and the frames with their boxes. Every text from a model, an educator or a resident goes through
``render.esc``: model output is untrusted and rendered inert, never as Markdown or HTML.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from app.render import LEVEL_NAMES, RATIONALE_LABELS, DrawnBox, draw_boxes, esc, safe_color
from models.boxes import Box
from models.parsing import RATIONALE_PARTS
from review.teaching.material import Expert, ModelOutput
from review.teaching.presentation import STEP_TITLES, Slide, visible_boxes
from review.teaching.quiz import QuizFeedback, QuizQuestion, QuizScore

RESIDENT_COLOR = "#f59e0b"

TEACH_CSS = """
.sr-teach { font-size: 1.05em; }
.sr-teach .sr-block { border-left: 5px solid #8886; padding: 6px 12px; margin: 8px 0; border-radius: 4px; }
.sr-teach .sr-block h4 { margin: 0 0 4px 0; }
.sr-teach .sr-new { border-left-color: #2563eb; background: #2563eb14; }
.sr-teach .sr-text { white-space: pre-wrap; overflow-wrap: anywhere; }
.sr-teach .sr-meta { opacity: 0.75; font-size: 0.9em; }
.sr-teach .sr-ok { color: #15803d; font-weight: 600; } .sr-teach .sr-bad { color: #b91c1c; font-weight: 600; }
.sr-teach dt { font-weight: 600; margin-top: 4px; } .sr-teach dd { margin: 0 0 0 12px; }
.sr-teach .sr-swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; }
.sr-teach .sr-score { font-size: 1.3em; }
#teach-stage:fullscreen { background: var(--body-background-fill, #fff); padding: 16px; overflow: auto; }
#teach-stage:fullscreen #teach-image img { max-height: 72vh; }
#teach-image img { max-height: 68vh; object-fit: contain; }
.sr-keys kbd { border: 1px solid #8886; border-radius: 4px; padding: 0 4px; font-family: monospace; }
"""


def _text(value: object) -> str:
    return f'<div class="sr-text">{esc(value)}</div>'


def _block(title: str, body: str, *, new: bool = False, css: str = "") -> str:
    classes = " ".join(c for c in ("sr-block", "sr-new" if new else "", css) if c)
    return f'<section class="{classes}"><h4>{esc(title)}</h4>{body}</section>'


def _phase(phase: str | None, name: str | None) -> str:
    if phase is None:
        return "none recognised"
    return f"{phase} - {name}" if name else phase


def _box_text(box: Box) -> str:
    return f"({box.x1:.0f}, {box.y1:.0f}) - ({box.x2:.0f}, {box.y2:.0f}) px"


def _rationale(parts: dict[str, str]) -> str:
    items = [f"<dt>{RATIONALE_LABELS[p]}</dt><dd>{esc(parts[p])}</dd>" for p in RATIONALE_PARTS
             if parts.get(p)]
    return f"<dl>{''.join(items)}</dl>" if items else ""


def _verdict(value: bool | None) -> str:
    if value is None:
        return ""
    return ' <span class="sr-ok">right</span>' if value else ' <span class="sr-bad">wrong</span>'


def _phase_html(output: ModelOutput) -> str:
    return esc(_phase(output.phase, output.phase_name)) + _verdict(output.phase_correct)


def answer_html(output: ModelOutput) -> str:
    """A model's answer: phase (judged against the reference), boxes and IoU, the Go Zone rationale."""
    parts = [f"<div><b>Answer:</b> {esc(output.answer or '(no answer)')}</div>",
             f"<div>Phase: {_phase_html(output)}</div>"]
    parts += [f"<div>Go Zone: {esc(_box_text(b))}</div>" for b in output.boxes]
    if output.iou is not None:
        parts.append(f"<div>IoU to the expert Go Zone: {output.iou:.2f}</div>")
    return "".join(parts) + _rationale(output.rationale)


def expert_html(expert: Expert) -> str:
    """The expert reference: phase, Go Zone box and the rationale parts."""
    box = f"<div>Go Zone: {esc(_box_text(expert.box))} (dashed)</div>" if expert.box else ""
    return f"<div><b>Phase:</b> {esc(_phase(expert.phase, expert.phase_name))}</div>{box}" + _rationale(
        expert.rationale)


def _swatch(color: str | None) -> str:
    return f'<span class="sr-swatch" style="background:{safe_color(color)}"></span>'


def _contrast_html(others: Sequence[ModelOutput]) -> str:
    rows = []
    for output in others:
        iou = f", IoU {output.iou:.2f}" if output.iou is not None else ""
        rows.append(f"<li>{_swatch(output.color)}<b>{esc(output.model)}</b>: phase "
                    f"{_phase_html(output)}{esc(iou)}</li>")
    return f"<ul>{''.join(rows)}</ul>"


def slide_header_html(slide: Slide) -> str:
    shown = slide.revealed
    return (f'<div class="sr-teach sr-meta">{esc(slide.collection_name)} - '
            f"case {slide.position} of {slide.total} "
            f"({esc(slide.material.key)}) - step {shown.step + 1} of {len(shown.steps)}: "
            f"<b>{esc(STEP_TITLES[shown.current])}</b></div>")


def slide_html(slide: Slide) -> str:
    """The question and everything revealed so far; the newest step is highlighted."""
    shown, presented = slide.revealed, slide.presented
    current = shown.current
    blocks = [_block("Question", _text(slide.material.question), new=current == "question")]
    if presented is not None:
        by = f" ({presented.model})"
        for level in shown.levels:
            blocks.append(_block(LEVEL_NAMES[level] + by, _text(presented.levels[level]),
                                 new=current == f"level{level}"))
        if shown.shows("reasoning"):
            blocks.append(_block("Reasoning" + by, _text(presented.thinking), new=current == "reasoning"))
        if shown.shows("answer"):
            blocks.append(_block("Answer" + by, answer_html(presented), new=current == "answer"))
    if slide.material.expert is not None and shown.shows("reference"):
        blocks.append(_block("Expert reference", expert_html(slide.material.expert),
                             new=current == "reference"))
    if shown.shows("contrast"):
        blocks.append(_block("Other models", _contrast_html(slide.others), new=current == "contrast"))
    if shown.shows("teaching_point"):
        blocks.append(_block("Teaching point", _text(slide.teaching_point), new=current == "teaching_point"))
    return f'<div class="sr-teach">{"".join(blocks)}</div>'


def notes_html(slide: Slide) -> str:
    return f'<div class="sr-teach">{_text(slide.notes or "No notes for this case.")}</div>'


def slide_image(slide: Slide, image: Image.Image) -> Image.Image:
    """The frame with the boxes revealed so far (the expert's dashed)."""
    shown = visible_boxes(slide)
    reference = next((b.box for b in shown if b.reference), None)
    return draw_boxes(image, [DrawnBox(b.label, b.color or "", b.box) for b in shown if not b.reference],
                      reference)


# --- quiz ------------------------------------------------------------------------------------------------

def question_html(question: QuizQuestion) -> str:
    times = f"{question.attempts} time{'s' if question.attempts != 1 else ''}"
    tried = f" You have tried this case {times} before." if question.attempts else ""
    return (f'<div class="sr-teach"><div class="sr-meta">{esc(question.collection_name)} - '
            f"case {question.position} of {question.total}.{esc(tried)}</div>"
            f"<p><b>{esc(question.question)}</b></p><p>Pick the phase, press <kbd>Create box</kbd> (or "
            "<kbd>C</kbd>) and draw the Go Zone on the frame, then submit.</p></div>")


def score_html(score: QuizScore) -> str:
    parts = []
    if score.phase_correct is not None:
        parts.append(f"Phase {_verdict(score.phase_correct)}")
    if score.iou is not None:
        parts.append(f"IoU {score.iou:.2f}")
    if score.hardcore_iou is not None:
        parts.append(f"hardcore IoU {score.hardcore_iou:.2f} (a box under a wrong phase counts 0)")
    return f'<div class="sr-score">{" - ".join(parts) or "No reference to score against."}</div>'


def feedback_html(feedback: QuizFeedback) -> str:
    """After submitting: the score, the resident's answer beside the expert's, the model's reasoning."""
    yours = (f"<div><b>Phase:</b> {esc(_phase(feedback.phase, feedback.phase_name))}</div>"
             + (f"<div>Go Zone: {esc(_box_text(feedback.box))}</div>" if feedback.box else "")
             + _rationale({"next_action": feedback.next_action or "",
                           "critical_risk": feedback.critical_risk or ""}))
    blocks = [_block("Your result", score_html(feedback.score), new=True), _block("Your answer", yours)]
    if feedback.expert is not None:
        blocks.append(_block("Expert reference", expert_html(feedback.expert)))
    for output in feedback.outputs:
        levels = "".join(_block(LEVEL_NAMES[n], _text(output.levels[n])) for n in sorted(output.levels)
                         if n in LEVEL_NAMES)
        thinking = _text(output.thinking) if output.thinking and not output.levels else ""
        blocks.append(_block(f"Model reasoning ({output.model})", levels + thinking + answer_html(output)))
    if feedback.teaching_point:
        blocks.append(_block("Teaching point", _text(feedback.teaching_point)))
    return f'<div class="sr-teach" id="teach-feedback-body">{"".join(blocks)}</div>'


def feedback_image(feedback: QuizFeedback, image: Image.Image) -> Image.Image:
    """The frame with the resident's box ("you") and the expert Go Zone dashed over it."""
    mine = [DrawnBox("you", RESIDENT_COLOR, feedback.box)] if feedback.box else []
    return draw_boxes(image, mine, feedback.expert.box if feedback.expert else None)


def key_help_html() -> str:
    rows = [("→ / Space", "reveal the next step"), ("←", "back one step"), ("PageDown / n", "next case"),
            ("PageUp / p", "previous case"), ("Home", "back to the question"), ("End", "reveal everything"),
            ("f", "full screen on / off")]
    items = "".join(f"<li><kbd>{esc(k)}</kbd> {esc(v)}</li>" for k, v in rows)
    return f'<details class="sr-keys"><summary>Keyboard</summary><ul>{items}</ul></details>'
