"""Streams: a bad frame does not end them, stale frames are dropped, answers are smoothed."""

from __future__ import annotations

import queue
import threading
import time

import grpc
import pytest

from muselens.v1 import recognition_pb2 as pb
from tests.runtime.server.conftest import frame, slow_model

END = object()


class Lockstep:
    """Sends one frame, waits for its answer, then the next (nothing is ever dropped)."""

    def __init__(self, stub, **kwargs):
        self.outbox: queue.Queue = queue.Queue()
        self.responses = stub.StreamRecognize(self._requests(), **kwargs)

    def _requests(self):
        while (item := self.outbox.get()) is not END:
            yield item

    def send(self, message: pb.Frame) -> pb.Recognition:
        self.outbox.put(message)
        return next(self.responses)

    def close(self) -> None:
        self.outbox.put(END)
        assert next(self.responses, None) is None


def test_a_bad_frame_gets_its_own_error_and_the_stream_goes_on(served, start_server, query_images):
    server = start_server(served)
    stream = Lockstep(server.stub)
    ok = stream.send(frame(query_images[0], "1"))
    assert ok.frame_id == "1" and ok.matches and not ok.HasField("error")
    for i, bad in enumerate([pb.Frame(image=pb.Image(encoded=b"garbage")),
                             pb.Frame(image=pb.Image(raw=pb.RawImage(data=b"\0", width=64, height=64,
                                                                     pixel_format=pb.PIXEL_FORMAT_GRAY8))),
                             pb.Frame(image=pb.Image(encoded=query_images[0]), options=pb.RecognizeOptions(top_k=999))]):
        bad.frame_id = f"bad{i}"
        r = stream.send(bad)
        assert r.frame_id == f"bad{i}" and r.HasField("error") and not r.matches
        assert r.error.code == "INVALID_ARGUMENT"
    after = stream.send(frame(query_images[1], "2"))
    assert after.frame_id == "2" and after.matches and not after.HasField("error")
    stream.close()


def test_bytes_that_are_no_frame_are_answered_and_the_stream_goes_on(served, start_server, query_images):
    raw = start_server(served).channel.stream_stream("/muselens.v1.Recognizer/StreamRecognize",
                                                     request_serializer=None,
                                                     response_deserializer=pb.Recognition.FromString)
    stream = Lockstep(type("Raw", (), {"StreamRecognize": staticmethod(raw)}))
    assert stream.send(frame(query_images[0], "1").SerializeToString()).matches
    bad = stream.send(b"\x0a\x02c2" + b"\x1a\xff\xff\x03")  # an image field longer than the message
    assert bad.frame_id == "" and not bad.matches  # no frame_id could be read
    assert (bad.error.code, bad.error.reason) == ("INVALID_ARGUMENT", "malformed_message")
    assert "muselens.v1.Frame" in bad.error.message
    after = stream.send(frame(query_images[1], "3").SerializeToString())
    assert after.frame_id == "3" and after.matches and not after.HasField("error")
    stream.close()


def test_a_timestamp_going_backwards_is_that_frames_error(served, start_server, query_images):
    server = start_server(served)
    stream = Lockstep(server.stub)
    first = stream.send(pb.Frame(frame_id="1", timestamp=2.0, image=pb.Image(encoded=query_images[0])))
    back = stream.send(pb.Frame(frame_id="2", timestamp=1.0, image=pb.Image(encoded=query_images[0])))
    later = stream.send(pb.Frame(frame_id="3", timestamp=3.0, image=pb.Image(encoded=query_images[0])))
    stream.close()
    assert not first.HasField("error") and not later.HasField("error")
    assert (back.error.code, back.error.reason) == ("INVALID_ARGUMENT", "bad_timestamp")


