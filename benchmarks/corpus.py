"""A seeded corpus of bad (and deliberately awkward but valid) requests, each with its expected outcome.

``Corpus(count, seed).case(i)`` builds case ``i`` on demand (deterministically from ``(seed, i)``),
so 10,000 cases never sit in memory at once. Each :class:`Case` is the serialized request bytes
(a ``pb.Frame`` for Recognize/StreamRecognize, a ``pb.EnrollRequest`` for Admin.Enroll, or raw
bytes that are no valid message at all), the call metadata, and the outcome(s) the server must
produce: the gRPC status name on a unary call with the reason slug of the error (the servicer
formats details as ``"<reason>: ..."``), or, on a stream, ``Recognition.error.code/.reason``
(``"OK"`` with reason ``""`` for a recognised frame).

What each category expects is the service's contract (protos/muselens/v1/recognition.proto,
:mod:`muselens.runtime.frames`, :mod:`muselens.runtime.recognition.options`), written down
here independently of the code that implements it. Bytes that are no valid protobuf are a
client error like a corrupt image (INVALID_ARGUMENT, reason ``malformed_message``; on a stream
that frame's error, with an empty ``frame_id`` as none could be read, and the stream goes on).
Two outcomes belong to gRPC itself, not to muselens, and end a stream instead of answering one
frame:

* a message larger than the server's receive limit: RESOURCE_EXHAUSTED before any of it is
  parsed; the HTTP/2 stream is reset, so a stream cannot continue after it;
* metadata that cannot be sent: a token with non-ASCII characters is refused by the client's
  gRPC core (INTERNAL, it never reaches the server), a token above gRPC's 16 KiB metadata hard
  limit is refused by the server's transport (RESOURCE_EXHAUSTED). Tokens between the 8 KiB
  soft and the 16 KiB hard limit are refused at random by gRPC, so the corpus avoids them.

The categories are registered by :mod:`~muselens.benchmarks.corpus_frames` and
:mod:`~muselens.benchmarks.corpus_requests` (in that order: the draw depends on it), with the
vocabulary of :mod:`~muselens.benchmarks.corpus_cases`.

Variety: every case draws its parameters (sizes, formats, cut points, flipped bits, enum
values, coordinates, token lengths) from its own seeded generator, so the 10,000 are not a
few cases repeated.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from muselens.benchmarks import corpus_frames, corpus_requests
from muselens.benchmarks.corpus_cases import CATEGORIES, OK, Case, Outcome, Tokens, varint
from muselens.benchmarks.corpus_images import smooth_image
from muselens.core import checks
from muselens.core.data.images import encode_jpeg
from muselens.runtime.frames import FrameLimits
from muselens.runtime.server.app import ServerConfig
from muselens.v1 import recognition_pb2 as pb

# The modules whose categories fill CATEGORIES (they register on import), in the order the seeded
# draw depends on: frames first, then requests.
CATEGORY_MODULES = (corpus_frames, corpus_requests)

class Corpus:
    """``count`` cases drawn with ``seed``; ``limits`` and ``max_receive`` are the server's."""

    def __init__(self, count: int, seed: int = 0, *, tokens: Tokens, limits: FrameLimits = FrameLimits(),
                 max_receive: int | None = None):
        checks.positive_int(count, "count")
        if not isinstance(tokens, Tokens):
            raise TypeError(f"tokens must be corpus.Tokens, got {type(tokens).__name__}")
        self.count, self.seed, self.tokens, self.limits = count, int(seed), tokens, limits
        self.max_receive = max_receive if max_receive is not None else ServerConfig(limits=limits).max_message_bytes
        names = list(CATEGORIES)
        weights = np.array([CATEGORIES[n].weight for n in names], dtype=np.float64)
        rng = np.random.default_rng([self.seed, 0xC0])
        # Every category at least once (when count allows), the rest drawn by weight.
        drawn = list(rng.choice(len(names), size=max(0, count - len(names)), p=weights / weights.sum()))
        order = (list(range(len(names))) + drawn)[:count]
        rng.shuffle(order)
        self.categories: list[str] = [names[k] for k in order]

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Case]:
        return (self.case(i) for i in range(self.count))

    def case(self, index: int) -> Case:
        if not 0 <= index < self.count:
            raise IndexError(f"case {index} outside 0..{self.count - 1}")
        name = self.categories[index]
        spec = CATEGORIES[name]
        rng = np.random.default_rng([self.seed, index])
        message, expected, note = spec.build(self, rng)
        metadata = None
        if isinstance(message, tuple):  # (metadata, message): the case sends its own metadata
            metadata, message = message
        payload: bytes | None
        oversize = 0
        if message is None:
            payload, oversize = None, self.max_receive + int(rng.integers(1, 1 << 20))
            note = f"{note}: a Frame of {oversize} encoded bytes (receive limit {self.max_receive})"
        elif isinstance(message, bytes):  # frame_id first: the parser keeps the last, and there is none later
            frame_id = f"c{index}".encode()
            payload = b"\x0a" + varint(len(frame_id)) + frame_id + message
        else:
            if isinstance(message, pb.Frame):
                message.frame_id = f"c{index}"
            payload = message.SerializeToString()
        return Case(index, name, spec.rpc, spec.stream, expected, note, payload, oversize, metadata)

    # -- shared building blocks ----------------------------------------------------------

    def good_image(self, rng: np.random.Generator, low: int = 48, high: int = 320) -> np.ndarray:
        low = max(low, self.limits.min_side)
        return smooth_image(rng, int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1)))

    def good_frame(self, rng: np.random.Generator, **options) -> pb.Frame:
        return pb.Frame(image=pb.Image(encoded=encode_jpeg(self.good_image(rng), int(rng.integers(60, 96)))),
                        options=pb.RecognizeOptions(**options))

    def size_outcome(self, width: int, height: int) -> Outcome:
        """The contract of :class:`FrameLimits` (pixels, then longest side, then shortest side)."""
        lim = self.limits
        if width * height > lim.max_pixels:
            return Outcome("RESOURCE_EXHAUSTED", "too_many_pixels")
        if max(width, height) > lim.max_side:
            return Outcome("RESOURCE_EXHAUSTED", "side_too_long")
        if min(width, height) < lim.min_side:
            return Outcome("INVALID_ARGUMENT", "too_small")
        return Outcome(OK)
