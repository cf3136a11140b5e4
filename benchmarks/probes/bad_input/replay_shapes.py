"""Replay server inference shapes on a bare session with an env arena config; RSS creep + speed.

Usage: python replay_shapes.py MODEL.onnx OUT/shapes.json '{}' 800 0
(arena config as JSON, or off for no CPU arena, e.g. '{"arena_extend_strategy": 0, "max_power_of_two_extend_bytes": 4194304}';
unary calls to replay; widths rounded up to a multiple of the last argument, 0: as recorded).
"""
import sys, json, time
import numpy as np, onnxruntime as ort
from muselens.runtime.server.malloc import tune_malloc
tune_malloc()
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) / 1024
log = json.load(open(sys.argv[2])); cfg = {} if sys.argv[3] == "off" else json.loads(sys.argv[3]); N = int(sys.argv[4]); B = int(sys.argv[5])
if B: log = [[[s[0], s[1], -(-s[2] // B) * B, 3] if s[1] <= s[2] else [s[0], -(-s[1] // B) * B, s[2], 3], o, p] for s, o, p in log]
o = ort.SessionOptions(); o.enable_mem_pattern = False; o.enable_cpu_mem_arena = sys.argv[3] != "off"
if cfg:
    mi = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(mi, ort.OrtArenaCfg(cfg))
    o.add_session_config_entry("session.use_env_allocators", "1")
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
warm = [e for e in log if e[2] != "unary"]; unary = [e for e in log if e[2] == "unary"][:N]
for shape, outs, _ in warm:
    s.run(outs, {name: np.full(shape, 127, np.uint8)})
r0 = rss(); t = []; marks = []
for i, (shape, outs, _) in enumerate(unary):
    shape = [shape[0], shape[1], -(-shape[2] // B) * B, 3] if B else shape; x = np.full(shape, 127, np.uint8)
    t0 = time.perf_counter(); s.run(outs, {name: x}); t.append(time.perf_counter() - t0)
    if (i + 1) % (N // 4) == 0: marks.append(round(rss() - r0, 1))
print(f"{cfg}: after warm {r0:.1f} MiB, creep {marks}, run median {1000*np.median(t):.1f} ms", flush=True)
