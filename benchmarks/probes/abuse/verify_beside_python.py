"""A geometric verification alone, beside a Python-busy thread, and beside an OpenCV-busy one,
at several GIL switch intervals (see README.md).

Usage: python verify_beside_python.py BUNDLE [FRAMES_DIR]
(BUNDLE with ORB local features, e.g. the demo's; FRAMES_DIR: JPEG frames, e.g. the demo's walk.)
"""
import glob
import sys
import threading
import time

import cv2
import numpy as np

from muselens.core.data.images import decode_image
from muselens.runtime.recognition.options import RecognizeOptions
from muselens.runtime.recognition.served_model import ServedModel

model = ServedModel.load(sys.argv[1])
paths = sorted(glob.glob(f"{sys.argv[2]}/*.jpg"))[:12] if len(sys.argv) > 2 else []
frames = [decode_image(open(p, "rb").read()) for p in paths] or \
    [np.random.default_rng(n).integers(0, 255, (720, 1280, 3), np.uint8) for n in range(4)]


def verify_ms(image):
    return model.recognize(image, RecognizeOptions(verify=True)).timings_ms["verify"]


def python_busy(stop):
    while not stop.is_set():
        sum(range(10000))


def opencv_busy(stop):
    image = np.zeros((720, 1280), np.uint8)
    while not stop.is_set():
        cv2.GaussianBlur(image, (31, 31), 0)


for image in frames[:3]:
    verify_ms(image)
cv2.setNumThreads(1)  # the OpenCV-busy thread takes one core, as the Python-busy ones do
for interval in (5.0, 1.0, 0.5, 0.2):
    sys.setswitchinterval(interval / 1e3)
    row = []
    for name, target, threads in (("alone", None, 0), ("1 Python-busy", python_busy, 1),
                                  ("2 Python-busy", python_busy, 2), ("1 OpenCV-busy", opencv_busy, 1)):
        stop = threading.Event()
        workers = [threading.Thread(target=target, args=(stop,), daemon=True) for _ in range(threads)]
        for w in workers:
            w.start()
        time.sleep(0.05)
        times = [verify_ms(image) for image in frames * 2]
        stop.set()
        for w in workers:
            w.join()
        row.append(f"{name} {np.median(times):.0f}")
    print(f"switch {interval:g} ms: verification p50 ms: " + ", ".join(row), flush=True)
