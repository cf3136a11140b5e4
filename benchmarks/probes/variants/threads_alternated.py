"""Interleaved: is ORT's intra-op parallelism worth it on this host? A/B/C rounds, medians."""
import time, threading, numpy as np, onnxruntime as ort, sys, statistics as st
path = sys.argv[1]; side = int(sys.argv[2]) if len(sys.argv) > 2 else 320
def sess(threads, spin=True):
    o = ort.SessionOptions(); o.intra_op_num_threads = threads
    if not spin: o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).integers(0, 255, (1, side, round(side*16/9), 3), dtype=np.uint8)
S = {"2t": sess(2), "1t": sess(1), "2t-nospin": sess(2, False)}
one = sess(1); one_b = sess(1)
for s in S.values():
    for _ in range(3): s.run(["descriptor"], {"image": x})
res = {k: [] for k in S}; thr = {"1x2": [], "2x1": []}
for r in range(12):
    for k, s in S.items():
        for _ in range(4):
            t = time.perf_counter(); s.run(["descriptor"], {"image": x}); res[k].append((time.perf_counter()-t)*1e3)
    # throughput: 8 inferences 1x2 vs 2 threads each doing 4 on one thread
    t = time.perf_counter()
    for _ in range(8): S["2t"].run(["descriptor"], {"image": x})
    thr["1x2"].append(8/(time.perf_counter()-t))
    def work(s):
        for _ in range(4): s.run(["descriptor"], {"image": x})
    t = time.perf_counter(); ts = [threading.Thread(target=work, args=(s,)) for s in (one, one_b)]
    [a.start() for a in ts]; [a.join() for a in ts]
    thr["2x1"].append(8/(time.perf_counter()-t))
print(side, {k: round(st.median(v), 1) for k, v in res.items()}, "ms;", {k: round(st.median(v), 1) for k, v in thr.items()}, "FPS")
print("per-round 1x2/2x1:", [round(a/b, 2) for a, b in zip(thr["1x2"], thr["2x1"])])
