"""ORT CPU arena on vs off (server malloc tuning): per-run time at varied widths, interleaved.

Usage: python arena_speed.py MODEL.onnx 100
"""
import sys, time
import numpy as np, onnxruntime as ort
from muselens.runtime.server.malloc import tune_malloc
tune_malloc()
model = sys.argv[1]; n = int(sys.argv[2])
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) / 1024
def sess(arena):
    o = ort.SessionOptions(); o.enable_mem_pattern = False; o.enable_cpu_mem_arena = arena
    return ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])
S = {True: sess(True), False: sess(False)}
name = S[True].get_inputs()[0].name
rng = np.random.default_rng(0)
shapes = [(1, 448, int(w), 3) for w in rng.integers(300, 900, n)]
for s in S.values():
    s.run(None, {name: np.zeros((1, 448, 900, 3), np.uint8)})
t = {True: [], False: []}; r = {True: [], False: []}
for i, sh in enumerate(shapes):
    x = rng.integers(0, 255, sh, dtype=np.uint8)
    for a in ((True, False) if i % 2 else (False, True)):
        t0 = time.perf_counter(); S[a].run(None, {name: x}); t[a].append(time.perf_counter() - t0)
print({("arena" if k else "no arena"): f"median {1000*np.median(v):.1f} ms mean {1000*np.mean(v):.1f}" for k, v in t.items()})
