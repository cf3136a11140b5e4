"""The TensorRT backend's torch-free parts: sidecar, batch and profile checks, buffer growth,
and the precise refusal where TensorRT or cuda-python is missing (the GPU path is exercised by
tests/export/test_tensorrt.py::test_engine_on_the_gpu, which needs TensorRT)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from muselens.core.descriptor_contract import DescriptorContract
from muselens.core.preprocess import PreprocessContract
from muselens.runtime.engine import BackendUnavailable, open_backend
from muselens.runtime.engine.tensorrt_backend import (DeviceBuffers, TensorRTBackend, check_batch, check_in_profile,
                                              read_sidecar, sidecar_document, sidecar_path)

CONTRACT = DescriptorContract(dim=8, k=4, short_side=64, max_aspect=2.0,
                              preprocess=PreprocessContract(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))


def _engine(tmp_path, data: bytes = b"serialised-engine-bytes"):
    path = tmp_path / "fp16.plan"
    path.write_bytes(data)
    return path


def _write_sidecar(engine, **build):
    doc = sidecar_document(engine, CONTRACT, precision="fp16", build={"tensorrt_version": "10.0.1", **build})
    sidecar_path(engine).write_text(json.dumps(doc))
    return doc


def test_the_sidecar_carries_the_contract_and_is_tied_to_its_engine(tmp_path):
    engine = _engine(tmp_path)
    assert sidecar_path(engine).name == "fp16.plan.json"
    assert read_sidecar(engine) is None
    _write_sidecar(engine)
    doc = read_sidecar(engine)
    assert DescriptorContract.from_metadata(doc["metadata"], engine) == CONTRACT
    assert doc["metadata"]["muselens.variant"] == "fp16" and doc["build"]["tensorrt_version"] == "10.0.1"
    engine.write_bytes(b"another engine")
    with pytest.raises(ValueError, match="describes another engine"):
        read_sidecar(engine)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(format="other"), "not a muselens-tensorrt-engine sidecar"),
    (lambda d: d.update(format_version=2), "format_version 2 is not supported"),
    (lambda d: d.update(metadata={"x": 1}), "must map names to strings"),
])
def test_a_wrong_sidecar_is_refused(tmp_path, edit, match):
    engine = _engine(tmp_path)
    doc = _write_sidecar(engine)
    edit(doc)
    sidecar_path(engine).write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match):
        read_sidecar(engine)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(ValueError, match="not a readable JSON sidecar"):
        read_sidecar(engine)


def test_sidecar_document_validates(tmp_path):
    engine = _engine(tmp_path)
    with pytest.raises(ValueError, match="contract"):
        sidecar_document(engine, {}, precision="fp16", build={})
    with pytest.raises(ValueError, match="precision"):
        sidecar_document(engine, CONTRACT, precision="", build={})


def test_check_batch_and_profile():
    batch = np.zeros((1, 5, 7, 3), np.uint8)[:, :, ::-1]
    out = check_batch(batch)
    assert out.flags.c_contiguous and out.shape == (1, 5, 7, 3)
    for bad in (np.zeros((1, 5, 7, 3), np.float32), np.zeros((2, 5, 7, 3), np.uint8), np.zeros((5, 7, 3), np.uint8),
                [[0]]):
        with pytest.raises(ValueError, match=r"expected a \(1, H, W, 3\) uint8 batch"):
            check_batch(bad)
    check_in_profile((1, 64, 128, 3), (1, 64, 64, 3), (1, 128, 128, 3))
    with pytest.raises(ValueError, match=r"input shape \(1, 63, 128, 3\) is outside .* \(1, 64, 64, 3\)..\(1, 128, 128, 3\)"):
        check_in_profile((1, 63, 128, 3), (1, 64, 64, 3), (1, 128, 128, 3))
    with pytest.raises(ValueError, match="outside"):
        check_in_profile((1, 64, 64), (1, 64, 64, 3), (1, 128, 128, 3))


def test_device_buffers_grow_and_are_released():
    live, calls = {}, []

    def malloc(n):
        pointer = 1000 + len(calls)
        calls.append(("malloc", n))
        live[pointer] = n
        return pointer

    def free(pointer):
        calls.append(("free", live.pop(pointer)))

    buffers = DeviceBuffers(malloc, free)
    a = buffers.pointer("image", 100)
    assert buffers.pointer("image", 60) == a and buffers.capacity("image") == 100  # reused, never shrunk
    b = buffers.pointer("image", 200)
    assert b != a and calls == [("malloc", 100), ("free", 100), ("malloc", 200)]
    assert buffers.pointer("descriptor", 0) and buffers.capacity("descriptor") == 1  # TensorRT wants non-null
    buffers.release()
    assert live == {} and buffers.capacity("image") == 0
    with pytest.raises(ValueError, match="nbytes"):
        buffers.pointer("x", -1)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed here: the refusal path cannot be observed")
def test_without_tensorrt_the_backend_says_what_to_install(tmp_path):
    engine = _engine(tmp_path)
    with pytest.raises(BackendUnavailable, match=r"needs the TensorRT Python package.*pypi\.nvidia\.com"):
        TensorRTBackend(engine)
    with pytest.raises(BackendUnavailable, match="TensorRT"):
        open_backend(engine, "tensorrt")
    with pytest.raises(ValueError, match="TensorRT engine not found"):
        TensorRTBackend(tmp_path / "missing.plan")
    with pytest.raises(ValueError, match="device_id"):
        TensorRTBackend(engine, device_id=-1)


def test_the_backend_module_never_imports_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import muselens.runtime.engine.tensorrt_backend as m\n"
            "assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]\n")
    subprocess.run([sys.executable, "-c", code], check=True)
