"""``muselens stream --server ADDR (--video F | --frames DIR | --camera N)``: a live camera, simulated or real.

Sends frames at ``--fps`` (0: as fast as the source gives them) over one bidirectional stream
and prints each recognition as it arrives: the frame's own decision, the stream-smoothed
answer, the end-to-end latency and the frames the server dropped to stay current. Optionally
writes an annotated video (``--out-video``) or annotated JPEGs (``--out-dir``) -- with
``--explain``, the heatmap of the match blended over each frame -- and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np

from muselens.runtime.client.client import frame_message
from muselens.runtime.client.connect import add_connection_arguments, connect
from muselens.core.data.images import IMAGE_SUFFIXES, ImageReadError, read_image
from muselens.runtime.explain import heatmap_overlay, outline_overlay
from muselens.v1 import recognition_pb2 as pb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", type=Path, help="a video file")
    source.add_argument("--frames", type=Path, help="a folder of JPEG/PNG frames, sent in name order")
    source.add_argument("--camera", type=int, help="camera index (OpenCV)")
    parser.add_argument("--fps", type=float, default=30.0, help="frames sent per second (0: unpaced)")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
    parser.add_argument("--top-k", type=int, default=0, help="artworks per frame (0: the server's default)")
    parser.add_argument("--explain", action="store_true", help="ask for the query-side heatmap of each match")
    parser.add_argument("--out-video", type=Path, default=None, help="write an annotated video (.mp4/.avi)")
    parser.add_argument("--out-dir", type=Path, default=None, help="write annotated frames as JPEGs")
    parser.add_argument("--json-out", type=Path, default=None, help="write per-frame results and a summary")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")


def frame_source(args: argparse.Namespace) -> Iterator[np.ndarray]:
    """RGB uint8 frames from the chosen source; unreadable stills are reported and skipped."""
    if args.frames is not None:
        if not args.frames.is_dir():
            raise ValueError(f"--frames {args.frames} is not a folder")
        paths = sorted(p for p in args.frames.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ValueError(f"--frames {args.frames} holds no JPEG/PNG files")
        for path in paths:
            try:
                yield read_image(path)
            except ImageReadError as exc:
                print(f"warning: skipped {exc}", file=sys.stderr)
        return
    if args.video is not None and not args.video.is_file():
        raise ValueError(f"--video {args.video} not found")
    capture = cv2.VideoCapture(str(args.video) if args.video is not None else args.camera)
    if not capture.isOpened():
        raise ValueError(f"cannot open {'video ' + str(args.video) if args.video else f'camera {args.camera}'}")
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def annotate(image: np.ndarray, r: pb.Recognition, e2e_ms: float) -> np.ndarray:
    """The frame with the heatmap (if any) and the smoothed answer written on it (RGB)."""
    out = image
    query_maps = [h for h in r.heatmaps if h.side == pb.HEATMAP_SIDE_QUERY]
    if query_maps:
        h = query_maps[-1]
        out = heatmap_overlay(image, np.asarray(h.values, np.float32).reshape(h.height, h.width), alpha=0.45)
    v = r.verification
    if v.state == pb.VERIFICATION_STATE_VERIFIED and v.frame_id == r.frame_id and len(v.outline) == 4:
        out = outline_overlay(out, np.array([[p.x, p.y] for p in v.outline]))  # verified on this very frame
    out = np.ascontiguousarray(out.copy())
    s = r.smoothed
    if r.HasField("error"):
        text = f"error: {r.error.reason}"
    elif s.decision == pb.DECISION_ARTWORK:
        text = f"{s.title or s.instance_id}  {s.score:.2f}"
    else:
        text = pb.Decision.Name(s.decision).removeprefix("DECISION_").replace("_", " ").lower()
    scale = max(image.shape[1] / 900.0, 0.5)
    for colour, thickness in (((0, 0, 0), 4), ((255, 255, 255), 1)):
        cv2.putText(out, text, (10, int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)
        cv2.putText(out, f"{e2e_ms:.0f} ms", (10, int(60 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.7, colour,
                    thickness, cv2.LINE_AA)
    return out


def line(r: pb.Recognition, e2e_ms: float) -> str:
    if r.HasField("error"):
        return f"frame {r.frame_id}: error {r.error.code} {r.error.reason}: {r.error.message}"
    own = pb.Decision.Name(r.decision).removeprefix("DECISION_").lower()
    best = r.matches[0] if r.matches else None
    s = r.smoothed
    shown = (f"{s.instance_id} {s.title!r}" if s.decision == pb.DECISION_ARTWORK
             else pb.Decision.Name(s.decision).removeprefix("DECISION_").lower())
    v = r.verification
    verified = (f" | verified {v.instance_id} ({v.inliers} inliers, frame {v.frame_id}, {v.age_ms:.0f} ms ago)"
                if v.state == pb.VERIFICATION_STATE_VERIFIED else "")
    return (f"frame {r.frame_id}: {own:<10} best {best.instance_id if best else '-'} {best.score if best else 0:.3f} | "
            f"shown: {shown} (stable {s.stable_frames}) | {e2e_ms:.1f} ms e2e, {r.timings.inference_ms:.1f} ms "
            f"inference | dropped {r.dropped_frames}{verified}")


def main(args: argparse.Namespace) -> int:
    options = pb.RecognizeOptions(top_k=args.top_k, explain=args.explain, heatmap_kinds=[pb.HEATMAP_KIND_FULL])
    sent: dict[str, tuple[float, np.ndarray]] = {}
    lock = threading.Lock()
    try:
        source = frame_source(args)
        first = next(source, None)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if first is None:
        print("error: the source gave no frames", file=sys.stderr)
        return 2

    def frames() -> Iterator[pb.Frame]:
        start = time.perf_counter()
        index = 0
        for image in _chain(first, source):
            if args.max_frames and index >= args.max_frames:
                return
            if args.fps > 0:
                delay = start + index / args.fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            frame_id = f"{index:06d}"
            now = time.perf_counter()
            with lock:
                sent[frame_id] = (now, image)
            yield frame_message(image, frame_id=frame_id, timestamp=now - start, options=options)
            index += 1

    writer = None
    rows, latencies = [], []
    try:
        with connect(args) as client:
            for r in client.stream(frames()):
                with lock:
                    sent_at, image = sent.pop(r.frame_id, (None, None))
                    for stale in [k for k in sent if k < r.frame_id]:  # dropped by the server
                        del sent[stale]
                e2e = (time.perf_counter() - sent_at) * 1e3 if sent_at is not None else float("nan")
                latencies.append(e2e)
                if not args.quiet:
                    print(line(r, e2e), flush=True)
                rows.append({"frame_id": r.frame_id, "e2e_ms": e2e, "decision": pb.Decision.Name(r.decision),
                             "smoothed": pb.Decision.Name(r.smoothed.decision),
                             "instance_id": r.smoothed.instance_id, "score": r.smoothed.score,
                             "inference_ms": r.timings.inference_ms, "dropped_frames": r.dropped_frames,
                             "error": r.error.reason if r.HasField("error") else None})
                if image is not None and (args.out_video or args.out_dir):
                    annotated = cv2.cvtColor(annotate(image, r, e2e), cv2.COLOR_RGB2BGR)
                    if args.out_dir is not None:
                        args.out_dir.mkdir(parents=True, exist_ok=True)
                        cv2.imwrite(str(args.out_dir / f"{r.frame_id}.jpg"), annotated)
                    if args.out_video is not None:
                        if writer is None:
                            args.out_video.parent.mkdir(parents=True, exist_ok=True)
                            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if args.out_video.suffix == ".avi" else "mp4v"))
                            writer = cv2.VideoWriter(str(args.out_video), fourcc, args.fps or 30.0,
                                                     (annotated.shape[1], annotated.shape[0]))
                        writer.write(annotated)
    except grpc.RpcError as exc:
        print(f"error: stream failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    finally:
        if writer is not None:
            writer.release()
    answered = [x for x in latencies if x == x]
    summary = {"answered": len(rows), "errors": sum(1 for r in rows if r["error"]),
               "dropped_frames": rows[-1]["dropped_frames"] if rows else 0,
               "e2e_ms_p50": float(np.percentile(answered, 50)) if answered else None,
               "e2e_ms_p95": float(np.percentile(answered, 95)) if answered else None}
    print(f"{summary['answered']} frames answered, {summary['dropped_frames']} dropped by the server, "
          f"{summary['errors']} errors; end-to-end p50 {summary['e2e_ms_p50'] or 0:.1f} ms, "
          f"p95 {summary['e2e_ms_p95'] or 0:.1f} ms")
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"summary": summary, "frames": rows}, indent=2))
    return 0


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest
