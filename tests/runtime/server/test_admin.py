"""Hot reload under a live stream, refused bundles, enrolment -- with the admin token."""

from __future__ import annotations

import json
import logging
import shutil

import grpc
import cv2
import numpy as np
import pytest

from muselens.runtime.bundle import BundleError
from muselens.runtime.recognition.holder import ModelHolder
from muselens.runtime.server.auth import Tokens
from muselens.v1 import recognition_pb2 as pb
from tests.runtime.server.conftest import copy_bundle, frame, rgb
from tests.runtime.server.test_stream import Lockstep

ADMIN = "admin-token-0123456789abcdef"
CLIENT = "client-token-0123456789abcdef"
TOKENS = Tokens(client=(CLIENT,), admin=(ADMIN,))
AS_ADMIN = (("authorization", f"Bearer {ADMIN}"),)
AS_CLIENT = (("authorization", f"Bearer {CLIENT}"),)


@pytest.fixture(scope="module")
def bundle_v2(tiny_bundle, tmp_path_factory):
    return copy_bundle(tiny_bundle, tmp_path_factory.mktemp("v2") / "bundle", "2.0.0")


def test_hot_reload_under_a_live_stream(served, start_server, query_images, bundle_v2):
    server = start_server(served, tokens=TOKENS)
    stream = Lockstep(server.stub, metadata=AS_CLIENT)
    before = [stream.send(frame(query_images[0], f"a{i}")) for i in range(2)]
    info = server.admin.LoadBundle(pb.LoadBundleRequest(path=str(bundle_v2)), metadata=AS_ADMIN)
    assert info.bundle_version == "2.0.0"
    after = [stream.send(frame(query_images[0], f"b{i}")) for i in range(2)]
    stream.close()
    assert {r.bundle_version for r in before} == {"1.0.0"}
    assert {r.bundle_version for r in after} == {"2.0.0"}
    assert [m.instance_id for m in after[0].matches] == [m.instance_id for m in before[0].matches]
    assert server.stub.GetBundleInfo(pb.GetBundleInfoRequest(), metadata=AS_CLIENT).bundle_version == "2.0.0"


def _tampered(src, dst):
    shutil.copytree(src, dst)
    gallery = dst / "gallery.npz"
    data = bytearray(gallery.read_bytes())
    data[len(data) // 2] ^= 0xFF
    gallery.write_bytes(bytes(data))
    return dst


def _truncated(src, dst):
    shutil.copytree(src, dst)
    model = dst / "models" / "fp32.onnx"
    model.write_bytes(model.read_bytes()[:1000])
    return dst


def _wrong_version(src, dst):
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["format_version"] = 99
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def _no_manifest(src, dst):
    shutil.copytree(src, dst)
    (dst / "manifest.json").unlink()
    return dst


def _archive(src, dst, extra):
    """The bundle as a .tar.gz with one extra, hostile member added by ``extra(tar)``."""
    import tarfile

    archive = dst.parent / f"{dst.name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(src.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(src)), recursive=False)
        extra(tar)
    return archive


def _escaping_member(src, dst):
    import io
    import tarfile

    def add(tar):
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"owned"))

    return _archive(src, dst, add)


def _symlink_member(src, dst):
    import tarfile

    def add(tar):
        info = tarfile.TarInfo("models/link.onnx")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)

    return _archive(src, dst, add)


def _truncated_archive(src, dst):
    archive = _archive(src, dst, lambda tar: None)
    archive.write_bytes(archive.read_bytes()[:-4000])
    return archive


@pytest.mark.parametrize("spoil, message", [
    (_tampered, "sha256 mismatch"), (_truncated, "size mismatch"), (_wrong_version, "format"),
    (lambda src, dst: dst, "does not exist"), (_no_manifest, "manifest.json: is missing"),
    (_escaping_member, "unsafe member"), (_symlink_member, "is a symlink"),
    (_truncated_archive, "truncated, corrupt or not a tar archive"),
])
def test_a_bad_bundle_is_refused_and_the_old_one_keeps_serving(served, start_server, query_images, tiny_bundle,
                                                               tmp_path, spoil, message):
    server = start_server(served, tokens=TOKENS)
    bad = spoil(tiny_bundle, tmp_path / "bad")
    with pytest.raises(grpc.RpcError) as err:
        server.admin.LoadBundle(pb.LoadBundleRequest(path=str(bad)), metadata=AS_ADMIN)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "still serving the previous one" in err.value.details() and message in err.value.details()
    r = server.stub.Recognize(frame(query_images[0]), metadata=AS_CLIENT)
    assert r.bundle_version == "1.0.0" and r.matches
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()


