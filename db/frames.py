"""The frame store: images kept by the sha256 of their bytes, validated before anything is written.

Layout under the root: ``ab/abcdef....<ext>`` for the original bytes and ``thumbs/ab/abcdef....jpg``
for list thumbnails, made on first request (they are derived, and making them at import would cost a
fifth of the import). A frame row is added in the caller's session; files written for a transaction that
rolls back are removed again, so a failed import leaves neither rows nor files behind. New files are
written without a per-file fsync and flushed to disk once, just before the transaction commits, so a
committed row never points at a file that a crash could lose.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
# What Pillow raises for a file damaged past its header; its own Image.open reads these as "not this format".
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, TypeError, IndexError, EOFError, struct.error)


class ImageRejected(ValueError):
    """The bytes are not an image we accept; the message says why in words a user understands."""


@dataclass(frozen=True)
class ValidatedImage:
    data: bytes
    sha256: str
    width: int
    height: int
    format: str

    @property
    def extension(self) -> str:
        return ACCEPTED_FORMATS[self.format]


def validate_image(data: bytes, *, max_pixels: int, max_bytes: int) -> ValidatedImage:
    """Check that ``data`` is one whole image of an accepted format within the limits; decode it fully.

    Raises ImageRejected with the reason.
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
    try:
        n_frames = getattr(image, "n_frames", 1)  # a TIFF walks every directory here
    except _DECODE_ERRORS as exc:
        raise ImageRejected(f"the image is truncated or corrupt ({exc})") from exc
    if n_frames > 1:
        raise ImageRejected(f"the file holds {n_frames} images; a frame must be a single image")
    try:
        image.load()
    except (*_DECODE_ERRORS, Image.DecompressionBombError) as exc:
        raise ImageRejected(f"the image is truncated or corrupt ({exc})") from exc
    image.close()
    _refuse_trailing_data(data, image.format or "")
    return ValidatedImage(data, hashlib.sha256(data).hexdigest(), width, height, image.format or "")


def _refuse_trailing_data(data: bytes, image_format: str) -> None:
    """ImageRejected when bytes follow the end of a PNG, JPEG or WebP image: such a file is also something
    else (a ZIP, an HTML page, a script), and the store would keep and serve it whole."""
    end = {"PNG": _png_end, "JPEG": _jpeg_end, "WEBP": _webp_end}.get(image_format, lambda _: None)(data)
    if end is None or end >= len(data):
        return
    trailing = data[end:]
    if not trailing.strip(b"\x00"):  # zero padding some cameras write after the image is harmless
        return
    raise ImageRejected(f"the file has {len(trailing):,} bytes after the end of the {image_format} image; "
                        "it may be another file disguised as an image (a polyglot), so it is not accepted")


def _png_end(data: bytes) -> int | None:
    """Offset just past the IEND chunk, walking the chunks from the signature; None if there is none."""
    offset = 8
    while offset + 12 <= len(data):
        length = struct.unpack(">I", data[offset:offset + 4])[0]
        kind = data[offset + 4:offset + 8]
        offset += 12 + length
        if kind == b"IEND":
            return offset
    return None


