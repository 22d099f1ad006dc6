"""``surgreview backup OUT`` and ``surgreview restore ARCHIVE``: database plus frame store in one archive.

Neither migrates the configured database on start (unlike ``serve``): a backup reads the schema as it is, and
a restore needs the database empty and brings it to the archive's revision itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.settings import Settings


def backup_command(out: Annotated[Path, typer.Argument(help="Archive to write (.zip; replaced atomically).")]
                   ) -> None:
    """Write the database and the frame store to one archive; safe while the app runs."""
    from db.backup import BackupError, backup
    from db.engine import make_engine

    settings = Settings()
    engine = make_engine(settings.database_url)
    try:
        summary = backup(engine, settings.frames_dir, out)
    except BackupError as exc:
        typer.echo(f"backup failed: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    finally:
        engine.dispose()
    typer.echo(summary.render())
    raise typer.Exit(code=3 if summary.missing_frames else 0)


def restore_command(archive: Annotated[Path, typer.Argument(help="Archive written by `surgreview backup`.",
                                                            exists=True, dir_okay=False)]) -> None:
    """Restore an archive into the configured EMPTY database and frame store (also SQLite <-> PostgreSQL)."""
    from db.backup import BackupError, restore
    from db.engine import make_engine

    settings = Settings()
    engine = make_engine(settings.database_url)
    try:
        summary = restore(engine, settings.frames_dir, archive)
    except BackupError as exc:
        typer.echo(f"restore refused: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    finally:
        engine.dispose()
    typer.echo(summary.render())
