"""What a 1280x720 camera JPEG's decode can cost at recognition size 320: every libjpeg-turbo option.

Times, per frame (median over the latency bench's synthetic camera frames, repeated), the decode
the server does (simplejpeg at the smallest n/8 scale holding the size), the same with libjpeg-
turbo's fast DCT and fast (non-fancy) upsampling, OpenCV's 1/2 reduced mode, and a full decode.
Usage, from the repository root:

    .venv/bin/python benchmarks/probes/decode/jpeg_decode_options.py [--side 320] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import cv2
import numpy as np
import simplejpeg

from muselens.benchmarks.load import load_frames
from muselens.core.preprocess import short_side_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    frames, source = load_frames(None, 32, seed=0)
    height, width = short_side_size(720, 1280, args.side, 2.0)
    options = {
        "server (n/8 scale)": lambda d: simplejpeg.decode_jpeg(d, "RGB", min_height=height, min_width=width),
        "n/8 + fast DCT": lambda d: simplejpeg.decode_jpeg(d, "RGB", fastdct=True, min_height=height,
                                                           min_width=width),
        "n/8 + fast upsampling": lambda d: simplejpeg.decode_jpeg(d, "RGB", fastupsample=True, min_height=height,
                                                                  min_width=width),
        "n/8 + both": lambda d: simplejpeg.decode_jpeg(d, "RGB", fastdct=True, fastupsample=True,
                                                       min_height=height, min_width=width),
        "OpenCV reduced 1/2": lambda d: cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_REDUCED_COLOR_2),
        "full decode": lambda d: simplejpeg.decode_jpeg(d, "RGB"),
    }
    times: dict[str, list[float]] = {name: [] for name in options}
    for _ in range(args.rounds):  # interleaved, so that a host whose speed drifts meets every option alike
        for name, decode in options.items():
            for data in frames:
                t0 = time.perf_counter()
                decode(data)
                times[name].append((time.perf_counter() - t0) * 1e3)
    print(f"{source}; recognition size {width}x{height}; mean {np.mean([len(f) for f in frames]) / 1e3:.0f} kB")
    for name, ms in times.items():
        print(json.dumps({"decode": name, "ms_p50": round(statistics.median(ms), 2)}))


if __name__ == "__main__":
    main()