def test_enrolment_adds_an_artwork_without_retraining(served, start_server, query_images, tmp_path):
    server = start_server(served, tokens=TOKENS)
    photo = rgb(query_images[1])
    photos = [pb.Image(encoded=query_images[1]), pb.Image(encoded=b"not a photo"),
              pb.Image(raw=pb.RawImage(data=np.ascontiguousarray(photo[:, ::-1]).tobytes(), width=photo.shape[1],
                                       height=photo.shape[0], pixel_format=pb.PIXEL_FORMAT_RGB8))]
    response = server.admin.Enroll(pb.EnrollRequest(instance_id="new-1", title="The New One",
                                                    metadata={"room": "7"}, photos=photos), metadata=AS_ADMIN)
    assert response.instance_id == "new-1" and response.photos_used == 2
    assert [r.reason for r in response.rejected] == ["unknown_format"] and "photo 1" in response.rejected[0].message
    assert response.bundle.enrolled_images == 2 and response.bundle.artworks == 4
    r = server.stub.Recognize(frame(query_images[1], explain=True, explain_reference=True), metadata=AS_CLIENT)
    best = r.matches[0]
    assert (best.instance_id, best.title, dict(best.metadata)) == ("new-1", "The New One", {"room": "7"})
    d1, d2 = served.describer.describe(photo), served.describer.describe(np.ascontiguousarray(photo[:, ::-1]))
    average = (d1 + d2) / np.linalg.norm(d1 + d2)
    assert best.score == pytest.approx(float(d1 @ average), abs=1e-5)  # its photos' instance average
    sides = {h.side for h in r.heatmaps}
    assert sides == {pb.HEATMAP_SIDE_QUERY, pb.HEATMAP_SIDE_REFERENCE}  # the enrolled photo explains the match
    reference = [h for h in r.heatmaps if h.side == pb.HEATMAP_SIDE_REFERENCE][0]
    assert sum(reference.region_contributions) == pytest.approx(reference.score, abs=1e-5)


@pytest.mark.parametrize("request_, message", [
    (pb.EnrollRequest(instance_id="", photos=[pb.Image(encoded=b"x")]), "instance_id"),
    (pb.EnrollRequest(instance_id="a/b", photos=[pb.Image(encoded=b"x")]), "instance_id"),
    (pb.EnrollRequest(instance_id="x"), "at least one photo"),
    (pb.EnrollRequest(instance_id="x", photos=[pb.Image(encoded=b"junk")]), "no usable photo"),
])
def test_bad_enrolments_are_invalid_arguments(served, start_server, request_, message):
    server = start_server(served, tokens=TOKENS)
    with pytest.raises(grpc.RpcError) as err:
        server.admin.Enroll(request_, metadata=AS_ADMIN)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.value.details()
    assert server.stub.GetBundleInfo(pb.GetBundleInfoRequest(), metadata=AS_CLIENT).enrolled_images == 0


def _enrolment(photo: bytes, **fields) -> pb.EnrollRequest:
    request = dict(instance_id="new-1", title="A title", metadata={"room": "7"})
    request.update(fields)
    return pb.EnrollRequest(photos=[pb.Image(encoded=photo)], **request)


@pytest.mark.parametrize("fields", [
    {"instance_id": "a\x00b"}, {"title": "a\x00b"}, {"instance_id": "a\x1bb"}, {"title": "line\nbreak"},
    {"title": "a\u2028b"}, {"instance_id": "evil\u202egpj.exe"}, {"title": "x\u202dy"}, {"title": "x\u2066y"},
    {"instance_id": "x\u2069"}, {"title": "a\x7fb"}, {"metadata": {"ro\x00om": "7"}},
    {"metadata": {"room": "7\nforged"}}, {"metadata": {"room": "\u202e7"}},
])
def test_control_characters_in_an_enrolment_are_invalid_arguments(served, start_server, query_images, caplog,
                                                                  fields):
    """A NUL used to crash the call (UNKNOWN, a traceback logged); now it is refused up front, and counted."""
    server = start_server(served, tokens=TOKENS)
    with pytest.raises(grpc.RpcError) as err:
        server.admin.Enroll(_enrolment(query_images[1], **fields), metadata=AS_ADMIN)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "control or bidi" in err.value.details()
    assert "Traceback" not in caplog.text and "Exception calling application" not in caplog.text
    metrics = server.server.metrics.registry
    assert metrics.get_sample_value("muselens_enrolments_total", {"outcome": "refused"}) == 1.0
    assert server.stub.GetBundleInfo(pb.GetBundleInfoRequest(), metadata=AS_CLIENT).enrolled_images == 0


