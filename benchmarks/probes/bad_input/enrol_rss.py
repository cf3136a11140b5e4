"""RSS of in-process enrolments on a verifying bundle, each replacing the model as the server's
holder does, heap trimmed every 20 (what an enrolled reference costs with its local features).

Usage: python enrol_rss.py BUNDLE
"""
import sys, gc, ctypes
from muselens.runtime.server.malloc import tune_malloc
tune_malloc()
import numpy as np, cv2
from muselens.runtime.recognition.served_model import ServedModel
from muselens.runtime.recognition.options import RecognizeOptions
libc = ctypes.CDLL('libc.so.6')
rng = np.random.default_rng(0)
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'): return int(line.split()[1]) / 1024
def photo(h=480, w=640):
    small = rng.integers(0, 255, (h // 16, w // 16, 3), np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 2)
model = ServedModel.load(sys.argv[1])  # (stop 27 kept the first model alive here as well: +12 MiB once)
for _ in range(3): model.recognize(photo(), RecognizeOptions(verify=True))
state = lambda m: sum(m.state_bytes().values()) / 2**20  # noqa: E731
libc.malloc_trim(0); start = rss(); out = [start]; states = [state(model)]
for i in range(60):  # each enrolment replaces the model, as the server's holder does
    model = model.with_enrolled(f"enrolled-{i % 5}", "t", {}, [photo() for _ in range(2)])
    model.recognize(photo(), RecognizeOptions(verify=True))
    if i % 20 == 19:
        gc.collect(); libc.malloc_trim(0); out.append(rss()); states.append(state(model))
print('enrolments: RSS after trim every 20:', [round(x) for x in out], 'references now', model.search.gallery.n_images,
      'growth %+.1f %%' % ((out[-1] / start - 1) * 100))
print('the model state (muselens_model_state_bytes) at the same points, MiB:', [round(x, 1) for x in states])
