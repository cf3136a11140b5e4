"""Graph surgery helpers, on hand-built graphs (oracles) and on the exported model."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from muselens.export.onnx_surgery import (elide_cast_round_trips, feature_map_tensor, head_nodes, prune_unused,
                                        set_metadata, topological_sort)


def _cast(name: str, src: str, dst: str, to: int) -> onnx.NodeProto:
    return helper.make_node("Cast", [src], [dst], name=name, to=to)


def _round_trip_model() -> onnx.ModelProto:
    """x -> Relu -> (fp16 and back) -> Neg -> y, plus an fp16 round trip right at the output z."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        _cast("down", "r", "r16", TensorProto.FLOAT16),
        _cast("up", "r16", "r32", TensorProto.FLOAT),
        helper.make_node("Neg", ["r32"], ["y"], name="neg"),
        _cast("down2", "x", "x16", TensorProto.FLOAT16),
        _cast("up2", "x16", "z", TensorProto.FLOAT),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_round_trips_are_removed_and_values_keep_full_precision():
    model = _round_trip_model()
    x = np.array([1 / 3, -2.0, 1e-3 + 1e-7], dtype=np.float32)
    before = _run(model, x)
    assert not np.array_equal(before[0], -np.maximum(x, 0))  # fp16 rounding was there
    assert elide_cast_round_trips(model) == 2  # y's pair rewired; z's kept as an Identity
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == ["Relu", "Neg", "Identity"]
    y, z = _run(model, x)
    np.testing.assert_array_equal(y, -np.maximum(x, 0))
    np.testing.assert_array_equal(z, x)


def test_a_float16_tensor_cast_up_is_left_alone():
    nodes = [_cast("up", "h", "y", TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("h", TensorProto.FLOAT16, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert elide_cast_round_trips(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Cast"]


def test_topological_sort_restores_a_checkable_order():
    model = _round_trip_model()
    nodes = list(model.graph.node)[::-1]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(model)
    topological_sort(model)
    onnx.checker.check_model(model, full_check=True)
    x = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    np.testing.assert_allclose(_run(model, x)[0], -np.maximum(x, 0), atol=1e-3)


def test_topological_sort_refuses_a_dangling_input():
    model = _round_trip_model()
    model.graph.node[1].input[0] = "nowhere"
    with pytest.raises(ValueError, match="nowhere"):
        topological_sort(model)


def test_the_head_starts_at_the_backbones_last_feature_map(fp32_model, trained):
    model = onnx.load(str(fp32_model))
    fmap = feature_map_tensor(model)
    head = set(head_nodes(model))
    by_name = {n.name: n for n in model.graph.node}
    producers = {o: n for n in model.graph.node for o in n.output}
    assert producers[fmap].name not in head  # the feature map itself is backbone
    for output in model.graph.output:
        assert producers[output.name].name in head
    weights = {t.name: t for t in model.graph.initializer}
    head_convs = [by_name[n] for n in head if by_name[n].op_type == "Conv"]
    assert len(head_convs) == 1  # the instance classifier as a 1x1 convolution
    assert weights[head_convs[0].input[1]].dims[0] == trained.model.classifier.num_instances
    backbone_convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name not in head]
    assert len(backbone_convs) > 10


def test_feature_map_needs_the_head_outputs():
    with pytest.raises(ValueError, match="no outputs"):
        feature_map_tensor(_round_trip_model())


def test_prune_unused_removes_dead_nodes_and_initializers():
    model = _round_trip_model()
    model.graph.node.append(helper.make_node("Constant", [], ["c"], name="orphan",
                                             value=helper.make_tensor("v", TensorProto.FLOAT, [1], [6.0])))
    model.graph.node.append(helper.make_node("Neg", ["c"], ["c2"], name="orphan_user"))
    model.graph.initializer.append(helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0]))
    assert prune_unused(model) == 3
    assert "orphan" not in [n.name for n in model.graph.node] and not model.graph.initializer
    assert prune_unused(model) == 0


def test_set_metadata_replaces_and_checks_types():
    model = _round_trip_model()
    set_metadata(model, {"a": "1", "b": "2"})
    set_metadata(model, {"a": "3"})
    assert {p.key: p.value for p in model.metadata_props} == {"a": "3", "b": "2"}
    with pytest.raises(TypeError, match="string"):
        set_metadata(model, {"a": 3})
