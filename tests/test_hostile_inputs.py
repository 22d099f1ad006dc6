"""The hostile input corpus (tests/hostile/ plus binary items made here) fed through the paths each item would
really take: the frame store and the upload / frame / LabelMe / prediction importers, Label Studio results, the
annotation editor, review judgments and skips, studies, teaching collections and quizzes, approvals, user
accounts, backup archives, the CLI. Every item is either rejected with a message that says what is wrong or
stored as inert text (HTML the handlers return holds the escaped form, never a raw ``<script``); after the
whole corpus the app still serves.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import struct
import zipfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select
from typer.testing import CliRunner

from annotation.importers import CaseMeta, import_frames
from annotation.importers.labelme import MAX_JSON_BYTES, import_labelme
from annotation.importers.predictions import MAX_LINE_BYTES, import_predictions
from annotation.importers.uploads import import_uploads
from annotation.labelstudio.payloads import UnusableAnnotation, read_result
from annotation.queue import assign_annotators
from annotation.workflow import gozone_vocabulary
from app.cli import cli
from app.main import build_app
from app.services import Services
from app.settings import Settings
from app.tabs.annotate import AnnotateHandlers
from app.tabs.approve import ApproveHandlers
from app.tabs.compare import CompareHandlers
from app.tabs.exports import ExportHandlers
from app.tabs.review import ReviewHandlers
from app.tabs.studies import StudiesHandlers
from app.teach_handlers import TeachHandlers
from db.backup_format import FORMAT, FORMAT_VERSION, MANIFEST, ArchiveDamaged, open_archive
from db.cases import CaseFilter
from db.errors import Conflict, DomainError
from db.schema import (
    Annotation,
    Case,
    Collection,
    CollectionItem,
    Frame,
    Judgment,
    Label,
    Model,
    Prediction,
    QuizAttempt,
    ReviewItem,
    Study,
    User,
)
from db.users import actor, canonical_username, create_user, find_user
from review.studies import create_study
from tests.conftest import create_postgres_database, make_image_bytes
from tests.review_app import DEMO_MODELS, load_demo
from tests.web_helpers import PASSWORD, login

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


def test_the_corpus_has_at_least_thirty_items():
    labelme = list((CORPUS / "labelme").glob("*.json"))
    predictions = (CORPUS / "predictions.jsonl").read_text().splitlines()
    studio = json.loads((CORPUS / "labelstudio_results.json").read_text())
    boxes = json.loads((CORPUS / "editor_boxes.json").read_text())
    total = (len(IMAGES) + len(labelme) + len(predictions) + len(studio) + len(boxes) + len(STRINGS)
             + len(USERNAMES["duplicates"]) + len(USERNAMES["refused"]))
    assert total >= 30 and len(labelme) >= 10 and len(predictions) >= 10, total


# --- images: the frame store behind every importer ------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(IMAGES))
def test_a_hostile_image_upload_is_rejected_with_its_reason(session, store, tmp_path, name):
    data, reason = IMAGES[name]
    path = tmp_path / f"{name}.png"
    path.write_bytes(data)
    store.max_pixels = 40_000_000
    result = import_uploads(session, store, [(f"<b>{name}</b>.png", path)])
    assert not result.cases
    [(shown, why)] = result.rejected
    assert shown == f"<b>{name}</b>.png" and reason.lower() in why.lower(), why
    assert session.scalar(select(func.count()).select_from(Frame)) == 0
    assert not [p for p in store.root.rglob("*") if p.is_file()] if store.root.exists() else True


def test_an_over_large_file_is_refused_before_it_is_read(session, store, tmp_path):
    path = tmp_path / "huge.png"
    with path.open("wb") as handle:  # sparse: nothing is written to disk
        handle.truncate(store.max_bytes + 1)
    [(_, why)] = import_uploads(session, store, [("huge.png", path)]).rejected
    assert f"the limit is {store.max_bytes:,}" in why


def test_hostile_file_names_are_kept_as_text_and_never_become_paths(session, store, tmp_path):
    """A frame's file name only names the case; the store path is the sha256, whatever the name says."""
    folder = tmp_path / "in" / "..\\..\\evil"
    folder.mkdir(parents=True)
    (folder / "<img src=x onerror=alert(1)> 7.png").write_bytes(PNG)
    summary = import_frames(session, store, [tmp_path / "in"], CaseMeta("hostile-names"))
    assert summary.counts["imported"] == 1, summary.render()
    case = session.scalar(select(Case).where(Case.dataset == "hostile-names"))
    assert case.key == "hostile-names/..\\..\\evil/000007"
    stored = store.path(case.frame).resolve()
    assert stored.is_relative_to(store.root.resolve()) and stored.name.startswith(case.frame.sha256)
    with pytest.raises(ValueError, match="without '/'"):
        CaseMeta("../../etc")


