"""Does opening and closing many short streams grow the server? (The corpus's stream phase opens
~2,200 lock-step streams of 3-8 frames.) The bench's warm-up against traced_serve.py, then
ROUNDS x 250 streams of 4 good frames (4 at a time), RSS after each round; tracemalloc
snapshots after the first and last round and the allocation sites that grew between them.
Usage: python stream_churn.py BUNDLE OUT [ROUNDS] [serve flags...]
"""
import os
import signal
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from muselens.benchmarks import bad_input as b
from muselens.benchmarks.corpus import Corpus

bundle, out = Path(sys.argv[1]), Path(sys.argv[2])
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 6
out.mkdir(parents=True, exist_ok=True)
os.environ["SNAP_DIR"] = str(out)
for old in out.glob("snap*"):
    old.unlink()
tokens = b.write_token_file(out / "tokens.txt")
corpus = Corpus(200, 0, tokens=tokens)
HERE = Path(__file__).resolve().parent
TRACED = os.environ.get("TRACED", "1") == "1"


class Traced(b.ServerProcess):
    def command(self):
        cmd = super().command()
        return [cmd[0], str(HERE / "traced_serve.py"), *cmd[cmd.index("-m") + 2:]] if TRACED else cmd


def mappings(pid):
    """Rss (KiB) of every mapping, keyed by its address range and name."""
    found, key = {}, None
    for line in open(f"/proc/{pid}/smaps"):
        fields = line.split()
        if "-" in fields[0] and not fields[0].endswith(":"):
            key = f"{fields[0]} {fields[5] if len(fields) > 5 else '[anon]'}"
        elif fields[0] == "Rss:":
            found[key] = int(fields[1])
    return found


def grown(before, after, n=6):
    """The mappings whose Rss changed most (MiB), new ones included."""
    changes = {k: (after.get(k, 0) - before.get(k, 0)) / 1024 for k in {*before, *after}}
    return ", ".join(f"{k.split()[1]}@{k.split('-')[0][-6:]} {v:+.1f}" for k, v in
                     sorted(changes.items(), key=lambda kv: -abs(kv[1]))[:n] if abs(v) >= 0.5)


def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024


server = Traced(bundle, token_file=out / "tokens.txt", threads=None, log=out / "server.log",
                extra=("--max-calls-per-token", "4", *sys.argv[4:]))
rng = np.random.default_rng(1)
goods = [corpus.good_frame(rng).SerializeToString() for _ in range(16)]


def snapshot(k):
    if TRACED:
        os.kill(server.pid, signal.SIGUSR1)
        while not (out / f"snap{k}.done").exists():
            time.sleep(0.5)


def one_stream(i):
    stream = b.Lockstep(wire, wire.metadata(None), 60)
    for k in range(4):
        stream.send(goods[(i + k) % len(goods)])
    stream.close()


with server:
    wire = b.Wire(server.address, tokens)
    b.warm_up(wire, b.warmup_frames(0) + b.working_set_frames(corpus), 120, 4)
    time.sleep(1)
    print(f"after warm-up {rss(server.pid):.1f} MiB", flush=True)
    maps = mappings(server.pid)
    for r in range(rounds):
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one_stream, range(r * 250, (r + 1) * 250)))
        time.sleep(1)
        now = mappings(server.pid)
        print(f"after {(r + 1) * 250} streams {rss(server.pid):.1f} MiB; grown: {grown(maps, now)}", flush=True)
        maps = now
        if r == 0:
            snapshot(1)
    snapshot(2)
    wire.close()
if TRACED:
    first, last = (tracemalloc.Snapshot.load(str(out / f"snap{k}.bin")) for k in (1, 2))
    total = lambda s: sum(st.size for st in s.statistics("filename")) / 2**20  # noqa: E731
    print(f"traced {total(first):.1f} -> {total(last):.1f} MiB; largest growth:")
    for stat in last.compare_to(first, "traceback")[:8]:
        print(f"{stat.size_diff / 2**20:+.2f} MiB in {stat.count_diff:+d} blocks")
        for line in stat.traceback.format()[-10:]:
            print("   ", line)