def test_the_same_artwork_in_view_holds_a_steady_answer(served, start_server, query_images):
    server = start_server(served)
    stream = Lockstep(server.stub)
    answers = [stream.send(pb.Frame(frame_id=str(i), timestamp=i / 30, image=pb.Image(encoded=query_images[2])))
               for i in range(8)]
    stream.close()
    raw = {(r.decision, r.matches[0].instance_id) for r in answers}
    assert len(raw) == 1  # the same frame: the same raw answer
    shown = [(r.smoothed.decision, r.smoothed.instance_id) for r in answers[-3:]]
    assert len(set(shown)) == 1
    assert [r.smoothed.stable_frames for r in answers[-3:]] == sorted(r.smoothed.stable_frames for r in answers[-3:])
    assert answers[-1].smoothed.stable_frames >= 3
    last = answers[-1].smoothed
    if last.decision == pb.DECISION_ARTWORK:  # the shown artwork carries its title
        assert last.title == served.labels[last.instance_id].title
    else:
        assert (last.instance_id, last.title) == ("", "")


def test_latest_frame_wins_when_the_client_sends_faster_than_the_server_works(served, start_server, query_images):
    model = slow_model(served, delay=0.1)
    server = start_server(model)
    frames = [pb.Frame(frame_id=f"{i:03d}", image=pb.Image(encoded=query_images[i % 3])) for i in range(30)]
    start = time.monotonic()
    answers = list(server.stub.StreamRecognize(iter(frames)))
    elapsed = time.monotonic() - start
    ids = [r.frame_id for r in answers]
    assert ids == sorted(ids) and ids[-1] == "029"  # in order, and the newest frame is always answered
    assert len(answers) < 10  # 30 frames x 0.1 s would be 3 s of work
    assert answers[-1].dropped_frames == 30 - len(answers)
    assert elapsed < 2.0
    assert max(r.timings.queue_ms for r in answers) < 500  # latency does not pile up
    assert server.server.metrics.dropped._value.get() == 30 - len(answers)


def test_a_client_that_leaves_stops_the_work(served, start_server, query_images):
    model = slow_model(served, delay=5.0)
    server = start_server(model)

    def endless():
        i = 0
        while True:
            yield pb.Frame(frame_id=str(i), image=pb.Image(encoded=query_images[0]))
            i += 1
            time.sleep(0.01)

    call = server.stub.StreamRecognize(endless())
    assert model.describer.backend.started.wait(5)
    call.cancel()
    deadline = time.monotonic() + 3
    while (model.describer.backend.cancelled_runs == 0 or server.server.metrics.active_streams._value.get() != 0) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    assert model.describer.backend.cancelled_runs == 1
    assert server.server.metrics.active_streams._value.get() == 0


def test_a_stream_deadline_is_honoured(served, start_server, query_images):
    model = slow_model(served, delay=5.0)
    server = start_server(model)
    with pytest.raises(grpc.RpcError) as err:
        list(server.stub.StreamRecognize(iter([frame(query_images[0])]), timeout=0.3))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_parallel_streams_each_get_their_own_frames(served, start_server, query_images):
    server = start_server(served)
    results: dict[int, list[str]] = {}

    def run(n: int) -> None:
        stream = Lockstep(server.stub)
        results[n] = [stream.send(frame(query_images[n], f"{n}-{i}")).frame_id for i in range(4)]
        stream.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == {n: [f"{n}-{i}" for i in range(4)] for n in range(3)}


@pytest.mark.parametrize("bad", [1e308, 2e12, -5.0, float("inf"), float("nan")])
def test_an_absurd_timestamp_is_that_frames_error_and_the_stream_lives_on(served, start_server, query_images, bad):
    """After one accepted 1e308 every later frame was refused as 'going backwards'."""
    server = start_server(served)
    stream = Lockstep(server.stub)
    answers = [stream.send(pb.Frame(frame_id=str(i), timestamp=t, image=pb.Image(encoded=query_images[0])))
               for i, t in enumerate([bad, 1.0, 2.0, bad, 3.0])]
    stream.close()
    assert [r.HasField("error") for r in answers] == [True, False, False, True, False]
    for r in (answers[0], answers[3]):
        assert (r.error.code, r.error.reason) == ("INVALID_ARGUMENT", "bad_timestamp") and "timestamp" in r.error.message
    assert all(r.matches for r in answers if not r.HasField("error"))
    metrics = server.server.metrics.registry
    assert metrics.get_sample_value("muselens_frames_total", {"method": "StreamRecognize",
                                                              "outcome": "bad_timestamp"}) == 2.0
    assert metrics.get_sample_value("muselens_stage_seconds_count", {"stage": "inference"}) == 3.0  # none spent on them