def test_a_labelme_image_that_is_a_bomb_is_rejected(session, store, tmp_path):
    doc = json.loads((CORPUS / "labelme" / "script_texts.json").read_text())
    doc.update(imagePath=None, imageData=base64.b64encode(png_bomb()).decode(), imageWidth=30_000,
               imageHeight=30_000)
    (tmp_path / "bomb.json").write_text(json.dumps(doc))
    summary = import_labelme(session, store, [tmp_path], CaseMeta("hostile-bomb"))
    [(_, why)] = summary.rejected
    assert "too large to decode safely" in why


# --- LabelMe -------------------------------------------------------------------------------------------------

LABELME = {
    "path_dotdot": "points outside the import folder",
    "path_dotdot_inside_name": "points outside the import folder",
    "path_absolute": "is absolute",
    "path_windows_drive": "is absolute",
    "path_unc": "is absolute",
    "path_nul": "is not a usable file name",
    "box_nan": "Go Zone box rejected",
    "box_infinity": "Go Zone box rejected",
    "box_minus_infinity": "Go Zone box rejected",
    "box_1e309": "Go Zone box rejected",
    "box_huge_integer": "Go Zone box rejected",
    "box_strings": "Go Zone box rejected",
    "box_wrong_shape": "rectangle points must be",
    "script_texts": None,  # imported, kept as text
    "nul_and_surrogate_texts": None,
}


@pytest.fixture
def labelme_folder(tmp_path: Path) -> Path:
    """Every LabelMe file of the corpus in one folder, each in its own subfolder beside a 64x48 frame."""
    root = tmp_path / "labelme"
    for source in sorted((CORPUS / "labelme").glob("*.json")):
        folder = root / source.stem
        folder.mkdir(parents=True)
        (folder / source.name).write_bytes(source.read_bytes())
        (folder / "frame.png").write_bytes(make_image_bytes(64, 48, seed=len(source.stem)))
    return root


def test_every_labelme_file_of_the_corpus_is_rejected_or_stored_inert(session, store, labelme_folder):
    assert sorted(LABELME) == sorted(p.stem for p in (CORPUS / "labelme").glob("*.json"))
    summary = import_labelme(session, store, [labelme_folder], CaseMeta("hostile-labelme"))
    rejected = {Path(item).parts[0]: why for item, why in summary.rejected}
    for name, reason in LABELME.items():
        if reason is None:
            assert name not in rejected, rejected.get(name)
        else:
            assert reason in rejected.get(name, ""), (name, rejected.get(name))
    assert sorted(Path(item).parts[0] for item in summary.imported) == ["nul_and_surrogate_texts", "script_texts"]
    labels = {label.source.split(":")[1].split("/")[0]: label for label in session.scalars(
        select(Label).join(Case, Case.id == Label.case_id).where(Case.dataset == "hostile-labelme"))}
    texts = json.loads((CORPUS / "labelme" / "script_texts.json").read_text())
    script = labels["script_texts"]
    assert (script.location, script.next_action) == (texts["location"], texts["next_action"])
    assert script.extra["top"]["note"] == texts["note"]
    odd = labels["nul_and_surrogate_texts"]
    assert (odd.location, odd.exposure) == ("a\ufffdb", "half \ufffd pair")
    assert odd.extra["top"]["note"] == {"deep": ["x\ufffdy", "\ufffd"]}