def _jpeg_end(data: bytes) -> int | None:
    """Offset just past the EOI marker of the image that starts at SOI, walking its segments and the
    entropy-coded data after each SOS (where 0xFF is followed by 0x00 stuffing or a restart marker)."""
    offset, size = 2, len(data)
    while offset < size:
        if data[offset] != 0xFF:
            return None
        while offset < size and data[offset] == 0xFF:  # fill bytes
            offset += 1
        if offset >= size:
            return None
        marker = data[offset]
        offset += 1
        if marker == 0xD9:
            return offset
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if offset + 2 > size:
            return None
        offset += struct.unpack(">H", data[offset:offset + 2])[0]
        if marker == 0xDA:
            while True:
                offset = data.find(b"\xff", offset)
                if offset < 0 or offset + 1 >= size:
                    return None
                following = data[offset + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    offset += 1
                    continue
                break
    return None


def _webp_end(data: bytes) -> int | None:
    """Offset just past the RIFF container, whose header states its size."""
    if len(data) < 12 or data[:4] != b"RIFF":
        return None
    size = struct.unpack("<I", data[4:8])[0]
    return 8 + size + (size & 1)


class FrameStore:
    """Content-addressed frame files under ``root``."""

    def __init__(self, root: Path, *, thumbnail_size: int = 320, max_pixels: int = 40_000_000,
                 max_bytes: int = 64 * 1024 * 1024) -> None:
        self.root = Path(root)
        self.thumbnail_size = thumbnail_size
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self._folders: set[Path] = set()

    def validate(self, data: bytes) -> ValidatedImage:
        return validate_image(data, max_pixels=self.max_pixels, max_bytes=self.max_bytes)

    def validate_file(self, path: Path) -> ValidatedImage:
        """Validate a file, refusing to read more than the byte limit into memory."""
        size = path.stat().st_size
        if size > self.max_bytes:
            raise ImageRejected(f"the file is {size:,} bytes; the limit is {self.max_bytes:,}")
        return self.validate(path.read_bytes())

    def validate_files(self, paths: Iterable[Path], *, workers: int = 2,
                       ahead: int = 8) -> Iterator[tuple[Path, ValidatedImage | ImageRejected]]:
        """(path, validated image or the rejection) for each path, in order, validated up to ``ahead`` files
        in advance on ``workers`` threads: decoding releases the GIL, so it overlaps the caller's writes."""
        with ThreadPoolExecutor(workers, thread_name_prefix="validate") as pool:
            pending: deque[tuple[Path, Future]] = deque()
            for path in paths:
                pending.append((path, pool.submit(self._validate_or_reject, path)))
                if len(pending) > ahead:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()

    def _validate_or_reject(self, path: Path) -> ValidatedImage | ImageRejected:
        try:
            return self.validate_file(path)
        except ImageRejected as exc:
            return exc
        except FileNotFoundError:
            return ImageRejected(f"no such file: {path}")
        except OSError as exc:
            return ImageRejected(f"cannot read the file: {exc.strerror or exc}")

    def relative_path(self, sha256: str, extension: str) -> str:
        return f"{sha256[:2]}/{sha256}{extension}"

    def path(self, frame: Frame) -> Path:
        return self.root / frame.path

    def thumbnail_path(self, frame: Frame) -> Path:
        return self.root / "thumbs" / frame.sha256[:2] / f"{frame.sha256}.jpg"

    def thumbnail(self, frame: Frame) -> Path:
        """The thumbnail file of ``frame`` (longest side ``thumbnail_size``), made on first request."""
        path = self.thumbnail_path(frame)
        if not path.exists():
            with Image.open(self.path(frame)) as image:
                image.draft("RGB", (self.thumbnail_size, self.thumbnail_size))  # JPEG: decode at reduced size
                atomic_write_bytes(path, self._thumbnail(image), durable=False)
        return path

    def read(self, frame: Frame) -> bytes:
        return self.path(frame).read_bytes()

    def open_image(self, frame: Frame, *, decode: bool = True) -> Image.Image:
        """The frame as a PIL image. ``decode=False`` leaves the pixels undecoded until first use (Pillow
        decodes on demand): a server backend that sends the stored file as it is never pays for it."""
        image = Image.open(self.path(frame))
        if decode:
            image.load()
        return image

    def put(self, session: Session, image: ValidatedImage, *, flush: bool = True) -> tuple[Frame, bool]:
        """The frame row for ``image``, created (with its files) when new. Returns (frame, created).

        ``flush=False`` leaves a new row to be flushed with the row that refers to it (one round trip less).
        """
        frame = session.scalar(select(Frame).where(Frame.sha256 == image.sha256))
        if frame is not None:
            if not self.path(frame).exists():  # repair a store that lost a file
                self._write(session, self.path(frame), image.data)
            return frame, False
        frame = Frame(sha256=image.sha256, width=image.width, height=image.height, format=image.format,
                      size_bytes=len(image.data), path=self.relative_path(image.sha256, image.extension))
        self._write(session, self.path(frame), image.data)
        session.add(frame)
        if flush:
            session.flush()
        return frame, True

    def discard_new_files(self, session: Session) -> None:
        """Remove the files this session wrote that no committed row refers to yet."""
        _remove_all(session.info.get(_NEW_FILES, []))

    def _thumbnail(self, image: Image.Image) -> bytes:
        thumb = image.convert("RGB")
        thumb.thumbnail((self.thumbnail_size, self.thumbnail_size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        out = io.BytesIO()
        thumb.save(out, "JPEG", quality=85)
        return out.getvalue()

    def _write(self, session: Session, path: Path, data: bytes) -> None:
        if path.exists():
            return
        if path.parent not in self._folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(path.parent)
        atomic_write_bytes(path, data, durable=False, make_parent=False)
        if _NEW_FILES not in session.info:
            # Listen for the session's lifetime, not once: every savepoint (one per imported item) fires these
            # events too, and only the outermost transaction decides whether the files stay.
            event.listen(session, "before_commit", _sync_new_files)
            event.listen(session, "after_commit", _forget_new_files)
            event.listen(session, "after_rollback", _discard_new_files)
        session.info.setdefault(_NEW_FILES, []).append(path)


def _sync_new_files(session: Session) -> None:
    # One flush of the page cache for the whole transaction instead of one fsync per file.
    if session.info.get(_NEW_FILES) and not session.in_nested_transaction():
        os.sync()


def _forget_new_files(session: Session) -> None:
    if not session.in_nested_transaction():  # a released savepoint can still be rolled back with its parent
        session.info.get(_NEW_FILES, []).clear()


def _discard_new_files(session: Session) -> None:
    # A rolled-back savepoint keeps the files of its parent; item_scope removes the ones written inside it.
    if not session.in_nested_transaction():
        _remove_all(session.info.get(_NEW_FILES, []))


def _remove_all(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
    paths.clear()
