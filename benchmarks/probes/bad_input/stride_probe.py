"""Accuracy probe: long side rounded to a multiple of the stride at serving time (no retraining).

Usage: python stride_probe.py BUNDLE MUSEUM
"""
import sys, glob, collections
import numpy as np, cv2
from muselens.core import preprocess
from muselens.runtime.recognition.served_model import ServedModel, ServingConfig
orig = preprocess.short_side_size
def rounded(B):
    def f(h, w, short, max_aspect=None):
        oh, ow = orig(h, w, short, max_aspect)
        r = lambda v: max(B, int(round(v / B)) * B)
        return (oh, r(ow)) if oh <= ow else (r(oh), ow)
    return f
m = ServedModel.load(sys.argv[1], ServingConfig())
museum = sys.argv[2]
def load(p): return cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB)
refs = sorted(glob.glob(f"{museum}/references/*/*")); qs = sorted(glob.glob(f"{museum}/queries/*/*"))
R = [(p.split("/")[-2], load(p)) for p in refs]; Q = [(p.split("/")[-2], load(p)) for p in qs]
out = {}
for B in (0, 32, 64):
    preprocess.short_side_size = rounded(B) if B else orig
    g = collections.defaultdict(list)
    for i, im in R: g[i].append(m.describer.describe(im))
    ids = sorted(g); G = np.stack([np.mean(g[i], 0) for i in ids]); G /= np.linalg.norm(G, axis=1, keepdims=True)
    D = np.stack([m.describer.describe(im) for _, im in Q])
    top1 = np.mean([ids[int(np.argmax(G @ d))] == q for d, (q, _) in zip(D, Q)])
    out[B] = D
    cos = "" if B == 0 else f", cosine to unrounded query descriptors mean {np.mean(np.sum(D * out[0], 1) / np.linalg.norm(D, axis=1) / np.linalg.norm(out[0], axis=1)):.4f}"
    print(f"round to {B or 'none'}: {len(Q)} queries, {len(R)} references, top-1 {100*top1:.1f}%{cos}", flush=True)