def test_oversized_and_deeply_nested_labelme_files_are_rejected(session, store, tmp_path):
    (tmp_path / "frame.png").write_bytes(PNG)
    with (tmp_path / "oversized.json").open("wb") as handle:
        handle.truncate(MAX_JSON_BYTES + 1)
    (tmp_path / "nested.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "nested_key.json").write_text('{"shapes": ' + "[" * 100_000 + "]" * 100_000 + "}")
    summary = import_labelme(session, store, [tmp_path], CaseMeta("hostile-json"))
    rejected = dict(summary.rejected)
    assert f"the limit is {MAX_JSON_BYTES:,}" in rejected["oversized.json"]
    assert "nested too deeply" in rejected["nested.json"] and "nested too deeply" in rejected["nested_key.json"]


# --- predictions JSONL ---------------------------------------------------------------------------------------

PREDICTIONS = {
    "case_traversal": "no case with key '../../../../etc/passwd'",
    "case_sql": "no case with key",
    "case_nul": "'case' holds a NUL byte or a lone surrogate",
    "model_lone_surrogate": "'model' holds a NUL byte or a lone surrogate",
    "task_traversal": "unknown task '../../gozone'",
    "not_an_object": "a line must be a JSON object",
    "tokens_negative": "'prompt_tokens' must be a whole number >= 0",
    "latency_nan": "'latency_ms' must be a finite number",
    "latency_infinity": "'latency_ms' must be a finite number",
    "latency_1e309": "'latency_ms' must be a finite number",
    "tokens_1e309": "'prompt_tokens' must be a whole number >= 0",
    "params_nan": "params hold NaN or Infinity",
    "model_html": "may hold only letters, digits",
    "color_html": "'color' must be #rrggbb",
    "raw_script": None,
    "raw_nul_surrogate": None,
    "raw_sql": None,
    "raw_nan_boxes": None,
}
HOSTILE_KEY = "hostile/vid/000001"


def _hostile_case(session, store, tmp_path: Path) -> Case:
    folder = tmp_path / "frames" / "vid"
    folder.mkdir(parents=True)
    (folder / "frame_000001.png").write_bytes(make_image_bytes(64, 48, seed=77))
    import_frames(session, store, [tmp_path / "frames"], CaseMeta("hostile"))
    return session.scalar(select(Case).where(Case.key == HOSTILE_KEY))


def test_every_prediction_line_of_the_corpus_is_rejected_or_stored_inert(session, store, tmp_path):
    case = _hostile_case(session, store, tmp_path)
    names = json.loads((CORPUS / "predictions.names.json").read_text())
    assert sorted(names) == sorted(PREDICTIONS)
    summary = import_predictions(session, CORPUS / "predictions.jsonl")
    by_line = {int(item.rsplit(":", 1)[1]): why for item, why in summary.rejected}
    for number, name in enumerate(names, start=1):
        reason = PREDICTIONS[name]
        if reason is None:
            assert number not in by_line, (name, by_line[number])
        else:
            assert reason in by_line.get(number, ""), (name, by_line.get(number))
    raws = dict(session.execute(select(Model.name, Prediction.raw_text).join(
        Prediction.run).join(Model).where(Prediction.case_id == case.id)).all())
    assert raws["m-nul-raw"] == "<answer>B\ufffd \ufffd \ufffd</answer>"
    assert "<script>alert('answer')</script>" in raws["m-script-raw"]
    assert session.scalar(select(func.count()).select_from(Model).where(Model.name.like("<img%"))) == 0


