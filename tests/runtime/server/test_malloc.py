"""glibc malloc tuning: applied on glibc, the operator's environment variables respected."""

from __future__ import annotations

import platform
import time

import pytest

from muselens.runtime.server.malloc import fix_mmap_threshold, limit_malloc_arenas

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


def test_the_environment_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert limit_malloc_arenas() is False
    assert fix_mmap_threshold() is False


@glibc_only
def test_glibc_accepts_the_cap(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(2) is True


@glibc_only
def test_glibc_accepts_the_threshold(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert fix_mmap_threshold(256 * 1024) is True


def test_bad_values():
    with pytest.raises(ValueError, match="arenas"):
        limit_malloc_arenas(0)
    with pytest.raises(ValueError, match="mmap threshold"):
        fix_mmap_threshold(-1)
    with pytest.raises(ValueError, match="mmap threshold"):
        fix_mmap_threshold(64 * 1024 * 1024)



def test_a_refused_setting_is_reported_not_fatal(monkeypatch, caplog):
    from muselens.runtime.server import malloc as memory

    class RefusingLibc:  # a C library whose mallopt says no, as glibc does to values it cannot take
        def __init__(self, name):
            self.mallopt = lambda param, value: 0

    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: "libc.so.6")
    monkeypatch.setattr(memory.ctypes, "CDLL", RefusingLibc)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert memory.fix_mmap_threshold(256 * 1024) is False
    assert "mallopt(M_MMAP_THRESHOLD, 262144) failed" in caplog.text


def test_without_a_c_library_nothing_is_tuned(monkeypatch):
    from muselens.runtime.server import malloc as memory

    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)  # e.g. a static musl build
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert memory.limit_malloc_arenas() is False


@glibc_only
def test_trimming_gives_the_heaps_free_pages_back():
    """Blocks freed between blocks still in use stay in the process until malloc_trim: what
    500 calls in flight at once left behind (+13 % RSS for good before the server trimmed)."""
    import ctypes

    from muselens.benchmarks.common import rss_mb
    from muselens.runtime.server.malloc import trim_heap

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    trim_heap()
    before = rss_mb()
    blocks = []
    for _ in range(3000):  # 100 KiB blocks: below the mmap threshold, so on the heap
        blocks.append(libc.malloc(100 * 1024))
        ctypes.memset(blocks[-1], 1, 100 * 1024)
    for block in blocks[::2]:  # every other one freed: free pages between blocks in use
        libc.free(block)
    freed_but_kept = rss_mb()
    assert trim_heap() is True
    trimmed = rss_mb()
    for block in blocks[1::2]:
        libc.free(block)
    assert freed_but_kept - before > 250  # ~290 MiB in use, ~145 of it freed yet still resident
    assert freed_but_kept - trimmed > 120  # the freed pages went back


def test_the_trimmer_trims_every_interval_until_stopped():
    from muselens.runtime.server.malloc import HeapTrimmer

    calls = []
    trimmer = HeapTrimmer(0.02, trim=lambda: calls.append(1) or True).start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    trimmer.stop()
    seen = len(calls)
    time.sleep(0.1)
    assert seen >= 3 and len(calls) == seen and trimmer.trims == seen
    quits = HeapTrimmer(0.01, trim=lambda: False).start()  # no malloc_trim here: it says so once and stops
    quits._thread.join(5)
    assert not quits._thread.is_alive() and quits.trims == 0
    with pytest.raises(ValueError, match="interval"):
        HeapTrimmer(0)
