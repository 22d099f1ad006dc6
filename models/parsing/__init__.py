"""Reading raw model outputs: Surg-R1 three-level reasoning, SurGo-R1 phase-then-go turns, free-form
"thinking" and answer-only baselines, into one ParsedOutput. Pure; never raises on model text.

Modules: ``sections`` (turns, tags, Levels, rationale), ``answers`` (phase, triplets, CVS, action against
vocabularies), ``box_text`` (box text forms -> canonical boxes), ``result`` (ParsedOutput and its JSON),
``parse`` (parse_output, which ties them together).
"""

from models.parsing.parse import BOX_TASKS, EXPECTED_LEVEL, RATIONALE_PARTS, TASKS, parse_output
from models.parsing.result import ParsedBox, ParsedOutput
from models.parsing.sections import TURN_SEPARATOR

__all__ = ["BOX_TASKS", "EXPECTED_LEVEL", "RATIONALE_PARTS", "TASKS", "TURN_SEPARATOR", "ParsedBox",
           "ParsedOutput", "parse_output"]
