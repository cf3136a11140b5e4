"""Inference backends: which engine runs the exported graph, chosen by name, never by accident.

``ort-cpu`` (default), ``ort-cuda`` and ``ort-tensorrt`` run the ONNX file through ONNX Runtime
with that execution provider first; ``tensorrt`` runs a serialised TensorRT engine natively
(:mod:`muselens.runtime.engine.tensorrt_backend`). ONNX Runtime quietly falls back to the CPU when a
requested provider cannot start; :class:`OrtBackend` checks the provider the session actually
got and raises :class:`BackendUnavailable` instead, so the service always reports the engine it
really uses. (Individual operators an accelerator lacks may still run on the CPU provider
listed after it: that is ORT's graph partitioning, not a fallback of the whole model.)
"""

from __future__ import annotations

from muselens.core import checks
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from muselens.runtime.engine.cancel import Cancellation, Cancelled

ORT_PROVIDERS: dict[str, tuple[str, ...]] = {
    "ort-cpu": ("CPUExecutionProvider",),
    "ort-cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "ort-tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
BACKENDS: tuple[str, ...] = (*ORT_PROVIDERS, "tensorrt")
DEFAULT_BACKEND = "ort-cpu"
# ONNX Runtime's CPU arena starts at 1 MiB by default and grows by regions of doubling size that
# it keeps; activations for frames of every width then land at new offsets in new regions, and a
# server's RSS climbs for minutes (+32 MiB over the bad-input corpus's 771 shapes, replayed on a
# bare session). One first region large enough for a whole run at the largest frame holds every
# run: the same replay stays within ~1 MiB, at a lower working size (~170 vs ~260 MiB), no slower.
# It is address space, not memory: pages count only once a run has used them.
CPU_ARENA_FIRST_REGION_BYTES = 256 * 1024 * 1024

# ONNX Runtime's graph optimisation levels by name (``bench inference-settings`` measures them).
OPTIMISATION_LEVELS = ("disabled", "basic", "extended", "all")
# Where a CPU session's activations live: the process's shared arena (above), the session's own
# arena (ORT's default), or plain malloc per run.
CPU_ARENAS = ("shared", "session", "none")

_cpu_arena_lock = threading.Lock()
_cpu_arena_registered = False


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (package, provider or device missing)."""


class InferenceBackend(Protocol):
    """What the recogniser needs from an engine: named uint8 image in, named arrays out."""

    name: str
    input_name: str
    output_names: tuple[str, ...]

    def run(self, batch: np.ndarray, outputs: Sequence[str], cancel: Cancellation | None = None) -> list[np.ndarray]:
        """Run on a ``(1, H, W, 3)`` uint8 batch; return the ``outputs`` in order.

        Raises :class:`~muselens.runtime.engine.cancel.Cancelled` when ``cancel`` fires first.
        """

    def metadata(self) -> dict[str, str]:
        """The model's custom metadata (where the descriptor contract travels)."""

    def describe(self) -> str:
        """One line for logs and ``GetBundleInfo``: backend, providers, device."""


def _check_name(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {list(BACKENDS)}")


def ort_available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def available_backends() -> list[str]:
    """The backends this machine could start (ORT providers compiled in; tensorrt importable)."""
    providers = set(ort_available_providers())
    names = [name for name, wanted in ORT_PROVIDERS.items() if wanted[0] in providers]
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        names.append("tensorrt")
    return names


def _own(outputs: list[np.ndarray]) -> list[np.ndarray]:
    """Copies of ORT's outputs, which are views into its arena: a map kept for later (the
    explainer's cache) or still being answered while the next run starts would pin a chunk in
    the middle of the arena, and runs of other shapes would go around it into new memory."""
    return [np.array(output, copy=True) for output in outputs]


def _shared_cpu_arena(ort) -> None:
    """Register the process's CPU arena (one large first region) that ORT sessions share; once."""
    global _cpu_arena_registered
    with _cpu_arena_lock:
        if _cpu_arena_registered:
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        config = ort.OrtArenaCfg({"arena_extend_strategy": 0,  # next power of two, should a run need more
                                  "initial_chunk_size_bytes": CPU_ARENA_FIRST_REGION_BYTES})
        ort.create_and_register_allocator(info, config)
        _cpu_arena_registered = True


class OrtBackend:
    """An ONNX Runtime session on the requested execution provider, or an error saying why not."""

    def __init__(self, model_path: Path | str, name: str = DEFAULT_BACKEND, *, threads: int | None = None,
                 device_id: int = 0, allow_telemetry: bool = False, optimisation: str = "all",
                 spinning: bool | None = None, spin_after_run: bool = False, arena: str = "shared",
                 one_thread_session: bool = False):
        """``optimisation`` is ORT's graph optimisation level; ``spinning`` whether its intra-op
        threads spin between parallel sections (None: ORT's default, they do); ``spin_after_run``
        whether they go on spinning once the last run in flight has returned (ORT's default) or stop
        at once (``session.force_spinning_stop``): the next frame's decode and resize, on a server,
        want those cores. ``arena`` where a CPU session's activations live (see :data:`CPU_ARENAS`).
        ``one_thread_session``: also open the model with one intra-op thread, for runs that share
        the cores with other work (``run(..., one_thread=True)``; see
        :mod:`muselens.runtime.engine.activity`): the weights once more in memory.
        The defaults are what muselens measured best or safest (``muselens bench inference-settings``)."""
        import onnxruntime as ort

        _check_name(name)
        if name not in ORT_PROVIDERS:
            raise ValueError(f"{name!r} is not an ONNX Runtime backend; use open_backend()")
        path = Path(model_path)
        if not path.is_file():
            raise ValueError(f"ONNX model not found: {path}")
        checks.optional_int(threads, "threads", low=1)
        if optimisation not in OPTIMISATION_LEVELS:
            raise ValueError(f"unknown graph optimisation {optimisation!r}; expected one of {OPTIMISATION_LEVELS}")
        if arena not in CPU_ARENAS:
            raise ValueError(f"unknown arena {arena!r}; expected one of {CPU_ARENAS}")
        if spinning is not None:
            checks.flag(spinning, "spinning")
        checks.flag(spin_after_run, "spin_after_run")
        wanted = ORT_PROVIDERS[name]
        compiled = ort.get_available_providers()
        if wanted[0] not in compiled:
            raise BackendUnavailable(f"backend {name!r} needs {wanted[0]}, which this onnxruntime build lacks "
                                     f"(it has {compiled}); install onnxruntime-gpu for CUDA/TensorRT")
        if not allow_telemetry:  # ORT records sessions, device id, OS and providers unless told not to
            ort.disable_telemetry_events()
        options = ort.SessionOptions()
        # Memory patterns are planned and cached per input shape; frames come in every width, so
        # the cache (and the arena behind it) would grow with each new one. Off: flat memory, no
        # slower here (muselens bench bad-input; onnxruntime#11118).
        options.enable_mem_pattern = False
        if name == "ort-cpu" and arena == "shared":  # measured there; GPU sessions keep ORT's own CPU-side arena
            _shared_cpu_arena(ort)
            options.add_session_config_entry("session.use_env_allocators", "1")
        elif arena == "none":
            options.enable_cpu_mem_arena = False
        options.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[optimisation]
        if spinning is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if not spin_after_run:  # measured on 2 cores, demo bundle at 320, a 10 FPS camera: 0.41 CPU-s a
            # second instead of 0.64, inference p50 +0.5-1 ms (threads woken); a closed-loop stream no slower
            options.add_session_config_entry("session.force_spinning_stop", "1")
        if threads is not None:
            options.intra_op_num_threads = threads
        providers = [(p, {"device_id": device_id}) if p != "CPUExecutionProvider" else p for p in wanted]
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.one_thread_session = None
        if one_thread_session and name == "ort-cpu" and threads != 1:
            options.intra_op_num_threads = 1
            self.one_thread_session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        got = self.session.get_providers()
        if not got or got[0] != wanted[0]:
            raise BackendUnavailable(f"backend {name!r}: ONNX Runtime could not start {wanted[0]} "
                                     f"(session got {got}); refusing to fall back silently")
        self.name = name
        self.path = path
        self.threads = threads
        self.settings = {"optimisation": optimisation, "spinning": spinning, "spin_after_run": spin_after_run,
                         "arena": arena}
        self.device_id = device_id
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(uint8)":
            raise ValueError(f"{path}: expected one uint8 image input, got {[(i.name, i.type) for i in inputs]}")
        self.input_name = inputs[0].name
        self.output_names = tuple(o.name for o in self.session.get_outputs())

    @property
    def parallelism(self) -> int:
        """Cores one run of the main session spreads over (its intra-op threads)."""
        if self.threads is not None:
            return self.threads
        return int(self.session.get_session_options().intra_op_num_threads) or (os.cpu_count() or 1)

    def run(self, batch: np.ndarray, outputs: Sequence[str], cancel: Cancellation | None = None, *,
            one_thread: bool = False) -> list[np.ndarray]:
        """The graph's ``outputs`` for ``batch``; on the one-thread session when ``one_thread`` and
        there is one."""
        session = self.one_thread_session if one_thread and self.one_thread_session is not None else self.session
        if cancel is None:
            return _own(session.run(list(outputs), {self.input_name: batch}))
        import onnxruntime as ort

        cancel.check()
        options = ort.RunOptions()

        def terminate() -> None:
            options.terminate = True

        cancel.on_cancel(terminate)
        try:
            return _own(session.run(list(outputs), {self.input_name: batch}, options))
        except Exception as exc:
            if cancel.cancelled:
                raise Cancelled("inference cancelled") from exc
            raise
        finally:
            cancel.remove(terminate)

    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def describe(self) -> str:
        providers = ",".join(self.session.get_providers())
        threads = "auto" if self.threads is None else self.threads
        device = "" if self.name == "ort-cpu" else f" device {self.device_id}"
        beside = ", one thread beside other work" if self.one_thread_session is not None else ""
        return f"{self.name} (onnxruntime, providers {providers}, threads {threads}{beside}{device})"


def open_backend(model_path: Path | str, name: str = DEFAULT_BACKEND, *, threads: int | None = None,
                 device_id: int = 0, allow_telemetry: bool = False, one_thread_session: bool = False
                 ) -> InferenceBackend:
    """Start backend ``name`` on ``model_path`` (an ``.onnx`` file, or a TensorRT engine for ``tensorrt``).

    ONNX Runtime's telemetry is turned off unless ``allow_telemetry`` (native TensorRT has none).
    ``one_thread_session``: see :class:`OrtBackend` (the CPU provider only)."""
    _check_name(name)
    if name == "tensorrt":
        from muselens.runtime.engine.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(model_path, device_id=device_id)
    return OrtBackend(model_path, name, threads=threads, device_id=device_id, allow_telemetry=allow_telemetry,
                      one_thread_session=one_thread_session)
