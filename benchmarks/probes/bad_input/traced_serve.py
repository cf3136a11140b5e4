"""`muselens serve` with tracemalloc on and two signal hooks, for traced_probe.py.

SIGUSR1 dumps a tracemalloc snapshot (numpy's buffers included) to $SNAP_DIR/snapN.bin;
SIGUSR2 appends a census of live explainers and served models, and the distinct bytes their
reference-map caches hold, to $SNAP_DIR/census.txt. Both after a full gc.
Usage: python traced_serve.py serve BUNDLE [serve flags]   (traced_probe.py starts it)
"""
import gc
import os
import signal
import sys
import tracemalloc

import numpy as np

tracemalloc.start(12)
snapshots = [0]


def dump(sig, frame):
    gc.collect()
    snapshots[0] += 1
    path = os.environ["SNAP_DIR"] + f"/snap{snapshots[0]}"
    tracemalloc.take_snapshot().dump(path + ".bin")
    open(path + ".done", "w").close()


def census(sig, frame):
    from muselens.runtime.recognition.explainer import Explainer
    from muselens.runtime.recognition.served_model import ServedModel

    gc.collect()
    explainers = [o for o in gc.get_objects() if isinstance(o, Explainer)]
    models = [o for o in gc.get_objects() if isinstance(o, ServedModel)]
    lines, held = [f"explainers {len(explainers)} models {len(models)}"], {}
    for e in explainers:
        lines.append(f"  explainer cached_bytes {e.cached_bytes / 2**20:.1f} MiB entries {len(e._cache)} "
                     f"enrolled photos {len(e._extra)}")
        for image, maps in e._cache.values():
            for arr in (image, maps.descriptor_map, maps.locations, maps.descriptor):
                while arr is not None and isinstance(arr.base, np.ndarray):
                    arr = arr.base
                if arr is not None:
                    held[id(arr)] = arr.nbytes
    lines.append(f"  distinct cached MiB {sum(held.values()) / 2**20:.1f}")
    with open(os.environ["SNAP_DIR"] + "/census.txt", "a") as f:
        f.write("\n".join(lines) + "\n")


signal.signal(signal.SIGUSR1, dump)
signal.signal(signal.SIGUSR2, census)
from muselens.cli import main  # noqa: E402

sys.argv = ["muselens", *sys.argv[1:]]
raise SystemExit(main())
