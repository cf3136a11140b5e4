"""The bad-input corpus's vocabulary: a case, the outcomes it allows, how it travels (unary, in a
stream, on its own stream) and the registry of categories that build cases (:func:`category`).
The categories are :mod:`~muselens.benchmarks.corpus_frames` and
:mod:`~muselens.benchmarks.corpus_requests`; :class:`~muselens.benchmarks.corpus.Corpus` draws from them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from muselens.v1 import recognition_pb2 as pb

if TYPE_CHECKING:
    from muselens.benchmarks.corpus import Corpus

RECOGNIZE = "Recognize"
ENROLL = "Enroll"
# How a case travels in a stream: with other frames, last (it ends the stream), alone (it
# carries its own call metadata), or not at all (not a Recognizer call).
IN_STREAM, LAST_IN_STREAM, OWN_STREAM, NO_STREAM = "frame", "last", "own", "none"
OK = "OK"
MALFORMED_PROTOBUF = "malformed_protobuf"


@dataclass(frozen=True)
class Outcome:
    """What a call produced: a gRPC status name (``OK``) and the muselens reason slug, if any."""

    status: str
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.status}/{self.reason}" if self.reason else self.status


@dataclass(frozen=True)
class Tokens:
    """The server's tokens, so cases can send right, wrong and malformed ones."""

    client: str
    admin: str

    def __post_init__(self) -> None:
        for role in ("client", "admin"):
            token = getattr(self, role)
            if not isinstance(token, str) or len(token) < 16 or not token.isascii():
                raise ValueError(f"{role} token must be an ASCII string of at least 16 characters")


@dataclass(frozen=True)
class Case:
    """One request and what the server must answer to it."""

    index: int
    category: str
    rpc: str
    stream: str
    expected: tuple[Outcome, ...]
    note: str
    payload: bytes | None = field(repr=False, default=None)
    oversize: int = 0  # payload is None: a Frame carrying this many encoded bytes, built on demand
    metadata: tuple[tuple[str, str], ...] | None = field(repr=False, default=None)  # None: the role's token

    @property
    def frame_id(self) -> str:
        return f"c{self.index}"

    @property
    def answered_frame_id(self) -> str:
        """The ``frame_id`` a stream's answer carries: none for bytes that are no Frame at all."""
        return "" if self.category == MALFORMED_PROTOBUF else self.frame_id

    def request(self) -> bytes:
        """The serialized request (oversized ones are built here, on demand)."""
        if self.payload is not None:
            return self.payload
        return pb.Frame(frame_id=self.frame_id, image=pb.Image(encoded=bytes(self.oversize))).SerializeToString()

    def accepts(self, outcome: Outcome) -> bool:
        return outcome in self.expected


Built = tuple[object, tuple[Outcome, ...], str]


def invalid(reason: str) -> tuple[Outcome, ...]:
    return (Outcome("INVALID_ARGUMENT", reason),)


OK_ONLY = (Outcome(OK),)


@dataclass(frozen=True)
class Category:
    weight: float
    build: Callable[[Corpus, np.random.Generator], Built]
    rpc: str = RECOGNIZE
    stream: str = IN_STREAM
    description: str = ""


CATEGORIES: dict[str, Category] = {}


def category(name: str, weight: float, *, rpc: str = RECOGNIZE, stream: str = IN_STREAM, description: str = ""):
    def register(build):
        CATEGORIES[name] = Category(weight, build, rpc, stream, description or (build.__doc__ or "").strip())
        return build

    return register


def varint(n: int) -> bytes:
    """``n`` as a protobuf base-128 varint."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)
