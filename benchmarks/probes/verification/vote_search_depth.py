"""The vote search's HNSW depth (efSearch) against its time and the right artwork's place in the votes.

For each efSearch, over a museum's query photos (a seeded sample): the search's median time on one
thread, and how often the query's artwork is among the three most voted (what the vote adds to
the shortlist), beside agreement with the deepest search. Usage, from the repository root:

    .venv/bin/python benchmarks/probes/verification/vote_search_depth.py BUNDLE DATASET [--queries N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from muselens.runtime.frames import decode_encoded
from muselens.runtime.recognition.served_model import ServedModel, ServingConfig
from muselens.runtime.verification.voting import artwork_votes, top_voted

DEPTHS = (128, 32, 24, 16, 12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("dataset", type=Path, help="a museum folder with queries/<instance id>/<photo>")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    files = sorted(p for p in (args.dataset / "queries").glob("*/*") if p.is_file())
    random.Random(args.seed).shuffle(files)
    files = files[:args.queries]
    model = ServedModel.load(args.bundle, ServingConfig(variant="fp32"))
    verifier = model.verifier
    if verifier is None or verifier.voter is None:
        raise SystemExit(f"{args.bundle}: the bundle has no local features to vote with")
    need = model.decode_need(verify=True)
    frames = [verifier.frame_features(decode_encoded(p.read_bytes(), at_least=need)) for p in files]
    truth = [p.parent.name for p in files]
    voter = verifier.voter
    print(f"{len(frames)} query photos of {args.dataset.name}, {len(voter)} reference descriptors")
    rows, deepest = [], None
    for depth in DEPTHS:
        voter.index.hnsw.efSearch = depth
        times, tops = [], []
        for frame in frames:
            t0 = time.perf_counter()
            votes = voter.row_votes(frame, threads=1)
            times.append((time.perf_counter() - t0) * 1e3)
            tops.append(top_voted(artwork_votes(voter.row_ids, votes), count=3))
        deepest = deepest or tops
        row = {"ef_search": depth, "ms_p50_one_thread": round(statistics.median(times), 2),
               "truth_in_top3": round(sum(t in top for t, top in zip(truth, tops)) / len(tops), 4),
               "top1_as_deepest": round(sum(a[:1] == b[:1] for a, b in zip(tops, deepest)) / len(tops), 4)}
        rows.append(row)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
