"""``surgreview import <dataset> PATH``: public surgical datasets read from their published folder layouts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Root = Annotated[Path, typer.Argument(help="The dataset's folder, as downloaded and unpacked.")]
Splits = Annotated[list[str] | None, typer.Option("--split", help="Only videos of this official split "
                                                                  "(train, val or test; repeatable).")]
Videos = Annotated[list[str] | None, typer.Option("--video", help="Only this video, e.g. video01 "
                                                                  "(repeatable).")]
Tags = Annotated[list[str] | None, typer.Option("--tag", help="A tag for every imported case (repeatable).")]


def _fps(default: str) -> object:
    return typer.Option("--fps", min=0.001, help=f"Frames per second to sample ({default}).")


def register(import_cli: typer.Typer) -> None:
    """Add one import command per dataset loader to ``import_cli``."""
    import_cli.command("cholec80")(import_cholec80)
    import_cli.command("cholect50")(import_cholect50)
    import_cli.command("endoscapes")(import_endoscapes)
    import_cli.command("sar-rarp50")(import_sar_rarp50)
    import_cli.command("multibypass140")(import_multibypass140)


def import_cholec80(
        path: Root, fps: Annotated[float, _fps("default 1; labels are at 25")] = 1.0,
        split: Splits = None, video: Videos = None, tag: Tags = None,
        frame_index_scale: Annotated[int, typer.Option(
            min=1, help="Pre-extracted frames/videoNN/ files are numbered by source frame; give 25 when they "
                        "are numbered by second.")] = 1) -> None:
    """Cholec80: videos/videoNN.mp4 (or frames/videoNN/) with phase_annotations/ and tool_annotations/."""
    _run("cholec80", path, fps=fps, split=split, video=video, tag=tag, frame_index_scale=frame_index_scale)


def import_cholect50(path: Root, fps: Annotated[float, _fps("default 1, the rate of the frames")] = 1.0,
                     split: Splits = None, video: Videos = None, tag: Tags = None) -> None:
    """CholecT50: videos/VIDxx/NNNNNN.png frames with labels/VIDxx.json triplets, boxes and phases."""
    _run("cholect50", path, fps=fps, split=split, video=video, tag=tag)


def import_endoscapes(
        path: Root, fps: Annotated[float | None, _fps("default: every annotated frame")] = None,
        split: Splits = None, video: Videos = None, tag: Tags = None,
        cvs_threshold: Annotated[float, typer.Option(
            min=0.01, max=1.0,
            help="A criterion holds when at least this share of the 3 annotators saw it.")] = 0.5
) -> None:
    """Endoscapes2023: train/, val/, test/ with annotation_ds_coco.json (CVS) and annotation_coco.json."""
    _run("endoscapes", path, fps=fps, split=split, video=video, tag=tag, cvs_threshold=cvs_threshold)


def import_sar_rarp50(path: Root, fps: Annotated[float, _fps("default 1; actions are at 10 Hz")] = 1.0,
                      split: Splits = None, video: Videos = None, tag: Tags = None) -> None:
    """SAR-RARP50: video_XX/ folders with video_left.avi (or rgb/) and action_discrete.txt."""
    _run("sar_rarp50", path, fps=fps, split=split, video=video, tag=tag)


def import_multibypass140(path: Root, fps: Annotated[float, _fps("default 1")] = 1.0,
                          video: Videos = None, tag: Tags = None) -> None:
    """MultiBypass140: BBPxx/SBPxx.mp4.json phase files with the videos or frames/BBPxx/ folders."""
    _run("multibypass140", path, fps=fps, split=None, video=video, tag=tag)


def _run(name: str, path: Path, *, fps: float | None, split: list[str] | None, video: list[str] | None,
         tag: list[str] | None, **extra: object) -> None:
    """Import one dataset in one transaction and print the summary (exit 3 when something was rejected)."""
    from annotation.importers.datasets import DatasetOptions, import_dataset
    from app.cli import _actor, _finish, _services

    services = _services()
    try:
        options = DatasetOptions(fps=fps, splits=tuple(split or ()), videos=tuple(video or ()),
                                 tags=tuple(tag or ()), quality=services.settings.video_frame_quality,
                                 **extra)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with services.db.session_scope() as session:
        summary = import_dataset(session, services.frames, name, path, options, actor=_actor())
    _finish(summary)
