"""PyTorch to ONNX, checked: the ONNX checker, then ONNX Runtime against PyTorch at many sizes.

Exporter: torch 2.14's default (dynamo) exporter cannot trace the region network, whose input
checks read tensor values (``torch.isnan(...).any()``, index range checks in
``training/regions.py``): ``torch.export`` refuses data-dependent branches. The TorchScript
exporter (``dynamo=False``) runs those checks once on the sample and records only the tensor
computation, with ``dynamic_axes`` for the image height and width; timm's TensorFlow "same"
padding is traced as size arithmetic and a ``Pad``, which :mod:`~muselens.export.same_padding`
folds into the convolutions (``auto_pad``), checked. Its trace warnings about those Python-side checks
are expected and silenced; correctness is not taken on trust but verified by
:func:`verify_onnx` at sizes other than the sample (odd sizes, 1:2 and 2:1 aspect ratios).

Parity tolerances (ONNX Runtime vs PyTorch, float32, CPU):

* ``descriptor``: cosine >= :data:`MIN_COSINE` (0.9999).
* ``activation``, ``descriptor_map``, ``class_logits``: ``max |ort - torch| <= ATOL_SCALE *
  max(1, max |torch|)``, an absolute tolerance scaled to each output's magnitude
  (``ATOL_SCALE`` = 1e-4: convolution reorderings differ by ~1e-6 relative; 1e-4 leaves room
  for a deep backbone and still catches a wrong padding or normalisation, which move outputs
  by percent).
* ``locations``: equal; or, where the two rankings differ, equal *up to ties*: the PyTorch
  activation values at the two sets of locations agree within the activation tolerance
  (two near-equal cells swapping places is not an export error).
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from muselens.core import checks
from muselens.core.descriptor_contract import (INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, VARIANT_KEY,
                                               DescriptorContract, feature_cells)
from muselens.core.preprocess import resize_exact
from muselens.export.inference_graph import InferenceGraph
from muselens.export.onnx_surgery import save_checked, set_metadata
from muselens.export.same_padding import fold_same_padding, probe_sizes
from muselens.runtime.engine import OrtBackend

DEFAULT_OPSET = 17
DEFAULT_SAMPLE_SIZE = (448, 597)
# Square, odd, 1:2, 2:1, and an extreme strip with odd sides (more than 1:6).
DEFAULT_PARITY_SIZES = ((448, 448), (333, 517), (448, 896), (896, 448), (97, 641))
MIN_COSINE = 0.9999
ATOL_SCALE = 1e-4


class ParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree beyond the tolerances; ``report`` has every number."""

    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


def _check_size(size: object, k: int, stride: int, name: str) -> tuple[int, int]:
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in size)):
        raise ValueError(f"{name} must be (height, width) positive ints, got {size!r}")
    h, w = int(size[0]), int(size[1])
    cells = feature_cells(h, w, stride)
    if cells < k:
        raise ValueError(f"{name} {h}x{w} gives {cells} feature cells (stride {stride}), "
                         f"fewer than k={k}: the exported graph needs at least k")
    return h, w


def parity_sizes(short_side: int, max_aspect: float, *, k: int = 1, stride: int = 32) -> tuple[tuple[int, int], ...]:
    """Sizes to verify a model served at ``short_side``: square, a 4:3 frame with an odd side,
    the widest and tallest inputs the aspect cap allows (1:``max_aspect``), an off-contract input
    odd on both sides, and a thin strip; sizes with fewer than ``k`` feature cells are left out.

    For 448 and a cap of 2: 448x448, 448x597, 448x896, 896x448, 337x515, 113x641.
    """
    checks.positive_int(short_side, "short_side")
    if not (isinstance(max_aspect, (int, float)) and max_aspect >= 1.0):
        raise ValueError(f"max_aspect must be a number >= 1, got {max_aspect!r}")
    s, long = short_side, round(short_side * max_aspect)

    def odd(v: float) -> int:
        return int(round(v)) | 1

    sizes = [(s, s), (s, odd(s * 4 / 3)), (s, long), (long, s), (odd(s * 0.75), odd(s * 1.15)),
             (odd(max(s / 4, stride + 1)), odd(s * 1.43))]
    kept = tuple(dict.fromkeys(size for size in sizes if feature_cells(*size, stride) >= k))
    if not kept:
        raise ValueError(f"short side {short_side} is too small: no size has {k} feature cells")
    return kept


def descriptor_contract(trained) -> DescriptorContract:
    """The descriptor contract of a :class:`~muselens.training.trained.TrainedModel`'s exported graph:
    written into every ONNX file's metadata and the bundle manifest, read by the runtime."""
    return DescriptorContract(dim=int(trained.model.net.dim), k=int(trained.model.net.k),
                              short_side=int(trained.short_side), max_aspect=float(trained.max_aspect),
                              preprocess=trained.contract, input_name=INPUT_NAME, outputs=OUTPUT_NAMES)


