"""``surgreview metrics``: per-model benchmark leaderboards (Go Zone grounding, Surg-R1 tasks, Arena Score)
over a case set, as a table, CSV or JSON, on stdout or written atomically to a file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.settings import Settings

metrics_cli = typer.Typer(help="Benchmark metrics per model.", pretty_exceptions_enable=False)

TASK_HELP = (
    "gozone, phase, action, triplet, cvs, or arena (the Arena Score over triplet, phase, action, cvs)."
)


@metrics_cli.callback(invoke_without_command=True)
def metrics(
    task: Annotated[str, typer.Option(help=TASK_HELP)] = "gozone",
    dataset: Annotated[str | None, typer.Option(help="Only cases of this dataset.")] = None,
    procedure: Annotated[str | None, typer.Option(help="Only cases of this procedure.")] = None,
    split: Annotated[str | None, typer.Option(help="train, val or test.")] = None,
    video: Annotated[str | None, typer.Option(help="Only cases of this video.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Only cases with this tag (repeatable).")
    ] = None,
    phase: Annotated[str | None, typer.Option(help="Only cases whose reference phase is this.")] = None,
    run: Annotated[
        list[int] | None,
        typer.Option(
            "--run",
            help="Use this run id for its model (repeatable); default: each model's newest finished "
            "run of the task.",
        ),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="Also break down by dataset, split, video or ref_phase (repeatable)."),
    ] = None,
    boot: Annotated[int, typer.Option(min=0, max=100_000, help="Bootstrap rounds (0: no intervals).")] = 1000,
    seed: Annotated[
        int, typer.Option(help="Bootstrap seed: the same data and seed give the same " "intervals.")
    ] = 0,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    out: Annotated[
        Path | None, typer.Option(help="Write to this file (atomically) instead of stdout.")
    ] = None,
) -> None:
    """Print the leaderboard of TASK over the matching cases that have a reference label."""
    from app.services import Services
    from db.cases import CaseFilter
    from db.errors import DomainError
    from db.files import atomic_write_bytes
    from review.metrics.leaderboard import CHOICES, leaderboard
    from review.metrics.report import FORMATS, render

    if task not in CHOICES:
        raise typer.BadParameter(
            f"unknown task {task!r}; choose one of {', '.join(CHOICES)}", param_hint="--task"
        )
    if fmt not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    groups = tuple(by or ())
    unknown = [g for g in groups if g not in BY_COLUMNS]
    if unknown:
        raise typer.BadParameter(
            f"cannot break down by {', '.join(unknown)}; choose from " f"{', '.join(BY_COLUMNS)}",
            param_hint="--by",
        )
    if groups and task == "arena":
        raise typer.BadParameter(
            "the Arena Score is already per benchmark (task and dataset); drop --by", param_hint="--by"
        )
    case_filter = CaseFilter(
        dataset=dataset, procedure=procedure, video=video, split=split, tags=tuple(tag or ()), phase=phase
    )
    services = Services.from_settings(Settings())
    try:
        with services.db.session_scope() as session:
            board = leaderboard(
                session, task, case_filter, run_ids=tuple(run or ()), by=groups, n_boot=boot, seed=seed
            )
    except DomainError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(code=2) from exc
    finally:
        services.close()
    text = render(board, fmt, case_filter=case_filter, n_boot=boot, seed=seed)
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_bytes(out, text.encode("utf-8"))
        typer.echo(f"wrote {out}", err=True)
    if board.metrics.empty:
        typer.echo(f"no finished {task} predictions with a reference label match the filter", err=True)
        raise typer.Exit(code=1)


BY_COLUMNS = ("dataset", "split", "video", "ref_phase")