def test_oversized_and_deeply_nested_prediction_lines_are_rejected(session, store, tmp_path):
    _hostile_case(session, store, tmp_path)
    path = tmp_path / "big.jsonl"
    line = {"case": HOSTILE_KEY, "model": "m", "task": "gozone"}
    with path.open("w") as handle:
        handle.write(json.dumps({**line, "raw": "x" * (MAX_LINE_BYTES + 10)}) + "\n")
        handle.write(json.dumps(line)[:-1] + ', "raw": "x", "params": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
        handle.write('{"a": ' * 100_000 + "1" + "}" * 100_000 + "\n")
    summary = import_predictions(session, path)
    rejected = dict(summary.rejected)
    assert f"longer than {MAX_LINE_BYTES:,} bytes" in rejected["big.jsonl:1"]
    assert "nested too deeply" in rejected["big.jsonl:2"] and "nested too deeply" in rejected["big.jsonl:3"]
    assert not summary.imported


# --- Label Studio results ------------------------------------------------------------------------------------

LABEL_STUDIO = {
    "x_string": "not four finite numbers", "width_null": "not four finite numbers",
    "y_bool": "not four finite numbers", "x_nan": "not four finite numbers",
    "width_infinity": "not four finite numbers", "height_1e309": "not four finite numbers",
    "rotated": "rotated by 45 degrees", "script_phase": "is not in the ResGo", "script_text": None,
}


def test_label_studio_results_with_non_finite_boxes_are_refused(session, store, tmp_path):
    case = _hostile_case(session, store, tmp_path)
    results = json.loads((CORPUS / "labelstudio_results.json").read_text())
    assert sorted(results) == sorted(LABEL_STUDIO)
    vocabulary = gozone_vocabulary(case)
    for name, reason in LABEL_STUDIO.items():
        if reason is None:
            read = read_result(results[name], 64, 48, vocabulary)
            assert read.draft.location == "<script>alert('ls')</script>"
            continue
        with pytest.raises(UnusableAnnotation, match=reason.replace(".", r"\.")):
            read_result(results[name], 64, 48, vocabulary)


# --- the web app's handlers ----------------------------------------------------------------------------------

SITE_USERS = {"h-admin": ("admin",), "h-rev": ("reviewer",), "h-ann": ("annotator",), "h-chief": ("approver",),
              "h-edu": ("educator",), "h-res": ("resident",)}


def _req(username: str) -> gr.Request:
    return gr.Request(username=username)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def site(request, tmp_path_factory):
    """The demo pack, one user per role, a study for the reviewer, a case for the annotator and a shared
    collection for the resident; on SQLite and on PostgreSQL (which refuses NUL and over-long names)."""
    data_dir = tmp_path_factory.mktemp(f"hostile-{request.param}") / "data"
    drop = None
    url = ""
    if request.param == "postgres":
        url, drop = create_postgres_database()
    services = Services.from_settings(Settings(data_dir=data_dir, database_url=url))
    load_demo(services.db, services.frames)
    with services.db.session_scope() as session:
        for name, roles in SITE_USERS.items():
            create_user(session, name, password=PASSWORD, roles=roles)
        cases = list(session.scalars(select(Case.id).where(Case.dataset == "demo").order_by(Case.key)))
        assign_annotators(session, actor(session, "h-admin"), cases[:3], [find_user(session, "h-ann").id])
    handlers = SimpleNamespace(review=ReviewHandlers(services, 51), studies=StudiesHandlers(services),
                               annotate=AnnotateHandlers(services), approve=ApproveHandlers(services),
                               teach=TeachHandlers(services), compare=CompareHandlers(services),
                               exports=ExportHandlers(services))
    study_html, study = handlers.studies.create(
        _req("h-admin"), "Hostile <b>study</b>", "gozone", list(DEMO_MODELS), "demo", "(any)", "(any)", "(any)",
        ["h-rev"], 1, "never", 0, False, 8)
    assert "Hostile &lt;b&gt;study&lt;/b&gt;" in study_html
    yield SimpleNamespace(services=services, h=handlers, study_id=study.value, cases=cases, kind=request.param)
    services.close()
    if drop is not None:
        drop()


@pytest.mark.parametrize("name", sorted(USERNAMES["duplicates"]))
def test_look_alike_usernames_are_refused_as_duplicates(site, name):
    original, look_alike = USERNAMES["duplicates"][name]
    with site.services.db.session_scope() as session:
        if find_user(session, original) is None:
            create_user(session, original, password=PASSWORD, roles=("reviewer",))
    assert canonical_username(look_alike) == original
    with site.services.db.session_scope() as session, pytest.raises(Conflict, match="is taken"):
        create_user(session, look_alike, password=PASSWORD, roles=("reviewer",))


@pytest.mark.parametrize("name", sorted(USERNAMES["refused"]))
def test_hostile_usernames_are_refused_with_the_rule(site, name):
    with site.services.db.session_scope() as session, pytest.raises(DomainError, match="letters a-z, digits"):
        create_user(session, USERNAMES["refused"][name], password=PASSWORD, roles=("reviewer",))


@pytest.mark.parametrize("password", ["pass\x00word-long", "pass\ud800word-long", "x" * 2000])
def test_hostile_passwords_are_refused_or_hashed(site, password):
    with site.services.db.session_scope() as session:
        try:
            user = create_user(session, f"pw{len(password)}-{ord(password[4]) % 1000}", password=password)
        except DomainError as exc:
            assert "password" in str(exc).lower()
        else:
            assert user.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize("name", ["display_nul", "display_long"])
def test_hostile_display_names_are_stored_cleaned_and_cut(site, name):
    value = {"display_nul": "Dr \x00 Evil <script>", "display_long": "x" * 5000}[name]
    with site.services.db.session_scope() as session:
        user = create_user(session, f"h-{name}", password=PASSWORD, display_name=value)
        assert user.display_name == storable(value)[:200]


HOSTILE_TEXTS = {**STRINGS, "one_megabyte": MEGABYTE}


def _error_of(call) -> str:
    """The message of the DomainError ``call`` raises, or "" when it succeeds."""
    try:
        call()
    except DomainError as exc:
        return str(exc)
    return ""


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_hostile_study_names_are_escaped_or_refused(site, name):
    text = HOSTILE_TEXTS[name]
    created = []

    def create() -> None:
        created.append(site.h.studies.create(_req("h-admin"), text, "gozone", list(DEMO_MODELS), "demo", "(any)",
                                             "(any)", "(any)", ["h-rev"], 1, "never", 0, False, 1))

    error = _error_of(create)
    if error:
        assert "study name" in error.lower(), error
        return
    [(page, _)] = created
    assert_inert(page, text.strip())


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_hostile_comments_and_skip_reasons_are_stored_as_text(site, name):
    text = HOSTILE_TEXTS[name]
    with site.services.db.session_scope() as session:
        study_id = create_study(session, actor(session, "h-admin"), name=f"comments {name}", task="gozone",
                                model_names=DEMO_MODELS, case_filter=CaseFilter(dataset="demo"),
                                reviewers=["h-rev"], k=1, reveal_policy="never", seed=1, limit=2).study.id
    shown = site.h.review.open_study(_req("h-rev"), study_id)
    token = shown[0]
    letters = [c[0] if isinstance(c, tuple) else c for c in shown[8].choices][:-1]
    values = []
    for letter in ("A", "B", "C", "D", "E"):
        values += [1 if letter in letters else None, None, None, None, []]
    after = site.h.review.submit(_req("h-rev"), 1000, study_id, token, "A", text, *values)
    assert "Stored: revision 1" in after[5]
    with site.services.db.session_scope() as session:
        item = session.scalar(select(ReviewItem).where(ReviewItem.token == token))
        judgment = session.scalar(select(Judgment).where(Judgment.item_id == item.id, Judgment.is_current))
        assert judgment.comment == (storable(text.strip()) or None)
    next_token = site.h.review.open_study(_req("h-rev"), study_id)[0]
    site.h.review.skip(_req("h-rev"), study_id, next_token, text)
    with site.services.db.session_scope() as session:
        item = session.scalar(select(ReviewItem).where(ReviewItem.token == next_token))
        assert (item.state, item.skipped_reason) == ("skipped", storable(text.strip()))


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_hostile_collection_names_notes_and_points_are_escaped_or_refused(site, name):
    text = HOSTILE_TEXTS[name]
    teach = site.h.teach
    created = []
    error = _error_of(lambda: created.append(teach.create_collection(_req("h-edu"), text)))
    if error:
        assert "collection name" in error.lower(), error
        collection_id = teach.create_collection(_req("h-edu"), f"fallback {name}")[0].value
    else:
        collection_id = created[0][0].value
        assert created[0][2] == " ".join(storable(text).split())  # the name as stored, shown in a textbox
    key = "demo/demo_vid01/000500"
    teach.add_by_key(_req("h-edu"), collection_id, key)
    with site.services.db.session_scope() as session:
        case_id = session.scalar(select(Case.id).where(Case.key == key))
    error = _error_of(lambda: teach.save_notes(_req("h-edu"), collection_id, case_id, text, text))
    if error:
        assert "at most" in error, error
        return
    teach.save_collection(_req("h-edu"), collection_id, f"shared {name}", text, True, "")
    slide = teach.start(_req("h-edu"), collection_id, None)
    for _ in range(6):
        slide = teach.step(_req("h-edu"), slide[0], "next_step")
    assert_inert(slide[3] + slide[4], text.strip())
    # A resident's quiz answer texts are kept and shown back escaped.
    question = teach.quiz_start(_req("h-res"), collection_id)
    canvas = {"image": None, "boxes": [{"xmin": 100, "ymin": 100, "xmax": 300, "ymax": 300}]}
    error = _error_of(lambda: question.append(teach.quiz_submit(_req("h-res"), question[0], canvas, "B", text,
                                                                text)))
    if error:
        assert "at most" in error, error
    else:
        assert_inert(question[-1][0], text.strip())


@pytest.mark.parametrize("name", sorted(HOSTILE_TEXTS))
def test_hostile_annotation_texts_and_rejection_comments_are_escaped_or_refused(site, name):
    text = HOSTILE_TEXTS[name]
    annotate, approve = site.h.annotate, site.h.approve
    case_id = site.cases[0]
    shown = annotate.open_case(case_id, _req("h-ann"))
    ids, value = shown[0], shown[1]
    value = {**value, "boxes": [{"xmin": 100, "ymin": 100, "xmax": 300, "ymax": 300, "label": "Go Zone"}]}
    error = _error_of(lambda: shown.append(annotate.save(True, ids, value, "B", text, text, text, text,
                                                         request=_req("h-ann"))))
    if error:
        assert "the limit is" in error, error
        return
    after = shown[-1]
    assert_inert(after[9], text.strip())  # the history
    with site.services.db.session_scope() as session:
        version = session.get(Annotation, after[0]["base_id"])
        assert version.location == storable(text.strip())
    shown_to_chief = approve.show(version.id, _req("h-chief"))
    assert_inert(shown_to_chief[0], text.strip())
    approve.decide(False, version.id, text, _req("h-chief"))
    reopened = annotate.open_case(case_id, _req("h-ann"))
    assert_inert(reopened[8], text.strip())  # the status line quotes the approver's comment


@pytest.mark.parametrize("name", sorted(json.loads((CORPUS / "editor_boxes.json").read_text())))
def test_hostile_editor_boxes_are_refused_with_a_clear_message(site, name):
    box = json.loads((CORPUS / "editor_boxes.json").read_text())[name]
    annotate = site.h.annotate
    shown = annotate.open_case(site.cases[1], _req("h-ann"))
    value = {**shown[1], "boxes": [box]}
    with pytest.raises(DomainError) as raised:
        annotate.save(False, shown[0], value, "B", "", "", "", "", request=_req("h-ann"))
    message = str(raised.value)
    assert any(words in message for words in ("A box is four numbers", "not a finite number", "lies outside",
                                              "has no area")), message


def test_hostile_model_outputs_are_rendered_inert_in_compare_and_review(site, tmp_path):
    services = site.services
    with services.db.session_scope() as session:
        case = _hostile_case(session, services.frames, tmp_path)
        summary = import_predictions(session, CORPUS / "predictions.jsonl")
        assert summary.imported
        case_id = case.id
    hostile = "m-script-raw"
    panels = list(site.h.compare.run_compare(case_id, "gozone", [hostile, "m-nul-raw", "m-sql-raw"],
                                             _req("h-admin")))[-1]
    page = "".join(part for part in panels[:4] if isinstance(part, str))
    assert_inert(page, "<script>alert('answer')</script>", "'); DROP TABLE predictions;--")
    # The same outputs blind, in a reviewer's queue.
    with services.db.session_scope() as session:
        study = create_study(session, actor(session, "h-admin"), name="Hostile outputs", task="gozone",
                             model_names=[hostile, "m-sql-raw", "m-nan-raw"],
                             case_filter=CaseFilter(dataset="hostile"), reviewers=["h-rev"], k=1,
                             reveal_policy="after_submit", seed=1).study
        study_id = study.id
    shown = site.h.review.open_study(_req("h-rev"), study_id)
    page = "".join(part for part in shown if isinstance(part, str))
    assert_inert(page, "<script>alert('think')</script>")
    assert page.count('class="sr-panel sr-blind"') == 3


@pytest.mark.parametrize("folder", ["../../etc", "..", "a/b", "/tmp/x", "<script>", "x\x00y", "x" * 101])
def test_an_export_folder_name_cannot_leave_the_exports_folder(site, folder):
    with pytest.raises(DomainError, match="no slashes"):
        site.h.exports.run(_req("h-admin"), "sft", folder, "(any)", "(any)", "(any)", False, "", "", "qwen25", 1,
                           "drop", "keep", "gozone", False)


# --- archives and the command line ---------------------------------------------------------------------------

def test_a_zip_slip_backup_archive_is_refused_before_anything_is_written(tmp_path):
    evil = "frames/../../../../tmp/evil.txt"
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "revision": "0004", "tables": [],
                "members": {evil: {"sha256": "0" * 64, "size": 4}}}
    path = tmp_path / "backup.zip"
    path.write_bytes(zip_bytes({MANIFEST: json.dumps(manifest).encode(), evil: b"evil"}))
    with pytest.raises(ArchiveDamaged, match="unexpected member"):
        open_archive(path)
    assert not Path("/tmp/evil.txt").exists() or Path("/tmp/evil.txt").read_bytes() != b"evil"


