"""The hostile input corpus (tests/hostile/) and the binary items made at test time, with what the tests of
tests/test_hostile_files.py and tests/test_hostile_handlers.py check of every stored item: it is kept as
inert text, the way the database keeps it."""

from __future__ import annotations

import html
import io
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path

from PIL import Image
from sqlalchemy import select

from annotation.importers import CaseMeta, import_frames
from db.schema import Case
from tests.conftest import make_image_bytes

CORPUS = Path(__file__).parent / "hostile"
STRINGS: dict[str, str] = json.loads((CORPUS / "strings.json").read_text())
USERNAMES = json.loads((CORPUS / "usernames.json").read_text())
MEGABYTE = "<script>alert(1)</script>" + "x" * (1024 * 1024)
UNSTORABLE = ("\x00", "\ud800", "\udfff")
# A script element, or any tag carrying an event handler attribute (<img src=x onerror=...>, <svg/onload=...>).
LIVE_MARKUP = re.compile(r"<script|<[a-z][^<>]*[\s/\"']on[a-z]+\s*=", re.IGNORECASE)


def storable(text: str) -> str:
    """What the database keeps of ``text``: NUL and lone surrogates become U+FFFD."""
    for char in UNSTORABLE:
        text = text.replace(char, "\ufffd")
    return text


def assert_inert(page: str, *shown: str) -> None:
    """``page`` (HTML a handler returned) shows every one of ``shown`` escaped and holds no live markup."""
    assert not LIVE_MARKUP.search(page), LIVE_MARKUP.search(page)
    flat = " ".join(page.split())  # pages may rewrap whitespace (a diff joins words with single spaces)
    for text in shown:
        assert " ".join(html.escape(storable(text), quote=True).split()) in flat, (text, page[:2000])


# --- binary items, made at test time -------------------------------------------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 30_000) -> bytes:
    """A valid 1-bit grey PNG of side x side pixels (900 M pixels) in a few KB: every row is one zero byte
    (filter) plus zeros, and zlib squeezes 112 MB of zeros to ~110 KB; level 9 and one stream."""
    raw_row = b"\x00" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(raw_row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    data = bytearray(make_image_bytes(16, 16, "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def webp_claiming(width: int, height: int) -> bytes:
    """An extended-format WebP header (VP8X) claiming a ``width`` x ``height`` canvas."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + \
        (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + make_image_bytes(8, 8, "WEBP")[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def gif_with_script() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(out, "GIF")
    return out.getvalue() + b"<script>alert('gif')</script>"


def multi_frame_tiff() -> bytes:
    out = io.BytesIO()
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    frames[0].save(out, "TIFF", save_all=True, append_images=frames[1:])
    return out.getvalue()


PNG = make_image_bytes(64, 48, "PNG", seed=5)
JPEG = make_image_bytes(64, 48, "JPEG", seed=6)
# name -> (bytes, words the rejection must contain)
IMAGES = {
    "png_decompression_bomb": (png_bomb(), "too large to decode safely"),
    "jpeg_claiming_65000x65000": (jpeg_claiming(65_000, 65_000), "too large to decode safely"),
    "jpeg_claiming_9000x9000": (jpeg_claiming(9_000, 9_000), "pixels; the limit is"),
    "webp_claiming_16384x16384": (webp_claiming(16_384, 16_384), "damaged"),
    "png_truncated": (PNG[: len(PNG) // 2], "truncated or corrupt"),
    "jpeg_truncated": (JPEG[: len(JPEG) // 2], "truncated"),
    "png_header_only": (PNG[:33], "not an image in an accepted format"),
    "png_that_is_a_zip": (PNG + zip_bytes({"evil.html": b"<script>alert(1)</script>"}), "after the end of the"),
    "png_that_is_html": (PNG + b"<html><script>alert(1)</script></html>", "after the end of the"),
    "jpeg_that_is_html": (JPEG + b"<!doctype html><script>alert(1)</script>", "after the end of the"),
    "zip_that_starts_as_png": (zip_bytes({"a.png": PNG}), "not an image in an accepted format"),
    "gif_with_script": (gif_with_script(), "not an image in an accepted format"),
    "multi_frame_tiff": (multi_frame_tiff(), "holds 2 images"),
    "svg_with_script": ((CORPUS / "files" / "svg_script.svg").read_bytes(), "not an image in an accepted format"),
    "html_named_png": ((CORPUS / "files" / "html_named.png").read_bytes(), "not an image in an accepted format"),
    "text_named_jpg": ((CORPUS / "files" / "text_named.jpg").read_bytes(), "not an image in an accepted format"),
    "php_named_webp": ((CORPUS / "files" / "php_named.webp").read_bytes(), "not an image in an accepted format"),
    "empty": (b"", "the file is empty"),
}


HOSTILE_KEY = "hostile/vid/000001"


def hostile_case(session, store, tmp_path: Path) -> Case:  # noqa: ANN001
    """One imported case, ``HOSTILE_KEY``, for predictions and texts to be attached to."""
    folder = tmp_path / "frames" / "vid"
    folder.mkdir(parents=True)
    (folder / "frame_000001.png").write_bytes(make_image_bytes(64, 48, seed=77))
    import_frames(session, store, [tmp_path / "frames"], CaseMeta("hostile"))
    return session.scalar(select(Case).where(Case.key == HOSTILE_KEY))
