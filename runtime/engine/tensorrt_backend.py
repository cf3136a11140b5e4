"""A serialised TensorRT engine as an :class:`~muselens.runtime.engine.backends.InferenceBackend`.

Torch-free: the engine runs through the TensorRT 10 Python API and GPU memory is handled with
NVIDIA's ``cuda-python`` runtime bindings (``cuda.bindings.runtime``, or ``cuda.cudart`` in
releases before 12.6). Neither package can be installed everywhere (TensorRT's wheels come from
``pypi.nvidia.com``), so both are imported when a backend is opened, and their absence is a
:class:`BackendUnavailable` naming what to install -- never a fall back to another engine.

One execution context, dynamic shapes per call: :meth:`TensorRTBackend.run` sets the input
shape (which must lie inside the engine's optimisation profile), reads every output's shape
back from the context, grows the device buffers when a larger image arrives, copies the input
up, runs ``execute_async_v3`` on the backend's own stream and copies the requested outputs
back as numpy arrays. Not thread-safe (one context): the
:class:`~muselens.runtime.engine.gate.InferenceGate` of its Describer lets one call in at a time.

An engine file carries no metadata of its own, so the descriptor contract travels in a JSON
sidecar ``<engine>.json`` (e.g. ``fp16.plan.json``) written at build time by
:func:`muselens.export.tensorrt_build.build_engine` (:func:`sidecar_document` defines its layout,
here, because export depends on the runtime). Inside a bundle the manifest's ``descriptor``
is the contract and no sidecar is needed: pass it to :class:`~muselens.runtime.engine.Describer`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from muselens.core import checks
from muselens.runtime.engine.backends import BackendUnavailable
from muselens.runtime.engine.cancel import Cancellation, Cancelled
from muselens.core.descriptor_contract import INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, VARIANT_KEY, DescriptorContract

SIDECAR_FORMAT = "muselens-tensorrt-engine"
SIDECAR_VERSION = 1
INSTALL_HINT = ("pip install tensorrt cuda-python (TensorRT 10; the tensorrt wheel downloads its "
                "libraries from pypi.nvidia.com) on a machine with an NVIDIA GPU and driver")


def sidecar_path(engine_path: Path | str) -> Path:
    """Where an engine's contract lives: the engine's file name plus ``.json``."""
    path = Path(engine_path)
    return path.with_name(path.name + ".json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def sidecar_document(engine_path: Path | str, contract: DescriptorContract, *, precision: str,
                     build: Mapping[str, Any]) -> dict[str, Any]:
    """The sidecar of a just-built engine: its checksum, the contract (as the ONNX metadata
    spells it, so :meth:`DescriptorContract.from_metadata` reads both) and how it was built."""
    if not isinstance(contract, DescriptorContract):
        raise ValueError(f"contract must be the model's DescriptorContract, got {type(contract).__name__}")
    if not isinstance(precision, str) or not precision:
        raise ValueError(f"precision must be a non-empty string, got {precision!r}")
    return {
        "format": SIDECAR_FORMAT, "format_version": SIDECAR_VERSION,
        "engine_sha256": _sha256(Path(engine_path)),
        "metadata": {METADATA_KEY: contract.to_json(), VARIANT_KEY: precision},
        "build": dict(build),
    }


def read_sidecar(engine_path: Path | str) -> dict[str, Any] | None:
    """The engine's sidecar, checked against the engine file; None when there is none."""
    path = sidecar_path(engine_path)
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON sidecar ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT:
        raise ValueError(f"{path}: not a {SIDECAR_FORMAT} sidecar")
    if doc.get("format_version") != SIDECAR_VERSION:
        raise ValueError(f"{path}: sidecar format_version {doc.get('format_version')!r} is not "
                         f"supported (this muselens reads {SIDECAR_VERSION})")
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path}: 'metadata' must map names to strings")
    actual = _sha256(Path(engine_path))
    if doc.get("engine_sha256") != actual:
        raise ValueError(f"{path} describes another engine (sha256 {doc.get('engine_sha256')}, "
                         f"{Path(engine_path).name} hashes to {actual}): rebuild the engine or its sidecar")
    return doc


