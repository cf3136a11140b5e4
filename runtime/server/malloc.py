"""Keeping a long-running server's memory flat: glibc malloc tuned for frames of every size.

Two glibc defaults make a server's RSS climb and wander while nothing leaks:

* each thread that allocates concurrently gets its own arena (up to 8 per core); worker
  threads decoding frames of every size from every client end up with a dozen arenas, each
  holding freed-but-fragmented memory. Two arenas are enough (inference runs in ONNX
  Runtime's own allocator).
* the mmap threshold is dynamic: once a large block (say a decoded 6 MB frame) is freed, blocks
  up to that size come from the heap instead of ``mmap``, where freed memory stays in the
  process. A fixed threshold keeps every frame-sized buffer in its own mapping, returned to
  the system when freed; RSS then follows what is live (256 KiB: well below any frame, well
  above the small objects that would pay for a mapping each).

Measured with ``muselens bench bad-input``; see RESULTS.md. Environment variables
(``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``) win: the operator chose.

A third habit: free pages inside the heap stay with the process. Five hundred calls in flight
at once (a flood) leave the heap some 30 MiB larger once they are done, in pieces between
blocks still in use, so glibc cannot shrink it from the top and RSS stays up for good (+13 %
on the demo bundle, ``muselens bench abuse``). :class:`HeapTrimmer` calls ``malloc_trim(0)``
every few seconds, which hands every free page back (2-3 ms for a 200 MiB heap).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
M_ARENA_MAX = -8
DEFAULT_ARENAS = 2
DEFAULT_MMAP_THRESHOLD = 256 * 1024
_MAX_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's own dynamic maximum on 64-bit; no frame buffer needs more
HEAP_TRIM_SECONDS = 5.0


def _libc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def _mallopt(param: int, value: int, env: str, what: str) -> bool:
    """``mallopt(param, value)`` unless ``env`` is set; False where not glibc or refused."""
    if env in os.environ:
        return False
    libc = _libc()
    try:
        mallopt = libc.mallopt
    except AttributeError:  # no C library found, or not glibc (musl, macOS)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(param, value) == 1
    if not ok:
        log.warning("mallopt(%s, %d) failed; memory may grow over a long run", what, value)
    return ok


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas (for threads started from now on); False where not glibc."""
    if arenas < 1:
        raise ValueError(f"arenas must be >= 1, got {arenas}")
    return _mallopt(M_ARENA_MAX, arenas, "MALLOC_ARENA_MAX", "M_ARENA_MAX")


def fix_mmap_threshold(threshold: int = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Blocks of ``threshold`` bytes or more get their own mapping, always (no dynamic raise)."""
    if not 0 <= threshold <= _MAX_MMAP_THRESHOLD:
        raise ValueError(f"mmap threshold must be 0..{_MAX_MMAP_THRESHOLD} bytes, got {threshold}")
    return _mallopt(M_MMAP_THRESHOLD, threshold, "MALLOC_MMAP_THRESHOLD_", "M_MMAP_THRESHOLD")


def tune_malloc() -> None:
    """Both of the above with their defaults: call before any worker thread exists."""
    limit_malloc_arenas()
    fix_mmap_threshold()


def trim_heap() -> bool:
    """``malloc_trim(0)``: give the heap's free pages back to the system; False where not glibc."""
    try:
        trim = _libc().malloc_trim
    except AttributeError:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


class HeapTrimmer:
    """A daemon thread calling ``trim`` (:func:`trim_heap`) every ``interval`` seconds until stopped."""

    def __init__(self, interval: float = HEAP_TRIM_SECONDS, trim: Callable[[], bool] = trim_heap):
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.interval, self.trim = interval, trim
        self.trims = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="muselens-heap-trim", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.trim():
                log.info("malloc_trim is not available (not glibc): freed heap pages stay with the process")
                return
            self.trims += 1

    def start(self) -> HeapTrimmer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
