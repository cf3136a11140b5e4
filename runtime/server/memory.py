"""Keeping a long-running server's memory flat: fewer glibc malloc arenas.

glibc gives each thread that allocates concurrently its own arena (up to 8 per core). A
server whose worker threads decode frames of every size from every client ends up with a
dozen arenas, each holding freed-but-fragmented memory: RSS climbs for minutes before it
levels off. Two arenas keep it flat at no measurable cost here (the inference itself runs in
ONNX Runtime's own allocator). Measured with ``muselens bench bad-input``; see RESULTS.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # from glibc's malloc.h
DEFAULT_ARENAS = 2


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas (for threads started from now on); False where not glibc.

    ``MALLOC_ARENA_MAX`` in the environment wins: the operator chose.
    """
    if arenas < 1:
        raise ValueError(f"arenas must be >= 1, got {arenas}")
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_ARENA_MAX, arenas) == 1
    if not ok:
        log.warning("mallopt(M_ARENA_MAX, %d) failed; memory may grow with many threads", arenas)
    return ok
