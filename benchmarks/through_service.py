"""A bundle measured the way a phone meets it: its photos sent to ``muselens serve`` over gRPC.

Every query, distractor and unknown photo is sent as its JPEG file's bytes on a unary
``Recognize`` as the server answers by default (geometrically verified when the bundle has
local features), again on a unary call that turns verification off (the descriptor alone), and
once on one ``StreamRecognize`` (each frame sent after the previous answer, so none is
superseded and every frame is answered; a stream's frames are answered from the descriptor,
verification runs beside it). The retrieval figures come from the returned
ranking of artworks (the instance-averaged gallery the service searches, ``top_k`` at most
:data:`~muselens.runtime.recognition.options.MAX_TOP_K`), the open-set figures from the
service's own decision at the bundle's shipped threshold. Torch-free.
"""

from __future__ import annotations

import queue
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from muselens.benchmarks import common
from muselens.runtime.client import MuselensClient
from muselens.runtime.recognition.options import MAX_TOP_K
from muselens.runtime.server.process import ServerProcess
from muselens.v1 import recognition_pb2 as pb

ANSWER_TIMEOUT_S = 60.0
# A unary call whose deadline passed is sent again this many times before the run fails: a long
# run on a shared machine (paused, or starved by another job) must not lose hours of training to
# one late answer. Its latency is the answered try's.
DEADLINE_RETRIES = 2


@dataclass(frozen=True)
class Photo:
    path: Path
    kind: str  # "query", "distractor" or "unknown"
    instance_id: str | None  # the right artwork of a query


@dataclass(frozen=True)
class Answer:
    decision: str  # ARTWORK, NO_ARTWORK, UNCERTAIN or ERROR
    ranking: tuple[str, ...]
    top_score: float
    server_ms: float
    client_ms: float
    verified: str | None = None  # the verified artwork, if this frame's own verification found one
    verify_ms: float = 0.0


def _answer(recognition: pb.Recognition, client_ms: float) -> Answer:
    if recognition.HasField("error"):
        return Answer("ERROR", (), float("nan"), float("nan"), client_ms)
    ranking = tuple(m.instance_id for m in recognition.matches)
    score = recognition.matches[0].score if recognition.matches else float("nan")
    v = recognition.verification
    verified = v.instance_id if v.state == pb.VERIFICATION_STATE_VERIFIED and v.frame_id == recognition.frame_id \
        else None
    return Answer(pb.Decision.Name(recognition.decision).removeprefix("DECISION_"), ranking, float(score),
                  float(recognition.timings.total_ms), client_ms, verified, float(recognition.timings.verify_ms))


def _frame(photo: Photo, frame_id: str, top_k: int) -> pb.Frame:
    return pb.Frame(frame_id=frame_id, timestamp=float(frame_id), image=pb.Image(encoded=photo.path.read_bytes()),
                    options=pb.RecognizeOptions(top_k=top_k))


def unary_answers(client: MuselensClient, photos: Sequence[Photo], top_k: int,
                  verify: int = pb.VERIFY_MODE_UNSPECIFIED) -> list[Answer]:
    import grpc

    answers = []
    for i, photo in enumerate(photos):
        data = photo.path.read_bytes()
        for attempt in range(DEADLINE_RETRIES + 1):
            started = time.perf_counter()
            try:
                recognition = client.recognize(data, frame_id=str(i),
                                               options=pb.RecognizeOptions(top_k=top_k, verify=verify),
                                               timeout=ANSWER_TIMEOUT_S)
                break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED or attempt == DEADLINE_RETRIES:
                    raise
                print(f"  {photo.path.name}: no answer within {ANSWER_TIMEOUT_S:.0f} s; sent again",
                      file=sys.stderr, flush=True)
        answers.append(_answer(recognition, 1000 * (time.perf_counter() - started)))
    return answers


def stream_answers(client: MuselensClient, photos: Sequence[Photo], top_k: int) -> list[Answer]:
    """One stream; each frame is sent once the previous one is answered (none superseded)."""
    answered: queue.Queue = queue.Queue()
    sent_at: dict[str, float] = {}

    def frames():
        for i, photo in enumerate(photos):
            frame = _frame(photo, str(i), top_k)
            sent_at[frame.frame_id] = time.perf_counter()
            yield frame
            try:
                answered.get(timeout=ANSWER_TIMEOUT_S)
            except queue.Empty:
                return

    out: dict[int, Answer] = {}
    for recognition in client.stream(frames(), reconnect=False):
        client_ms = 1000 * (time.perf_counter() - sent_at.get(recognition.frame_id, time.perf_counter()))
        out[int(recognition.frame_id)] = _answer(recognition, client_ms)
        answered.put(True)
    missing = [i for i in range(len(photos)) if i not in out]
    if missing:
        raise RuntimeError(f"the stream answered {len(out)} of {len(photos)} frames (first missing: {missing[:5]})")
    return [out[i] for i in range(len(photos))]


