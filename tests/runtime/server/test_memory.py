"""The malloc arena cap: applied on glibc, the operator's MALLOC_ARENA_MAX respected."""

from __future__ import annotations

import platform

import pytest

from muselens.runtime.server.memory import limit_malloc_arenas


def test_the_environment_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")
def test_glibc_accepts_the_cap(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas(2) is True


def test_bad_value():
    with pytest.raises(ValueError, match="arenas"):
        limit_malloc_arenas(0)
