"""Unary recognition through a real channel: same answer as in process, every bad input its status."""

from __future__ import annotations

import struct
import threading
import time
import zlib
from pathlib import Path

import grpc
import numpy as np
import pytest

from muselens.runtime.recognition.options import RecognizeOptions
from muselens.v1 import recognition_pb2 as pb
from tests.runtime.server.conftest import frame, rgb, slow_model
from tests.runtime.frames.helpers import scan_bomb


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A few hundred bytes claiming a 30000x30000 RGB image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def test_the_answer_through_grpc_equals_the_in_process_one(served, start_server, query_images):
    server = start_server(served)
    for data in query_images:
        r = server.stub.Recognize(frame(data, "q", top_k=3))
        local = served.recognize(rgb(data), RecognizeOptions(top_k=3))
        assert [m.instance_id for m in r.matches] == [m.instance_id for m in local.matches]
        np.testing.assert_allclose([m.score for m in r.matches], [m.score for m in local.matches], atol=1e-6)
        assert pb.Decision.Name(r.decision) == f"DECISION_{local.decision.name}"
        assert r.frame_id == "q" and r.bundle_version == "1.0.0"
        assert r.threshold == pytest.approx(served.threshold)
        assert r.timings.inference_ms > 0 and r.timings.total_ms >= r.timings.inference_ms
        assert r.smoothed.stable_frames == 1
        assert {m.title for m in r.matches} <= {label.title for label in served.labels.values()}


def test_heatmaps_decompose_the_reported_score(served, start_server, query_images):
    server = start_server(served)
    r = server.stub.Recognize(frame(query_images[0], explain=True, overlay=True,
                                    heatmap_kinds=[pb.HEATMAP_KIND_REGIONS, pb.HEATMAP_KIND_FULL, pb.HEATMAP_KIND_CLASS]))
    kinds = [h.kind for h in r.heatmaps]
    assert kinds == [pb.HEATMAP_KIND_REGIONS, pb.HEATMAP_KIND_FULL, pb.HEATMAP_KIND_CLASS]
    regions, full, cls = r.heatmaps
    assert regions.instance_id == r.matches[0].instance_id
    assert regions.score == pytest.approx(r.matches[0].score, abs=1e-5)
    assert sum(regions.values) == pytest.approx(regions.score, abs=1e-5)
    assert sum(regions.region_contributions) == pytest.approx(regions.score, abs=1e-5)
    assert len(regions.region_cells) == 4 and len(regions.values) == regions.height * regions.width
    cells = np.asarray(full.values)[list(full.region_cells)]
    assert cells.sum() == pytest.approx(full.score, abs=1e-5)
    assert regions.overlay_jpeg[:2] == b"\xff\xd8" and full.overlay_jpeg[:2] == b"\xff\xd8"
    assert sum(np.asarray(cls.values)[list(cls.region_cells)]) == pytest.approx(cls.score, abs=1e-5)


def test_a_region_of_interest_reranks(served, start_server, query_images):
    server = start_server(served)
    whole = server.stub.Recognize(frame(query_images[1], top_k=3))
    roi = server.stub.Recognize(frame(query_images[1], top_k=3,
                                      region_of_interest=pb.RegionOfInterest(x0=0, y0=0, x1=1, y1=1)))
    assert sorted(m.instance_id for m in roi.matches) == sorted(m.instance_id for m in whole.matches)
    half = server.stub.Recognize(frame(query_images[1], top_k=3,
                                       region_of_interest=pb.RegionOfInterest(x0=0, y0=0, x1=0.5, y1=1)))
    scores = [m.score for m in half.matches]
    assert scores == sorted(scores, reverse=True)


