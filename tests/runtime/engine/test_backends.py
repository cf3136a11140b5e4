"""Backends are chosen by name and never fall back silently."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnxruntime as ort
import pytest

from muselens.runtime.engine import (BACKENDS, BackendUnavailable, Describer, OrtBackend, available_backends,
                                     open_backend)


def test_cpu_backend_reports_what_it_runs_on(fp32_model):
    backend = open_backend(fp32_model, "ort-cpu", threads=1)
    assert backend.name == "ort-cpu" and backend.input_name == "image"
    assert "CPUExecutionProvider" in backend.describe() and "threads 1" in backend.describe()
    out = backend.run(np.zeros((1, 64, 64, 3), np.uint8), ["descriptor"])
    assert out[0].shape == (1, 8)
    assert "ort-cpu" in available_backends()


def test_sessions_plan_no_memory_pattern_per_shape(fp32_model):
    """Frames arrive in every width: a per-shape memory pattern cache would grow with each."""
    backend = open_backend(fp32_model, "ort-cpu", threads=1)
    assert backend.session.get_session_options().enable_mem_pattern is False
    for width in (64, 96, 160):  # still answers every shape
        assert backend.run(np.zeros((1, 64, width, 3), np.uint8), ["descriptor"])[0].shape == (1, 8)


def test_sessions_share_one_cpu_arena_with_a_large_first_region(fp32_model, monkeypatch):
    """ORT's default arena starts at 1 MiB and adds doubling regions as frames of new widths need
    them (RSS climbing for minutes); one region sized for a whole run holds them all."""
    from muselens.runtime.engine import backends

    registered = []
    monkeypatch.setattr(backends, "_cpu_arena_registered", False)
    monkeypatch.setattr(ort, "create_and_register_allocator", lambda info, config: registered.append(config))
    first = open_backend(fp32_model, "ort-cpu", threads=1)
    second = open_backend(fp32_model, "ort-cpu", threads=1)
    assert len(registered) == 1  # once per process, shared by every session
    assert registered[0].initial_chunk_size_bytes == backends.CPU_ARENA_FIRST_REGION_BYTES >= 128 * 1024 * 1024
    for backend in (first, second):
        assert backend.session.get_session_options().get_session_config_entry("session.use_env_allocators") == "1"
        assert backend.run(np.zeros((1, 64, 96, 3), np.uint8), ["descriptor"])[0].shape == (1, 8)


def test_outputs_are_copies_not_views_of_the_arena(fp32_model):
    """ORT returns views of its arena; one kept (a cached reference map) would pin arena memory."""
    backend = open_backend(fp32_model, "ort-cpu", threads=1)
    outputs = backend.run(np.zeros((1, 64, 64, 3), np.uint8), list(backend.output_names))
    assert all(out.flags.owndata and out.base is None for out in outputs)
    kept = outputs[0].copy()
    backend.run(np.full((1, 64, 96, 3), 200, np.uint8), list(backend.output_names))
    np.testing.assert_array_equal(outputs[0], kept)  # later runs never write into an earlier answer


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA provider present")
def test_a_missing_provider_is_an_error_not_a_fallback(fp32_model):
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
        open_backend(fp32_model, "ort-cuda")
    assert "ort-cuda" not in available_backends()


def test_a_session_that_silently_fell_back_is_refused(fp32_model, monkeypatch):
    """ORT starts on the CPU when CUDA fails at run time; the backend must notice."""
    real = ort.InferenceSession

    class FellBack(real):
        def __init__(self, path, sess_options=None, providers=None):
            super().__init__(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", FellBack)
    with pytest.raises(BackendUnavailable, match="refusing to fall back silently"):
        OrtBackend(fp32_model, "ort-cuda")


def test_bad_names_and_arguments(fp32_model, tmp_path):
    assert BACKENDS == ("ort-cpu", "ort-cuda", "ort-tensorrt", "tensorrt")
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        open_backend(fp32_model, "gpu")
    with pytest.raises(ValueError, match="threads"):
        OrtBackend(fp32_model, threads=0)
    with pytest.raises(ValueError, match="not an ONNX Runtime backend"):
        OrtBackend(fp32_model, "tensorrt")
    with pytest.raises(ValueError, match="not found"):
        OrtBackend(tmp_path / "none.onnx")


def test_the_describer_takes_a_contract_from_outside(fp32_model):
    backend = open_backend(fp32_model)
    own = Describer(backend)
    given = Describer(backend, contract=dataclasses.replace(own.contract, short_side=96))
    assert (own.short_side, given.short_side) == (64, 96)
    with pytest.raises(ValueError, match="unknown output"):
        own.run(np.zeros((64, 64, 3), np.uint8), ["nope"])


@pytest.mark.parametrize("allow", [False, True])
def test_ort_telemetry_is_disabled_before_the_session_unless_allowed(fp32_model, monkeypatch, allow):
    """ONNX Runtime records device id, OS, CPU and provider usage by default; muselens turns it off."""
    calls = []
    real = ort.InferenceSession
    monkeypatch.setattr(ort, "disable_telemetry_events", lambda: calls.append("disable"))
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: calls.append("session") or real(*a, **k))
    backend = open_backend(fp32_model, "ort-cpu", threads=1, allow_telemetry=allow)
    assert calls == (["session"] if allow else ["disable", "session"])
    assert backend.run(np.zeros((1, 64, 64, 3), np.uint8), ["descriptor"])[0].shape == (1, 8)
