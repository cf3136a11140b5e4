"""The shapes of every inference an in-process server runs over the warm-up and the unary corpus.

Usage: python record_shapes.py BUNDLE OUT 10000   (writes OUT/shapes.json)
"""
import sys, time, json
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
from muselens.runtime.engine import backends
tune_malloc()
log = []
real = backends.OrtBackend.run
def run(self, batch, outputs, cancel=None):
    log.append((list(batch.shape), list(outputs), phase[0]))
    return real(self, batch, outputs, cancel)
backends.OrtBackend.run = run
phase = ["load"]
bundle = Path(sys.argv[1]); out = Path(sys.argv[2]); count = int(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
tokens = b.write_token_file(out / "tokens.txt")
corpus = Corpus(count, 0, tokens=tokens)
holder = ModelHolder(ServedModel.load(bundle, ServingConfig()))
server = MuselensServer(holder, ServerConfig(host="127.0.0.1", port=0, tokens=ServerTokens.load(out / "tokens.txt"))).start()
wire = b.Wire(f"127.0.0.1:{server.port}", tokens)
phase[0] = "warm"
b.warm_up(wire, b.warmup_frames(0) + b.working_set_frames(corpus), 120, 4)
b.fill_caches(wire, b.reference_frames(bundle, REFERENCE_CACHE_BYTES * 5 // 4), 120, 4)
phase[0] = "unary"
tally = b.Tally()
b.run_unary(wire, corpus, tally, 4, 120, lambda: None)
json.dump(log, open(out / "shapes.json", "w"))
print(len(log), "runs;", sum(1 for x in log if x[2] == "unary"), "in unary")
wire.close(); server.stop(0)
