"""The frame store: which bytes become frames, what is kept on disk, what a rejection or a rollback leaves."""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from annotation.importers import CaseMeta, ImportSummary, import_frames
from annotation.importers.common import ImportRejected, item_scope
from db.engine import Database
from db.frames import FrameStore, ImageRejected, validate_image
from db.schema import Case, Frame

LIMITS = {"max_pixels": 20_000_000, "max_bytes": 8 * 1024 * 1024}


def noisy_image(width: int = 200, height: int = 150, seed: int = 0, mode: str = "RGB") -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_declared_size(width: int, height: int) -> bytes:
    """A ~100-byte PNG whose header claims ``width`` x ``height`` RGB pixels; the pixel data is not there."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


def tiff_with_broken_second_directory() -> bytes:
    """A one-frame TIFF whose 'next directory' pointer leads to a directory without image dimensions."""
    data = bytearray(encode(noisy_image(20, 10), "TIFF"))
    assert data[:4] == b"II*\x00"
    (first,) = struct.unpack("<I", data[4:8])
    (entries,) = struct.unpack("<H", data[first:first + 2])
    next_pointer = first + 2 + 12 * entries
    data[next_pointer:next_pointer + 4] = struct.pack("<I", len(data))
    data += struct.pack("<H", 1) + struct.pack("<HHII", 259, 3, 1, 1) + struct.pack("<I", 0)
    return bytes(data)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def frame_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Frame))


# --- accepted formats ---------------------------------------------------------------------------------------

ACCEPTED = [("PNG", "PNG", {}), ("JPEG", "JPEG", {"quality": 90}), ("WEBP", "WEBP", {}),
            ("TIFF", "TIFF", {}), ("BMP", "BMP", {})]


@pytest.mark.parametrize(("fmt", "expected_format", "options"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted_format_is_validated_with_size_and_format(fmt: str, expected_format: str,
                                                           options: dict) -> None:
    data = encode(noisy_image(200, 150), fmt, **options)
    image = validate_image(data, **LIMITS)
    assert (image.width, image.height, image.format) == (200, 150, expected_format)
    assert image.data == data


@pytest.mark.parametrize(("fmt", "expected_format", "options"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted_format_is_stored_byte_identical_with_a_thumbnail(
        session: Session, store: FrameStore, fmt: str, expected_format: str, options: dict) -> None:
    data = encode(noisy_image(200, 150, seed=3), fmt, **options)
    frame, created = store.put(session, store.validate(data))
    assert created
    stored = session.get(Frame, frame.id)
    assert (stored.width, stored.height, stored.format) == (200, 150, expected_format)
    assert stored.size_bytes == len(data)
    assert store.path(stored).read_bytes() == data
    assert store.path(stored).suffix == {"JPEG": ".jpg", "TIFF": ".tif"}.get(expected_format,
                                                                             f".{fmt.lower()}")
    assert not store.thumbnail_path(stored).exists()  # made on first request, not at import
    with Image.open(store.thumbnail(stored)) as thumb:
        assert thumb.format == "JPEG"
        assert max(thumb.size) == store.thumbnail_size
        assert thumb.size == (64, 48)  # aspect ratio kept


def test_thumbnail_of_a_portrait_palette_image_fits_its_height(session: Session, store: FrameStore) -> None:
    data = encode(noisy_image(90, 160, mode="P"), "PNG")
    frame, _ = store.put(session, store.validate(data))
    with Image.open(store.thumbnail(frame)) as thumb:
        assert thumb.mode == "RGB"
        assert thumb.size[1] == store.thumbnail_size
        assert thumb.size[0] < store.thumbnail_size


# --- content addressing -------------------------------------------------------------------------------------

def test_same_bytes_twice_make_one_frame_and_one_file(session: Session, store: FrameStore) -> None:
    data = encode(noisy_image(seed=7), "PNG")
    first, created_first = store.put(session, store.validate(data))
    second, created_second = store.put(session, store.validate(data))
    assert (created_first, created_second) == (True, False)
    assert second.id == first.id
    assert frame_count(session) == 1
    assert files_under(store.root) == [store.path(first)]
    assert store.path(first).name.startswith(first.sha256)


def test_different_bytes_make_different_frames(session: Session, store: FrameStore) -> None:
    a, _ = store.put(session, store.validate(encode(noisy_image(seed=1), "PNG")))
    b, _ = store.put(session, store.validate(encode(noisy_image(seed=2), "PNG")))
    assert a.id != b.id and a.sha256 != b.sha256
    assert frame_count(session) == 2


def test_put_restores_an_original_the_store_lost(session: Session, store: FrameStore) -> None:
    data = encode(noisy_image(seed=9), "PNG")
    frame, _ = store.put(session, store.validate(data))
    store.path(frame).unlink()
    again, created = store.put(session, store.validate(data))
    assert (again.id, created) == (frame.id, False)
    assert store.path(frame).read_bytes() == data


# --- rejections ---------------------------------------------------------------------------------------------

def _half(data: bytes) -> bytes:
    return data[:len(data) // 2]


def _corrupt_png_middle() -> bytes:
    data = bytearray(encode(noisy_image(seed=4), "PNG"))
    middle = len(data) // 2
    data[middle:middle + 16] = b"\xff" * 16  # inside the compressed pixels; the chunk CRC no longer matches
    return bytes(data)


def _multi_frame_tiff() -> bytes:
    return encode(noisy_image(seed=5), "TIFF", save_all=True, append_images=[noisy_image(seed=6)])


REJECTED = {
    "zero_bytes": (lambda: b"", "empty"),
    "text": (lambda: b"frame_000125,video01,train\n" * 10, "not an image in an accepted format"),
    "pdf": (lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "not an image"),
    "gif": (lambda: encode(noisy_image(seed=1), "GIF"), "not an image in an accepted format"),
    "truncated_png": (lambda: _half(encode(noisy_image(seed=2), "PNG")), "truncated"),
    "truncated_jpeg": (lambda: _half(encode(noisy_image(seed=3), "JPEG", quality=90)), "truncated"),
    "corrupt_png_middle": (_corrupt_png_middle, "corrupt"),
    "tiff_broken_directory": (tiff_with_broken_second_directory, "corrupt"),
    "multi_frame_tiff": (_multi_frame_tiff, "holds 2 images"),
    "over_store_pixel_limit": (lambda: png_with_declared_size(5000, 5000), "5000x5000"),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_rejected_bytes_say_why(case: str) -> None:
    make, reason = REJECTED[case]
    with pytest.raises(ImageRejected, match=reason):
        validate_image(make(), **LIMITS)


def test_gif_is_named_as_not_accepted_even_though_pillow_reads_it() -> None:
    data = encode(noisy_image(seed=1), "GIF")
    assert Image.open(io.BytesIO(data)).format == "GIF"
    with pytest.raises(ImageRejected, match="PNG, JPEG, WEBP, TIFF, BMP"):
        validate_image(data, **LIMITS)


def test_huge_declared_size_is_rejected_from_the_header_without_decoding() -> None:
    data = png_with_declared_size(30000, 30000)
    assert len(data) < 200
    started = time.perf_counter()
    with pytest.raises(ImageRejected) as rejected:
        validate_image(data, **LIMITS)
    elapsed = time.perf_counter() - started
    # Decoding 900 million pixels would take seconds and ~2.7 GB; reading a header takes microseconds.
    assert elapsed < 0.5
    message = str(rejected.value)
    assert "too large" in message
    assert "900000000" in message.replace(",", "")


def test_file_above_byte_limit_is_rejected_before_it_is_read(tmp_path: Path) -> None:
    small_store = FrameStore(tmp_path / "frames", max_bytes=10_000)
    data = encode(noisy_image(200, 150), "PNG")
    assert len(data) > 10_000
    with pytest.raises(ImageRejected, match=r"the limit is 10,000"):
        small_store.validate(data)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(ImageRejected, match=rf"{len(data):,} bytes; the limit is 10,000"):
        small_store.validate_file(path)


@pytest.mark.parametrize("case", list(REJECTED))
def test_rejection_writes_no_file_and_no_row(session: Session, store: FrameStore, case: str) -> None:
    make, _ = REJECTED[case]
    with pytest.raises(ImageRejected):
        store.put(session, store.validate(make()))
    assert files_under(store.root) == []
    assert frame_count(session) == 0


# --- rollback -----------------------------------------------------------------------------------------------
# These use a plain Session on a fresh connection, as Database.session_scope does in the app, rather than the
# `session` fixture: there session.rollback() only returns to a savepoint of the fixture's outer transaction,
# which would hide whether the store reacts to a real rollback of the outermost transaction.

@pytest.fixture
def plain_session(engine: Engine) -> Iterator[Session]:
    """A session of the app's kind; tests using it must roll back, never commit (the database is shared)."""
    session = Session(engine)
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def test_rollback_removes_files_written_by_put(plain_session: Session, store: FrameStore) -> None:
    frames = [store.put(plain_session, store.validate(encode(noisy_image(seed=s), "PNG")))[0] for s in (1, 2)]
    assert len(files_under(store.root)) == 2
    plain_session.rollback()
    assert files_under(store.root) == []
    for frame in frames:
        assert plain_session.scalar(select(Frame).where(Frame.sha256 == frame.sha256)) is None


