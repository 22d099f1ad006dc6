"""Importers: frames, videos, LabelMe files and prediction files into cases, labels and predictions.

Each importer takes a session (the caller commits), validates every item before writing anything,
imports each item in its own savepoint so one bad item never leaves partial rows, and returns an
ImportSummary: imported, skipped as duplicate, rejected with the reason per item.
"""

from annotation.importers.common import CaseMeta, ImportSummary
from annotation.importers.frames import import_frames
from annotation.importers.labelme import import_labelme
from annotation.importers.predictions import import_predictions
from annotation.importers.video import import_video

__all__ = ["CaseMeta", "ImportSummary", "import_frames", "import_labelme", "import_predictions",
           "import_video"]