def test_an_enrolment_with_plain_unicode_is_accepted(served, start_server, query_images):
    """Accents, CJK and emoji are ordinary titles: only control and bidi characters are refused."""
    server = start_server(served, tokens=TOKENS)
    response = server.admin.Enroll(_enrolment(query_images[1], instance_id="café-東京", title="Mona Lisa 🖼",
                                              metadata={"salle": "états"}), metadata=AS_ADMIN)
    assert response.instance_id == "café-東京" and response.photos_used == 1


FORGED = "\n2026-01-01 12:00:00 INFO muselens: admin token accepted"


def _raw_unsafe(caplog) -> list[str]:
    """Log messages (with any traceback a handler would print) holding a raw newline forgery or bidi override."""
    formatter = logging.Formatter("%(message)s")
    return [text for text in (formatter.format(record) for record in caplog.records)
            if FORGED in text or "\u202e" in text]


@pytest.mark.parametrize("path", [f"/srv/bundles/x{FORGED}", "/srv/bundles/evil\u202egz.rat", "/srv/a\x00b"])
def test_a_bundle_path_with_control_characters_is_refused_and_forges_no_log_line(served, start_server, caplog,
                                                                                 path):
    server = start_server(served, tokens=TOKENS)
    with caplog.at_level(logging.INFO):
        with pytest.raises(grpc.RpcError) as err:
            server.admin.LoadBundle(pb.LoadBundleRequest(path=path), metadata=AS_ADMIN)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "control or bidi character" in err.value.details()
    assert not _raw_unsafe(caplog)
    assert server.server.metrics.registry.get_sample_value("muselens_bundle_reloads_total",
                                                           {"outcome": "refused"}) == 1.0


@pytest.mark.parametrize("error, code", [(BundleError(f"manifest name is x{FORGED}\u202e"), "FAILED_PRECONDITION"),
                                         (RuntimeError(f"backend failed on x{FORGED}\u202e"), "INTERNAL")])
def test_a_refused_or_failed_load_logs_its_error_escaped(served, start_server, caplog, error, code):
    """Bundle errors quote what the bundle holds (member names, manifest fields): escaped in the log."""
    def loader(path, config):
        raise error

    server = start_server(ModelHolder(served, loader=loader), tokens=TOKENS)
    with caplog.at_level(logging.INFO):
        with pytest.raises(grpc.RpcError) as err:
            server.admin.LoadBundle(pb.LoadBundleRequest(path="/srv/bundles/next"), metadata=AS_ADMIN)
    assert err.value.code().name == code
    assert not _raw_unsafe(caplog)
    assert "\\n2026-01-01" in caplog.text and "\\u202e" in caplog.text  # still said, escaped
    if code == "INTERNAL":
        assert "Traceback" in caplog.text and "test_admin.py" in caplog.text  # where it failed, still logged


@pytest.fixture
def bundle_root(tiny_bundle, tmp_path):
    """A bundle root holding one valid bundle (2.0.0), a symlink out of it, and outside: files of every kind."""
    root = tmp_path / "root"
    root.mkdir()
    copy_bundle(tiny_bundle, root / "v2", "2.0.0")
    (root / "escape").symlink_to(tiny_bundle, target_is_directory=True)
    (tmp_path / "outside.tar.gz").write_bytes(b"not a tar")
    (tmp_path / "outside-dir").mkdir()
    return root


def _outside_paths(tiny_bundle, root):
    outside = root.parent
    return [str(tiny_bundle),                      # a valid bundle, outside
            str(outside / "missing"),               # nothing there
            str(outside / "outside.tar.gz"),        # not a tar archive
            str(outside / "outside-dir"),           # a folder that is no bundle
            "/etc/passwd", "/" + "a" * 5000,         # a system file; a name too long to stat
            str(root / "escape"),                   # a symlink in the root that leads out of it
            str(root / ".." / "outside-dir"),       # '..' out of the root
            f"{root}/v2/../../missing",             # '..' out of the root, to nothing
            "../outside.tar.gz"]                    # relative: to the root, then out of it