def test_rollback_after_an_import_removes_every_file(plain_session: Session, store: FrameStore,
                                                     tmp_path: Path) -> None:
    # Each imported item is its own savepoint; releasing one must not make its files permanent.
    folder = tmp_path / "in" / "video01"
    folder.mkdir(parents=True)
    for index in range(3):
        (folder / f"frame_{index:06d}.png").write_bytes(encode(noisy_image(seed=index), "PNG"))
    summary = import_frames(plain_session, store, [tmp_path / "in"], CaseMeta("rollback_ds"))
    assert len(summary.imported) == 3
    assert len(files_under(store.root)) == 3
    plain_session.rollback()
    assert files_under(store.root) == []


def test_failed_user_action_leaves_no_files_and_no_rows(engine: Engine, store: FrameStore,
                                                        tmp_path: Path) -> None:
    database = Database(engine, sessionmaker(engine, expire_on_commit=False))
    data = encode(noisy_image(seed=11), "PNG")
    with pytest.raises(RuntimeError, match="action failed"), database.session_scope() as session:
        store.put(session, store.validate(data))
        raise RuntimeError("action failed")
    assert files_under(store.root) == []
    with database.session_scope() as session:
        sha256 = validate_image(data, **LIMITS).sha256
        assert session.scalar(select(Frame).where(Frame.sha256 == sha256)) is None


