"""Net live bytes per allocation stack between the warm-up and the end of memray_run.py's capture.

Usage: python memray_delta.py OUT/cap.bin OUT/marks.txt
"""
import sys
from collections import defaultdict
from memray import FileReader
r = FileReader(sys.argv[1]); tw, te = map(float, open(sys.argv[2]).read().split())
snaps = list(r.get_memory_snapshots())
def at(t):
    return min(range(len(snaps)), key=lambda i: abs(snaps[i].time / 1000 - t))
iw, ie = at(tw), at(te)
for name, i in (("warm", iw), ("end", ie)):
    s = snaps[i]; print(f"{name}: snapshot {i} rss {s.rss/2**20:.1f} MiB heap {s.heap/2**20:.1f} MiB")
delta = defaultdict(int); stacks = {}
for rec in r.get_temporal_allocation_records(merge_threads=True):
    d = 0
    for iv in rec.intervals:
        live = lambda s: iv.allocated_before_snapshot <= s and (iv.deallocated_before_snapshot is None or iv.deallocated_before_snapshot > s)
        d += iv.n_bytes * (live(ie) - live(iw))
    if d:
        key = (rec.stack_id, int(rec.allocator)); delta[key] += d; stacks[key] = rec
print("net delta of tracked heap MiB", sum(delta.values()) / 2**20)
by_alloc = defaultdict(int)
for (sid, a), d in delta.items(): by_alloc[a] += d
print({a: round(d / 2**20, 2) for a, d in by_alloc.items()})
for key, d in sorted(delta.items(), key=lambda kv: -abs(kv[1]))[:25]:
    rec = stacks[key]
    try:
        st = [f"{fn}@{file.split('/')[-1]}:{line}" for fn, file, line in rec.hybrid_stack_trace(max_stacks=22)]
    except Exception:
        st = [f"{fn}@{file.split('/')[-1]}:{line}" for fn, file, line in rec.stack_trace(max_stacks=22)]
    st = [s for s in st if "<unknown>" not in s and "ceval" not in s and "call.c" not in s]
    print(f"{d/2**20:+7.2f} MiB alloc={key[1]} :: " + " < ".join(st[:14]))
