"""fp16 and int8 variants, their measured metrics, and the drift guard."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest

from muselens.runtime.engine import OrtDescriber
from muselens.export.precision import (DriftError, ImageCalibrationReader, calibration_images, check_drift,
                                       drop_points, measure_variant, retrieval_metrics)
from muselens.runtime.data.images import read_image
from muselens.runtime.data.museum import MuseumDataset
from muselens.runtime.metrics import evaluate_retrieval, similarity


def _references(museum_root):
    return [read_image(r.path) for r in MuseumDataset.load(museum_root).references]


def _io_types(path):
    model = onnx.load(str(path))
    return ([i.type.tensor_type.elem_type for i in model.graph.input],
            {o.name: o.type.tensor_type.elem_type for o in model.graph.output})


@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_variants_keep_the_io_and_give_unit_descriptors(variant, request, fp32_model, export_museum):
    path = request.getfixturevalue(f"{variant}_model")
    onnx.checker.check_model(str(path), full_check=True)
    inputs, outputs = _io_types(path)
    assert inputs == [onnx.TensorProto.UINT8]
    assert outputs["descriptor"] == onnx.TensorProto.FLOAT and outputs["locations"] == onnx.TensorProto.INT64
    model = onnx.load(str(path))
    assert {p.key: p.value for p in model.metadata_props}["muselens.variant"] == variant
    describer, reference = OrtDescriber(path), OrtDescriber(fp32_model)
    assert describer.contract == reference.contract
    images = _references(export_museum)
    d, d32 = describer.describe_many(images), reference.describe_many(images)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)  # head and norm in float32
    assert np.all(np.einsum("ij,ij->i", d, d32) > 0.9)


def test_fp16_runs_the_backbone_in_half_and_the_head_in_float(fp16_model, fp32_model, export_museum):
    model = onnx.load(str(fp16_model))
    halves = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert len(halves) > 20  # backbone weights
    ops = [n.op_type for n in model.graph.node]
    producers = {o: n for n in model.graph.node for o in n.output}

    def cast_to(node) -> int | None:
        return node.attribute[0].i if node.op_type == "Cast" else None

    round_trips = [n for n in model.graph.node if cast_to(n) == onnx.TensorProto.FLOAT and n.input[0] in producers
                   and cast_to(producers[n.input[0]]) == onnx.TensorProto.FLOAT16]
    assert not round_trips  # float32 -> float16 -> float32 between kept nodes: removed
    assert ops.count("TopK") == 1
    images = _references(export_museum)
    np.testing.assert_allclose(OrtDescriber(fp16_model).describe_many(images),
                               OrtDescriber(fp32_model).describe_many(images), atol=2e-2)


def test_int8_quantizes_the_backbone_only(int8_model):
    model = onnx.load(str(int8_model))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    assert all(t.name in used for t in model.graph.initializer)  # no leftovers for ORT to warn about
    assert all(any(o in used for o in n.output) for n in model.graph.node)
    quantized_inputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    head = [n for n in model.graph.node if n.op_type in ("TopK", "MatMul", "ReduceL2", "Gemm")]
    assert head and not any(i in quantized_inputs for n in head for i in n.input)


def test_measured_metrics_equal_the_pytorch_evaluation(fp32_model, trained, export_museum):
    museum = MuseumDataset.load(export_museum)
    metrics = measure_variant(fp32_model, export_museum)
    refs = trained.describe([read_image(r.path) for r in museum.references])
    queries = trained.describe([read_image(r.path) for r in museum.queries])
    expected = evaluate_retrieval(similarity(queries, refs), [q.instance_id for q in museum.queries],
                                  [r.instance_id for r in museum.references])
    assert metrics["mp_at_1"] == pytest.approx(expected.mp_at_1)
    assert metrics["map"] == pytest.approx(expected.map, abs=1e-9)
    assert (metrics["n_queries"], metrics["n_references"], metrics["n_skipped"]) == (3, 6, 0)


@pytest.mark.parametrize("variant", ["fp16", "int8"])
def test_variant_metrics_are_measured(variant, request, export_museum):
    metrics = measure_variant(request.getfixturevalue(f"{variant}_model"), MuseumDataset.load(export_museum))
    for key in ("mp_at_1", "map", "mp_at_1_ia", "map_ia"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["n_queries"] == 3


def test_retrieval_metrics_need_a_query_with_a_reference():
    refs = np.eye(2, dtype=np.float32)
    with pytest.raises(ValueError, match="no query"):
        retrieval_metrics(refs, ["a", "b"], refs[:1], ["c"])
    assert retrieval_metrics(refs, ["a", "b"], refs[:1], ["a"])["mp_at_1"] == 1.0


def test_drift_within_the_bound_passes():
    assert check_drift({"mp_at_1": 0.80}, {"mp_at_1": 0.795}, 1.0, variant="int8") == pytest.approx(0.5)
    assert check_drift({"mp_at_1": 0.80}, {"mp_at_1": 0.85}) == pytest.approx(-5.0)


def test_drift_beyond_the_bound_is_refused_naming_variant_drop_and_bound():
    with pytest.raises(DriftError, match=r"int8: .* 2\.50 points below .* allowed 1\b"):
        check_drift({"mp_at_1": 0.80}, {"mp_at_1": 0.775}, 1.0, variant="int8")


def test_forced_drift_is_kept_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        drop = check_drift({"mp_at_1": 0.80}, {"mp_at_1": 0.70}, 1.0, force=True, variant="fp16")
    assert drop == pytest.approx(10.0)
    assert "fp16" in caplog.text and "forced" in caplog.text


@pytest.mark.parametrize("fp32, variant, bound, match", [
    ({}, {"mp_at_1": 0.5}, 1.0, "fp32_metrics"),
    ({"mp_at_1": 0.5}, {"mp_at_1": 1.5}, 1.0, "fraction"),
    ({"mp_at_1": 0.5}, {"mp_at_1": 0.5}, -1.0, "max_drop_points"),
    ({"mp_at_1": 0.5}, {"mp_at_1": 0.5}, float("nan"), "max_drop_points"),
])
def test_drift_inputs_are_checked(fp32, variant, bound, match):
    with pytest.raises(ValueError, match=match):
        check_drift(fp32, variant, bound)


def test_drop_points_of_other_metrics():
    assert drop_points({"map": 0.5}, {"map": 0.25}, "map") == pytest.approx(25.0)


def test_calibration_reader_feeds_each_image_once_then_rewinds():
    images = [np.zeros((64, 64, 3), np.uint8), np.ones((64, 96, 3), np.uint8)]
    reader = ImageCalibrationReader(images)
    first = reader.get_next()
    assert first["image"].shape == (1, 64, 64, 3) and first["image"].dtype == np.uint8
    assert reader.get_next()["image"].shape == (1, 64, 96, 3)
    assert reader.get_next() is None
    reader.rewind()
    assert reader.get_next() is not None
    with pytest.raises(ValueError, match="at least one"):
        ImageCalibrationReader([])
    with pytest.raises(ValueError, match="uint8"):
        ImageCalibrationReader([np.zeros((4, 4, 3), np.float32)])


def test_calibration_images_are_resized_references(fp32_model, export_museum):
    describer = OrtDescriber(fp32_model)
    museum = MuseumDataset.load(export_museum)
    images = calibration_images(museum, describer, limit=3)
    assert len(images) == 3
    assert all(min(i.shape[:2]) == 64 and i.dtype == np.uint8 for i in images)
    assert len(calibration_images(museum, describer, limit=100)) == 6
    with pytest.raises(ValueError, match="limit"):
        calibration_images(museum, describer, limit=0)