def _sample_image(size: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def export_onnx(trained, path: Path | str, *, opset: int = DEFAULT_OPSET,
                sample_size: tuple[int, int] = DEFAULT_SAMPLE_SIZE) -> Path:
    """Export ``trained`` (a TrainedModel) as one ONNX file, written atomically, checked in full.

    The file's metadata carries the descriptor contract (:func:`descriptor_contract`).
    """
    checks.integer(opset, "opset", low=13, high=21)
    graph = InferenceGraph(trained)
    h, w = _check_size(sample_size, graph.k, graph.stride, "sample_size")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = torch.from_numpy(_sample_image((h, w), seed=0))[None]
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.export-", dir=path.parent) as scratch:
        tmp = Path(scratch) / "traced.onnx"
        with warnings.catch_warnings():
            # Expected: the region network's Python-side input checks are not part of the graph.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message=".*The feature will be removed.*")
            with torch.no_grad():
                torch.onnx.export(
                    graph, (sample,), str(tmp), dynamo=False, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                    dynamic_axes={
                        INPUT_NAME: {1: "height", 2: "width"},
                        "activation": {1: "cells_h", 2: "cells_w"},
                        "descriptor_map": {2: "cells_h", 3: "cells_w"},
                    },
                    do_constant_folding=True,
                )
        model = onnx.load(str(tmp))
        # the pads are checked at sizes that still hold k feature cells
        sizes = probe_sizes(graph.stride, graph.stride * (math.isqrt(max(graph.k - 1, 0)) + 1))
        fold_same_padding(model, [{INPUT_NAME: _sample_image(size, seed=9)[None]} for size in sizes])
        set_metadata(model, {METADATA_KEY: descriptor_contract(trained).to_json(), VARIANT_KEY: "fp32"})
        model.doc_string = "muselens region descriptor: uint8 NHWC RGB image at the recognition size"
    return save_checked(model, path)


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def _tolerance(reference: np.ndarray) -> float:
    return ATOL_SCALE * max(1.0, float(np.max(np.abs(reference))) if reference.size else 1.0)


def _locations_agree(ort_loc: np.ndarray, torch_loc: np.ndarray, activation: np.ndarray,
                     atol: float) -> str | None:
    """``"equal"``, ``"ties"`` (different cells of equal activation), or None (they disagree)."""
    if np.array_equal(ort_loc, torch_loc):
        return "equal"
    flat = activation.reshape(activation.shape[0], -1)
    a = np.sort(np.take_along_axis(flat, ort_loc, axis=1), axis=1)
    b = np.sort(np.take_along_axis(flat, torch_loc, axis=1), axis=1)
    return "ties" if np.allclose(a, b, rtol=0.0, atol=atol) else None


def verify_onnx(trained, path: Path | str, sizes: Sequence[tuple[int, int]] = DEFAULT_PARITY_SIZES, *,
                images: Sequence[np.ndarray] | None = None, strict: bool = True) -> dict[str, Any]:
    """Compare ONNX Runtime (CPU) with PyTorch on every size; a report dict, raising if ``strict``.

    ``images`` (RGB uint8, any size) are resized to each size in turn, cycling; without them
    seeded noise images are used. Natural images make ties in the activation map rarer.
    """
    graph = InferenceGraph(trained)
    sizes = [_check_size(s, graph.k, graph.stride, "each size") for s in sizes]
    if not sizes:
        raise ValueError("sizes must list at least one (height, width)")
    session = OrtBackend(path, "ort-cpu")
    names = list(session.output_names)
    if names != list(OUTPUT_NAMES):
        raise ParityError(f"{path} outputs {names}, expected {list(OUTPUT_NAMES)}", {"outputs": names})
    rows, failures = [], []
    for i, (h, w) in enumerate(sizes):
        if images:
            image = resize_exact(images[i % len(images)], h, w)
        else:
            image = _sample_image((h, w), seed=i + 1)
        ort_out = dict(zip(names, session.run(image[None], names)))
        with torch.no_grad():
            torch_out = {n: t.numpy() for n, t in zip(OUTPUT_NAMES, graph(torch.from_numpy(image)[None]))}
        row: dict[str, Any] = {"size": [h, w], "cells": list(torch_out["activation"].shape[1:])}
        d_ort, d_torch = ort_out["descriptor"].astype(np.float64), torch_out["descriptor"].astype(np.float64)
        cosine = float((d_ort * d_torch).sum() / (np.linalg.norm(d_ort) * np.linalg.norm(d_torch)))
        row["descriptor_cosine"] = cosine
        if not cosine >= MIN_COSINE:
            failures.append(f"{h}x{w}: descriptor cosine {cosine:.6f} < {MIN_COSINE}")
        for name in ("activation", "descriptor_map", "class_logits"):
            if ort_out[name].shape != torch_out[name].shape:
                failures.append(f"{h}x{w}: {name} shape {ort_out[name].shape} != {torch_out[name].shape}")
                continue
            err, tol = _max_abs(ort_out[name], torch_out[name]), _tolerance(torch_out[name])
            row[f"{name}_max_abs"], row[f"{name}_tolerance"] = err, tol
            if not err <= tol:
                failures.append(f"{h}x{w}: {name} differs by {err:.3g} > {tol:.3g}")
        agreement = _locations_agree(ort_out["locations"], torch_out["locations"], torch_out["activation"],
                                     _tolerance(torch_out["activation"]))
        row["locations"] = agreement or "different"
        if agreement is None:
            failures.append(f"{h}x{w}: locations {ort_out['locations'].tolist()} != "
                            f"{torch_out['locations'].tolist()} and not tied")
        rows.append(row)
    report = {
        "model": str(path), "sizes": rows, "min_cosine": min(r["descriptor_cosine"] for r in rows),
        "tolerances": {"min_cosine": MIN_COSINE, "atol_scale": ATOL_SCALE},
        "passed": not failures, "failures": failures,
    }
    if failures and strict:
        raise ParityError(f"ONNX Runtime disagrees with PyTorch for {path}: " + "; ".join(failures), report)
    return report
