"""Leak or high-water mark? The bench's warm-up, then the corpus's unary and stream phases twice
against one server (the bench's own functions). After each phase: RSS, the served model's state
(``muselens_model_state_bytes``; the second pass enrols again), RSS beyond the state's growth, and
the mappings whose RSS changed most (/proc/PID/smaps, keyed by start address). A leak grows in
both passes alike; a high-water mark (largest shapes, allocator arenas first used late) only in
the first.
Usage: python corpus_twice.py BUNDLE OUT [COUNT]
"""
import sys
import time
from pathlib import Path

import numpy as np

from muselens.benchmarks import bad_input as b
from muselens.benchmarks.corpus import Corpus
from muselens.runtime.recognition.explainer import REFERENCE_CACHE_BYTES

bundle, out = Path(sys.argv[1]), Path(sys.argv[2])
count = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
out.mkdir(parents=True, exist_ok=True)
tokens = b.write_token_file(out / "tokens.txt")
corpus = Corpus(count, 0, tokens=tokens)
streams = b.plan_streams(corpus, np.random.default_rng([0, 0x57]))
good = corpus.good_frame(np.random.default_rng([0, 0x600D])).SerializeToString()


def mappings(pid):
    found, key = {}, None
    for line in open(f"/proc/{pid}/smaps"):
        fields = line.split()
        if "-" in fields[0] and not fields[0].endswith(":"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            key = (fields[0].split("-")[0], fields[5] if len(fields) > 5 else "[anon]", (end - start) >> 20)
        elif fields[0] == "Rss:":
            found[key[:2]] = (int(fields[1]), key[2])
    return found


def grown(before, after, n=5):
    changes = {k: ((after.get(k, (0, 0))[0] - before.get(k, (0, 0))[0]) / 1024, after.get(k, before.get(k))[1])
               for k in {*before, *after}}
    return ", ".join(f"{k[1]}@{k[0][-6:]}({size} MiB map) {v:+.1f}" for k, (v, size) in
                     sorted(changes.items(), key=lambda kv: -abs(kv[1][0]))[:n] if abs(v) >= 0.5)


server = b.ServerProcess(bundle, token_file=out / "tokens.txt", log=out / "server.log",
                         extra=("--max-calls-per-token", "4", "--penalty-after", "0", "--flood-penalty-after", "0",
                                "--metrics-port", "0"))
with server:
    wire = b.Wire(server.address, tokens)
    b.warm_up(wire, b.warmup_frames(0) + b.working_set_frames(corpus), 120, 4)
    b.fill_caches(wire, b.reference_frames(bundle, REFERENCE_CACHE_BYTES * 5 // 4), 120, 4)
    time.sleep(6)  # one heap trim
    start, state0, maps = b.common.rss_mb(server.pid), sum(server.model_state().values()), mappings(server.pid)
    print(f"after warm-up {start:.1f} MiB", flush=True)
    for p in (1, 2):
        for phase in ("unary", "streams"):
            tally = b.Tally()
            if phase == "unary":
                b.run_unary(wire, corpus, tally, 4, 120, lambda: None)
            else:
                b.run_streams(wire, corpus, tally, streams, good, 4, 120, lambda: None)
            time.sleep(6)
            now, state, new_maps = b.common.rss_mb(server.pid), sum(server.model_state().values()), mappings(server.pid)
            print(f"pass {p} {phase:8s} RSS {now:.1f} MiB ({now - start:+.1f}); state {(state - state0) / 2**20:+.1f}; "
                  f"beyond it {(now - start - (state - state0) / 2**20) / start * 100:+.2f} %; mismatches "
                  f"{tally.n_mismatches}; grown: {grown(maps, new_maps)}", flush=True)
            maps = new_maps
    wire.close()
