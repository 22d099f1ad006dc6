"""The ``surgreview`` command: serve the app, migrate the database, import data, load the demo pack."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from app.cli_backup import backup_command, restore_command
from app.cli_datasets import register as register_dataset_imports
from app.cli_export import export_cli
from app.cli_labelstudio import labelstudio_cli
from app.cli_metrics import metrics_cli
from app.cli_users import demo_login_hint, users_cli
from app.settings import Settings

cli = typer.Typer(help="SurgReview: clinician review of surgical VLM reasoning.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_cli = typer.Typer(help="Database migrations and upkeep.", no_args_is_help=True)
import_cli = typer.Typer(help="Import frames, videos, labels and predictions.", no_args_is_help=True)
demo_cli = typer.Typer(help="The built-in synthetic demo pack.", no_args_is_help=True)
models_cli = typer.Typer(help="The configured models.", no_args_is_help=True)
cli.add_typer(models_cli, name="models")
cli.add_typer(db_cli, name="db")
cli.add_typer(import_cli, name="import")
cli.add_typer(demo_cli, name="demo")
cli.add_typer(users_cli, name="users")
cli.add_typer(metrics_cli, name="metrics")
cli.add_typer(export_cli, name="export")
cli.add_typer(labelstudio_cli, name="labelstudio")
register_dataset_imports(import_cli)
cli.command("backup")(backup_command)
cli.command("restore")(restore_command)

Dataset = Annotated[str, typer.Option(help="Dataset name, e.g. resgo or cholec80.")]
Procedure = Annotated[str, typer.Option(help="Procedure, e.g. laparoscopic_cholecystectomy.")]
Split = Annotated[str | None, typer.Option(help="train, val or test.")]
Tags = Annotated[list[str] | None, typer.Option("--tag", help="A tag for every imported case (repeatable).")]


def _services():  # noqa: ANN202 - imported lazily so `--help` stays fast
    from app.services import Services

    return Services.from_settings(Settings())


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _finish(summary) -> None:  # noqa: ANN001
    typer.echo(summary.render())
    if summary.rejected:
        raise typer.Exit(code=3)


@cli.command()
def serve(demo: Annotated[bool, typer.Option(help="Load the demo pack first (idempotent).")] = False,
          host: Annotated[str | None, typer.Option(help="Listen address (default from settings).")] = None,
          port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None) -> None:
    """Start the web app (applies migrations first)."""
    import uvicorn

    from app.main import build_app

    services = _services()
    if demo:
        typer.echo(_load_demo(services).render())
    app = build_app(services)
    host = host or services.settings.host
    port = port or services.settings.port
    typer.echo(f"SurgReview on http://{host}:{port}/ (database {services.db.engine.url.render_as_string()})")
    if demo:
        typer.echo(demo_login_hint(services.settings.data_dir, host, port))
    uvicorn.run(app, host=host, port=port, log_level="info")


@db_cli.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION."""
    from db.engine import make_engine
    from db.migrate import current_revision, upgrade

    engine = make_engine(Settings().database_url)
    upgrade(engine, revision)
    typer.echo(f"database at revision {current_revision(engine)}")


@db_cli.command("current")
def db_current() -> None:
    """Print the database's migration revision."""
    from db.engine import make_engine
    from db.migrate import current_revision

    typer.echo(current_revision(make_engine(Settings().database_url)) or "empty (no migrations applied)")


@db_cli.command("recount-votes")
def db_recount_votes() -> None:
    """Recount every review study's vote tallies from its ratings. The app keeps them in step with each
    judgment; run this after writing ratings into the database by other means."""
    from review.tallies import recount_studies

    with _services().db.session_scope() as session:
        counted = recount_studies(session, _actor())
    for name, (outputs, mended) in counted.items():
        typer.echo(f"{name}: {outputs:,} judged outputs, {mended:,} tallies mended")
    if not counted:
        typer.echo("no review studies")


