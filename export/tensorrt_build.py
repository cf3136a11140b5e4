"""TensorRT engines from the exported ONNX model: built for the contract's sizes, checked against ORT.

:func:`build_engine` parses the fp32 ONNX file with TensorRT 10's ONNX parser, gives it one
optimisation profile covering every size the contract serves (:func:`profile_from_contract`),
builds at ``fp16`` (``BuilderFlag.FP16``) or ``int8`` (``INT8`` plus ``FP16`` for layers without
an int8 kernel, calibrated by :class:`IInt8EntropyCalibrator2` on museum references resized to
the profile's ``opt`` shape, because TensorRT calibrates dynamic-shape networks at the
calibration profile's ``opt`` dims) and writes the serialised engine plus its JSON sidecar
(:func:`muselens.runtime.engine.tensorrt_backend.sidecar_document`: the descriptor contract, TensorRT
version, GPU, profile). :func:`verify_engine` then runs engine and fp32 ONNX Runtime (CPU) on
the same images at several sizes inside the profile and refuses an engine whose descriptors
drift: cosine >= :data:`MIN_COSINE` (fp16 0.999: half precision keeps ~3 significant digits,
which on L2-normalised descriptors of a few hundred dims costs ~1e-4 of cosine; int8 0.98:
entropy calibration clips activations and the region descriptor's top-k selection can change
for near ties). These bounds are engineering limits, not measured here (no GPU); the export's
mP@1 drift check against fp32 is the decisive test on the museum itself.

The uint8 input: TensorRT 10 accepts ``UINT8`` network inputs only when they are cast to float
before any other layer (the ``DataType.UINT8`` contract),
but the exported graph transposes the uint8 image before casting it, which TensorRT refuses.
:func:`tensorrt_ready_model` therefore rewrites a copy so the input is cast first (same values,
exactly; tested against ONNX Runtime) and the engine keeps the ``(1, H, W, 3)`` uint8 ``image``
input. ``input_dtype="float32"`` builds an engine taking float32 pixels instead, should a
TensorRT version refuse uint8 inputs altogether;
:class:`~muselens.runtime.engine.tensorrt_backend.TensorRTBackend` casts on the host for such an engine. (Implicit int8 calibration is deprecated since TensorRT 10.1 in favour of explicit
Q/DQ graphs; it still builds, and this module says so rather than hiding it.)

Building on a GPU machine (TensorRT's wheel downloads from pypi.nvidia.com)::

    pip install "tensorrt>=10" cuda-python
    muselens export RUN --out BUNDLE --precision fp32,fp16,int8 --tensorrt
    # or one engine from an ONNX file:
    python -c "from muselens.export.tensorrt_build import build_engine, profile_from_onnx; \\
        build_engine('fp32.onnx', 'fp16.plan', precision='fp16', profile=profile_from_onnx('fp32.onnx'))"

Engines only run on the TensorRT version and GPU architecture they were built with: build
them on (a machine like) the one that serves.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from muselens.core import checks
from muselens.core.descriptor_contract import INPUT_NAME, METADATA_KEY, DescriptorContract
from muselens.core.files import write_bytes_whole
from muselens.core.preprocess import resize_exact, short_side_size
from muselens.export.onnx_export import ParityError
from muselens.runtime.engine.backends import BackendUnavailable, InferenceBackend, OrtBackend
from muselens.runtime.engine.describer import Describer
from muselens.runtime.engine.tensorrt_backend import (TensorRTBackend, import_cudart, import_tensorrt, sidecar_document,
                                              sidecar_path)

ENGINE_PRECISIONS = ("fp16", "int8")
MIN_COSINE = {"fp16": 0.999, "int8": 0.98}
DEFAULT_WORKSPACE_GB = 4.0
CALIBRATION_ALGORITHM = "IInt8EntropyCalibrator2"
REPORT_FORMAT = "muselens-tensorrt-report/1"

HW = tuple[int, int]


class EngineBuildError(RuntimeError):
    """TensorRT could not parse or build the network (its messages are included)."""


def require_tensorrt() -> tuple[Any, Any]:
    """``(tensorrt, cudart)`` or :class:`BackendUnavailable` naming what is missing and why."""
    return import_tensorrt(), import_cudart()


# -- the optimisation profile ------------------------------------------------------------------

def _hw(value: object, name: str) -> HW:
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise ValueError(f"{name} must be (height, width) positive ints, got {value!r}")
    return int(value[0]), int(value[1])


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimisation profile for the ``(1, H, W, 3)`` input: min, opt, max ``(H, W)``."""

    min: HW
    opt: HW
    max: HW

    def __post_init__(self) -> None:
        for name in ("min", "opt", "max"):
            object.__setattr__(self, name, _hw(getattr(self, name), f"profile {name}"))
        for i, side in enumerate(("height", "width")):
            if not self.min[i] <= self.opt[i] <= self.max[i]:
                raise ValueError(f"profile {side}s must satisfy min <= opt <= max, got "
                                 f"{self.min[i]}, {self.opt[i]}, {self.max[i]}")

    @classmethod
    def of(cls, value: Profile | Sequence[HW]) -> Profile:
        if isinstance(value, Profile):
            return value
        if not isinstance(value, (tuple, list)) or len(value) != 3:
            raise ValueError(f"profile must be a Profile or (min_hw, opt_hw, max_hw), got {value!r}")
        return cls(*value)

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """The three ``(1, H, W, 3)`` shapes for ``IOptimizationProfile.set_shape``."""
        return tuple((1, *hw, 3) for hw in (self.min, self.opt, self.max))  # type: ignore[return-value]

    def contains(self, hw: HW) -> bool:
        return all(self.min[i] <= hw[i] <= self.max[i] for i in range(2))

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def profile_from_contract(contract: DescriptorContract, *, short_sides: Sequence[int] | None = None) -> Profile:
    """The profile covering every input the contract produces at ``short_sides`` (default: its own).

    The describer makes the short side ``s`` and caps the long side at ``round(s * max_aspect)``
    (:func:`~muselens.core.preprocess.short_side_size`), in either orientation, so each side
    lies in ``[min(s), long(max(s))]``; ``opt`` is a 4:3 landscape frame at the contract's ``s``,
    the camera's usual shape. The smallest input must still give ``k`` feature cells.
    """
    if not isinstance(contract, DescriptorContract):
        raise checks.WrongTypeError(f"contract must be a DescriptorContract, got {type(contract).__name__}")
    own = contract.short_side
    sides = [own] if short_sides is None else list(short_sides)
    if not sides or not all(checks.is_integer(s) and s >= 1 for s in sides):
        raise ValueError(f"short_sides must be positive ints, got {short_sides!r}")
    aspect, k = contract.max_aspect, contract.k
    low, high = int(min(sides)), int(max(sides))
    if contract.feature_cells(low, low) < k:
        raise ValueError(f"short side {low} gives {contract.feature_cells(low, low)} feature cells at stride "
                         f"{contract.stride}, fewer than k={k}")
    longest = max(short_side_size(1, 1 << 20, high, aspect))
    opt = short_side_size(3, 4, own, aspect)
    return Profile((low, low), opt, (longest, longest))


