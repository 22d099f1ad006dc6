"""The frame store: images kept by the sha256 of their bytes, validated before anything is written.

Layout under the root: ``ab/abcdef....<ext>`` for the original bytes and ``thumbs/ab/abcdef....jpg``
for list thumbnails. A frame row is added in the caller's session; files written for a transaction
that rolls back are removed again, so a failed import leaves neither rows nor files behind.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from db.files import atomic_write_bytes
from db.schema import Frame

# Pillow format name -> file extension. Only real raster formats a frame grabber or LabelMe produces.
ACCEPTED_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp"}
_NEW_FILES = "frame_store_new_files"


class ImageRejected(ValueError):
    """The bytes are not an image we accept; the message says why in words a user understands."""


@dataclass(frozen=True)
class ValidatedImage:
    data: bytes
    sha256: str
    width: int
    height: int
    format: str
    image: Image.Image

    @property
    def extension(self) -> str:
        return ACCEPTED_FORMATS[self.format]


def validate_image(data: bytes, *, max_pixels: int, max_bytes: int) -> ValidatedImage:
    """Check that ``data`` is one whole image of an accepted format within the limits; decode it fully.

    Raises ImageRejected with the reason. The decoded image is returned for thumbnails.
    """
    if not data:
        raise ImageRejected("the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageRejected(f"the file is {len(data):,} bytes; the limit is {max_bytes:,}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"the image is too large to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected(
            f"not an image in an accepted format ({', '.join(ACCEPTED_FORMATS)})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"the image header is damaged ({exc})") from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageRejected(f"the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageRejected(
            f"the image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,}")
    if getattr(image, "n_frames", 1) > 1:
        raise ImageRejected(f"the file holds {image.n_frames} images; a frame must be a single image")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageRejected(f"the image is truncated or corrupt ({exc})") from exc
    return ValidatedImage(data, hashlib.sha256(data).hexdigest(), width, height, image.format or "", image)


class FrameStore:
    """Content-addressed frame files under ``root``."""

    def __init__(self, root: Path, *, thumbnail_size: int = 320, max_pixels: int = 40_000_000,
                 max_bytes: int = 64 * 1024 * 1024) -> None:
        self.root = Path(root)
        self.thumbnail_size = thumbnail_size
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes

    def validate(self, data: bytes) -> ValidatedImage:
        return validate_image(data, max_pixels=self.max_pixels, max_bytes=self.max_bytes)

    def validate_file(self, path: Path) -> ValidatedImage:
        """Validate a file, refusing to read more than the byte limit into memory."""
        size = path.stat().st_size
        if size > self.max_bytes:
            raise ImageRejected(f"the file is {size:,} bytes; the limit is {self.max_bytes:,}")
        return self.validate(path.read_bytes())

    def relative_path(self, sha256: str, extension: str) -> str:
        return f"{sha256[:2]}/{sha256}{extension}"

    def path(self, frame: Frame) -> Path:
        return self.root / frame.path

    def thumbnail_path(self, frame: Frame) -> Path:
        return self.root / "thumbs" / frame.sha256[:2] / f"{frame.sha256}.jpg"

    def read(self, frame: Frame) -> bytes:
        return self.path(frame).read_bytes()

    def open_image(self, frame: Frame) -> Image.Image:
        image = Image.open(self.path(frame))
        image.load()
        return image

    def put(self, session: Session, image: ValidatedImage) -> tuple[Frame, bool]:
        """The frame row for ``image``, created (with its files) when new. Returns (frame, created)."""
        frame = session.scalar(select(Frame).where(Frame.sha256 == image.sha256))
        if frame is not None:
            if not self.path(frame).exists():  # repair a store that lost a file
                self._write(session, self.path(frame), image.data)
            return frame, False
        frame = Frame(sha256=image.sha256, width=image.width, height=image.height, format=image.format,
                      size_bytes=len(image.data), path=self.relative_path(image.sha256, image.extension))
        self._write(session, self.path(frame), image.data)
        self._write(session, self.thumbnail_path(frame), self._thumbnail(image.image))
        session.add(frame)
        session.flush()
        return frame, True

    def discard_new_files(self, session: Session) -> None:
        """Remove the files this session wrote that no committed row refers to yet."""
        for path in session.info.pop(_NEW_FILES, []):
            path.unlink(missing_ok=True)

    def _thumbnail(self, image: Image.Image) -> bytes:
        thumb = image.convert("RGB") if image.mode != "RGB" else image.copy()
        thumb.thumbnail((self.thumbnail_size, self.thumbnail_size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        out = io.BytesIO()
        thumb.save(out, "JPEG", quality=85)
        return out.getvalue()

    def _write(self, session: Session, path: Path, data: bytes) -> None:
        if path.exists():
            return
        atomic_write_bytes(path, data)
        new_files = session.info.setdefault(_NEW_FILES, [])
        if not new_files:
            event.listen(session, "after_commit", _forget_new_files, once=True)
            event.listen(session, "after_rollback", self.discard_new_files, once=True)
        new_files.append(path)


def _forget_new_files(session: Session) -> None:
    session.info.pop(_NEW_FILES, None)