@import_cli.command("frames")
def import_frames_command(paths: list[Path], dataset: Dataset, procedure: Procedure = "laparoscopic_cholecystectomy",
                          video: Annotated[str | None, typer.Option(help="Video id (default: folder name).")] = None,
                          split: Split = None, tag: Tags = None) -> None:
    """Import image files and folders (walked recursively) as cases."""
    from annotation.importers import CaseMeta, import_frames

    services = _services()
    meta = CaseMeta(dataset, procedure, video=video, split=split, tags=tuple(tag or ()))
    with services.db.session_scope() as session:
        summary = import_frames(session, services.frames, paths, meta, actor=_actor())
    _finish(summary)


@import_cli.command("video")
def import_video_command(path: Path, dataset: Dataset,
                         fps: Annotated[float, typer.Option(help="Frames per second to sample (ResGo: 0.2).")],
                         procedure: Procedure = "laparoscopic_cholecystectomy",
                         video: Annotated[str | None, typer.Option(help="Video id (default: file stem).")] = None,
                         split: Split = None, tag: Tags = None) -> None:
    """Sample a video at FPS and import the frames, keeping frame index and timestamp."""
    from annotation.importers import CaseMeta, import_video

    services = _services()
    meta = CaseMeta(dataset, procedure, video=video, split=split, tags=tuple(tag or ()))
    with services.db.session_scope() as session:
        summary = import_video(session, services.frames, path, meta, fps=fps,
                               quality=services.settings.video_frame_quality, actor=_actor())
    _finish(summary)


@import_cli.command("labelme")
def import_labelme_command(paths: list[Path], dataset: Dataset,
                           procedure: Procedure = "laparoscopic_cholecystectomy",
                           split: Split = None, tag: Tags = None) -> None:
    """Import LabelMe JSON files (rectangles become reference Go Zone boxes) with their frames."""
    from annotation.importers import CaseMeta
    from annotation.importers.labelme import import_labelme

    services = _services()
    meta = CaseMeta(dataset, procedure, split=split, tags=tuple(tag or ()))
    with services.db.session_scope() as session:
        summary = import_labelme(session, services.frames, paths, meta, actor=_actor())
    _finish(summary)


@import_cli.command("predictions")
def import_predictions_command(
        path: Path,
        task: Annotated[str | None, typer.Option(help="Task for lines that name none.")] = None,
        family: Annotated[str | None, typer.Option(help="Model family for new models (qwen2.5-vl, qwen3-vl).")] = None,
        box_convention: Annotated[str | None, typer.Option(help="qwen25_pixels, rel1000 or pixels.")] = None) -> None:
    """Import a predictions JSONL (one line per case and model), registering replay models."""
    from annotation.importers.predictions import import_predictions

    services = _services()
    defaults = {k: v for k, v in {"family": family, "box_convention": box_convention}.items() if v}
    from models.runner import parse_pending

    with services.db.session_scope() as session:
        summary = import_predictions(session, path, task=task, model_defaults=defaults, actor=_actor())
        parsed = parse_pending(session)
    typer.echo(f"parsed {parsed} predictions")
    _finish(summary)


@demo_cli.command("load")
def demo_load() -> None:
    """Write and import the synthetic demo pack and create the demo accounts (idempotent)."""
    services = _services()
    summary = _load_demo(services)
    typer.echo(demo_login_hint(services.settings.data_dir, services.settings.host, services.settings.port))
    _finish(summary)


def _load_demo(services):  # noqa: ANN001, ANN202
    """Import the demo pack and create the missing demo accounts with the password kept in the data folder."""
    from annotation.demo.load import load_demo_pack
    from annotation.demo.users import DEMO_USERS
    from app.local_secrets import demo_password

    data_dir = services.settings.data_dir
    password = demo_password(data_dir, list(DEMO_USERS))
    from review.teaching.demo import ensure_demo_collection

    with services.db.session_scope() as session:
        summary = load_demo_pack(session, services.frames, data_dir / "demo", actor=_actor(),
                                 user_password=password)
        ensure_demo_collection(session, "educator")
    return summary


