"""The Python client: recognise a frame, stream a camera, administer a server.

Streams survive the server going away: :meth:`MuselensClient.stream` reconnects with
exponential backoff (:class:`Backoff`) when the call fails with UNAVAILABLE and resumes with
the next frames of the same source -- frames sent into the dead call are not replayed, as a
camera's old frames are worth nothing. Tokens travel as ``authorization: Bearer`` metadata and
are never printed.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from muselens.core.data.images import encode_jpeg
from muselens.v1 import recognition_pb2 as pb
from muselens.v1 import recognition_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)
MAX_MESSAGE = 32 * 1024 * 1024


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, capped; ``max_attempts`` consecutive failures give up.

    It also paces the channel's own reconnection attempts (gRPC's default backoff grows to
    120 s, so a stream could stay down for seconds after its server is back). gRPC adds
    +-20% jitter to those, so the 0.8 s cap keeps a resumed stream within 1 s of the server
    being ready again.
    """

    initial: float = 0.05
    maximum: float = 0.8
    multiplier: float = 2.0
    max_attempts: int = 30

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.maximum, self.initial * self.multiplier ** attempt))


def image_message(image: np.ndarray | bytes, *, jpeg_quality: int = 90) -> pb.Image:
    """An ``Image``: encoded bytes as given, or an RGB uint8 array JPEG-encoded here."""
    if isinstance(image, (bytes, bytearray)):
        return pb.Image(encoded=bytes(image))
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected encoded bytes or an (H, W, 3) uint8 RGB array, got {array.shape} {array.dtype}")
    return pb.Image(encoded=encode_jpeg(array, jpeg_quality))


def frame_message(image: np.ndarray | bytes, *, frame_id: str = "", timestamp: float = 0.0,
                  options: pb.RecognizeOptions | None = None, jpeg_quality: int = 90) -> pb.Frame:
    return pb.Frame(frame_id=frame_id, timestamp=timestamp, image=image_message(image, jpeg_quality=jpeg_quality),
                    options=options)


class MuselensClient:
    """One channel to a muselens server (plaintext, or TLS with ``tls_ca``)."""

    def __init__(self, address: str, *, token: str | None = None, tls_ca: Path | str | None = None,
                 tls_server_name: str | None = None, timeout: float = 30.0, backoff: Backoff = Backoff(),
                 seed: int | None = None):
        self.address = address
        self.timeout = timeout
        self.backoff = backoff
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [("grpc.max_receive_message_length", MAX_MESSAGE),
                   ("grpc.max_send_message_length", MAX_MESSAGE),
                   ("grpc.initial_reconnect_backoff_ms", max(1, round(backoff.initial * 1000))),
                   ("grpc.min_reconnect_backoff_ms", max(1, round(backoff.initial * 1000))),
                   ("grpc.max_reconnect_backoff_ms", max(1, round(backoff.maximum * 1000)))]
        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        if tls_ca is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
            self.channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        self.recognizer = pb_grpc.RecognizerStub(self.channel)
        self.admin = pb_grpc.AdminStub(self.channel)
        self._rng = random.Random(seed)
        self.reconnects = 0

    def __repr__(self) -> str:  # never the token
        return f"MuselensClient({self.address!r}, authenticated={bool(self._metadata)})"

    def wait_ready(self, timeout: float = 10.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def _wait_ready(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less: until the channel has reconnected, if that is sooner."""
        ready = grpc.channel_ready_future(self.channel)
        try:
            ready.result(timeout=delay)
        except grpc.FutureTimeoutError:
            ready.cancel()  # still down after the full delay: the caller retries (and fails fast)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> MuselensClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- recognition ----------------------------------------------------------------------

    def recognize(self, image: np.ndarray | bytes, *, frame_id: str = "", options: pb.RecognizeOptions | None = None,
                  timeout: float | None = None) -> pb.Recognition:
        return self.recognizer.Recognize(frame_message(image, frame_id=frame_id, options=options),
                                         timeout=timeout or self.timeout, metadata=self._metadata)

    def bundle_info(self, timeout: float | None = None) -> pb.BundleInfo:
        return self.recognizer.GetBundleInfo(pb.GetBundleInfoRequest(), timeout=timeout or self.timeout,
                                             metadata=self._metadata)

    def stream(self, frames: Iterable[pb.Frame], *, reconnect: bool = True) -> Iterator[pb.Recognition]:
        """Send ``frames`` (``Frame`` messages) and yield recognitions as they come.

        On UNAVAILABLE (server restarting, network drop) the stream is re-opened after a
        backoff and continues with the next frames; other errors propagate.
        """
        source = iter(frames)
        lock = threading.Lock()
        exhausted = threading.Event()

        def requests() -> Iterator[pb.Frame]:
            while True:
                with lock:
                    try:
                        frame = next(source)
                    except StopIteration:
                        exhausted.set()
                        return
                yield frame

        failures = 0
        while True:
            call = self.recognizer.StreamRecognize(requests(), metadata=self._metadata)
            try:
                for recognition in call:
                    failures = 0
                    yield recognition
                return
            except grpc.RpcError as exc:
                if not reconnect or exc.code() not in RETRYABLE or exhausted.is_set():
                    raise
                failures += 1
                if failures > self.backoff.max_attempts:
                    raise
                delay = self.backoff.delay(failures - 1, self._rng)
                log.info("stream to %s lost (%s); reconnecting within %.2f s", self.address, exc.code().name, delay)
                self._wait_ready(delay)
                self.reconnects += 1
            finally:
                call.cancel()

    # -- administration -------------------------------------------------------------------

    def load_bundle(self, path: str, variant: str = "", timeout: float | None = None) -> pb.BundleInfo:
        return self.admin.LoadBundle(pb.LoadBundleRequest(path=path, variant=variant),
                                     timeout=timeout or self.timeout, metadata=self._metadata)

    def enroll(self, instance_id: str, photos: Sequence[np.ndarray | bytes], *, title: str = "",
               metadata: Mapping[str, str] | None = None, timeout: float | None = None) -> pb.EnrollResponse:
        request = pb.EnrollRequest(instance_id=instance_id, title=title, metadata=dict(metadata or {}),
                                   photos=[image_message(p) for p in photos])
        return self.admin.Enroll(request, timeout=timeout or self.timeout, metadata=self._metadata)


def read_token(path: Path | str | None, role: str = "client") -> str | None:
    """The first token of ``role`` in a muselens token file (``<role> <token>`` lines), or None."""
    if path is None:
        return None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) == 2 and parts[0] == role:
            return parts[1]
    raise ValueError(f"{path} holds no {role} token")
