"""The attacks of ``bench abuse``: each one of issue 23's, against a running server, bounded.

Each attack sends for about its seconds from its own process and returns the statuses it got
(counted) and what it saw; :mod:`muselens.benchmarks.abuse` runs them and measures the server.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np

from muselens.benchmarks.bad_input import KNOWN_REASONS
from muselens.v1 import recognition_pb2 as pb

CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
FORGED = "2026-01-01 00:00:00 INFO muselens forged: admin logged in"  # what an injected line would say
BOMB_SIZE = (8192, 2928)  # 23,986,176 pixels: inside the default limit of 24,000,000
BOMB_SCANS = 10_000


# -- the attacks ------------------------------------------------------------------------------


@dataclass
class Target:
    """The server under attack and what the attacks send."""

    address: str
    admin_address: str
    client: str  # the attacker's client token
    admin: str
    bundle: Path  # a valid bundle, outside the bundle root
    root: Path  # the server's --bundle-root
    log: Path  # the server's log
    seconds: float  # how long each attack goes on
    quick: bool
    workers: int
    stream_cap: int
    frame: bytes  # a good 640x480 JPEG

    # Channels are opened where the attack runs (a child process: a Target travels there unopened).
    @cached_property
    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address, options=CHANNEL_OPTIONS)

    @cached_property
    def admin_channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.admin_address, options=CHANNEL_OPTIONS)

    @property
    def as_client(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.client}"),)

    @property
    def as_admin(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.admin}"),)

    def recognize(self, frame: pb.Frame, timeout: float = 30.0) -> str:
        stub = self.channel.unary_unary("/muselens.v1.Recognizer/Recognize",
                                        request_serializer=pb.Frame.SerializeToString,
                                        response_deserializer=pb.Recognition.FromString)
        return _status(lambda: stub(frame, metadata=self.as_client, timeout=timeout))

    def admin_call(self, method: str, request, timeout: float = 60.0) -> tuple[str, str]:
        """(label, details) of an Admin call on the admin port."""
        stub = self.admin_channel.unary_unary(f"/muselens.v1.Admin/{method}",
                                              request_serializer=type(request).SerializeToString)
        try:
            stub(request, metadata=self.as_admin, timeout=timeout)
            return "OK", ""
        except grpc.RpcError as exc:
            return label(exc), exc.details() or ""

    def until(self, rounds: int) -> Iterator[int]:
        """Round numbers while the attack's time lasts (at least one, at most ``rounds``)."""
        end = time.monotonic() + self.seconds
        for n in range(rounds):
            if n and time.monotonic() >= end:
                return
            yield n

    def close(self) -> None:
        for name in ("channel", "admin_channel"):
            if name in self.__dict__:
                self.__dict__.pop(name).close()


def label(error: grpc.RpcError) -> str:
    """``CODE`` or ``CODE (reason)`` of a failed call: muselens's reason slug, or ``grpc_cap``
    when gRPC itself refused a message over its size cap."""
    details = error.details() or ""
    reason = details.split(":", 1)[0]
    if reason in KNOWN_REASONS:
        return f"{error.code().name} ({reason})"
    if "larger than max" in details:
        return f"{error.code().name} (grpc_cap)"
    return error.code().name


def _status(call: Callable[[], Any]) -> str:
    try:
        call()
        return "OK"
    except grpc.RpcError as exc:
        return label(exc)


def _parallel(senders: int, work: Callable[[int], Counter]) -> Counter:
    with ThreadPoolExecutor(senders) as pool:
        return sum(pool.map(work, range(senders)), Counter())


@dataclass(frozen=True)
class Attack:
    name: str
    description: str
    expected: frozenset[str]  # every status the attack may get (labels as :func:`label` writes them)
    run: Callable[[Target], tuple[Counter, dict[str, Any]]]


def _idle_streams(t: Target) -> tuple[Counter, dict[str, Any]]:
    """``workers + 4`` streams that send nothing, held open for the attack's time, then half-closed."""
    release, outcomes = threading.Event(), []
    stub = t.channel.stream_stream("/muselens.v1.Recognizer/StreamRecognize",
                                   request_serializer=pb.Frame.SerializeToString,
                                   response_deserializer=pb.Recognition.FromString)

    def nothing() -> Iterator[pb.Frame]:
        release.wait()
        return
        yield

    def hold() -> None:
        outcomes.append(_status(lambda: list(stub(nothing(), metadata=t.as_client, timeout=t.seconds + 60))))

    threads = [threading.Thread(target=hold, daemon=True) for _ in range(t.workers + 4)]
    for thread in threads:
        thread.start()
    time.sleep(t.seconds)
    held = sum(thread.is_alive() for thread in threads)
    release.set()
    for thread in threads:
        thread.join(60)
    return Counter(outcomes), {"streams": len(threads), "held_open": held, "stream_cap": t.stream_cap}


def scan_bomb(width: int, height: int, scans: int) -> bytes:
    """A progressive JPEG of ``width`` x ``height`` whose smallest scan is repeated ``scans``
    times: a few bytes each, and a pass over the whole image each for a decoder. The picture is
    flat 16x16 blocks (one MCU each), so its AC scans hold nothing but end-of-band runs."""
    blocks = np.random.default_rng(23).integers(0, 256, ((height + 15) // 16, (width + 15) // 16, 3), np.uint8)
    image = np.ascontiguousarray(np.kron(blocks, np.ones((16, 16, 1), np.uint8))[:height, :width])
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError("OpenCV could not encode a progressive JPEG")
    jpeg = buf.tobytes()
    starts = [m.start() for m in re.finditer(b"\xff\xda", jpeg)]
    eoi = jpeg.rindex(b"\xff\xd9")
    start, end = min(zip(starts, [*starts[1:], eoi]), key=lambda se: se[1] - se[0])
    return jpeg[:eoi] + jpeg[start:end] * scans + jpeg[eoi:]


def _scan_bomb(t: Target) -> tuple[Counter, dict[str, Any]]:
    bomb = scan_bomb(*BOMB_SIZE, BOMB_SCANS)
    frame = pb.Frame(frame_id="bomb", image=pb.Image(encoded=bomb))
    statuses = _parallel(4, lambda _: Counter(t.recognize(frame) for _ in t.until(2000)))
    return statuses, {"bytes": len(bomb), "size": f"{BOMB_SIZE[0]}x{BOMB_SIZE[1]}", "scans": BOMB_SCANS + 1,
                      "senders": 4}


def _enrol_nul(t: Target) -> tuple[Counter, dict[str, Any]]:
    photo = pb.Image(encoded=t.frame)
    requests = [pb.EnrollRequest(instance_id="abuse\x00nul", title="t", photos=[photo]),
                pb.EnrollRequest(instance_id="abuse-nul", title="ti\x00tle", photos=[photo]),
                pb.EnrollRequest(instance_id="abuse-nul", title="t", photos=[photo], metadata={"k": "v\x00"})]
    statuses = Counter(t.admin_call("Enroll", requests[n % 3])[0] for n in t.until(100_000))
    return statuses, {}


def big_png(width: int, height: int) -> bytes:
    """A valid RGB PNG of ``width`` x ``height`` of one colour: tens of KB, ``3 w h`` bytes decoded."""
    ok, buf = cv2.imencode(".png", np.full((height, width, 3), 90, np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return buf.tobytes()


def _enrol_memory(t: Target) -> tuple[Counter, dict[str, Any]]:
    photo, count = pb.Image(encoded=big_png(*BOMB_SIZE)), 4 if t.quick else 64
    request = pb.EnrollRequest(instance_id="abuse-enrol", title="enrolment memory", photos=[photo] * count)
    statuses = Counter(t.admin_call("Enroll", request, timeout=300)[0] for _ in t.until(3))
    return statuses, {"photos": count, "photo_bytes": len(photo.encoded),
                      "request_mb": round(request.ByteSize() / 2**20, 2),
                      "decoded_mb_each": round(3 * BOMB_SIZE[0] * BOMB_SIZE[1] / 2**20, 1)}


def _log_injection(t: Target) -> tuple[Counter, dict[str, Any]]:
    photo = pb.Image(encoded=t.frame)
    calls = [("LoadBundle", pb.LoadBundleRequest(path=f"bundle\n{FORGED}")),
             ("LoadBundle", pb.LoadBundleRequest(path="evil\u202egpj.exe")),
             ("Enroll", pb.EnrollRequest(instance_id="evil\u202egpj.exe", photos=[photo])),
             ("Enroll", pb.EnrollRequest(instance_id="abuse-log", title=f"x\r\n{FORGED}", photos=[photo]))]
    statuses = Counter(t.admin_call(*calls[n % len(calls)])[0] for n in t.until(100_000))
    text = t.log.read_text(encoding="utf-8", errors="replace")
    return statuses, {"forged_log_lines": sum(line.startswith(FORGED) for line in text.splitlines()),
                      "raw_bidi_in_log": text.count("\u202e")}


def _bundle_root(t: Target) -> tuple[Counter, dict[str, Any]]:
    link = t.root / "link-out"
    if not link.is_symlink():
        link.symlink_to(t.bundle.resolve())
    paths = [str(t.bundle.resolve()), "/etc/passwd", "/nonexistent/bundle", "../" * 12 + "etc",
             "link-out", str(link)]
    answers = [t.admin_call("LoadBundle", pb.LoadBundleRequest(path=paths[n % len(paths)])) for n in t.until(100_000)]
    return Counter(code for code, _ in answers), {"paths": len(paths),
                                                   "distinct_details": len({d for _, d in answers})}


def _unary_flood(t: Target) -> tuple[Counter, dict[str, Any]]:
    stub = t.channel.unary_unary("/muselens.v1.Recognizer/Recognize", request_serializer=None)
    request = pb.Frame(frame_id="flood", image=pb.Image(encoded=t.frame)).SerializeToString()
    statuses, size = Counter(), 100 if t.quick else 500
    for _ in t.until(100):
        futures = [stub.future(request, metadata=t.as_client, timeout=30) for _ in range(size)]
        statuses.update(_status(future.result) for future in futures)
    return statuses, {"concurrent": size}


def _timestamp(t: Target) -> tuple[Counter, dict[str, Any]]:
    """Lock-step streams: a frame stamped 1e308, then three normal frames."""
    stub = t.channel.stream_stream("/muselens.v1.Recognizer/StreamRecognize",
                                   request_serializer=pb.Frame.SerializeToString,
                                   response_deserializer=pb.Recognition.FromString)
    statuses, streams_ok_after = Counter(), 0
    for _ in t.until(1000):
        answered = threading.Semaphore(0)
        now = time.time()
        stamps = [1e308, now, now + 0.1, now + 0.2]

        def frames() -> Iterator[pb.Frame]:
            for i, stamp in enumerate(stamps):
                yield pb.Frame(frame_id=str(i), timestamp=stamp, image=pb.Image(encoded=t.frame))
                answered.acquire(timeout=30)

        got = []
        try:
            for answer in stub(frames(), metadata=t.as_client, timeout=60):
                got.append(f"{answer.error.code} ({answer.error.reason})" if answer.HasField("error") else "OK")
                answered.release()
        except grpc.RpcError as exc:
            got.append(label(exc))
        statuses.update(got)
        streams_ok_after += got[1:] == ["OK"] * (len(stamps) - 1)
    return statuses, {"streams_answering_every_later_frame": streams_ok_after}


def _largest_raw(t: Target) -> tuple[Counter, dict[str, Any]]:
    from muselens.runtime.server.app import MESSAGE_OVERHEAD, ServerConfig

    limit = ServerConfig().max_message_bytes - MESSAGE_OVERHEAD  # the serve defaults' raw byte limit
    width = 4096
    height = limit * 2 // 3 // width // 2 * 2  # NV21: 1.5 bytes a pixel, even height

    def nv21(h: int, w: int = width) -> pb.Frame:
        return pb.Frame(frame_id=f"raw{w}x{h}", image=pb.Image(raw=pb.RawImage(
            data=bytes(w * h * 3 // 2), width=w, height=h, pixel_format=pb.PIXEL_FORMAT_NV21)))

    frames = [nv21(height), nv21(height + 2), nv21(BOMB_SIZE[1], BOMB_SIZE[0])]
    statuses = _parallel(2, lambda _: Counter(t.recognize(frames[n % 3]) for n in t.until(300)))
    return statuses, {"limit_bytes": limit, "at_limit": f"{width}x{height} NV21, {width * height * 3 // 2} bytes",
                      "over_gRPC_cap": f"{BOMB_SIZE[0]}x{BOMB_SIZE[1]} NV21"}


ATTACKS = (
    Attack("idle_streams", "workers + 4 StreamRecognize calls that send nothing, held open",
           frozenset({"OK", "RESOURCE_EXHAUSTED"}), _idle_streams),
    Attack("scan_bomb", f"progressive JPEG {BOMB_SIZE[0]}x{BOMB_SIZE[1]}, {BOMB_SCANS} extra scans, 4 senders",
           frozenset({"RESOURCE_EXHAUSTED (too_many_scans)", "RESOURCE_EXHAUSTED (penalised)"}), _scan_bomb),
    Attack("enrol_nul", "Enroll with NUL in the id, the title, a metadata value",
           frozenset({"INVALID_ARGUMENT"}), _enrol_nul),
    Attack("enrol_memory", "Enroll with 64 PNGs (4 quick) each decoding to 24 MP",
           frozenset({"OK"}), _enrol_memory),
    Attack("log_injection", "LoadBundle path with a newline and a forged line, ids with U+202E, CR LF title",
           frozenset({"INVALID_ARGUMENT"}), _log_injection),
    Attack("bundle_root", "LoadBundle outside --bundle-root: a valid bundle, system files, '..', a symlink out",
           frozenset({"PERMISSION_DENIED"}), _bundle_root),
    Attack("unary_flood", "waves of 500 (100 quick) concurrent Recognize calls",
           frozenset({"OK", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED (penalised)"}), _unary_flood),
    Attack("timestamp", "streams: a frame stamped 1e308, then 3 normal frames",
           frozenset({"OK", "INVALID_ARGUMENT (bad_timestamp)"}), _timestamp),
    Attack("largest_raw", "NV21 at the raw byte limit, one row over, and 24 MP (over gRPC's cap); 2 senders",
           frozenset({"OK", "RESOURCE_EXHAUSTED (too_large)", "RESOURCE_EXHAUSTED (grpc_cap)",
                      "RESOURCE_EXHAUSTED (penalised)"}), _largest_raw),
)
ATTACK_NAMES = tuple(a.name for a in ATTACKS)
