"""The whole in-process run under memray with native traces; marks the warm-up and the end.

Native allocations made during the unary corpus and still live at its end (memray, in-process server).

Usage (pip install memray first; not a project dependency): python memray_run.py BUNDLE OUT 10000
"""
import sys, time
import memray
from pathlib import Path
from muselens.benchmarks import bad_input as b
from muselens.benchmarks.corpus import Corpus
from muselens.benchmarks import common
from muselens.runtime.recognition.explainer import REFERENCE_CACHE_BYTES
from muselens.runtime.recognition.holder import ModelHolder
from muselens.runtime.recognition.served_model import ServedModel, ServingConfig
from muselens.runtime.server.app import MuselensServer, ServerConfig
from muselens.runtime.server.auth import Tokens as ServerTokens
from muselens.runtime.server.malloc import tune_malloc
tune_malloc()
bundle = Path(sys.argv[1]); out = Path(sys.argv[2]); count = int(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
cap = out / "cap.bin"; cap.unlink(missing_ok=True)
tokens = b.write_token_file(out / "tokens.txt")
corpus = Corpus(count, 0, tokens=tokens)
tracker = memray.Tracker(cap, native_traces=True); tracker.__enter__()
holder = ModelHolder(ServedModel.load(bundle, ServingConfig()))
server = MuselensServer(holder, ServerConfig(host="127.0.0.1", port=0, tokens=ServerTokens.load(out / "tokens.txt"))).start()
wire = b.Wire(f"127.0.0.1:{server.port}", tokens)
b.warm_up(wire, b.warmup_frames(0) + b.working_set_frames(corpus), 120, 4)
b.fill_caches(wire, b.reference_frames(bundle, REFERENCE_CACHE_BYTES * 5 // 4), 120, 4)
r0 = common.rss_mb(); print("warm rss", r0, flush=True)
tally = b.Tally()
import datetime; tw = datetime.datetime.now(datetime.timezone.utc); print("warm at", tw, flush=True)
if True:
    t0 = time.monotonic()
    b.run_unary(wire, corpus, tally, 4, 120, lambda: None)
    time.sleep(2)
    r1 = common.rss_mb()
print(f"unary {time.monotonic()-t0:.0f}s rss {r1:.1f} (+{r1-r0:.1f}) mismatches {tally.n_mismatches}", flush=True)
te = datetime.datetime.now(datetime.timezone.utc); print("end at", te, flush=True)
open(out / "marks.txt", "w").write(f"{tw.timestamp()} {te.timestamp()}\n")
wire.close(); server.stop(0); tracker.__exit__(None, None, None)
