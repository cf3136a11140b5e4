"""``muselens recognize --server ADDR IMAGE...``: ask a running server what each image shows.

Prints the decision, the best artworks with their scores and the per-stage timings; with
``--explain --overlay-dir D`` writes each returned heatmap overlay as a JPEG; ``--json``
prints the full responses. Exit status 0 when every image was answered, 1 when the server
refused one (the status is printed), 2 for unreadable inputs or an unreachable server.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import grpc
from google.protobuf import json_format

from muselens.runtime.client.connect import add_connection_arguments, connect, parse_roi
from muselens.v1 import recognition_pb2 as pb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument("images", nargs="+", type=Path, help="JPEG or PNG files")
    parser.add_argument("--top-k", type=int, default=0, help="artworks to list (0: the server's default)")
    parser.add_argument("--explain", action="store_true", help="ask for heatmaps of the best match")
    parser.add_argument("--explain-reference", action="store_true", help="also on the best reference photo")
    parser.add_argument("--overlay-dir", type=Path, default=None, help="write heatmap overlays here (implies --explain)")
    parser.add_argument("--roi", type=parse_roi, default=None, help="region of interest x0,y0,x1,y1 in [0,1]")
    parser.add_argument("--json", action="store_true", help="print the full responses as JSON")


def describe(name: str, r: pb.Recognition) -> str:
    decision = pb.Decision.Name(r.decision).removeprefix("DECISION_").lower()
    lines = [f"{name}: {decision} (threshold {r.threshold:.3f}, bundle {r.bundle_version}, "
             f"{r.timings.total_ms:.1f} ms: decode {r.timings.decode_ms:.1f}, inference {r.timings.inference_ms:.1f}, "
             f"match {r.timings.match_ms:.2f}, verify {r.timings.verify_ms:.1f}, heatmap {r.timings.heatmap_ms:.1f})"]
    v = r.verification
    state = pb.VerificationState.Name(v.state).removeprefix("VERIFICATION_STATE_").lower()
    if v.state == pb.VERIFICATION_STATE_VERIFIED:
        lines.append(f"  verified: {v.instance_id}, {v.inliers} inliers of {v.matches} matches, outline "
                     + " ".join(f"({p.x:.2f},{p.y:.2f})" for p in v.outline))
    elif v.state not in (pb.VERIFICATION_STATE_UNSPECIFIED, pb.VERIFICATION_STATE_NOT_REQUESTED):
        lines.append(f"  verification: {state.replace('_', ' ')}")
    for rank, m in enumerate(r.matches, 1):
        fit = f"  ({m.inliers} inliers)" if m.inliers else ""
        lines.append(f"  {rank:>2}. {m.score:.4f}  {m.instance_id}  {m.title}{fit}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    explain = args.explain or args.explain_reference or args.overlay_dir is not None
    options = pb.RecognizeOptions(top_k=args.top_k, explain=explain, explain_reference=args.explain_reference,
                                  overlay=args.overlay_dir is not None)
    if args.roi is not None:
        options.region_of_interest.CopyFrom(pb.RegionOfInterest(x0=args.roi[0], y0=args.roi[1],
                                                                x1=args.roi[2], y1=args.roi[3]))
    status = 0
    with connect(args) as client:
        for path in args.images:
            try:
                data = path.read_bytes()
            except OSError as exc:
                print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
                return 2
            try:
                r = client.recognize(data, frame_id=path.name, options=options)
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    print(f"error: server {args.server} unreachable: {exc.details()}", file=sys.stderr)
                    return 2
                print(f"{path.name}: refused: {exc.code().name}: {exc.details()}", file=sys.stderr)
                status = 1
                continue
            if args.json:
                message = json_format.MessageToDict(r, preserving_proto_field_name=True)
                for heatmap in message.get("heatmaps", []):
                    heatmap.pop("overlay_jpeg", None)
                print(json.dumps({"image": str(path), **message}))
            else:
                print(describe(path.name, r))
            if args.overlay_dir is not None:
                args.overlay_dir.mkdir(parents=True, exist_ok=True)
                for h in r.heatmaps:
                    if h.overlay_jpeg:
                        kind = pb.HeatmapKind.Name(h.kind).removeprefix("HEATMAP_KIND_").lower()
                        side = pb.HeatmapSide.Name(h.side).removeprefix("HEATMAP_SIDE_").lower()
                        out = args.overlay_dir / f"{path.stem}.{side}.{kind}.jpg"
                        out.write_bytes(h.overlay_jpeg)
                        print(f"  overlay {out}")
    return status
