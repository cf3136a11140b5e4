"""The machine's name in reports."""

from __future__ import annotations

from muselens.core.machine import cpu_model


def test_cpu_model_names_something():
    name = cpu_model()
    assert isinstance(name, str) and name.strip()
