"""What the server holds after the corpus's enrolments and explanations: census + tracemalloc diff.

The bench's warm-up against traced_serve.py, a census and snapshot, then the enroll_partial and
options_valid cases, a census and snapshot again; prints RSS, the census and the allocation
sites that grew. This is how the served model kept alive by the serve command was found.
Usage: python traced_probe.py BUNDLE OUT
"""
import os
import signal
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from muselens.benchmarks import bad_input as b
from muselens.benchmarks.corpus import Corpus
from muselens.runtime.recognition.explainer import REFERENCE_CACHE_BYTES

bundle, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
os.environ["SNAP_DIR"] = str(out)
tokens = b.write_token_file(out / "tokens.txt")
corpus = Corpus(10000, 0, tokens=tokens)
HERE = Path(__file__).resolve().parent


class Traced(b.ServerProcess):
    def command(self):
        cmd = super().command()
        return [cmd[0], str(HERE / "traced_serve.py"), *cmd[cmd.index("-m") + 2:]]


def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024


server = Traced(bundle, token_file=out / "tokens.txt", threads=None, log=out / "server.log")


def snapshot(k):
    os.kill(server.pid, signal.SIGUSR2)
    time.sleep(3)
    os.kill(server.pid, signal.SIGUSR1)
    while not (out / f"snap{k}.done").exists():
        time.sleep(0.5)


with server:
    wire = b.Wire(server.address, tokens)
    b.warm_up(wire, b.warmup_frames(0) + b.working_set_frames(corpus), 120, 4)
    b.fill_caches(wire, b.reference_frames(bundle, REFERENCE_CACHE_BYTES * 5 // 4), 120, 4)
    time.sleep(1)
    print(f"after warm-up RSS {rss(server.pid):.1f} MiB", flush=True)
    snapshot(1)
    for name in ("enroll_partial", "options_valid"):
        cases = [i for i in range(len(corpus)) if corpus.categories[i] == name]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: b.unary(wire, corpus.case(i), 120), cases))
        print(f"after {name} RSS {rss(server.pid):.1f} MiB", flush=True)
    snapshot(2)
    wire.close()
print((out / "census.txt").read_text())
first, last = (tracemalloc.Snapshot.load(str(out / f"snap{k}.bin")) for k in (1, 2))
total = lambda s: sum(st.size for st in s.statistics("filename")) / 2**20  # noqa: E731
print(f"traced {total(first):.1f} -> {total(last):.1f} MiB; largest growth:")
for stat in last.compare_to(first, "traceback")[:6]:
    print(f"{stat.size_diff / 2**20:+.2f} MiB in {stat.count_diff:+d} blocks")
    for line in stat.traceback.format()[-8:]:
        print("   ", line)
