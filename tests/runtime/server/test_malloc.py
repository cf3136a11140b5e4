"""glibc malloc tuning: applied on glibc, the operator's environment variables respected."""

from __future__ import annotations

import platform

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