def test_hostile_cli_arguments_are_refused_or_kept_as_text(tmp_path, monkeypatch):
    monkeypatch.setenv("SURGREVIEW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SURGREVIEW_DATABASE_URL", raising=False)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "frame_000003.png").write_bytes(PNG)
    runner = CliRunner()
    refused = runner.invoke(cli, ["import", "frames", str(tmp_path / "in"), "--dataset", "../../etc"])
    assert refused.exit_code != 0 and "without '/'" in str(refused.exception)
    kept = runner.invoke(cli, ["import", "frames", str(tmp_path / "in"), "--dataset", "cli",
                               "--video", "../../../etc"])
    assert kept.exit_code == 0 and "1 imported" in kept.output, kept.output
    frames = [p for p in (tmp_path / "data" / "frames").rglob("*") if p.is_file()]
    assert frames and all(p.resolve().is_relative_to((tmp_path / "data" / "frames").resolve()) for p in frames)
    labelme = runner.invoke(cli, ["import", "labelme", str(CORPUS / "labelme" / "path_dotdot.json"),
                                  "--dataset", "cli"])
    assert labelme.exit_code == 3 and "points outside the import folder" in labelme.output, labelme.output


# --- the server keeps serving -------------------------------------------------------------------------------

def test_after_the_corpus_the_app_still_serves(site):
    """Runs after the handler tests of the same module (and database): health, sign-in and the page load."""
    with site.services.db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(User)) >= len(SITE_USERS)
        assert session.scalar(select(func.count()).select_from(Study)) >= 2
        assert session.scalar(select(func.count()).select_from(Collection)) >= 1
        assert session.scalar(select(func.count()).select_from(CollectionItem)) >= 1
        session.scalar(select(func.count()).select_from(QuizAttempt))
    app = build_app(site.services)
    with TestClient(app, follow_redirects=False) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert login(client, "h-admin").status_code == 303
        page = client.get("/app/")
        assert page.status_code == 200 and "gradio" in page.text.lower()
        assert client.get("/app/config").status_code == 200
        # A hostile sign-in attempt is a plain refusal, not an error.
        for name in ("<script>alert(1)</script>", "adm\x00in", "x" * 100_000, "' OR 1=1 --"):
            client.cookies.clear()
            assert login(client, name, "whatever1").status_code == 401


def test_a_value_the_database_refuses_reaches_the_user_as_a_clear_message():
    """The last line of defence when a service missed a length or character check (PostgreSQL's DataError)."""
    from sqlalchemy.exc import DataError

    from app.errors import as_gradio_error

    refused = DataError("INSERT ...", {}, Exception("value too long for type character varying(200)"))
    message = str(as_gradio_error(refused))
    assert "too long or holds characters the database cannot store" in message and "reference" not in message
