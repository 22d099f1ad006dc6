"""Atomic file writes: a reader or a crash never sees half a file."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True, make_parent: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename.

    ``durable=False`` skips the per-file fsync for callers that sync once for a whole batch (see FrameStore).
    """
    if make_parent:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_directory(path: Path) -> None:
    """Make the entries of folder ``path`` (new names, renames) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_directory(staging: Path, target: Path) -> None:
    """Put the finished folder ``staging`` at ``target`` (a sibling) with renames, so a reader sees the old
    folder or the new one, never a mix; an existing ``target`` is moved aside first and removed after."""
    retired = None
    if target.exists():
        retired = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.old"
        os.rename(target, retired)
    os.rename(staging, target)
    fsync_directory(target.parent)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
