"""Keyboard shortcuts of the Review tab: the key list shown on the page and the script that acts on it.

The script is installed once on the document (from the key list's ``js_on_load``) and acts only while the
Review tab is on screen. It never calls the server itself: it clicks the tab's own radios, checkboxes and
buttons by elem_id, so every key goes through the same Gradio events (and server-side checks) as a click.
Keys are ignored while typing in a text box, except Ctrl+Enter (submit, or skip from the reason box) and
Esc (leave the box).
"""

from __future__ import annotations

import json

from app.render import esc

LETTERS = "ABCDE"
# Flag name -> (key, label). Only the flags of a study's rubric are offered.
FLAGS = {
    "hallucination": ("h", "hallucinated structure"),
    "unsafe_advice": ("u", "unsafe advice"),
    "wrong_anatomy": ("m", "wrong anatomy"),
    "wrong_phase": ("f", "wrong phase"),
    "box_off_target": ("o", "box off target"),
    "identity_leak": ("i", "names a model"),
}
KEY_HELP = [
    ("1 - 5", "best output: A - E"),
    ("0", "none acceptable"),
    ("Shift + 1 - 5", "toggle factual correctness of A - E (1 correct / 0 error), made active"),
    ("a - e", "make output A - E the active output (highlighted)"),
    ("t", "toggle factual correctness of the active output"),
    ("7 / 8 / 9", "Level 1 / 2 / 3 of the active output: correct, wrong, n.a. (press again to cycle)"),
    (" / ".join(key for key, _ in FLAGS.values()),
     "flags of the active output: " + ", ".join(f"{key} {label}" for key, label in FLAGS.values())),
    ("/", "write a comment (Esc leaves the box)"),
    ("Enter or Ctrl + Enter", "submit (again to revise: the latest revision counts)"),
    ("n", "next open item (where you left off)"),
    ("p", "previous item (to revise it)"),
    ("s", "skip: type the reason, then Enter"),
    ("r", "reveal the models (after submit, only if the study allows it)"),
]

# Stamps when an item was put on screen; the submit button's js turns it into milliseconds spent.
STAMP_SHOWN_JS = "() => { window.__srShownAt = performance.now(); }"
ELAPSED_FIRST_JS = ("(...args) => { args[0] = window.__srShownAt === undefined ? null : "
                    "Math.round(performance.now() - window.__srShownAt); return args; }")

_SCRIPT = """
(() => {
  if (window.__srReviewKeys) return;
  window.__srReviewKeys = true;
  const FLAG_KEYS = __FLAG_KEYS__;
  const q = (s) => document.querySelector(s);
  const shown = (el) => !!el && el.offsetParent !== null;
  const click = (id) => { const el = q('#' + id); if (shown(el) && !el.disabled) el.click(); };
  const pick = (id, value) => {
    const el = q(`#${id} input[value="${value}"]`);
    if (el && !el.checked) el.click();
  };
  const letters = () => [...document.querySelectorAll('.sr-rubric')].filter(shown)
    .map((el) => el.id.slice(-1));
  let active = null;
  const activate = (letter) => {
    if (!letters().includes(letter)) return false;
    active = letter;
    document.querySelectorAll('.sr-slot').forEach(
      (el) => el.classList.toggle('sr-active', el.classList.contains('sr-slot-' + letter)));
    return true;
  };
  const current = () => (letters().includes(active) || activate(letters()[0]) ? active : null);
  const cycle = (id) => {
    const inputs = [...document.querySelectorAll(`#${id} input[type=radio]`)];
    if (inputs.length) inputs[(inputs.findIndex((i) => i.checked) + 1) % inputs.length].click();
  };
  const toggleCorrect = (letter) => {
    const checked = q(`#review-correct-${letter} input:checked`);
    pick('review-correct-' + letter, checked && checked.value === '1' ? '0' : '1');
  };
  const focusBox = (id) => { const box = q(`#${id} textarea, #${id} input`); if (box) box.focus(); };
  const onDigit = (digit, shift) => {
    const letter = 'ABCDE'[digit - 1];
    if (shift) { if (letter && activate(letter)) toggleCorrect(letter); return; }
    if (digit === 0) pick('review-best', 'none');
    else if (digit <= 5) pick('review-best', letter);
    else if (digit >= 7) { const l = current(); if (l) cycle(`review-l${digit - 6}-${l}`); }
  };
  const onKey = (key) => {
    const l = () => current();
    if (/^[a-e]$/.test(key)) activate(key.toUpperCase());
    else if (key === 't') { if (l()) toggleCorrect(active); }
    else if (FLAG_KEYS[key]) {
      const box = l() && q(`#review-flags-${active} input[name="${FLAG_KEYS[key]}"]`);
      if (box) box.click();
    }
    else if (key === 'Enter') click('review-submit');
    else if (key === 'n') click('review-next');
    else if (key === 'p') click('review-prev');
    else if (key === 'r') click('review-reveal');
    else if (key === 's') focusBox('review-skip-reason');
    else if (key === '/') focusBox('review-comment');
    else return false;
    return true;
  };
  document.addEventListener('keydown', (e) => {
    if (!shown(q('#review-submit'))) return;  // the Review tab is not on screen
    const t = e.target;
    const typing = !!t && (t.tagName === 'TEXTAREA'
      || (t.tagName === 'INPUT' && !['radio', 'checkbox'].includes(t.type)));
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      click(typing && t.closest('#review-skip-reason') ? 'review-skip' : 'review-submit');
      return;
    }
    if (typing) { if (e.key === 'Escape') t.blur(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const digit = /^(?:Digit|Numpad)([0-9])$/.exec(e.code);
    if (digit) { onDigit(+digit[1], e.shiftKey); e.preventDefault(); return; }
    if (onKey(e.key)) e.preventDefault();
  });
})();
"""

