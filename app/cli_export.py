"""``surgreview export ...``: training data and benchmark labels as bundles TRL and LLaMA-Factory load.

Every subcommand writes one directory atomically (data files, images, manifest.json) and prints the
manifest's counts. Exit status 1 on a domain error (nothing is written then).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

export_cli = typer.Typer(
    help="Export training data (TRL, LLaMA-Factory) and benchmark labels.", no_args_is_help=True
)

Out = Annotated[Path, typer.Option("--out", help="The folder to create (must not exist unless --overwrite).")]
Study = Annotated[
    str | None, typer.Option("--study", help="Only this study (by name; its cases for labels).")
]
Dataset = Annotated[str | None, typer.Option("--dataset", help="Only cases of this dataset.")]
Split = Annotated[str | None, typer.Option("--split", help="Only cases of this split: train, val or test.")]
Approved = Annotated[
    bool,
    typer.Option(
        "--approved-only", help="Only cases whose reference label comes from an approved Go Zone annotation."
    ),
]
Since = Annotated[
    datetime | None,
    typer.Option(
        "--since",
        help="Source rows (judgments, labels) from this time (ISO date or date-time, UTC when no zone).",
    ),
]
Until = Annotated[datetime | None, typer.Option("--until", help="Source rows before this time.")]
Target = Annotated[
    str | None,
    typer.Option(
        "--target",
        help="Target family: qwen25 (Qwen2.5-VL resized pixels) "
        "or qwen3 (relative 0-1000). Preference data: re-render completions "
        "in that form (default: the models' raw text).",
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing folder (atomically).")]
MinReviewers = Annotated[
    int, typer.Option("--min-reviewers", min=1, help="Outputs rated by fewer reviewers are left out.")
]
Ties = Annotated[
    str,
    typer.Option(
        "--ties",
        help="drop or keep 50/50 votes (kept: a tie on correctness counts "
        "as incorrect, on the best pick as picked).",
    ),
]
Disagreements = Annotated[
    str, typer.Option("--disagreements", help="keep (the majority decides) or drop (unanimous votes only).")
]


def _run(
    kind: str,
    out: Path,
    *,
    study: str | None,
    dataset: str | None,
    split: str | None,
    approved_only: bool,
    since: datetime | None,
    until: datetime | None,
    target: str | None = None,
    overwrite: bool = False,
    min_reviewers: int = 2,
    ties: str = "drop",
    disagreements: str = "keep",
    task: str = "gozone",
    min_iou: float = 0.5,
) -> None:
    from app.cli import _actor, _services
    from app.exporting import ExportRequest, run_export
    from db.bundles import ExportFilters
    from db.errors import DomainError
    from review.preferences import PairRules

    services = _services()
    try:
        filters = ExportFilters(
            study=study,
            dataset=dataset,
            split=split,
            approved_only=approved_only,
            since=_utc(since),
            until=_utc(until),
        )
        rules = PairRules(min_reviewers=min_reviewers, ties=ties, disagreements=disagreements)
        request = ExportRequest(kind, out, filters, rules, target, task, min_iou, overwrite)
        with services.db.session_scope() as session:
            result = run_export(session, _actor(), services.frames, request)
    except DomainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    finally:
        services.close()
    typer.echo(summary(result.manifest, result.path))


def _utc(when: datetime | None) -> datetime | None:
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


def summary(manifest: dict, path: Path) -> str:
    """What the export wrote, in a few lines: kind, rows, skips by reason, images, folder."""
    counts = manifest["counts"]
    lines = [
        f"{manifest['kind']} export: {counts.get('rows', 0)} rows, {manifest['images']} images -> {path}"
    ]
    lines += [f"  skipped {n}: {reason}" for reason, n in (counts.get("skipped") or {}).items()]
    lines.append(f"  content sha256 {manifest['content_sha256']}")
    return "\n".join(lines)


def _preference_command(kind: str, doc: str) -> None:
    def command(
        out: Out,
        study: Study = None,
        dataset: Dataset = None,
        split: Split = None,
        approved_only: Approved = False,
        since: Since = None,
        until: Until = None,
        target: Target = None,
        min_reviewers: MinReviewers = 2,
        ties: Ties = "drop",
        disagreements: Disagreements = "keep",
        overwrite: Overwrite = False,
    ) -> None:
        _run(
            kind,
            out,
            study=study,
            dataset=dataset,
            split=split,
            approved_only=approved_only,
            since=since,
            until=until,
            target=target,
            overwrite=overwrite,
            min_reviewers=min_reviewers,
            ties=ties,
            disagreements=disagreements,
        )

    command.__doc__ = doc
    export_cli.command(kind)(command)


_preference_command("dpo", "TRL DPO pairs (conversational, with images) from review studies.")
_preference_command("kto", "TRL KTO rows (unpaired; label from the 0/1 correctness) from review studies.")
_preference_command("ranking", "LLaMA-Factory ranking data (sharegpt, chosen/rejected) + dataset_info.json.")
_preference_command("process", "Per-level process labels (JSONL, one row per output) from review studies.")


@export_cli.command("rejection")
def rejection(
    out: Out,
    target: Target = "qwen25",
    study: Study = None,
    dataset: Dataset = None,
    split: Split = None,
    approved_only: Approved = False,
    since: Since = None,
    until: Until = None,
    min_reviewers: MinReviewers = 2,
    ties: Ties = "drop",
    disagreements: Disagreements = "keep",
    min_iou: Annotated[float, typer.Option(help="Box IoU with the reference needed to match.")] = 0.5,
    overwrite: Overwrite = False,
) -> None:
    """Human-verified rejection sampling: traces matching the reference and rated correct, as SFT rows."""
    _run(
        "rejection",
        out,
        study=study,
        dataset=dataset,
        split=split,
        approved_only=approved_only,
        since=since,
        until=until,
        target=target,
        overwrite=overwrite,
        min_reviewers=min_reviewers,
        ties=ties,
        disagreements=disagreements,
        min_iou=min_iou,
    )


@export_cli.command("sft")
def sft(
    out: Out,
    target: Target = "qwen25",
    study: Study = None,
    dataset: Dataset = None,
    split: Split = None,
    approved_only: Approved = False,
    since: Since = None,
    until: Until = None,
    overwrite: Overwrite = False,
) -> None:
    """Go Zone SFT from labels (two-turn phase-then-go) in TRL messages and LLaMA-Factory sharegpt."""
    _run(
        "sft",
        out,
        study=study,
        dataset=dataset,
        split=split,
        approved_only=approved_only,
        since=since,
        until=until,
        target=target,
        overwrite=overwrite,
    )


@export_cli.command("grpo")
def grpo(
    out: Out,
    target: Target = "qwen25",
    study: Study = None,
    dataset: Dataset = None,
    split: Split = None,
    approved_only: Approved = False,
    since: Since = None,
    until: Until = None,
    task: Annotated[
        str, typer.Option(help="gozone (turn 2 after the reference phase), phase, triplet, cvs or action.")
    ] = "gozone",
    overwrite: Overwrite = False,
) -> None:
    """GRPO prompts with solution, phase, box, triplet and CVS columns for reward functions."""
    _run(
        "grpo",
        out,
        study=study,
        dataset=dataset,
        split=split,
        approved_only=approved_only,
        since=since,
        until=until,
        target=target,
        overwrite=overwrite,
        task=task,
    )


@export_cli.command("benchmark")
def benchmark(
    out: Out,
    study: Study = None,
    dataset: Dataset = None,
    split: Split = None,
    approved_only: Approved = False,
    since: Since = None,
    until: Until = None,
    overwrite: Overwrite = False,
) -> None:
    """Current labels as ResGo-style benchmark JSON (image, phase, box, the four texts, split)."""
    _run(
        "benchmark",
        out,
        study=study,
        dataset=dataset,
        split=split,
        approved_only=approved_only,
        since=since,
        until=until,
        overwrite=overwrite,
    )


def _label_files(fmt: str, out: Path, dataset: str | None, split: str | None, approved_only: bool,
                 overwrite: bool, categories: str = "phase") -> None:
    """LabelMe or COCO files of the current reference labels (see annotation/exporters)."""
    import getpass

    from annotation.exporters import export_coco, export_labelme
    from app.services import Services
    from app.settings import Settings
    from db.cases import CaseFilter
    from db.errors import DomainError

    services = Services.from_settings(Settings())
    case_filter = CaseFilter(dataset=dataset, split=split)
    actor = f"cli:{getpass.getuser()}"
    try:
        with services.db.session_scope() as session:
            if fmt == "labelme":
                summary = export_labelme(session, services.frames, out, case_filter, approved_only=approved_only,
                                         overwrite=overwrite, actor=actor)
            else:
                summary = export_coco(session, services.frames, out, case_filter, approved_only=approved_only,
                                      categories=categories, overwrite=overwrite, actor=actor)
    except (DomainError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc
    finally:
        services.close()
    typer.echo(summary.render())


@export_cli.command("labelme")
def labelme(out: Out, dataset: Dataset = None, split: Split = None, approved_only: Approved = False,
            overwrite: Overwrite = False) -> None:
    """Current Go Zone labels as LabelMe JSON beside a copy of each image (round-trips through
    `surgreview import labelme`: unknown keys and flags kept, the phase in flags)."""
    _label_files("labelme", out, dataset, split, approved_only, overwrite)


@export_cli.command("coco")
def coco(out: Out, dataset: Dataset = None, split: Split = None, approved_only: Approved = False,
         overwrite: Overwrite = False,
         categories: Annotated[str, typer.Option(help="phase (one category per phase) or go_zone (one "
                                                      "category, the phase as an attribute).")] = "phase") -> None:
    """Current Go Zone labels as one COCO annotations.json with the images beside it."""
    _label_files("coco", out, dataset, split, approved_only, overwrite, categories)