def test_a_bundle_root_refuses_everything_outside_it_alike(served, start_server, tiny_bundle, bundle_root):
    """Outside the root the answer must not tell a valid bundle, a missing path, a system file or a
    symlink apart: it once said 'does not exist' against 'not a tar archive' for any path."""
    server = start_server(served, tokens=TOKENS, bundle_root=bundle_root)
    answers = set()
    paths = _outside_paths(tiny_bundle, bundle_root)
    for path in paths:
        with pytest.raises(grpc.RpcError) as err:
            server.admin.LoadBundle(pb.LoadBundleRequest(path=path), metadata=AS_ADMIN)
        answers.add((err.value.code(), err.value.details()))
    assert len(answers) == 1, answers
    code, details = answers.pop()
    assert code == grpc.StatusCode.PERMISSION_DENIED and "outside the server's bundle root" in details
    assert str(bundle_root) not in details and "exist" not in details
    metrics = server.server.metrics.registry
    assert metrics.get_sample_value("muselens_bundle_reloads_total", {"outcome": "refused"}) == len(paths)
    assert server.stub.GetBundleInfo(pb.GetBundleInfoRequest(), metadata=AS_CLIENT).bundle_version == "1.0.0"


def test_a_bundle_inside_the_root_loads_and_its_errors_stay_specific(served, start_server, bundle_root):
    server = start_server(served, tokens=TOKENS, bundle_root=bundle_root)
    for path in (str(bundle_root / "v2"), "v2", f"{bundle_root}/v2/../v2"):  # absolute, relative to the root, '..'
        info = server.admin.LoadBundle(pb.LoadBundleRequest(path=path), metadata=AS_ADMIN)
        assert info.bundle_version == "2.0.0"
    with pytest.raises(grpc.RpcError) as err:
        server.admin.LoadBundle(pb.LoadBundleRequest(path="missing"), metadata=AS_ADMIN)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "does not exist" in err.value.details()


def test_without_a_bundle_root_any_readable_path_loads(served, start_server, tiny_bundle, bundle_root):
    server = start_server(served, tokens=TOKENS)
    info = server.admin.LoadBundle(pb.LoadBundleRequest(path=str(bundle_root / "escape")), metadata=AS_ADMIN)
    assert info.bundle_version == "1.0.0" and info.name == "tiny"


def test_enrolment_holds_one_full_size_photo_at_a_time(served, start_server):
    """64 small PNGs that each decode to 24 MP raised RSS from 187 MB to 4.6 GB: every photo was
    decoded into one list first. Each is now brought to the recognition size as it is decoded."""
    import tracemalloc

    side, count = 2400, 6
    grad = np.linspace(0, 255, side, dtype=np.float32)
    image = np.stack([np.add.outer(grad, grad) / 2, np.tile(grad, (side, 1)), np.tile(grad[:, None], (1, side))],
                     axis=-1).astype(np.uint8)
    ok, png = cv2.imencode(".png", image)
    assert ok and len(png) * count < 16 * 2**20
    one_photo = image.nbytes  # 17 MB decoded
    server = start_server(served, tokens=TOKENS)
    tracemalloc.start()
    try:
        response = server.admin.Enroll(pb.EnrollRequest(instance_id="big", photos=[pb.Image(encoded=png.tobytes())]
                                                        * count), metadata=AS_ADMIN, timeout=120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.photos_used == count
    assert peak < 3 * one_photo, f"peak {peak / 2**20:.0f} MiB for {count} photos of {one_photo / 2**20:.0f} MiB"


def test_a_call_and_an_enrolment_count_as_work_but_not_against_their_own_inferences(served, start_server,
                                                                                     query_images, monkeypatch):
    """Other calls' inferences take one core while these run (engine.activity); their own take every core."""
    from muselens.runtime.engine.activity import ACTIVITY

    seen = []
    run = served.describer.run

    def recording_run(*args, **kwargs):
        seen.append((ACTIVITY.count, ACTIVITY.others()))
        return run(*args, **kwargs)

    monkeypatch.setattr(served.describer, "run", recording_run)
    server = start_server(served, tokens=TOKENS)
    server.stub.Recognize(frame(query_images[1]), metadata=AS_CLIENT)
    assert seen and all(count >= 1 and others == 0 for count, others in seen)
    seen.clear()
    server.admin.Enroll(pb.EnrollRequest(instance_id="counted", photos=[pb.Image(encoded=query_images[1])]),
                        metadata=AS_ADMIN)
    assert seen and all(count >= 1 and others == 0 for count, others in seen)
    assert ACTIVITY.count == 0
