"""The corpus's request categories: recognition options (heatmap kinds, top-k, regions of
interest), bytes that are no valid message, authentication, and enrolment (admin calls)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from muselens.benchmarks.corpus_cases import (ENROLL, MALFORMED_PROTOBUF, NO_STREAM, OK, OK_ONLY, OWN_STREAM, Built,
                                              Outcome, category, invalid, varint)
from muselens.benchmarks.corpus_images import smooth_image
from muselens.core.data.images import encode_jpeg
from muselens.runtime.recognition.options import MAX_TOP_K
from muselens.runtime.server.servicer import MAX_ENROL_PHOTOS
from muselens.v1 import recognition_pb2 as pb

if TYPE_CHECKING:
    from muselens.benchmarks.corpus import Corpus

# -- options ----------------------------------------------------------------------------------


@category("unknown_heatmap_kind", 3)
def _unknown_heatmap_kind(c: Corpus, rng: np.random.Generator) -> Built:
    """Heatmap kinds this server does not know, among known ones."""
    unknown = int(rng.integers(4, 2**31)) if rng.random() < 0.7 else -int(rng.integers(1, 2**31))
    kinds = [int(k) for k in rng.integers(0, 4, size=int(rng.integers(0, 3)))]
    kinds.insert(int(rng.integers(len(kinds) + 1)), unknown)
    frame = c.good_frame(rng, explain=bool(rng.random() < 0.5), heatmap_kinds=kinds)
    return frame, invalid("bad_heatmap_kind"), f"heatmap_kinds {kinds}"


@category("top_k_valid", 5)
def _top_k_valid(c: Corpus, rng: np.random.Generator) -> Built:
    """top_k 0 (the server's default) or 1..MAX_TOP_K (more than the gallery holds is fine)."""
    k = 0 if rng.random() < 0.3 else int(rng.integers(1, MAX_TOP_K + 1))
    return c.good_frame(rng, top_k=k), OK_ONLY, f"top_k {k}"


@category("top_k_absurd", 4)
def _top_k_absurd(c: Corpus, rng: np.random.Generator) -> Built:
    """top_k above the limit: 101, 2**31, 2**32 - 1 or anything between."""
    roll = rng.random()
    k = MAX_TOP_K + 1 if roll < 0.2 else 2**31 if roll < 0.35 else 2**32 - 1 if roll < 0.5 else int(
        rng.integers(MAX_TOP_K + 1, 2**32))
    return c.good_frame(rng, top_k=k), invalid("bad_top_k"), f"top_k {k}"


_ROI_BREAKS = ("inverted", "nan", "inf", "outside", "zero_area")


@category("roi_invalid", 5)
def _roi_invalid(c: Corpus, rng: np.random.Generator) -> Built:
    """Regions of interest that are no rectangle inside the frame: inverted, NaN, inf, outside, zero-area."""
    how = _ROI_BREAKS[int(rng.integers(len(_ROI_BREAKS)))]
    x0, x1 = sorted(float(v) for v in rng.uniform(0, 1, 2))
    y0, y1 = sorted(float(v) for v in rng.uniform(0, 1, 2))
    box = [x0, y0, x1 + 1e-3, y1 + 1e-3]
    slot = int(rng.integers(4))
    if how == "inverted":
        if rng.random() < 0.5:
            box[0], box[2] = box[2], box[0]
        else:
            box[1], box[3] = box[3], box[1]
    elif how == "nan":
        box[slot] = math.nan
    elif how == "inf":
        box[slot] = math.inf if rng.random() < 0.5 else -math.inf
    elif how == "outside":
        box[slot] = float(rng.uniform(1.01, 1e6)) if rng.random() < 0.5 else -float(rng.uniform(0.01, 1e6))
    else:  # zero_area
        if rng.random() < 0.5:
            box[2] = box[0]
        else:
            box[3] = box[1]
    roi = pb.RegionOfInterest(x0=box[0], y0=box[1], x1=box[2], y1=box[3])
    return c.good_frame(rng, region_of_interest=roi), invalid("bad_roi"), f"ROI {how} {box}"


@category("roi_too_small", 2)
def _roi_too_small(c: Corpus, rng: np.random.Generator) -> Built:
    """A valid rectangle too thin to hold any feature cell's centre (refused after inference)."""
    # Feature-cell centres sit at (j + 0.5) / w with w <= max_side / 32 cells: none lies within
    # 0.5 / (max_side / 32) of an edge, so a rectangle that thin along one edge holds none.
    margin = 0.5 * 32 / c.limits.max_side
    width = float(rng.uniform(1e-6, margin * 0.9))
    start = float(rng.uniform(0, margin - width)) if rng.random() < 0.5 else 1.0 - float(rng.uniform(width, margin))
    x0, x1 = start, min(1.0, start + width)
    box = [x0, 0.0, x1, 1.0] if rng.random() < 0.5 else [0.0, x0, 1.0, x1]
    roi = pb.RegionOfInterest(x0=box[0], y0=box[1], x1=box[2], y1=box[3])
    if not (roi.x0 < roi.x1 and roi.y0 < roi.y1):  # float32 rounding closed it: still bad, found earlier
        return c.good_frame(rng, region_of_interest=roi), invalid("bad_roi"), f"ROI {box} (empty in float32)"
    return c.good_frame(rng, region_of_interest=roi), invalid("bad_roi"), f"ROI {box}"


@category("options_valid", 4)
def _options_valid(c: Corpus, rng: np.random.Generator) -> Built:
    """Valid explanation options and regions of interest (half a frame or more: always a cell)."""
    kinds = [int(k) for k in rng.integers(0, 4, size=int(rng.integers(0, 4)))]
    options = {"explain": bool(rng.random() < 0.5), "heatmap_kinds": kinds,
               "explain_reference": bool(rng.random() < 0.3), "overlay": bool(rng.random() < 0.3),
               "top_k": int(rng.integers(0, 10))}
    if rng.random() < 0.5:
        x0, y0 = (float(v) for v in rng.uniform(0, 0.5, 2))
        x1, y1 = x0 + float(rng.uniform(0.5, 1 - x0)), y0 + float(rng.uniform(0.5, 1 - y0))
        options["region_of_interest"] = pb.RegionOfInterest(x0=x0, y0=y0, x1=min(x1, 1.0), y1=min(y1, 1.0))
    # Explaining on the reference's side needs the bundle's reference photos (optional in a bundle).
    expected = ((Outcome(OK), Outcome("FAILED_PRECONDITION", "no_reference_images"))
                if options["explain"] and options["explain_reference"] else OK_ONLY)
    return c.good_frame(rng, **options), expected, f"options {options}"


# -- bytes that are no valid message -----------------------------------------------------------


_WIRE_BREAKS = ("bad_utf8_frame_id", "length_overflow", "bad_wire_type", "field_zero", "truncated_varint")


@category(MALFORMED_PROTOBUF, 3)
def _malformed_protobuf(c: Corpus, rng: np.random.Generator) -> Built:
    """Bytes that do not parse as a Frame: INVALID_ARGUMENT/malformed_message, this frame only."""
    how = _WIRE_BREAKS[int(rng.integers(len(_WIRE_BREAKS)))]
    prefix = c.good_frame(rng).SerializeToString() if rng.random() < 0.5 else b""
    if how == "bad_utf8_frame_id":
        text = bytearray(rng.bytes(int(rng.integers(1, 40))))
        text[int(rng.integers(len(text)))] = 0xFF  # never valid in UTF-8
        body = b"\x0a" + varint(len(text)) + bytes(text)
    elif how == "length_overflow":
        n = int(rng.integers(10, 1 << 20))
        body = b"\x1a" + varint(n) + rng.bytes(int(rng.integers(0, min(n, 4096))))
    elif how == "bad_wire_type":
        body = varint((int(rng.integers(1, 1 << 20)) << 3) | int(rng.choice([6, 7])))
    elif how == "field_zero":
        body = bytes([int(rng.choice([0x00, 0x01, 0x02, 0x05]))]) + rng.bytes(int(rng.integers(1, 16)))
    else:  # a varint field whose varint never ends
        body = varint((int(rng.integers(16, 1 << 20)) << 3) | 0) + b"\x80" * int(rng.integers(1, 9))
    return prefix + body, (Outcome("INVALID_ARGUMENT", "malformed_message"),), f"{how} after {len(prefix)} valid bytes"


@category("unknown_fields", 2)
def _unknown_fields(c: Corpus, rng: np.random.Generator) -> Built:
    """A valid Frame followed by fields of a newer schema: ignored, the frame is recognised."""
    extra = b""
    for _ in range(int(rng.integers(1, 5))):
        number = int(rng.integers(100, 1 << 20))
        if rng.random() < 0.5:
            extra += varint(number << 3) + varint(int(rng.integers(0, 2**63)))
        else:
            blob = rng.bytes(int(rng.integers(0, 200)))
            extra += varint(number << 3 | 2) + varint(len(blob)) + blob
    return c.good_frame(rng).SerializeToString() + extra, OK_ONLY, f"{len(extra)} bytes of unknown fields"


# -- authentication (own streams: metadata belongs to the call) ---------------------------------

_AUTH_BREAKS = ("missing", "wrong_scheme", "empty_token", "wrong_token", "short_token", "huge_token",
                "too_huge_token", "non_ascii", "admin_token", "lowercase_scheme")


@category("auth", 6, stream=OWN_STREAM)
def _auth(c: Corpus, rng: np.random.Generator) -> Built:
    """Missing, malformed, wrong and huge tokens (and two right ones sent differently)."""
    how = _AUTH_BREAKS[int(rng.integers(len(_AUTH_BREAKS)))]
    alphabet = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/", np.uint8)

    def token(n: int) -> str:
        return rng.choice(alphabet, size=n).tobytes().decode()

    unauthenticated = (Outcome("UNAUTHENTICATED"),)
    if how == "missing":
        metadata, expected = (), unauthenticated
    elif how == "wrong_scheme":
        scheme = ("Basic", "Token", "Bearer:", "JWT", "Digest")[int(rng.integers(5))]
        metadata, expected = (("authorization", f"{scheme} {c.tokens.client}"),), unauthenticated
    elif how == "empty_token":
        metadata, expected = (("authorization", "Bearer" + " " * int(rng.integers(0, 4))),), unauthenticated
    elif how == "wrong_token":
        metadata, expected = (("authorization", f"Bearer {token(int(rng.integers(16, 200)))}"),), unauthenticated
    elif how == "short_token":
        prefix = c.tokens.client[:int(rng.integers(1, 16))]
        metadata, expected = (("authorization", f"Bearer {prefix}"),), unauthenticated
    elif how == "huge_token":  # below gRPC's 8 KiB soft metadata limit: reaches muselens
        metadata, expected = (("authorization", f"Bearer {token(int(rng.integers(1000, 7000)))}"),), unauthenticated
    elif how == "too_huge_token":  # above the 16 KiB hard limit: the transport refuses it
        metadata = (("authorization", f"Bearer {token(int(rng.integers(17_000, 200_000)))}"),)
        expected = (Outcome("RESOURCE_EXHAUSTED"),)
    elif how == "non_ascii":
        text = list(token(int(rng.integers(16, 64))))
        text[int(rng.integers(len(text)))] = "éüß€日本\u00a0"[int(rng.integers(7))]
        metadata, expected = (("authorization", "Bearer " + "".join(text)),), (Outcome("INTERNAL"),)
    elif how == "admin_token":  # the admin role may recognise too
        metadata, expected = (("authorization", f"Bearer {c.tokens.admin}"),), OK_ONLY
    else:
        metadata, expected = (("authorization", f"bearer {c.tokens.client}"),), OK_ONLY
    return (metadata, c.good_frame(rng)), expected, how


# -- enrolment (admin calls; unary only) --------------------------------------------------------

_ENROL_BREAKS = ("no_id", "bad_id", "long_id", "no_photos", "too_many_photos", "no_usable_photo", "client_token")


def _bad_photo(c: Corpus, rng: np.random.Generator) -> tuple[pb.Image, str]:
    roll = rng.random()
    if roll < 0.3:
        return pb.Image(encoded=rng.bytes(int(rng.integers(1, 512)))), "unknown_format"
    if roll < 0.5:
        data = encode_jpeg(c.good_image(rng, high=96))
        return pb.Image(encoded=data[:int(rng.integers(10, len(data) - 10))]), "truncated"
    if roll < 0.7:
        return pb.Image(), "empty"
    if roll < 0.85:
        return pb.Image(raw=pb.RawImage(data=b"\0" * 10, width=64, height=64, pixel_format=pb.PIXEL_FORMAT_RGB8)), \
            "size_mismatch"
    return pb.Image(encoded=encode_jpeg(smooth_image(rng, 8, 8))), "too_small"


def _good_photo(c: Corpus, rng: np.random.Generator) -> pb.Image:
    return pb.Image(encoded=encode_jpeg(c.good_image(rng, high=160)))


@category("enroll_invalid", 3, rpc=ENROLL, stream=NO_STREAM)
def _enroll_invalid(c: Corpus, rng: np.random.Generator) -> Built:
    """Enrolments refused as a whole: bad instance ids, no/too many photos, nothing usable, client token."""
    how = _ENROL_BREAKS[int(rng.integers(len(_ENROL_BREAKS)))]
    request = pb.EnrollRequest(instance_id=f"corpus-bad-{int(rng.integers(1 << 30))}", title="bad")
    invalid_argument = (Outcome("INVALID_ARGUMENT"),)
    if how == "no_id":
        request.instance_id = " " * int(rng.integers(0, 3))
    elif how == "bad_id":
        request.instance_id = "x" + "/\\\n\r\t"[int(rng.integers(5))] + "y"
    elif how == "long_id":
        request.instance_id = "i" * int(rng.integers(201, 2000))
    elif how == "too_many_photos":
        request.photos.extend(pb.Image(encoded=b"x") for _ in range(MAX_ENROL_PHOTOS + int(rng.integers(1, 40))))
    elif how == "no_usable_photo":
        request.photos.extend(_bad_photo(c, rng)[0] for _ in range(int(rng.integers(1, 5))))
    if how not in ("no_photos", "too_many_photos", "no_usable_photo"):
        request.photos.append(_good_photo(c, rng))
    if how == "client_token":
        request.instance_id = "corpus-enrolled-0"
        return ((("authorization", f"Bearer {c.tokens.client}"),), request), (Outcome("PERMISSION_DENIED"),), how
    return request, invalid_argument, how


@category("enroll_partial", 0.5, rpc=ENROLL, stream=NO_STREAM)
def _enroll_partial(c: Corpus, rng: np.random.Generator) -> Built:
    """Enrolments with some unusable photos: accepted, each bad photo listed with its reason."""
    photos = [(_good_photo(c, rng), "")]
    for _ in range(int(rng.integers(0, 4))):
        photos.append(_bad_photo(c, rng) if rng.random() < 0.5 else (_good_photo(c, rng), ""))
    photos = [photos[k] for k in rng.permutation(len(photos))]
    request = pb.EnrollRequest(instance_id=f"corpus-enrolled-{int(rng.integers(5))}", title="Enrolled by the corpus",
                               photos=[photo for photo, _ in photos])
    listed = ",".join(reason for _, reason in photos if reason)
    return request, (Outcome(OK, listed),), f"{len(photos)} photos, rejected [{listed}]"
