"""RSS of in-process verified recognitions at random frame sizes, heap trimmed every 100 calls (is
verification on frames of every size what grows the corpus's RSS on a verifying bundle? No: flat).

Usage: python verify_sizes_rss.py BUNDLE on|off
"""
import sys, os, ctypes
from muselens.runtime.server.malloc import tune_malloc
tune_malloc()
import numpy as np
from muselens.runtime.recognition.served_model import ServedModel
from muselens.runtime.recognition.options import RecognizeOptions
verify = sys.argv[2] == 'on'
m = ServedModel.load(sys.argv[1])
rng = np.random.default_rng(0)
libc = ctypes.CDLL('libc.so.6')
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'): return int(line.split()[1]) / 1024
def frame(h, w):
    small = rng.integers(0, 255, (max(2, h // 16), max(2, w // 16), 3), np.uint8)
    import cv2
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 2)
for _ in range(5): m.recognize(frame(480, 640), RecognizeOptions(verify=verify))
libc.malloc_trim(0); start = rss(); out = [start]
for i in range(400):
    h, w = int(rng.integers(64, 1500)), int(rng.integers(64, 1500))
    if max(h, w) / min(h, w) > 3: continue
    m.recognize(frame(h, w), RecognizeOptions(verify=verify))
    if i % 100 == 99:
        libc.malloc_trim(0); out.append(rss())
print('verify', sys.argv[2], 'RSS after trim every 100 calls:', [round(x) for x in out], 'growth %+.1f %%' % ((out[-1] / start - 1) * 100))
