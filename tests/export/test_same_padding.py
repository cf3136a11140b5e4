"""Folding the traced TensorFlow "same" padding into the convolutions: exact, and only where it is SAME_UPPER."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from muselens.export.onnx_surgery import shape_nodes
from muselens.export.same_padding import fold_same_padding, probe_sizes, same_upper_pads

timm_layers = pytest.importorskip("timm.layers")


class TimmSame(nn.Module):
    """Strided convolutions with timm's input-dependent "same" padding, as tf_efficientnet_lite has."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = timm_layers.create_conv2d(3, 4, 3, stride=2, padding="same")
        self.b = timm_layers.create_conv2d(4, 4, 5, stride=2, padding="same", depthwise=True)
        self.c = timm_layers.create_conv2d(4, 2, 3, stride=1, padding="same", dilation=2)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


class LowerPad(nn.Module):
    """A pad computed from the input's size, but with the odd pixel at the start: not SAME_UPPER."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 2, 3, stride=2)

    def forward(self, x):
        h, w = x.shape[-2:]
        ph = torch.clamp((torch.ceil(h / 2) - 1) * 2 + 3 - h, min=0).to(torch.int64)
        pw = torch.clamp((torch.ceil(w / 2) - 1) * 2 + 3 - w, min=0).to(torch.int64)
        return self.conv(F.pad(x, [pw - pw // 2, pw // 2, ph - ph // 2, ph // 2]))


class DeepLowerPad(nn.Module):
    """A timm "same" convolution, then a pad with its odd pixel first, one halving deeper."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.first = timm_layers.create_conv2d(3, 3, 3, stride=2, padding="same")
        self.lower = LowerPad()

    def forward(self, x):
        return self.lower(self.first(x))


def _traced(module: nn.Module) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(1, 3, 40, 52),), buffer, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {2: "h", 3: "w"}})
    return onnx.load_from_string(buffer.getvalue())


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _feeds(*sizes):
    return [{"x": np.random.default_rng(i).normal(size=(1, 3, *s)).astype(np.float32)} for i, s in enumerate(sizes)]


def test_timm_same_padding_becomes_auto_pad_with_the_same_outputs():
    module = TimmSame()
    model = _traced(module)
    before = onnx.ModelProto()
    before.CopyFrom(model)
    assert [n.op_type for n in model.graph.node].count("Pad") == 2  # the strided ones; stride 1 pads statically
    assert fold_same_padding(model, _feeds(*probe_sizes(4, 32))) == 2
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "Pad" not in ops and "Shape" not in ops and "Ceil" not in ops  # the size arithmetic went too
    strided = [n for n in model.graph.node if n.op_type == "Conv"
               and any(a.name == "auto_pad" and a.s == b"SAME_UPPER" for a in n.attribute)]
    assert len(strided) == 2
    for size in ((31, 45), (32, 32), (17, 64), (64, 17), (5, 7)):
        x = np.random.default_rng(sum(size)).normal(size=(1, 3, *size)).astype(np.float32)
        folded = _run(model, x)
        np.testing.assert_array_equal(folded, _run(before, x))
        with torch.no_grad():
            np.testing.assert_allclose(folded, module(torch.from_numpy(x)).numpy(), rtol=0, atol=1e-5)


def test_a_pad_with_its_odd_pixel_first_is_kept():
    model = _traced(LowerPad())
    ops = [n.op_type for n in model.graph.node]
    assert fold_same_padding(model, _feeds(*probe_sizes(2, 32))) == 0
    assert [n.op_type for n in model.graph.node] == ops


def test_a_lower_pad_one_halving_deeper_is_kept_at_the_probe_sizes():
    model = _traced(DeepLowerPad())
    wrong = onnx.ModelProto()
    wrong.CopyFrom(model)
    # 33 and 34 both halve to 17: one parity deeper down, where the two pads agree
    assert fold_same_padding(wrong, _feeds((33, 34), (34, 33))) == 2
    assert fold_same_padding(model, _feeds(*probe_sizes(4, 32))) == 1  # timm's own, not the other


@pytest.mark.parametrize("stride, min_side", [(32, 192), (32, 200), (4, 32), (2, 7), (1, 5)])
def test_probe_sizes_are_odd_and_even_after_every_halving(stride, min_side):
    sizes = probe_sizes(stride, min_side)
    assert all(h >= min_side and w >= min_side for h, w in sizes)
    for level in range(max(1, stride.bit_length() - 1)):
        for side in (0, 1):
            assert {math.ceil(size[side] / 2 ** level) % 2 for size in sizes} == {0, 1}


def test_checked_only_at_sizes_where_both_agree_a_lower_pad_is_folded_wrongly():
    """Why the check needs both parities: at odd sizes SAME_LOWER and SAME_UPPER pad alike."""
    model = _traced(LowerPad())
    assert fold_same_padding(model, _feeds((33, 35))) == 1


def test_same_upper_pads_puts_the_odd_pixel_at_the_end():
    assert same_upper_pads((224, 225), (3, 3), (2, 2), (1, 1)) == [0, 0, 0, 1, 0, 0, 1, 1]
    assert same_upper_pads((7, 8), (5, 1), (1, 2), (2, 1)) == [0, 0, 4, 0, 0, 0, 4, 0]


def test_a_fold_needs_a_feed():
    with pytest.raises(ValueError, match="at least one"):
        fold_same_padding(_traced(TimmSame()), [])


def test_shape_nodes_are_the_size_arithmetic():
    model = _traced(TimmSame())
    off_path = set(shape_nodes(model))
    by_name = {n.name: n for n in model.graph.node}
    assert not any(by_name[n].op_type == "Conv" for n in off_path)
    assert {by_name[n].op_type for n in off_path} >= {"Shape", "Ceil"}  # the "same" padding
    pads = [n for n in model.graph.node if n.op_type == "Pad"]
    assert pads and all(n.name not in off_path for n in pads)  # padding data is data


def test_the_exported_model_pads_inside_its_convolutions(fp32_model):
    model = onnx.load(str(fp32_model))
    ops = [n.op_type for n in model.graph.node]
    assert "Pad" not in ops and "Ceil" not in ops
    assert any(a.name == "auto_pad" and a.s == b"SAME_UPPER" for n in model.graph.node if n.op_type == "Conv"
               for a in n.attribute)
