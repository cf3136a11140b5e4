"""Which categories of the unary corpus grow the server's RSS: the bench's warm-up, then each
category's cases in turn (4 client threads, a server subprocess as in the bench), RSS after each.

Usage: python category_growth.py BUNDLE OUT 10000 [SERVE FLAGS...]   (e.g. --reference-cache-mb 0)
CATEGORIES=a,b,c in the environment runs those, in that order (default: all, sorted);
FILL_QUARTERS=n fills the reference-map cache with n/4 of its size in the warm-up (default 5, as the bench).
"""
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from muselens.benchmarks import bad_input as b
from muselens.benchmarks.corpus import Corpus
from muselens.runtime.recognition.explainer import REFERENCE_CACHE_BYTES

bundle, out, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
tokens = b.write_token_file(out / "tokens.txt")
corpus = Corpus(count, 0, tokens=tokens)
names = os.environ["CATEGORIES"].split(",") if os.environ.get("CATEGORIES") else sorted(set(corpus.categories))
server = b.ServerProcess(bundle, token_file=out / "tokens.txt", threads=None, log=out / "server.log",
                         extra=tuple(sys.argv[4:]))


def rss(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024


with server:
    wire = b.Wire(server.address, tokens)
    b.warm_up(wire, b.warmup_frames(0) + b.working_set_frames(corpus), 120, 4)
    fill = REFERENCE_CACHE_BYTES * int(os.environ.get("FILL_QUARTERS", "5")) // 4
    b.fill_caches(wire, b.reference_frames(bundle, fill), 120, 4)
    time.sleep(1)
    start = previous = rss(server.pid)
    print(f"after warm-up {start:.1f} MiB", flush=True)
    for name in names:
        indices = [i for i in range(len(corpus)) if corpus.categories[i] == name]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda i: b.unary(wire, corpus.case(i), 120), indices))
        now = rss(server.pid)
        print(f"{name:24s} {len(indices):4d} cases  {now - previous:+6.1f} MiB  (total {now - start:+6.1f})", flush=True)
        previous = now
    wire.close()