def check_batch(batch: object) -> np.ndarray:
    """A ``(1, H, W, 3)`` uint8 array, C-contiguous (what the engine's input expects)."""
    if not isinstance(batch, np.ndarray) or batch.dtype != np.uint8 or batch.ndim != 4 \
            or batch.shape[0] != 1 or batch.shape[3] != 3:
        raise ValueError(f"expected a (1, H, W, 3) uint8 batch, got "
                         f"{getattr(batch, 'shape', None)} {getattr(batch, 'dtype', type(batch).__name__)}")
    return np.ascontiguousarray(batch)


def check_in_profile(shape: Sequence[int], low: Sequence[int], high: Sequence[int], source: str = "engine") -> None:
    """Refuse an input shape outside the optimisation profile (TensorRT would fail obscurely)."""
    if len(shape) != len(low) or any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
        raise ValueError(f"{source}: input shape {tuple(shape)} is outside the engine's optimisation "
                         f"profile {tuple(low)}..{tuple(high)}; resize with the contract or rebuild "
                         "the engine with a wider profile")


class DeviceBuffers:
    """Device allocations per tensor name, grown (never shrunk) to the largest size asked for.

    ``malloc(nbytes) -> pointer`` and ``free(pointer)`` are injected (cuda-python in service,
    plain functions in tests), so the growth rule is tested without a GPU.
    """

    def __init__(self, malloc: Callable[[int], int], free: Callable[[int], None]):
        self._malloc, self._free = malloc, free
        self._held: dict[str, tuple[int, int]] = {}

    def pointer(self, name: str, nbytes: int) -> int:
        """A device pointer of at least ``nbytes`` (at least 1) for ``name``."""
        need = max(checks.integer(nbytes, "nbytes", low=0), 1)
        held = self._held.get(name)
        if held is not None and held[1] >= need:
            return held[0]
        if held is not None:
            self._free(held[0])
            del self._held[name]
        pointer = int(self._malloc(need))
        self._held[name] = (pointer, need)
        return pointer

    def capacity(self, name: str) -> int:
        return self._held.get(name, (0, 0))[1]

    def release(self) -> None:
        for pointer, _ in self._held.values():
            self._free(pointer)
        self._held.clear()


def import_tensorrt() -> Any:
    """``tensorrt`` (version 10 or later), or :class:`BackendUnavailable` saying why not."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(f"backend 'tensorrt' needs the TensorRT Python package, which is not "
                                 f"installed ({exc}); {INSTALL_HINT}") from exc
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise BackendUnavailable(f"backend 'tensorrt' needs TensorRT >= 10 (execute_async_v3, tensor "
                                 f"addresses); found {trt.__version__}")
    return trt


def import_cudart() -> Any:
    """cuda-python's runtime bindings, or :class:`BackendUnavailable` saying why not."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as exc:
            raise BackendUnavailable(f"backend 'tensorrt' needs cuda-python for GPU memory, which is not "
                                     f"installed ({exc}); {INSTALL_HINT}") from exc
    return cudart


