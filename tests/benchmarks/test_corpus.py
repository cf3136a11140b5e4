"""The bad-input corpus: seeded, varied, and its expectations agree with the frame layer's contract."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.message import DecodeError

from muselens.benchmarks.corpus import CATEGORIES, Corpus
from muselens.benchmarks.corpus_cases import ENROLL, LAST_IN_STREAM, OK, OWN_STREAM, Case, Outcome, Tokens
from muselens.benchmarks.corpus_images import png_bytes
from muselens.runtime.frames import FrameError, FrameLimits, decode_encoded
from muselens.runtime.recognition.options import OptionsError
from muselens.runtime.server import convert
from muselens.runtime.server.handlers import MALFORMED, MalformedMessage, lenient_parser
from muselens.v1 import recognition_pb2 as pb

TOKENS = Tokens("client-token-0123456789", "admin-token-0123456789")


COUNT = 400


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus(COUNT, seed=7, tokens=TOKENS)


@pytest.fixture(scope="module")
def cases(corpus) -> list[Case]:
    return list(corpus)


def test_the_corpus_is_seeded_and_holds_every_category(corpus, cases):
    again = Corpus(COUNT, seed=7, tokens=TOKENS)
    other = Corpus(COUNT, seed=8, tokens=TOKENS)
    assert again.categories == corpus.categories and set(corpus.categories) == set(CATEGORIES)
    assert [case.category for case in cases] == corpus.categories
    for i in range(0, COUNT, 37):
        assert again.case(i).request() == cases[i].request()
    same = sum(cases[i].request() == other.case(i).request() for i in range(0, COUNT, 37))
    assert same < 3


def _without_frame_id(case: Case) -> bytes:
    fid = case.frame_id.encode()
    return case.payload.removeprefix(b"\x0a" + bytes([len(fid)]) + fid)


def test_cases_are_varied_not_repeated(cases):
    """Parameters are drawn per case: bodies repeat only where a category has few possible ones."""
    bodies: dict[str, set[bytes]] = {}
    for case in cases:
        if case.payload is not None:
            bodies.setdefault(case.category, set()).add(_without_frame_id(case))
    for name, distinct in bodies.items():
        n = sum(1 for case in cases if case.category == name)
        if name == "empty":  # two ways to send nothing
            assert len(distinct) == min(n, 2)
        elif name != "auth":  # auth bodies are good frames; their metadata varies (below)
            assert len(distinct) >= 0.7 * n, name  # 30000x30000 bombs repeat by design
    notes = {case.note for case in cases if case.category == "auth"}
    assert len(notes) >= 8  # the ways a token can be wrong


def _frame_outcome(request: bytes) -> Outcome:
    """What the server's validation layer (options, then image) makes of a Recognize request."""
    frame = lenient_parser(pb.Frame)(request)
    if isinstance(frame, MalformedMessage):
        return Outcome("INVALID_ARGUMENT", MALFORMED)
    try:
        convert.recognize_options(frame.options)
        convert.image_pixels(frame.image, FrameLimits())
    except (FrameError, OptionsError) as exc:
        return Outcome(exc.status, exc.reason)
    return Outcome(OK)


def test_expectations_match_the_frame_layer(cases):
    """Every case decided before inference (all but auth, enrolment, oversize, tiny ROIs)."""
    checked = 0
    for case in cases:
        if case.rpc == ENROLL or case.stream == OWN_STREAM or case.oversize or case.category == "roi_too_small":
            continue
        outcome = _frame_outcome(case.request())
        if case.category == "options_valid" and outcome == Outcome(OK):
            assert Outcome(OK) in case.expected
        else:
            assert case.accepts(outcome), (case.category, case.note, outcome, case.expected)
        if case.payload is not None and case.category != "malformed_protobuf":
            assert pb.Frame.FromString(case.request()).frame_id == case.frame_id
        checked += 1
    assert checked > 0.7 * len(cases)


def test_valid_variants_decode_to_rgb(cases):
    kinds = set()
    for case in cases:
        if case.category == "valid_image_variant":
            frame = pb.Frame.FromString(case.request())
            pixels = convert.image_pixels(frame.image, FrameLimits())
            assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
            kinds.add(case.note.split()[0])
    assert {"jpeg_cmyk", "png_grey16", "png_rgba", "png_grey_alpha", "jpeg_grey"} <= kinds


def test_png_writer_matches_opencv():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(33, 40, 3), dtype=np.uint8)
    assert np.array_equal(decode_encoded(png_bytes(rgb, 2)), rgb)
    grey16 = rng.integers(0, 65536, size=(40, 33), dtype=np.uint16)
    decoded = decode_encoded(png_bytes(grey16, 0))
    assert np.array_equal(decoded[:, :, 0], (grey16 >> 8).astype(np.uint8))


def test_stream_enders_auth_and_oversize(corpus, cases):
    for case in cases:
        if case.category == "oversized_message":
            assert case.payload is None and case.oversize > corpus.max_receive
            assert case.stream == LAST_IN_STREAM and case.expected == (Outcome("RESOURCE_EXHAUSTED"),)
        elif case.category == "malformed_protobuf":
            with pytest.raises(DecodeError):
                pb.Frame.FromString(case.request())
            assert case.stream != LAST_IN_STREAM and case.answered_frame_id == ""
        elif case.category == "auth":
            assert case.metadata is not None and case.stream == OWN_STREAM
            for _, value in case.metadata:
                if case.note == "too_huge_token":
                    assert len(value) > 16384
                elif case.note == "huge_token":
                    assert len(value) < 8192


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="count"):
        Corpus(0, tokens=TOKENS)
    with pytest.raises(TypeError, match="tokens"):
        Corpus(10, tokens=("a", "b"))
    with pytest.raises(ValueError, match="16 characters"):
        Tokens("short", "admin-token-0123456789")
    with pytest.raises(IndexError):
        Corpus(10, tokens=TOKENS).case(10)
