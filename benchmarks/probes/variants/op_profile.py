"""Where an ONNX model's time goes, per operator type, and two bundles' models alternated.

Profiles each model with ONNX Runtime's own profiler (as served: 2 threads, spinning stopped
after each run) at one recognition size and prints the operator types' share of a run; then
times the models alternated run by run (median ms), since this host's speed drifts. Usage, from
the repository root:

    .venv/bin/python benchmarks/probes/variants/op_profile.py MODEL.onnx [MODEL.onnx ...] [--size 448x796]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import tempfile
import time

import numpy as np
import onnxruntime as ort


def session(path: str, profile_dir: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.force_spinning_stop", "1")
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(profile_dir, "profile")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def op_shares(path: str, image: np.ndarray, runs: int) -> dict[str, float]:
    """Milliseconds per run spent in each operator type (ONNX Runtime's kernel times)."""
    with tempfile.TemporaryDirectory() as tmp:
        profiled = session(path, tmp)
        name = profiled.get_inputs()[0].name
        for _ in range(3 + runs):
            profiled.run(["descriptor"], {name: image})
        with open(profiled.end_profiling()) as f:
            events = json.load(f)
    # only the runs after the 3 warm-up ones
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[-runs:]
    per_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") \
                and any(start <= event["ts"] <= end for start, end in spans):
            per_op[event["args"]["op_name"]] += event["dur"] / 1e3 / runs
    return dict(per_op.most_common())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--size", default="448x796", help="HxW of the input image")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    image = np.random.default_rng(0).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    for path in args.models:
        shares = op_shares(path, image, args.runs)
        total = sum(shares.values())
        print(f"{path}: {total:.1f} ms of kernels a run")
        for op, ms in list(shares.items())[:10]:
            print(f"  {op:20s} {ms:6.2f} ms  {100 * ms / total:5.1f} %")
    sessions = {path: session(path) for path in args.models}
    times: dict[str, list[float]] = {path: [] for path in args.models}
    for s in sessions.values():
        for _ in range(3):
            s.run(["descriptor"], {s.get_inputs()[0].name: image})
    for _ in range(args.rounds):  # alternated, so that a host whose speed drifts meets every model alike
        for path, s in sessions.items():
            for _ in range(10):
                t0 = time.perf_counter()
                s.run(["descriptor"], {s.get_inputs()[0].name: image})
                times[path].append((time.perf_counter() - t0) * 1e3)
    for path, ms in times.items():
        print(json.dumps({"model": path, "size": args.size, "ms_p50": round(statistics.median(ms), 2)}))


if __name__ == "__main__":
    main()
