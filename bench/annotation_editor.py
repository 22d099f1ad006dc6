"""Server time to open the Go Zone editor on a 1920x1080 frame whose case has 10 versions.

    python -m bench.annotation_editor [--rounds 20] [--versions 10]

Builds a temporary SQLite data folder: one 1920x1080 JPEG case with a model proposal, 10 saved versions.
Times the Annotate tab's handler as Gradio calls it (``AnnotateHandlers.open_case``) plus the components'
own postprocessing (the frame encoded for the editor, the history image), split into steps:

1. database: ``open_editor`` (head, pre-fills, history with authors and changes);
2. the stored frame file copied into Gradio's cache for the editor as it is, and decoded for the history;
3. history image drawn (boxes of every version) and HTML;
4. image encoding by the components (what Gradio does before the answer leaves the server).

Prints medians and ranges per step and in total.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _frame(width: int = 1920, height: int = 1080) -> bytes:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _setup(folder: Path, versions: int):
    from annotation.importers import CaseMeta
    from annotation.importers.frames import import_frames
    from annotation.workflow import GoZoneDraft, head, save_version
    from app.tabs.annotate import AnnotateHandlers
    from db.schema import Case
    from db.users import actor_of, create_user
    from tests.web_helpers import make_services

    (folder / "in").mkdir(parents=True)
    (folder / "in" / "frame_000001.jpg").write_bytes(_frame())
    services = make_services(folder / "data")
    with services.db.session_scope() as session:
        import_frames(session, services.frames, [folder / "in"], CaseMeta("bench", video="v1"))
        user = actor_of(create_user(session, "bench-ann", roles=["annotator"]))
        case_id = session.query(Case.id).scalar()
        for n in range(versions):
            current = head(session, case_id)
            draft = GoZoneDraft("B", (400.0 + 10 * n, 300.0, 1200.0 + 5 * n, 800.0), location=f"version {n}",
                                exposure="adequate", next_action="dissect", critical_risk="CBD")
            save_version(session, user, case_id, draft, base_id=current.id if current else None)
    return services, AnnotateHandlers(services), case_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--versions", type=int, default=10)
    args = parser.parse_args()

    import gradio as gr
    from gradio import processing_utils
    from gradio.utils import get_upload_folder
    from gradio_image_annotation import image_annotator

    from annotation.editor import open_editor
    from app import annotation_render as view
    from db.users import actor

    with tempfile.TemporaryDirectory() as tmp:
        services, handlers, case_id = _setup(Path(tmp), args.versions)
        request = gr.Request(username="bench-ann")
        editor_component = image_annotator(image_type="pil", render=False)
        history_component = gr.Image(type="pil", format="jpeg", render=False)
        steps: dict[str, list[float]] = {k: [] for k in ("database", "frame read, cached, decoded", "history drawn + HTML",
                                                          "image encoding (components)", "total")}
        for _ in range(args.rounds + 1):
            t0 = time.perf_counter()
            with services.db.session_scope() as session:
                state = open_editor(session, actor(session, "bench-ann"), case_id)
            t1 = time.perf_counter()
            data = services.frames.read(state.frame)
            cached = processing_utils.save_bytes_to_cache(data, "frame.jpeg", get_upload_folder())
            image = Image.open(io.BytesIO(data))
            image.load()
            t2 = time.perf_counter()
            view.history_html(state.history)
            history = view.history_image(image, state.history)
            t3 = time.perf_counter()
            editor_component.postprocess(view.editor_value(cached, state.draft))
            history_component.postprocess(history)
            t4 = time.perf_counter()
            for key, seconds in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0), strict=True):
                steps[key].append(seconds)
        handler = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            outputs = handlers.open_case(case_id, request)
            editor_component.postprocess(outputs[1])
            history_component.postprocess(outputs[10])
            handler.append(time.perf_counter() - t0)
        services.close()

    print(f"Go Zone editor on a 1920x1080 frame with {args.versions} versions ({args.rounds} rounds, first "
          "round of the split dropped as warm-up)")
    for key, seconds in steps.items():
        ms = [s * 1000 for s in seconds[1:]]
        print(f"  {key:<30} median {statistics.median(ms):7.1f} ms   min {min(ms):7.1f}   max {max(ms):7.1f}")
    ms = [s * 1000 for s in handler]
    print(f"  {'handler + postprocess, as served':<30} median {statistics.median(ms):7.1f} ms   "
          f"min {min(ms):7.1f}   max {max(ms):7.1f}")


if __name__ == "__main__":
    main()
