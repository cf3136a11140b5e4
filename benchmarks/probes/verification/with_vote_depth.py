"""Run a muselens command with the vote search at another depth, for an A/B of efSearch.

Usage, from the repository root: ``.venv/bin/python benchmarks/probes/verification/with_vote_depth.py
32 bench real-photos ...``: everything after the depth is the ``muselens`` command line. The depth
is set by a ``sitecustomize`` on ``PYTHONPATH``, so that the servers the command starts in their
own processes (``bench real-photos``, ``bench streams``) search at that depth too; each prints it
to stderr once at start."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

PATCH = """import sys
import muselens.runtime.verification.voting as voting
voting.HNSW_EF_SEARCH = {depth}
print("vote search depth (efSearch) set to", voting.HNSW_EF_SEARCH, file=sys.stderr)
"""

if __name__ == "__main__":
    depth = int(sys.argv[1])
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "sitecustomize.py").write_text(PATCH.format(depth=depth))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (folder, os.environ.get("PYTHONPATH")) if p)}
        sys.exit(subprocess.call([sys.executable, "-m", "muselens", *sys.argv[2:]], env=env))
