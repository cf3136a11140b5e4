"""ORT's default CPU arena against one with a 256 MiB first region: per-run time, interleaved.

Both sessions in one process (the second uses the registered environment arena), fed the same
random frames at shapes drawn from the server's recorded unary-phase inferences.
Usage: python first_region_speed.py MODEL.onnx 300 OUT/shapes.json   (shapes from record_shapes.py)
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort

from muselens.runtime.server.malloc import tune_malloc

tune_malloc()
model, n, log = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
ort.create_and_register_allocator(info, ort.OrtArenaCfg({"arena_extend_strategy": 0,
                                                          "initial_chunk_size_bytes": 256 << 20}))


def session(shared):
    options = ort.SessionOptions()
    options.enable_mem_pattern = False
    if shared:
        options.add_session_config_entry("session.use_env_allocators", "1")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


sessions = {"default": session(False), "one region": session(True)}
name = sessions["default"].get_inputs()[0].name
rng = np.random.default_rng(0)
unary = [entry for entry in log if entry[2] == "unary"]
picked = [unary[i] for i in rng.integers(0, len(unary), n)]
for s in sessions.values():
    for shape in ([1, 448, 896, 3], [1, 896, 448, 3]):
        s.run(None, {name: np.zeros(shape, np.uint8)})
times = {k: [] for k in sessions}
for i, (shape, outputs, _) in enumerate(picked):
    x = rng.integers(0, 255, shape, dtype=np.uint8)
    for k in (list(sessions) if i % 2 else list(sessions)[::-1]):
        t0 = time.perf_counter()
        sessions[k].run(outputs, {name: x})
        times[k].append(time.perf_counter() - t0)
print({k: f"median {1000 * np.median(v):.1f} ms, mean {1000 * np.mean(v):.1f}" for k, v in times.items()})
print("median ratio one region / default", round(float(np.median(np.array(times["one region"]) / times["default"])), 3))
