"""Server RSS over the unary phase alone (`muselens serve` subprocess), by quarter of the corpus.

Usage: python unary_only.py BUNDLE OUT 10000 LABEL. The configurations compared in NOTES.md were
temporary patches to runtime/engine/backends.py, run through this probe; they are not kept.
"""
import sys, time
from pathlib import Path
from muselens.benchmarks import bad_input as b
from muselens.benchmarks.corpus import Corpus
from muselens.benchmarks import common
from muselens.runtime.recognition.explainer import REFERENCE_CACHE_BYTES
from muselens.runtime.server.process import ServerProcess
bundle = Path(sys.argv[1]); out = Path(sys.argv[2]); count = int(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
tokens = b.write_token_file(out / "tokens.txt")
corpus = Corpus(count, 0, tokens=tokens)
with ServerProcess(bundle, token_file=out / "tokens.txt", log=out / "server.log") as server:
    wire = b.Wire(server.address, tokens)
    with b.RssSampler(server.pid) as rss:
        b.warm_up(wire, b.warmup_frames(0) + b.working_set_frames(corpus), 120, 4)
        b.fill_caches(wire, b.reference_frames(bundle, REFERENCE_CACHE_BYTES * 5 // 4), 120, 4)
        w = common.rss_mb(server.pid)
        tally = b.Tally(); marks = []
        n = len(corpus)
        class Part:
            def __init__(self, a, z): self.a, self.z = a, z
            def __len__(self): return self.z - self.a
            def case(self, i): return corpus.case(self.a + i)
        for k in range(4):
            b.run_unary(wire, Part(k * n // 4, (k + 1) * n // 4), tally, 4, 120, lambda *a: None)
            marks.append(round(common.rss_mb(server.pid) - w, 1))
    wire.close()
print(f"{sys.argv[4]}: warm {w:.1f} MiB, after each quarter {marks}, growth {100*marks[-1]/w:+.2f}%, peak {max(m for _, m in rss.samples):.1f}, mismatches {tally.n_mismatches}", flush=True)
