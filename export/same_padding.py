"""TensorFlow's "same" padding, computed in the graph from each tensor's size, folded into its convolution.

timm's TensorFlow-ported backbones (``tf_efficientnet_lite*``) pad before each strided
convolution by an amount that depends on the input's size. Exported with a dynamic image size,
that is a chain of ``Shape``/``Ceil``/``Sub``... nodes computing the pads and a ``Pad`` node
copying the whole activation, before a ``Conv`` without padding. ONNX's ``auto_pad=SAME_UPPER``
says the same thing inside the convolution: the output is ``ceil(input / stride)`` and the odd
pixel of padding goes at the end, exactly timm's ``pad_same``.

It matters most for int8: a ``Pad`` is not quantized, so each becomes dequantize, pad in float,
quantize, on the network's largest activations (96 channels at half the frame's size), and the
size arithmetic reads the dequantized tensor again (ONNX Runtime duplicates the dequantize for
each reader). Measured on the mcv-paintings bundle at 448 x 796, ONNX Runtime on 2 cores: the
int8 graph's ``Pad``, ``DequantizeLinear`` and ``QuantizeLinear`` kernels took 17 of its 46 ms.
Folded (and with scalar pixel normalisation, see :func:`~muselens.export.inference_graph.pixel_normalisation`),
alternated run by run: int8 in 0.50x of its time at 320 x 569 (9.5 against 19.2 ms) and 0.52x at
448 x 796, fp32 in 0.79x and 0.66x (``benchmarks/probes/variants/op_profile.py``).

Nothing is assumed from the node pattern alone: each candidate's pads are computed by ONNX
Runtime at sizes of both parities, and a ``Pad`` is folded only where they equal
``SAME_UPPER``'s at every one of them. The rewritten graph computes the same numbers (the
export's parity check against PyTorch runs on it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from muselens.export.onnx_surgery import prune_unused


@dataclass(frozen=True)
class _Candidate:
    pad: onnx.NodeProto
    conv: onnx.NodeProto
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]


def _attribute(node: onnx.NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and _attribute(node, "value") is not None:
            values[node.output[0]] = numpy_helper.to_array(_attribute(node, "value"))
    return values


def _candidates(model: onnx.ModelProto) -> list[_Candidate]:
    """Zero-valued constant ``Pad`` nodes whose pads are computed at run time and whose only reader
    is an unpadded 2-D ``Conv``."""
    graph = model.graph
    constants = _constants(graph)
    weights = {t.name: tuple(t.dims) for t in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    found = []
    for pad in graph.node:
        if pad.op_type != "Pad" or _attribute(pad, "mode", b"constant") != b"constant":
            continue
        if len(pad.input) < 2 or pad.input[1] in constants or len(pad.input) > 3:  # fixed pads, or axes
            continue
        if len(pad.input) == 3 and pad.input[2] and not (
                pad.input[2] in constants and np.all(constants[pad.input[2]] == 0)):
            continue
        users = readers.get(pad.output[0], [])
        if pad.output[0] in outputs or len(users) != 1 or users[0].op_type != "Conv":
            continue
        conv = users[0]
        if conv.input[0] != pad.output[0] or _attribute(conv, "auto_pad", b"NOTSET") != b"NOTSET" \
                or any(_attribute(conv, "pads", [0])):
            continue
        kernel = _attribute(conv, "kernel_shape") or weights.get(conv.input[1], ())[2:]
        if len(kernel) != 2:
            continue
        found.append(_Candidate(pad, conv, tuple(kernel), tuple(_attribute(conv, "strides", [1, 1])),
                                tuple(_attribute(conv, "dilations", [1, 1]))))
    return found


def same_upper_pads(size: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                    dilations: Sequence[int]) -> list[int]:
    """ONNX ``Pad`` pads of an ``(N, C, H, W)`` tensor of spatial ``size`` that ``auto_pad=SAME_UPPER`` implies."""
    begins, ends = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations):
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        begins.append(total // 2)
        ends.append(total - total // 2)
    return [0, 0, *begins, 0, 0, *ends]


def _computed_pads(model: onnx.ModelProto, candidates: Sequence[_Candidate],
                   inputs: Sequence[dict[str, np.ndarray]]) -> list[list[tuple[list[int], list[int]]]]:
    """For each input feed: each candidate's (pads, padded tensor's spatial size), by ONNX Runtime."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    wanted = []
    for i, candidate in enumerate(candidates):
        shape = f"muselens_same_padding_shape_{i}"
        probe.graph.node.append(helper.make_node("Shape", [candidate.pad.input[0]], [shape]))
        wanted += [candidate.pad.input[1], shape]
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in wanted)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    results = []
    for feed in inputs:
        values = session.run(wanted, feed)
        results.append([(values[2 * i].astype(int).tolist(), values[2 * i + 1].astype(int).tolist()[2:])
                        for i in range(len(candidates))])
    return results


def probe_sizes(stride: int, min_side: int) -> list[tuple[int, int]]:
    """Sizes at which to check a network of total ``stride`` (a power of 2) before folding: after
    each of its halvings the height and the width are odd at one size and even at another, so a
    pad that puts its odd pixel first is told from SAME_UPPER at every depth (at an odd size the
    two pad alike). ``min_side`` is the least height and width (e.g. for enough feature cells)."""
    levels = max(1, int(stride).bit_length() - 1)
    base = -(-int(min_side) // int(stride)) * int(stride)  # a multiple of the stride
    offsets = [1] + [2 ** level + 1 for level in range(levels)]  # ceil((base + d) / 2^l): 1 or 2 more
    return [(base + dh, base + dw) for dh, dw in zip(offsets, reversed(offsets))]


def fold_same_padding(model: onnx.ModelProto, inputs: Sequence[dict[str, np.ndarray]]) -> int:
    """Fold every run-time "same" ``Pad`` before a ``Conv`` into ``auto_pad=SAME_UPPER``; how many were.

    ``inputs``: feeds of the model at sizes where every padded tensor is odd at one and even at
    another (:func:`probe_sizes`); a ``Pad`` is folded only where ONNX Runtime computes ``SAME_UPPER``'s pads at every one. The
    size arithmetic left without readers is removed. ``model`` is changed in place."""
    if not inputs:
        raise ValueError("fold_same_padding needs at least one input feed to check the pads at")
    candidates = _candidates(model)
    if not candidates:
        return 0
    computed = _computed_pads(model, candidates, inputs)
    folded = 0
    for i, candidate in enumerate(candidates):
        if not all(pads == same_upper_pads(size, candidate.kernel, candidate.strides, candidate.dilations)
                   for pads, size in (feed[i] for feed in computed)):
            continue
        conv = candidate.conv
        conv.input[0] = candidate.pad.input[0]
        kept = [a for a in conv.attribute if a.name != "pads"]
        del conv.attribute[:]
        conv.attribute.extend([*kept, helper.make_attribute("auto_pad", "SAME_UPPER")])
        folded += 1
    if folded:
        prune_unused(model)
    return folded