def test_a_rejected_item_keeps_the_files_of_earlier_work(session: Session, store: FrameStore,
                                                         tmp_path: Path) -> None:
    # The rejected item's savepoint rolls back; files of frames put before it still have their rows.
    kept, _ = store.put(session, store.validate(encode(noisy_image(seed=21), "PNG")))
    bad = tmp_path / "in" / "video01" / "frame_000001.png"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a png")
    summary = import_frames(session, store, [tmp_path / "in"], CaseMeta("keep_ds"))
    assert len(summary.rejected) == 1
    session.commit()
    assert store.path(kept).exists()
    assert session.scalar(select(func.count()).select_from(Case).where(Case.dataset == "keep_ds")) == 0


def test_an_item_refused_after_writing_drops_its_files_and_row(session: Session, store: FrameStore) -> None:
    kept, _ = store.put(session, store.validate(encode(noisy_image(seed=30), "PNG")))
    summary = ImportSummary("test")
    with item_scope(session, store, summary, "late_rejection"):
        store.put(session, store.validate(encode(noisy_image(seed=31), "PNG")))
        raise ImportRejected("a later check failed")
    with item_scope(session, store, summary, "database_refusal"):
        store.put(session, store.validate(encode(noisy_image(seed=32), "PNG")))
        session.add(Frame(sha256=kept.sha256, width=1, height=1, format="PNG", size_bytes=1, path="x.png"))
        session.flush()  # the sha256 is unique
    assert [item for item, _ in summary.rejected] == ["late_rejection", "database_refusal"]
    assert summary.rejected[0][1] == "a later check failed"
    assert "database refused the item" in summary.rejected[1][1]
    assert files_under(store.root) == [store.path(kept)]
    assert frame_count(session) == 1
