"""Loaders of public surgical datasets in their published folder layouts, registered by name.

``import_dataset(session, store, "cholec80", root, options)`` samples each video's frames at the chosen
rate and imports them as cases (key ``dataset/video/frame``, split by video where the dataset has an
official split) with the dataset's reference labels in the product's schema. Damaged files are reported
per file in the summary and the rest still imports; importing again skips what is already there.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sqlalchemy.orm import Session

from annotation.importers.common import ImportSummary
from annotation.importers.datasets import cholec80, cholect50, endoscapes, multibypass140, sar_rarp50
from annotation.importers.datasets.base import DatasetOptions, DatasetSpec, import_jobs
from db import audit
from db.frames import FrameStore

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    cholec80.SPEC, cholect50.SPEC, endoscapes.SPEC, sar_rarp50.SPEC, multibypass140.SPEC)}


class UnknownDataset(KeyError):
    """No loader has this name."""


def dataset_spec(name: str) -> DatasetSpec:
    """The loader called ``name`` (``sar-rarp50`` and ``sar_rarp50`` alike); UnknownDataset otherwise."""
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise UnknownDataset(f"no dataset loader {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[key]


def import_dataset(session: Session, store: FrameStore, name: str, root: Path,
                   options: DatasetOptions | None = None, *, actor: str = "system") -> ImportSummary:
    """Import dataset ``name`` from its folder ``root``: sampled frames as cases with reference labels.

    Returns the summary (imported, duplicates, per-file rejections, warnings); records one audit event.
    Raises UnknownDataset for an unknown name and ValueError for a split filter on a dataset without splits.
    """
    spec = dataset_spec(name)
    options = options or DatasetOptions()
    if options.splits and not spec.has_splits:
        raise ValueError(f"{spec.title} has no official split; choose videos with --video instead")
    options = replace(options, fps=options.fps or spec.default_fps)
    root = Path(root)
    summary = ImportSummary(spec.name)
    if not root.is_dir():
        summary.rejected.append((str(root), "not a folder"))
    else:
        import_jobs(session, store, spec, spec.find_jobs(root, options, summary), options, summary)
    audit.record(session, "import.dataset", actor_label=actor,
                 payload={"dataset": spec.name, "path": str(root), "fps": options.fps,
                          "splits": list(options.splits), "videos": list(options.videos),
                          "cvs_threshold": options.cvs_threshold if spec.name == endoscapes.NAME else None,
                          **summary.counts})
    return summary


__all__ = ["DATASETS", "DatasetOptions", "DatasetSpec", "UnknownDataset", "dataset_spec", "import_dataset"]
