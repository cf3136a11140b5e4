"""Translating between the muselens.v1 messages and the grpc-free recognition layer.

Everything a client controls is validated here, once: the image (via
:mod:`muselens.runtime.frames`), the options (top-k, heatmap kinds, region of interest) and
enum values a newer client may send that this server does not know.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from muselens.runtime.bundle import LabelInfo
from muselens.runtime.frames import FrameError, FrameLimits, PixelFormat, SizeNeed, decode_encoded, decode_raw
from muselens.runtime.recognition.decision_rule import Decision
from muselens.runtime.recognition.explainer import HeatmapResult
from muselens.runtime.recognition.served_model import STAGES, RecognitionResult
from muselens.runtime.recognition.options import (DEFAULT_TOP_K, HeatmapKind, HeatmapSide, OptionsError,
                                                  RecognizeOptions)
from muselens.runtime.streams import SmoothedDecision
from muselens.runtime.streams.outline_tracking import InView
from muselens.runtime.verification import (DEFERRED, NOT_REQUESTED, NOT_VERIFIED, UNAVAILABLE, VERIFIED,
                                           VerificationReport)
from muselens.v1 import recognition_pb2 as pb

DECISIONS = {
    Decision.ARTWORK: pb.DECISION_ARTWORK,
    Decision.NO_ARTWORK: pb.DECISION_NO_ARTWORK,
    Decision.UNCERTAIN: pb.DECISION_UNCERTAIN,
}
HEATMAP_KINDS = {
    pb.HEATMAP_KIND_REGIONS: HeatmapKind.REGIONS,
    pb.HEATMAP_KIND_FULL: HeatmapKind.FULL,
    pb.HEATMAP_KIND_CLASS: HeatmapKind.CLASS,
}
HEATMAP_KIND_MESSAGES = {kind: number for number, kind in HEATMAP_KINDS.items()}
HEATMAP_SIDES = {HeatmapSide.QUERY: pb.HEATMAP_SIDE_QUERY, HeatmapSide.REFERENCE: pb.HEATMAP_SIDE_REFERENCE}
VERIFY_MODES = {pb.VERIFY_MODE_UNSPECIFIED: None, pb.VERIFY_MODE_OFF: False, pb.VERIFY_MODE_ON: True}
VERIFICATION_STATES = {
    NOT_REQUESTED: pb.VERIFICATION_STATE_NOT_REQUESTED,
    VERIFIED: pb.VERIFICATION_STATE_VERIFIED,
    NOT_VERIFIED: pb.VERIFICATION_STATE_NOT_VERIFIED,
    UNAVAILABLE: pb.VERIFICATION_STATE_UNAVAILABLE,
    DEFERRED: pb.VERIFICATION_STATE_DEFERRED,
}


def image_pixels(image: pb.Image, limits: FrameLimits, what: str = "frame", *,
                 at_least: SizeNeed | None = None) -> np.ndarray:
    """The RGB uint8 pixels of an ``Image`` message, or :class:`FrameError` naming the problem.

    ``at_least`` lets a JPEG be decoded smaller, and raw pixels converted smaller, to no less
    than it says (see :func:`~muselens.runtime.frames.decode_encoded` and ``decode_raw``)."""
    source = image.WhichOneof("source")
    if source == "encoded":
        return decode_encoded(image.encoded, limits, at_least=at_least)
    if source == "raw":
        raw = image.raw
        if raw.pixel_format == pb.PIXEL_FORMAT_UNSPECIFIED:
            raise FrameError("bad_pixel_format", f"{what}: raw pixels need a pixel_format")
        try:
            name = pb.PixelFormat.Name(raw.pixel_format)
        except ValueError:
            raise FrameError("bad_pixel_format", f"{what}: unknown pixel_format value {raw.pixel_format} "
                                                 f"(known: {', '.join(PixelFormat.__members__)})") from None
        return decode_raw(raw.data, raw.width, raw.height, name, limits, at_least=at_least)
    raise FrameError("empty", f"{what} carries no image (set image.encoded or image.raw)")


def recognize_options(options: pb.RecognizeOptions, default_top_k: int = DEFAULT_TOP_K) -> RecognizeOptions:
    """Validated options; :class:`OptionsError` (INVALID_ARGUMENT) for anything out of range."""
    kinds = []
    for number in options.heatmap_kinds:
        if number == pb.HEATMAP_KIND_UNSPECIFIED:
            continue
        if number not in HEATMAP_KINDS:
            raise OptionsError("bad_heatmap_kind", f"unknown heatmap kind value {number}")
        kinds.append(HEATMAP_KINDS[number])
    roi = None
    if options.HasField("region_of_interest"):
        r = options.region_of_interest
        roi = (r.x0, r.y0, r.x1, r.y1)
    if options.verify not in VERIFY_MODES:
        raise OptionsError("bad_verify", f"unknown verify mode value {options.verify}")
    return RecognizeOptions(top_k=options.top_k or default_top_k, explain=options.explain,
                            heatmap_kinds=tuple(kinds), explain_reference=options.explain_reference,
                            overlay=options.overlay, roi=roi, verify=VERIFY_MODES[options.verify])


def verification_message(report: VerificationReport, frame_id: str, age_ms: float = 0.0,
                         in_view: InView | None = None) -> pb.Verification:
    """The report as a message; ``frame_id`` names the frame it verified (on a stream, maybe an older
    one), ``in_view`` the fitted artworks carried into the frame answered (streams)."""
    message = pb.Verification(state=VERIFICATION_STATES[report.state], instance_id=report.instance_id or "",
                              inliers=report.inliers, matches=report.matches,
                              runner_up_inliers=report.runner_up_inliers, candidates=report.candidates,
                              verify_ms=report.ms, frame_id=frame_id if report.state != NOT_REQUESTED else "",
                              age_ms=age_ms, evidence=report.evidence if report.verified else 0.0,
                              runner_up_evidence=report.runner_up_evidence
                              if report.verified and math.isfinite(report.runner_up_evidence) else 0.0)
    if report.outline is not None:
        message.outline.extend(pb.Point(x=float(x), y=float(y)) for x, y in report.outline)
    if report.pairs is not None:
        message.keypoints.extend(pb.KeypointPair(frame=pb.Point(x=float(a), y=float(b)),
                                                 reference=pb.Point(x=float(c), y=float(d)))
                                 for a, b, c, d in report.pairs)
    for carried in in_view.carried if in_view is not None else ():
        message.in_view.add(instance_id=carried.instance_id, inliers=carried.inliers, age_ms=carried.age_s * 1e3,
                            at_centre=carried is in_view.centre,
                            outline=[pb.Point(x=float(x), y=float(y)) for x, y in carried.outline])
    return message


def heatmap_message(heatmap: HeatmapResult) -> pb.Heatmap:
    values = np.asarray(heatmap.values, dtype=np.float32)
    return pb.Heatmap(kind=HEATMAP_KIND_MESSAGES[heatmap.kind], side=HEATMAP_SIDES[heatmap.side],
                      instance_id=heatmap.instance_id, score=heatmap.score, height=values.shape[0],
                      width=values.shape[1], values=values.ravel().tolist(),
                      region_cells=[int(c) for c in heatmap.region_cells],
                      region_contributions=[float(c) for c in heatmap.region_contributions],
                      overlay_jpeg=heatmap.overlay_jpeg or b"")


def smoothed_message(smoothed: SmoothedDecision | None,
                     labels: Mapping[str, LabelInfo]) -> pb.SmoothedDecision | None:
    if smoothed is None:
        return None
    iid = smoothed.instance_id or ""
    return pb.SmoothedDecision(decision=DECISIONS[smoothed.decision], instance_id=iid,
                               title=labels[iid].title if iid in labels else iid, score=smoothed.score,
                               stable_frames=smoothed.stable_frames)


def recognition_message(frame_id: str, result: RecognitionResult, *, smoothed: SmoothedDecision | None = None,
                        labels: Mapping[str, LabelInfo] | None = None, dropped_frames: int = 0,
                        verification: pb.Verification | None = None) -> pb.Recognition:
    """The frame's answer; ``verification`` replaces the result's own (a stream's background one)."""
    timings = result.timings_ms
    message = pb.Recognition(
        frame_id=frame_id, decision=DECISIONS[result.decision], bundle_version=result.bundle_version,
        threshold=result.threshold, dropped_frames=dropped_frames,
        matches=[pb.Match(instance_id=m.instance_id, title=m.title, score=m.score, metadata=dict(m.metadata),
                          inliers=m.inliers) for m in result.matches],
        timings=pb.Timings(**{f"{stage}_ms": float(timings.get(stage, 0.0)) for stage in STAGES}),
        heatmaps=[heatmap_message(h) for h in result.heatmaps],
        verification=verification if verification is not None else verification_message(result.verification,
                                                                                         frame_id),
    )
    if smoothed is not None:
        message.smoothed.CopyFrom(smoothed_message(smoothed, labels or {}))
    else:  # a single frame: its own decision is the answer
        best = result.best
        message.smoothed.CopyFrom(pb.SmoothedDecision(
            decision=DECISIONS[result.decision],
            instance_id=best.instance_id if best and result.decision == Decision.ARTWORK else "",
            title=best.title if best and result.decision == Decision.ARTWORK else "",
            score=best.score if best else 0.0, stable_frames=1))
    return message


def error_recognition(frame_id: str, code: str, reason: str, message: str, *, bundle_version: str = "",
                      dropped_frames: int = 0) -> pb.Recognition:
    return pb.Recognition(frame_id=frame_id, bundle_version=bundle_version, dropped_frames=dropped_frames,
                          error=pb.FrameError(code=code, reason=reason, message=message))


def bundle_info_message(info: Mapping[str, Any]) -> pb.BundleInfo:
    return pb.BundleInfo(**{key: value for key, value in info.items()})
