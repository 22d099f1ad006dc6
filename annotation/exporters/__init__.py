"""Exporters: the current Go Zone reference labels as LabelMe files or as one COCO file, with their images.

Each exporter takes a session (the caller commits the export record and audit event it adds), a frame
store, a target folder and a CaseFilter; it writes into a temporary folder beside the target and renames
it into place, in case-key order, and returns an ExportSummary: exported, skipped with the reason per case.
"""

from annotation.exporters.coco import export_coco
from annotation.exporters.common import ExportSummary
from annotation.exporters.labelme import export_labelme

__all__ = ["ExportSummary", "export_coco", "export_labelme"]
