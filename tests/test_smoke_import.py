from annotation.importers import CaseMeta, import_frames
from tests.conftest import make_image_bytes

def test_import(session, store, tmp_path):
    d = tmp_path / "in" / "video01"; d.mkdir(parents=True)
    (d / "frame_000125.png").write_bytes(make_image_bytes(seed=1))
    (d / "frame_000126.png").write_bytes(make_image_bytes(seed=2))
    (d / "bad.png").write_bytes(b"nope")
    s = import_frames(session, store, [tmp_path / "in"], CaseMeta("demo"))
    print(s.render())
    s2 = import_frames(session, store, [tmp_path / "in"], CaseMeta("demo"))
    print(s2.render())
    assert len(s.imported) == 2 and len(s2.duplicates) == 2
