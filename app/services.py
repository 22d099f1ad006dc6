"""What a process builds once from its settings: the database, the frame store, the loaded models."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.settings import Settings
from db.engine import Database
from db.frames import FrameStore
from db.migrate import upgrade
from models.backends.pool import BackendPool


@dataclass
class Services:
    settings: Settings
    db: Database
    frames: FrameStore
    # Models loaded on first use and shared by every user of this process (weights are loaded once).
    backends: BackendPool = field(default_factory=BackendPool)

    @classmethod
    def from_settings(cls, settings: Settings, *, migrate: bool | None = None) -> Services:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database.from_url(settings.database_url)
        if settings.upgrade_on_start if migrate is None else migrate:
            upgrade(db.engine)
        frames = FrameStore(settings.frames_dir, thumbnail_size=settings.thumbnail_size,
                            max_pixels=settings.max_image_pixels, max_bytes=settings.max_image_bytes)
        return cls(settings, db, frames)

    def close(self) -> None:
        self.backends.close()
        self.db.dispose()