def figures(photos: Sequence[Photo], answers: Sequence[Answer], gallery_ids: set[str]) -> dict[str, Any]:
    """mP@1, mAP over artworks (truncated at ``top_k``), and the shipped threshold's rates."""
    q = [(p, a) for p, a in zip(photos, answers) if p.kind == "query" and p.instance_id in gallery_ids]
    hits = [bool(a.ranking) and a.ranking[0] == p.instance_id for p, a in q]
    ap = [1.0 / (a.ranking.index(p.instance_id) + 1) if p.instance_id in a.ranking else 0.0 for p, a in q]
    correct_accept = [a.decision == "ARTWORK" and h for (p, a), h in zip(q, hits)]
    out: dict[str, Any] = {"queries": len(q), "mp_at_1": float(np.mean(hits)) if q else None,
                           "map_artworks": float(np.mean(ap)) if q else None,
                           "correct_accept_rate": float(np.mean(correct_accept)) if q else None,
                           "uncertain_rate": float(np.mean([a.decision == "UNCERTAIN" for _, a in q])) if q else None}
    for kind in ("distractor", "unknown"):
        rows = [a for p, a in zip(photos, answers) if p.kind == kind]
        out[f"{kind}s"] = len(rows)
        out[f"{kind}_false_accept_rate"] = float(np.mean([a.decision == "ARTWORK" for a in rows])) if rows else None
    out["verified_right"] = float(np.mean([a.verified == p.instance_id for p, a in q])) if q else None
    out["verified_wrong"] = float(np.mean([a.verified not in (None, p.instance_id) for p, a in q])) if q else None
    for kind in ("distractor", "unknown"):
        out[f"{kind}s_verified"] = sum(a.verified is not None for p, a in zip(photos, answers) if p.kind == kind)
    out["verify_ms"] = common.percentiles(a.verify_ms for a in answers if a.verify_ms > 0)
    out["errors"] = sum(a.decision == "ERROR" for a in answers)
    out["server_ms"] = common.percentiles(a.server_ms for a in answers)
    out["client_ms"] = common.percentiles(a.client_ms for a in answers)
    return out


def measure_through_service(bundle: Path, photos: Sequence[Photo], gallery_ids: set[str], *,
                            log: Path | None = None, threads: int | None = None) -> dict[str, Any]:
    """Serve ``bundle`` in a child process and send it every photo, unary and on a stream."""
    top_k = max(1, min(MAX_TOP_K, len(gallery_ids)))
    with ServerProcess(bundle, log=log, threads=threads) as server:
        with MuselensClient(server.address) as client:
            client.wait_ready(30.0)
            info = client.bundle_info()
            unary = unary_answers(client, photos, top_k)
            descriptor = unary_answers(client, photos, top_k, pb.VERIFY_MODE_OFF)
            stream = stream_answers(client, photos, top_k)
    agree = float(np.mean([u.decision == s.decision and u.ranking[:1] == s.ranking[:1]
                           for u, s in zip(descriptor, stream)])) if photos else None
    return {"bundle_version": info.bundle_version, "variant": info.variant, "variant_choice": info.variant_choice,
            "top_k": top_k, "verification": info.verification,
            "frames": len(photos), "unary": figures(photos, unary, gallery_ids),
            "unary_descriptor": figures(photos, descriptor, gallery_ids),
            "stream": figures(photos, stream, gallery_ids), "descriptor_stream_agreement": agree}


# The service's modes each photo is measured in, and what a table calls them.
MODES = {"unary": "unary, verified", "unary_descriptor": "unary, descriptor only", "stream": "stream"}
def museum_photos(museum: Path, unknown: Path | None = None) -> list[Photo]:
    """Every query (labelled by its folder), distractor and unknown photo of a museum dataset."""
    photos = [Photo(p, "query", d.name) for d in sorted((museum / "queries").iterdir()) if d.is_dir()
              for p in common.images_in(d)]
    photos += [Photo(p, "distractor", None) for p in common.images_in(museum / "distractors")]
    photos += [Photo(p, "unknown", None) for p in (common.images_in(unknown) if unknown is not None else [])]
    return photos


def mode_rows(measured: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per service mode of :func:`measure_through_service`'s figures (rates as fractions)."""
    rows = []
    for mode, label in MODES.items():
        m = measured[mode]
        rows.append({"mode": mode, "label": label, "mp_at_1": m["mp_at_1"], "map": m["map_artworks"],
                     "map_over": "artworks", "correct_accept_rate": m["correct_accept_rate"],
                     "distractor_false_accept_rate": m["distractor_false_accept_rate"],
                     "unknown_false_accept_rate": m["unknown_false_accept_rate"],
                     "verified_right": m["verified_right"] if mode == "unary" else None,
                     "verified_wrong": m["verified_wrong"] if mode == "unary" else None,
                     "errors": m["errors"], "server_ms_p50": m["server_ms"].get("p50"),
                     "client_ms_p50": m["client_ms"].get("p50")})
    return rows


def served_modes(bundle: Path, museum: Path, unknown: Path | None = None, *,
                 log: Path | None = None) -> dict[str, Any]:
    """``bundle`` served and sent every photo of ``museum`` (and ``unknown``): its shipped threshold,
    :func:`mode_rows`, and every figure of :func:`measure_through_service` (``service``)."""
    from muselens.runtime.bundle import load_bundle

    with load_bundle(bundle) as loaded:
        gallery_ids = set(loaded.gallery.instance_ids.tolist())
        threshold = loaded.manifest.threshold.to_dict()
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    measured = measure_through_service(bundle, museum_photos(museum, unknown), gallery_ids, log=log)
    return {"bundle": str(bundle), "threshold": threshold, "rows": mode_rows(measured), "service": measured}