BAD = [
    ("empty bytes", pb.Frame(image=pb.Image(encoded=b"")), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    ("no image", pb.Frame(), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    ("not an image", pb.Frame(image=pb.Image(encoded=b"hello world, not a jpeg")), grpc.StatusCode.INVALID_ARGUMENT,
     "unknown_format"),
    ("truncated png", pb.Frame(image=pb.Image(encoded=b"\x89PNG\r\n\x1a\n\0\0")), grpc.StatusCode.INVALID_ARGUMENT,
     "truncated"),
    ("decompression bomb", pb.Frame(image=pb.Image(encoded=png_bomb())), grpc.StatusCode.RESOURCE_EXHAUSTED,
     "too_many_pixels"),
    ("progressive scan bomb", pb.Frame(image=pb.Image(encoded=scan_bomb(2000))), grpc.StatusCode.RESOURCE_EXHAUSTED,
     "too_many_scans"),
    ("raw size mismatch", pb.Frame(image=pb.Image(raw=pb.RawImage(data=b"\0" * 100, width=64, height=64,
                                                                  pixel_format=pb.PIXEL_FORMAT_RGB8))),
     grpc.StatusCode.INVALID_ARGUMENT, "size_mismatch"),
    ("raw without format", pb.Frame(image=pb.Image(raw=pb.RawImage(data=b"\0" * 12288, width=64, height=64))),
     grpc.StatusCode.INVALID_ARGUMENT, "bad_pixel_format"),
    ("unknown pixel format", pb.Frame(image=pb.Image(raw=pb.RawImage(data=b"\0" * 12288, width=64, height=64,
                                                                     pixel_format=99))),
     grpc.StatusCode.INVALID_ARGUMENT, "bad_pixel_format"),
    ("tiny raw frame", pb.Frame(image=pb.Image(raw=pb.RawImage(data=b"\0\0\0", width=1, height=1,
                                                               pixel_format=pb.PIXEL_FORMAT_RGB8))),
     grpc.StatusCode.INVALID_ARGUMENT, "too_small"),
]


@pytest.mark.parametrize("name, request_, code, reason", BAD, ids=[b[0] for b in BAD])
def test_bad_frames_get_their_status(served, start_server, name, request_, code, reason):
    server = start_server(served)
    with pytest.raises(grpc.RpcError) as err:
        server.stub.Recognize(request_)
    assert err.value.code() == code
    assert err.value.details().startswith(reason)


@pytest.mark.parametrize("options, reason", [
    (pb.RecognizeOptions(top_k=1000), "bad_top_k"),
    (pb.RecognizeOptions(region_of_interest=pb.RegionOfInterest(x0=0.5, y0=0, x1=0.2, y1=1)), "bad_roi"),
    (pb.RecognizeOptions(region_of_interest=pb.RegionOfInterest(x0=0, y0=0, x1=float("nan"), y1=1)), "bad_roi"),
    (pb.RecognizeOptions(explain=True, heatmap_kinds=[42]), "bad_heatmap_kind"),
])
def test_absurd_options_are_invalid_arguments(served, start_server, query_images, options, reason):
    server = start_server(served)
    request = pb.Frame(image=pb.Image(encoded=query_images[0]), options=options)
    with pytest.raises(grpc.RpcError) as err:
        server.stub.Recognize(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(reason)


def test_explaining_on_the_reference_side_uses_the_bundles_photos(served, start_server, query_images):
    server = start_server(served)
    r = server.stub.Recognize(frame(query_images[0], explain=True, explain_reference=True, overlay=True))
    reference = [h for h in r.heatmaps if h.side == pb.HEATMAP_SIDE_REFERENCE]
    assert [h.kind for h in reference] == [pb.HEATMAP_KIND_REGIONS, pb.HEATMAP_KIND_FULL]
    for h in reference:
        assert h.instance_id == r.matches[0].instance_id and h.overlay_jpeg[:2] == b"\xff\xd8"
        assert sum(h.region_contributions) == pytest.approx(h.score, abs=1e-5)
    # the reference side decomposes the frame's similarity to the best reference photo (as the bundle
    # stores it: JPEG at recognition size, so within JPEG noise of the gallery row's own score)
    query = served.describer.describe(rgb(query_images[0]))
    row, _ = served.search.best_reference(query, r.matches[0].instance_id)
    photo = served.describer.describe(served.bundle.reference_image(row))
    assert reference[0].score == pytest.approx(float(photo @ query), abs=1e-5)


def test_without_reference_photos_the_reference_side_is_a_failed_precondition(tiny_bundle, start_server,
                                                                             query_images, tmp_path):
    from muselens.runtime.recognition.served_model import ServedModel, ServingConfig
    from tests.runtime.server.conftest import copy_bundle

    bare = ServedModel.load(copy_bundle(tiny_bundle, tmp_path / "bare", "1.0.1"), ServingConfig(threads=1))
    server = start_server(bare)
    with pytest.raises(grpc.RpcError) as err:
        server.stub.Recognize(frame(query_images[0], explain=True, explain_reference=True))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "reference photos" in err.value.details()
    assert server.stub.Recognize(frame(query_images[0], explain=True)).heatmaps  # the query side still works


def test_oversized_messages_are_refused_before_decoding(served, start_server):
    from muselens.runtime.frames import FrameLimits

    server = start_server(served, limits=FrameLimits(max_encoded_bytes=64 * 1024), max_enrol_bytes=1)
    with pytest.raises(grpc.RpcError) as err:
        server.stub.Recognize(pb.Frame(image=pb.Image(encoded=b"\xff" * (512 * 1024))))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


MALFORMED_FRAME = b"\x0a\x02c1" + b"\x1a\xff\xff\x03"  # frame_id "c1", then an image field longer than the message


def test_the_metrics_say_what_the_served_model_holds_by_part(served, start_server):
    """Scraped from the model being served: an operator sees enrolments grow it, and RSS beyond it."""
    from prometheus_client.parser import text_string_to_metric_families

    server = start_server(served)
    families = text_string_to_metric_families(server.server.metrics.exposition().decode())
    state = next(f for f in families if f.name == "muselens_model_state_bytes")
    assert {s.labels["part"]: s.value for s in state.samples} == served.state_bytes()
    assert served.state_bytes()["gallery"] >= served.search.gallery.descriptors.nbytes > 0


def test_bytes_that_are_no_message_are_the_clients_error(served, start_server):
    from muselens.runtime.server.auth import Tokens

    server = start_server(served, tokens=Tokens(client=(), admin=("admin-token-0123456789abcdef",)))
    raw = server.channel.unary_unary("/muselens.v1.Recognizer/Recognize", request_serializer=None,
                                     response_deserializer=pb.Recognition.FromString)
    enroll = server.channel.unary_unary("/muselens.v1.Admin/Enroll", request_serializer=None,
                                        response_deserializer=pb.EnrollResponse.FromString)
    for call in (raw, enroll):
        with pytest.raises(grpc.RpcError) as err:
            call(MALFORMED_FRAME, metadata=(("authorization", "Bearer admin-token-0123456789abcdef"),))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # not grpc-python's INTERNAL
        assert err.value.details().startswith("malformed_message: the request is no valid muselens.v1.")
    exposition = server.server.metrics.exposition().decode()
    assert 'muselens_frames_total{method="Recognize",outcome="malformed_message"} 1.0' in exposition
    assert 'muselens_frames_total{method="Enroll",outcome="malformed_message"} 1.0' in exposition


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_malformed_messages_cost_no_memory(served, start_server):
    """grpc-python's own deserializer path kept ~19 KB per malformed request (grpcio 1.85): 2,000
    would add ~38 MiB. Parsed by muselens, they add nothing that stays."""
    from muselens.benchmarks.common import rss_mb

    raw = start_server(served).channel.unary_unary("/muselens.v1.Recognizer/Recognize", request_serializer=None,
                                                   response_deserializer=pb.Recognition.FromString)

    def send(n: int) -> None:
        for _ in range(n):
            with pytest.raises(grpc.RpcError):
                raw(MALFORMED_FRAME)

    send(200)  # first use of every path
    before = rss_mb()
    send(2000)
    assert rss_mb() - before < 10.0


def test_a_deadline_that_passes_mid_inference_stops_the_work(served, start_server, query_images):
    model = slow_model(served, delay=5.0)
    server = start_server(model)
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        server.stub.Recognize(frame(query_images[0]), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 3
    while model.describer.backend.cancelled_runs == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert model.describer.backend.cancelled_runs == 1  # the server stopped waiting, not after 5 s
    assert time.monotonic() - start < 3


def test_graceful_shutdown_finishes_calls_in_flight(served, start_server, query_images):
    model = slow_model(served, delay=0.4)
    server = start_server(model)
    results = []
    call = threading.Thread(target=lambda: results.append(server.stub.Recognize(frame(query_images[0]))))
    call.start()
    assert model.describer.backend.started.wait(5)
    server.server.stop(grace=5)
    call.join(10)
    assert len(results) == 1 and results[0].matches


def _gray(width: int, height: int, extra: int = 0) -> pb.Frame:
    return pb.Frame(image=pb.Image(raw=pb.RawImage(data=bytes(width * height + extra), width=width, height=height,
                                                   pixel_format=pb.PIXEL_FORMAT_GRAY8)))


@pytest.mark.parametrize("encoded, enrol, nv21", [
    (None, None, (4000, 3000)),            # the defaults: 18 MB of 12 MP NV21, over the 16 MiB message cap
    (64 * 1024, 1, (320, 320)),             # a small server: 150 KB over its 128 KiB cap
    (32 * 1024 * 1024, None, (6000, 4000)), # a large one: 36 MB of 24 MP NV21 over its 32 MiB + 64 KiB
])
def test_every_raw_frame_the_server_accepts_fits_in_a_message_it_receives(encoded, enrol, nv21):
    """The server's FrameLimits once accepted a 36 MB NV21 frame that gRPC's 16 MiB cap refused first."""
    from muselens.runtime.frames import FrameError, FrameLimits, decode_raw
    from muselens.runtime.server.app import MESSAGE_OVERHEAD, ServerConfig

    config = ServerConfig(**({} if encoded is None else {"limits": FrameLimits(max_encoded_bytes=encoded)}),
                          **({} if enrol is None else {"max_enrol_bytes": enrol}))
    assert config.frame_limits.max_raw_bytes + MESSAGE_OVERHEAD == config.max_message_bytes
    assert config.frame_limits.max_encoded_bytes + MESSAGE_OVERHEAD <= config.max_message_bytes
    width, height = nv21
    config.frame_limits.check_dimensions(width, height)  # within the pixel limits...
    with pytest.raises(FrameError) as err:  # ...but over the bytes a message can carry
        decode_raw(bytes(width * height * 3 // 2), width, height, "NV21", config.frame_limits)
    assert (err.value.reason, err.value.status) == ("too_large", "RESOURCE_EXHAUSTED")


def test_a_server_refuses_a_raw_limit_its_messages_cannot_carry():
    from muselens.runtime.frames import FrameLimits
    from muselens.runtime.server.app import ServerConfig

    with pytest.raises(ValueError, match="max_raw_bytes .* exceeds"):
        ServerConfig(limits=FrameLimits(max_raw_bytes=64 * 1024 * 1024))
    assert ServerConfig(limits=FrameLimits(max_raw_bytes=1024 * 1024)).frame_limits.max_raw_bytes == 1024 * 1024


def test_the_largest_raw_frame_is_answered_by_muselens_and_a_byte_more_refused_by_it(served, start_server):
    server = start_server(served)  # the default limits
    limit = server.server.config.frame_limits.max_raw_bytes
    width, height = 4096, limit // 4096
    assert width * height == limit  # 4096 x 4080 grey: exactly the largest raw frame
    r = server.stub.Recognize(_gray(width, height), timeout=60)
    assert r.bundle_version == "1.0.0" and not r.HasField("error")
    with pytest.raises(grpc.RpcError) as err:
        server.stub.Recognize(_gray(width, height, extra=1), timeout=60)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.value.details().startswith(f"too_large: raw frame of {limit + 1} bytes exceeds the limit of {limit}")


def test_a_raw_frame_between_the_limit_and_the_message_cap_gets_muselens_answer(served, start_server):
    from muselens.runtime.frames import FrameLimits

    server = start_server(served, limits=FrameLimits(max_encoded_bytes=64 * 1024), max_enrol_bytes=1)
    assert server.server.config.frame_limits.max_raw_bytes == 64 * 1024
    assert server.stub.Recognize(_gray(256, 256)).bundle_version == "1.0.0"  # 65536 bytes: exactly the limit
    with pytest.raises(grpc.RpcError) as err:
        server.stub.Recognize(_gray(320, 320))  # 100 KiB: within gRPC's cap, beyond muselens's raw limit
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and err.value.details().startswith("too_large:")


def test_an_unexpected_failure_is_internal_never_unknown_and_its_log_is_escaped(served, start_server,
                                                                                   query_images, caplog):
    """grpc answers an exception it did not expect UNKNOWN, 'Exception calling application: <message>',
    and logs the message raw: a client-supplied newline in it forged a log line."""
    import logging

    class Broken:
        def __getattr__(self, name):
            return getattr(served, name)

        def recognize(self, *args, **kwargs):
            raise RuntimeError("boom\nFORGED line \u202e")

    server = start_server(served)
    server.server.holder._model = Broken()
    caplog.set_level(logging.INFO)
    with pytest.raises(grpc.RpcError) as err:
        server.stub.Recognize(frame(query_images[0]))
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details() == "Recognize failed inside the server (RuntimeError); the server logged it"
    answers = server.stub.StreamRecognize(iter([frame(query_images[0])]))
    with pytest.raises(grpc.RpcError) as err:
        list(answers)
    assert err.value.code() == grpc.StatusCode.INTERNAL and "StreamRecognize failed" in err.value.details()
    logged = [r.getMessage() for r in caplog.records if "failed:" in r.getMessage()]
    assert len(logged) == 2 and all("boom\\nFORGED line \\u202e" in m for m in logged)
    assert not any("\nFORGED" in r.getMessage() or "\u202e" in r.getMessage() for r in caplog.records)


def _server_frames_in_cycles() -> list[str]:
    """Functions of muselens's server whose frames only the cyclic GC would free (and all they hold)."""
    import gc

    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return sorted({o.f_code.co_name for o in gc.garbage
                       if type(o).__name__ == "frame" and "/runtime/server/" in o.f_code.co_filename})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.mark.parametrize("failure", ["refused", "internal"])
def test_a_refused_call_leaves_no_reference_cycle_holding_its_request(served, start_server, query_images, failure):
    """Every abort passed through the INTERNAL wrapper, which re-raised the exception it was given:
    its frame then held the exception that held the frame, and the request with them, until the
    cyclic GC ran -- refused 16 MB raw frames took a server from 150 to 311 MiB before one did."""
    import gc

    class Broken:
        def __getattr__(self, name):
            return getattr(served, name)

        def recognize(self, *args, **kwargs):
            raise RuntimeError("boom")

    server = start_server(served)
    if failure == "internal":
        server.server.holder._model = Broken()
    request = frame(b"no image" if failure == "refused" else query_images[0])
    gc.collect()
    gc.disable()  # nothing collects behind the test's back
    try:
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as err:
                server.stub.Recognize(request, timeout=10)
            with pytest.raises(grpc.RpcError):
                list(server.stub.StreamRecognize(iter([request]), timeout=10)) if failure == "internal" else \
                    server.admin.Enroll(pb.EnrollRequest(instance_id="a\x00b"), timeout=10)
        time.sleep(0.2)  # the server's handlers return after the client has its status
        assert err.value.code() == (grpc.StatusCode.INVALID_ARGUMENT if failure == "refused"
                                    else grpc.StatusCode.INTERNAL)
        assert _server_frames_in_cycles() == []
    finally:
        gc.enable()
