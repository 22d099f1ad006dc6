"""The built-in demo pack: SYNTHETIC laparoscopic-style frames drawn with Pillow (no patient data, every
frame watermarked "SYNTHETIC DEMO - NOT PATIENT DATA"), reference Go Zone labels in LabelMe JSON, and recorded
outputs of three invented demo models in their own output forms (see annotation.demo.outputs for the formats,
including the ``<|turn|>`` separator of the phase-then-go model).

Layout written by ``write_demo_pack(folder)``::

    folder/frames/demo_vid01/frame_000000.png   16 frames, 854x480, 2 videos, 4 per ResGo phase A-D
    folder/frames/demo_vid01/frame_000000.json  LabelMe: one "gozone" rectangle, phase flag, rationale texts
    folder/predictions.jsonl                    one line per (case, model, task)

Case keys are ``demo/<video>/<frame index:06d>``, as the frame importers name them.
"""

from annotation.demo.outputs import PROMPT_VERSION, TURN_SEPARATOR
from annotation.demo.pack import DemoPackFiles, write_demo_pack
from annotation.demo.plan import DEMO_MODELS, DemoModel, PlantedError
from annotation.demo.render import WATERMARK
from annotation.demo.scene import DemoCase, demo_cases

__all__ = [
    "DEMO_MODELS",
    "PROMPT_VERSION",
    "TURN_SEPARATOR",
    "WATERMARK",
    "DemoCase",
    "DemoModel",
    "DemoPackFiles",
    "PlantedError",
    "demo_cases",
    "write_demo_pack",
]