def profile_from_onnx(onnx_path: Path | str, *, short_sides: Sequence[int] | None = None) -> Profile:
    """:func:`profile_from_contract` of the contract the ONNX file carries."""
    return profile_from_contract(onnx_contract(onnx_path), short_sides=short_sides)


def sizes_in_profile(sizes: Sequence[HW], profile: Profile) -> tuple[HW, ...]:
    """The parity sizes the engine accepts (off-contract ones may fall outside); ``opt`` if none."""
    kept = tuple(dict.fromkeys(_hw(s, "size") for s in sizes if profile.contains(_hw(s, "size"))))
    return kept or (profile.opt,)


def onnx_contract(onnx_path: Path | str) -> DescriptorContract:
    """The descriptor contract in an exported ONNX file's metadata."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return DescriptorContract.from_metadata({p.key: p.value for p in model.metadata_props}, onnx_path)


# -- calibration -------------------------------------------------------------------------------

def calibration_batches(images: Sequence[np.ndarray], hw: HW, contract: DescriptorContract,
                        dtype: np.dtype | type = np.uint8) -> list[np.ndarray]:
    """Each RGB image resized (contract's resampling) to ``hw``, as a ``(1, H, W, 3)`` batch.

    TensorRT calibrates a dynamic-shape network at the calibration profile's ``opt`` shape,
    so every batch has exactly that shape.
    """
    hw = _hw(hw, "calibration size")
    if len(images) == 0:
        raise ValueError("int8 calibration needs at least one image")
    pre = contract.preprocess
    out = []
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"calibration image {i} must be (H, W, 3) uint8 RGB, got "
                             f"{getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image).__name__)}")
        resized = resize_exact(image, *hw, interpolation=pre.interpolation, antialias=pre.antialias)
        out.append(np.ascontiguousarray(resized[None].astype(dtype, copy=False)))
    return out


class CalibrationFeed:
    """The calibration batches, one at a time, then None (the calibrator's ``get_batch`` order)."""

    def __init__(self, batches: Sequence[np.ndarray]):
        if len(batches) == 0:
            raise ValueError("calibration needs at least one batch")
        shapes = {b.shape for b in batches}
        if len(shapes) != 1:
            raise ValueError(f"calibration batches must share one shape, got {sorted(shapes)}")
        self.batches = list(batches)
        self.nbytes = int(self.batches[0].nbytes)
        self._iter: Iterator[np.ndarray] = iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def next_batch(self) -> np.ndarray | None:
        return next(self._iter, None)


def calibration_key(onnx_path: Path | str, hw: HW) -> dict[str, Any]:
    """What a calibration cache is valid for: this model file, this shape, this algorithm."""
    digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()
    return {"onnx_sha256": digest, "shape": [1, *_hw(hw, "calibration size"), 3], "algorithm": CALIBRATION_ALGORITHM}


class CalibrationCache:
    """TensorRT's calibration table at ``path``, with ``<path>.json`` saying what it was made for.

    A cache made for another model or shape is refused (``ValueError``), never silently reused.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.key_path = self.path.with_name(self.path.name + ".json")

    def read(self, key: Mapping[str, Any]) -> bytes | None:
        if not self.path.exists():
            return None
        if not self.key_path.exists():
            raise ValueError(f"calibration cache {self.path} has no {self.key_path.name}: cannot tell which "
                             "model it was made for; delete it to recalibrate")
        stored = json.loads(self.key_path.read_text())
        if stored != dict(key):
            raise ValueError(f"calibration cache {self.path} was made for {stored}, not {dict(key)}; "
                             "delete it or choose another cache path")
        return self.path.read_bytes()

    def write(self, data: bytes, key: Mapping[str, Any]) -> None:
        if not data:
            raise ValueError("TensorRT produced an empty calibration cache")
        write_bytes_whole(self.path, bytes(data))
        write_bytes_whole(self.key_path, json.dumps(dict(key), indent=2).encode())


def entropy_calibrator(trt: Any, cudart: Any, feed: CalibrationFeed, cache: CalibrationCache | None,
                       key: Mapping[str, Any]) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` copying each batch to one device buffer."""
    from muselens.runtime.engine.tensorrt_backend import cuda_check

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.device = cuda_check(cudart.cudaMalloc(feed.nbytes), "cudaMalloc (calibration)")

        def get_batch_size(self) -> int:
            return 1  # explicit batch: the batch dimension is part of the (1, H, W, 3) shape

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = feed.next_batch()
            if batch is None:
                return None
            cuda_check(cudart.cudaMemcpy(self.device, batch.ctypes.data, batch.nbytes,
                                         cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy (calibration)")
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read(key) if cache is not None else None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                cache.write(bytes(data), key)

        def free(self) -> None:
            if self.device is not None:
                cuda_check(cudart.cudaFree(self.device), "cudaFree (calibration)")
                self.device = None

    return _EntropyCalibrator()


# -- building ----------------------------------------------------------------------------------

def check_build_args(onnx_path: Path | str, precision: str, profile: Profile | Sequence[HW],
                     workspace_gb: float, calibration_images: Sequence[np.ndarray] | None,
                     cache: Path | str | None) -> Profile:
    """Every argument of :func:`build_engine` checked before TensorRT is touched."""
    if not Path(onnx_path).is_file():
        raise ValueError(f"ONNX model not found: {onnx_path}")
    if precision not in ENGINE_PRECISIONS:
        raise ValueError(f"precision must be one of {list(ENGINE_PRECISIONS)}, got {precision!r}")
    checks.number(workspace_gb, "workspace_gb", low=0, low_open=True)
    if precision == "int8":
        has_cache = cache is not None and Path(cache).exists()
        if not calibration_images and not has_cache:
            raise ValueError("an int8 engine needs calibration_images (museum references) or an existing cache")
    elif calibration_images or cache is not None:
        raise ValueError("calibration_images and cache apply to int8 engines only")
    return Profile.of(profile)


def build_engine(onnx_path: Path | str, engine_path: Path | str, *, precision: str,
                 profile: Profile | Sequence[HW], calibration_images: Sequence[np.ndarray] | None = None,
                 workspace_gb: float = DEFAULT_WORKSPACE_GB, cache: Path | str | None = None,
                 contract: DescriptorContract | None = None, input_dtype: str = "uint8",
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build, serialise and write an engine and its sidecar; return the build report (JSON-ready)."""
    profile = check_build_args(onnx_path, precision, profile, workspace_gb, calibration_images, cache)
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {list(INPUT_DTYPES)}, got {input_dtype!r}")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    contract = contract if contract is not None else onnx_contract(onnx_path)
    say = progress or (lambda message: None)
    trt, cudart = require_tensorrt()
    from muselens.runtime.engine.tensorrt_backend import cuda_check

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    with tempfile.TemporaryDirectory(prefix="muselens-trt-") as tmp:
        ready = tensorrt_ready_model(onnx_path, Path(tmp) / "model.onnx", input_dtype=input_dtype)
        parsed = parser.parse(ready.read_bytes())
    if not parsed:
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT {trt.__version__} could not parse {onnx_path}: {errors}")
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise EngineBuildError(f"{onnx_path}: expected one input {INPUT_NAME!r}, got {[i.name for i in inputs]}")
    input_dtype = inputs[0].dtype

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(INPUT_NAME, *profile.shapes())
    config.add_optimization_profile(trt_profile)
    config.set_flag(trt.BuilderFlag.FP16)
    calibrator = None
    calibration: dict[str, Any] | None = None
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        key = calibration_key(onnx_path, profile.opt)
        store = CalibrationCache(cache) if cache is not None else None
        images = list(calibration_images or [])
        np_dtype = np.dtype(trt.nptype(input_dtype))
        batches = calibration_batches(images, profile.opt, contract, np_dtype) if images else \
            [np.zeros((1, *profile.opt, 3), np_dtype)]  # a valid cache is read before any batch
        calibrator = entropy_calibrator(trt, cudart, CalibrationFeed(batches), store, key)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(trt_profile)
        calibration = {"algorithm": CALIBRATION_ALGORITHM, "images": len(images), "shape": key["shape"],
                       "cache": str(cache) if cache is not None else None}
    say(f"building TensorRT {trt.__version__} {precision} engine, profile {profile.to_dict()}")
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if serialized is None:
        raise EngineBuildError(f"TensorRT {trt.__version__} failed to build the {precision} engine of {onnx_path} "
                               "(its log above says why)")
    write_bytes_whole(engine_path, bytes(serialized))
    device_id = cuda_check(cudart.cudaGetDevice(), "cudaGetDevice")
    props = cuda_check(cudart.cudaGetDeviceProperties(device_id), "cudaGetDeviceProperties")
    gpu = props.name.decode(errors="replace").rstrip("\0") if isinstance(props.name, bytes) else str(props.name)
    build = {
        "tensorrt_version": str(trt.__version__), "precision": precision, "device": gpu,
        "compute_capability": f"{props.major}.{props.minor}", "profile": profile.to_dict(),
        "input_dtype": str(np.dtype(trt.nptype(input_dtype))), "workspace_gb": float(workspace_gb),
        "onnx_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(), "calibration": calibration,
    }
    sidecar = sidecar_document(engine_path, contract, precision=precision, build=build)
    write_bytes_whole(sidecar_path(engine_path), json.dumps(sidecar, indent=2).encode())
    return {"engine": str(engine_path), "bytes": engine_path.stat().st_size, "build": build}


INPUT_DTYPES = {"uint8": 2, "float32": 1}  # onnx.TensorProto.UINT8, .FLOAT


def tensorrt_ready_model(src: Path | str, dst: Path | str, *, input_dtype: str = "uint8") -> Path:
    """A copy of the model whose ``image`` input feeds one Cast to float32 and nothing else.

    TensorRT accepts a uint8 network input only when it is cast to float before any other
    layer (``DataType.UINT8``); the exported graph first transposes the uint8 image, which
    TensorRT refuses. Casting first and letting the old consumers read the float tensor
    computes the same values (pixels 0..255 are exact in float32; the graph's own later
    uint8->float Cast becomes float->float). ``input_dtype="float32"`` makes the input itself
    float32 (values 0..255), for a TensorRT that refuses uint8 inputs altogether; the runtime
    backend casts on the host for such an engine.
    """
    import onnx
    from onnx import helper

    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {list(INPUT_DTYPES)}, got {input_dtype!r}")
    model = onnx.load(str(src))
    inputs = [i for i in model.graph.input if i.name == INPUT_NAME]
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != onnx.TensorProto.UINT8:
        raise ValueError(f"{src}: expected a uint8 input {INPUT_NAME!r}")
    cast_out = f"{INPUT_NAME}__float"
    for node in model.graph.node:
        node.input[:] = [cast_out if name == INPUT_NAME else name for name in node.input]
    model.graph.node.insert(0, helper.make_node("Cast", [INPUT_NAME], [cast_out], name="muselens_input_cast",
                                                to=onnx.TensorProto.FLOAT))
    inputs[0].type.tensor_type.elem_type = INPUT_DTYPES[input_dtype]
    del model.graph.value_info[:]  # intermediate types changed from uint8 to float; let ORT/TRT infer them
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return Path(dst)


# -- verification ------------------------------------------------------------------------------

def descriptor_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two ``(N, D)`` descriptor arrays, in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"descriptors must be two (N, D) arrays of one shape, got {a.shape} and {b.shape}")
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    if np.any(norms == 0):
        raise ValueError("a descriptor is all zeros: its cosine is undefined")
    return np.einsum("ij,ij->i", a, b) / norms


def engine_describer(engine_path: Path | str, contract: DescriptorContract | None = None,
                     device_id: int = 0) -> Describer:
    """A describer running the engine (contract: given, else the engine's sidecar)."""
    return Describer(TensorRTBackend(engine_path, device_id=device_id), contract=contract)


def verify_engine(engine_path: Path | str, onnx_path: Path | str, sizes: Sequence[HW], *, precision: str,
                  images: Sequence[np.ndarray] | None = None, min_cosine: float | None = None,
                  engine: InferenceBackend | None = None) -> dict[str, Any]:
    """Descriptors of the engine against fp32 ONNX Runtime (CPU) at each size; refuse a drift.

    ``images`` (RGB uint8, any size) are resized exactly to each size; without them, seeded
    noise is used. ``engine`` replaces the TensorRT backend (tests run the logic through ORT).
    Raises :class:`ParityError` (with the report) when a cosine falls below the bound.
    """
    if precision not in MIN_COSINE:
        raise ValueError(f"precision must be one of {list(MIN_COSINE)}, got {precision!r}")
    bound = MIN_COSINE[precision] if min_cosine is None else float(min_cosine)
    if not 0.0 < bound <= 1.0:
        raise ValueError(f"min_cosine must lie in (0, 1], got {min_cosine!r}")
    checked = [_hw(s, "size") for s in sizes]
    if not checked:
        raise ValueError("verify_engine needs at least one size")
    reference = OrtBackend(onnx_path, "ort-cpu")
    engine = engine if engine is not None else TensorRTBackend(engine_path)
    rng = np.random.default_rng(0)
    rows = []
    for hw in checked:
        if images:
            batch = [resize_exact(image, *hw) for image in images]
        else:
            batch = [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(2)]
        ours = np.concatenate([engine.run(np.ascontiguousarray(b[None]), ["descriptor"])[0] for b in batch])
        theirs = np.concatenate([reference.run(np.ascontiguousarray(b[None]), ["descriptor"])[0] for b in batch])
        cos = descriptor_cosines(ours, theirs)
        rows.append({"size": list(hw), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
                     "max_abs": float(np.max(np.abs(ours.astype(np.float64) - theirs)))})
    worst = min(r["min_cosine"] for r in rows)
    report = {"format": REPORT_FORMAT, "engine": str(engine_path), "onnx": str(onnx_path), "precision": precision,
              "min_cosine_bound": bound, "min_cosine": worst, "sizes": rows, "passed": worst >= bound}
    if not report["passed"]:
        bad = [r["size"] for r in rows if r["min_cosine"] < bound]
        raise ParityError(f"{precision} engine {engine_path} disagrees with fp32 ONNX Runtime at sizes {bad}: "
                          f"descriptor cosine {worst:.6f} < {bound}", report)
    return report


def write_report(report: Mapping[str, Any], path: Path | str) -> Path:
    """The build/parity report as JSON (atomically)."""
    path = Path(path)
    write_bytes_whole(path, (json.dumps(dict(report), indent=2, sort_keys=True) + "\n").encode())
    return path


__all__ = [
    "CALIBRATION_ALGORITHM", "DEFAULT_WORKSPACE_GB", "ENGINE_PRECISIONS", "METADATA_KEY", "MIN_COSINE",
    "BackendUnavailable", "CalibrationCache", "CalibrationFeed", "EngineBuildError", "Profile", "build_engine",
    "calibration_batches", "calibration_key", "check_build_args", "descriptor_cosines", "engine_describer",
    "entropy_calibrator", "tensorrt_ready_model", "onnx_contract", "profile_from_contract", "profile_from_onnx",
    "require_tensorrt", "sizes_in_profile", "verify_engine", "write_report",
]