REVIEW_KEYS_JS = _SCRIPT.replace("__FLAG_KEYS__", json.dumps({key: name for name, (key, _) in FLAGS.items()}))

KEYS_CSS = """
.sr-slot.sr-active { outline: 3px solid #64748b; outline-offset: 3px; border-radius: 8px; }
.sr-keys { font-size: 0.85em; columns: 2 320px; margin: 0; padding-left: 1.2em; }
.sr-keys kbd { border: 1px solid #8886; border-radius: 4px; padding: 0 4px; font-family: monospace; }
"""


def key_help_html() -> str:
    """The shortcut list shown on the Review tab."""
    rows = "".join(f"<li><kbd>{esc(keys)}</kbd> {esc(action)}</li>" for keys, action in KEY_HELP)
    return (f'<details class="sr-keyhelp" open><summary>Keyboard shortcuts</summary>'
            f'<ul class="sr-keys">{rows}</ul></details>')


def flag_label(name: str) -> str:
    """A rubric flag as offered to the reviewer, with its key when it has one."""
    key, label = FLAGS.get(name, (None, name.replace("_", " ")))
    return f"{label} [{key}]" if key else label


# --- the Annotate tab ---------------------------------------------------------------------------------

ANNOTATE_KEY_HELP = [
    ("1 - 9", "phase: the n-th phase of the list"),
    ("Ctrl + Enter", "submit for approval"),
    ("Ctrl + S", "save a draft"),
    ("Mouse wheel on the frame", "zoom; drag the empty frame to pan, drag the box or its handles to edit"),
]

ANNOTATE_KEYS_JS = """
(() => {
  if (window.__srAnnotateKeys) return;
  window.__srAnnotateKeys = true;
  const q = (s) => document.querySelector(s);
  const shown = (el) => !!el && el.offsetParent !== null;
  const click = (id) => { const el = q('#' + id); if (shown(el) && !el.disabled) el.click(); };
  document.addEventListener('keydown', (e) => {
    if (!shown(q('#annotate-submit'))) return;  // the Annotate tab is not on screen
    const t = e.target;
    const typing = !!t && (t.tagName === 'TEXTAREA'
      || (t.tagName === 'INPUT' && !['radio', 'checkbox'].includes(t.type)));
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') { e.preventDefault(); click('annotate-submit'); return; }
    if ((e.ctrlKey || e.metaKey) && (e.key === 's' || e.key === 'S')) {
      e.preventDefault(); click('annotate-save'); return;
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) { if (typing && e.key === 'Escape') t.blur(); return; }
    const digit = /^(?:Digit|Numpad)([1-9])$/.exec(e.code);
    if (!digit) return;
    const radios = [...document.querySelectorAll('#annotate-phase input[type=radio]')];
    const radio = radios[+digit[1] - 1];
    if (radio) { if (!radio.checked) radio.click(); e.preventDefault(); }
  });
})();
"""


def annotate_key_help_html() -> str:
    rows = "".join(f"<li><kbd>{esc(keys)}</kbd> {esc(action)}</li>" for keys, action in ANNOTATE_KEY_HELP)
    return (f'<details class="sr-keyhelp"><summary>Keyboard shortcuts</summary>'
            f'<ul class="sr-keys">{rows}</ul></details>')