def cuda_check(result: Any, what: str) -> Any:
    """Unwrap a cuda-python ``(error, *values)`` tuple, raising on an error code."""
    err, values = result[0], result[1:]
    if int(err) != 0:
        raise RuntimeError(f"CUDA call {what} failed: {err}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


class TensorRTBackend:
    """One deserialised engine, one execution context and one CUDA stream on ``device_id``."""

    def __init__(self, engine_path: Path | str, device_id: int = 0):
        path = Path(engine_path)
        if not path.is_file():
            raise ValueError(f"TensorRT engine not found: {path}")
        checks.integer(device_id, "device_id", low=0)
        self._sidecar = read_sidecar(path)  # a stale sidecar is refused before the GPU is touched
        trt = import_tensorrt()
        cudart = import_cudart()
        self._trt, self._cudart = trt, cudart
        cuda_check(cudart.cudaSetDevice(device_id), f"cudaSetDevice({device_id})")
        props = cuda_check(cudart.cudaGetDeviceProperties(device_id), "cudaGetDeviceProperties")
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        self.device = f"{name.rstrip(chr(0))} (sm_{props.major}{props.minor})"
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendUnavailable(f"TensorRT {trt.__version__} could not deserialise {path}: engines only run "
                                     f"on the TensorRT version and GPU architecture they were built for "
                                     f"(this is {self.device}); rebuild it here")
        self.context = self.engine.create_execution_context()
        self._stream = cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._buffers = DeviceBuffers(
            lambda n: cuda_check(cudart.cudaMalloc(n), "cudaMalloc"),
            lambda p: cuda_check(cudart.cudaFree(p), "cudaFree"))
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1:
            raise ValueError(f"{path}: expected one image input, the engine has {inputs}")
        self.input_name = inputs[0]
        in_type = self.engine.get_tensor_dtype(self.input_name)
        if in_type not in (trt.DataType.UINT8, trt.DataType.FLOAT):
            raise ValueError(f"{path}: input {self.input_name!r} is {in_type}; expected uint8 (or float32 "
                             "from an engine built with a float input, see muselens.export.tensorrt_build)")
        self._input_dtype = np.dtype(trt.nptype(in_type))
        known = [n for n in OUTPUT_NAMES if n in outputs]
        self.output_names = tuple(known + [n for n in outputs if n not in known])
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in outputs}
        low, _, high = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.profile = (tuple(int(v) for v in low), tuple(int(v) for v in high))
        self.name = "tensorrt"
        self.path = path
        self.device_id = device_id
        if self.input_name != INPUT_NAME:
            raise ValueError(f"{path}: the engine's input is {self.input_name!r}, expected {INPUT_NAME!r}")

    def run(self, batch: np.ndarray, outputs: Sequence[str], cancel: Cancellation | None = None) -> list[np.ndarray]:
        """One synchronous run. A TensorRT launch cannot be aborted, so ``cancel`` is honoured
        before the launch and after it (the outputs of a cancelled call are not copied back)."""
        cudart = self._cudart
        if cancel is not None:
            cancel.check()
        batch = check_batch(batch)
        unknown = [n for n in outputs if n not in self.output_names]
        if unknown:
            raise ValueError(f"unknown output(s) {unknown}; the engine has {list(self.output_names)}")
        check_in_profile(batch.shape, *self.profile, source=str(self.path))
        host_in = batch if self._input_dtype == np.uint8 else batch.astype(self._input_dtype)
        if not self.context.set_input_shape(self.input_name, tuple(host_in.shape)):
            raise ValueError(f"{self.path}: TensorRT refused input shape {tuple(host_in.shape)}")
        d_in = self._buffers.pointer(self.input_name, host_in.nbytes)
        self.context.set_tensor_address(self.input_name, d_in)
        hosts = {}
        for name in self.output_names:  # every output needs an address, requested or not
            shape = tuple(int(v) for v in self.context.get_tensor_shape(name))
            if any(v < 0 for v in shape):
                raise RuntimeError(f"{self.path}: output {name!r} has unresolved shape {shape}")
            hosts[name] = np.empty(shape, dtype=self._dtypes[name])
            self.context.set_tensor_address(name, self._buffers.pointer(name, hosts[name].nbytes))
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_check(cudart.cudaMemcpyAsync(d_in, host_in.ctypes.data, host_in.nbytes, h2d, self._stream),
                   "cudaMemcpyAsync (input)")
        if not self.context.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"{self.path}: TensorRT execute_async_v3 failed (see the TensorRT log)")
        if cancel is not None and cancel.cancelled:
            cuda_check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
            raise Cancelled("inference cancelled")
        for name in outputs:
            host = hosts[name]
            cuda_check(cudart.cudaMemcpyAsync(host.ctypes.data, self._buffers.pointer(name, host.nbytes),
                                              host.nbytes, d2h, self._stream), f"cudaMemcpyAsync ({name})")
        cuda_check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return [hosts[name] for name in outputs]

    def metadata(self) -> dict[str, str]:
        """The sidecar's metadata (the descriptor contract); empty when the engine has no sidecar."""
        return dict(self._sidecar["metadata"]) if self._sidecar else {}

    def describe(self) -> str:
        dtype = "uint8" if self._input_dtype == np.uint8 else f"{self._input_dtype} (host cast)"
        return (f"tensorrt (TensorRT {self._trt.__version__}, engine {self.path.name}, input {dtype}, "
                f"device {self.device_id} {self.device})")

    def close(self) -> None:
        """Free the device buffers and the stream (the engine and context go with the object)."""
        buffers = getattr(self, "_buffers", None)
        if buffers is not None:
            buffers.release()
        stream = getattr(self, "_stream", None)
        if stream is not None:
            self._stream = None
            cuda_check(self._cudart.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def __enter__(self) -> TensorRTBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