@models_cli.command("list")
def models_list() -> None:
    """Show the models of the registry file and those registered by imports."""
    from app.model_catalog import all_specs

    services = _services()
    with services.db.session_scope() as session:
        specs = all_specs(session, services.settings)
    if not specs:
        typer.echo(f"no models: add [[models]] to {services.settings.model_registry} or import predictions")
    for spec in specs.values():
        where = spec.path or spec.url or ""
        typer.echo(f"{spec.name:<24} {spec.backend:<13} {spec.family:<11} {spec.box_convention:<14} {where}")


@models_cli.command("check")
def models_check(name: Annotated[list[str] | None, typer.Argument(help="Models to check (default: all).")] = None
                 ) -> None:
    """Load each model (or connect to its server) and say whether it works."""
    from app.model_catalog import all_specs
    from models.backends import BackendError, create_backend

    services = _services()
    with services.db.session_scope() as session:
        specs = all_specs(session, services.settings)
    failures = 0
    for spec in (specs[n] for n in name) if name else specs.values():
        try:
            create_backend(spec).close()
            typer.echo(f"ok      {spec.name}")
        except BackendError as exc:
            failures += 1
            typer.echo(f"FAILED  {spec.name}: {exc}")
    raise typer.Exit(code=1 if failures else 0)


@cli.command()
def predict(model: Annotated[str, typer.Option(help="Model name (see `surgreview models list`).")],
            task: Annotated[str, typer.Option(help="phase, triplet, action, cvs, localization or gozone.")],
            dataset: Annotated[str | None, typer.Option()] = None,
            split: Split = None,
            video: Annotated[str | None, typer.Option()] = None,
            tag: Tags = None,
            case: Annotated[list[str] | None, typer.Option(help="A case key (repeatable).")] = None,
            limit: Annotated[int | None, typer.Option(help="At most this many cases.")] = None,
            batch_size: Annotated[int | None, typer.Option(
                min=1, max=1024, help="Cases per batch (default: 4 for local models, twice the concurrency "
                                      "for servers).")] = None) -> None:
    """Run MODEL on the matching cases; cached cases are not recomputed; resumable after a crash."""
    from tqdm import tqdm

    from app.model_catalog import all_specs
    from db.cases import CaseFilter, find_case_ids
    from models.backends import BackendError, create_backend
    from models.prompts import TEMPLATES
    from models.runner import run_predictions

    if task not in TEMPLATES:  # fail before a model is loaded
        raise typer.BadParameter(f"unknown task {task!r}; known: {', '.join(TEMPLATES)}", param_hint="--task")
    services = _services()
    with services.db.session_scope() as session:
        specs = all_specs(session, services.settings)
        ids = find_case_ids(session, CaseFilter(dataset=dataset, split=split, video=video, tags=tuple(tag or ()),
                                                keys=tuple(case or ()), limit=limit))
    if model not in specs:
        raise typer.BadParameter(f"unknown model {model!r}; known: {', '.join(specs) or 'none'}", param_hint="--model")
    try:
        backend = create_backend(specs[model])
    except BackendError as exc:
        typer.echo(f"cannot load {model}: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    bar = tqdm(total=len(ids), unit="case", desc=f"{model} {task}")

    def show(progress) -> None:  # noqa: ANN001
        bar.n = progress.cached + progress.predicted + progress.failed
        bar.refresh()

    progress = run_predictions(services.db, services.frames, backend, task, ids, batch_size=batch_size,
                               on_progress=show, actor=_actor())
    bar.close()
    typer.echo(progress.render())
    raise typer.Exit(code=3 if progress.failed else 0)


def main() -> None:
    cli()
