"""Export to ONNX and its checks: the checker, and ONNX Runtime against PyTorch at many sizes."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch

from muselens.core.descriptor_contract import METADATA_KEY, OUTPUT_NAMES, DescriptorContract
from muselens.export.onnx_export import ParityError, _locations_agree, descriptor_contract, export_onnx, verify_onnx
from tests.tiny_model import TINY_SIZES


def test_the_exported_file_passes_the_full_checker_and_carries_its_contract(fp32_model, trained):
    onnx.checker.check_model(str(fp32_model), full_check=True)
    model = onnx.load(str(fp32_model))
    (image,) = model.graph.input
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert dims == [1, "height", "width", 3]
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    metadata = {p.key: p.value for p in model.metadata_props}
    assert DescriptorContract.from_metadata(metadata) == descriptor_contract(trained)
    assert metadata["muselens.variant"] == "fp32"


def test_the_contract_describes_the_trained_model(trained):
    contract = descriptor_contract(trained)
    assert contract.input == "NHWC uint8 RGB" and contract.outputs == OUTPUT_NAMES
    assert (contract.dim, contract.k, contract.short_side) == (8, 4, 64)
    assert contract.max_aspect == trained.max_aspect and contract.preprocess == trained.contract
    assert contract.to_dict()["interpolation"] == trained.contract.interpolation
    assert DescriptorContract.from_dict(contract.to_dict()) == contract


def test_onnx_runtime_matches_pytorch_at_five_sizes(fp32_model, trained):
    report = verify_onnx(trained, fp32_model, TINY_SIZES)
    assert report["passed"] and not report["failures"]
    assert [tuple(r["size"]) for r in report["sizes"]] == list(TINY_SIZES)
    assert report["min_cosine"] >= 0.9999
    for row in report["sizes"]:
        assert row["locations"] in ("equal", "ties")
        for name in ("activation", "descriptor_map", "class_logits"):
            assert row[f"{name}_max_abs"] <= row[f"{name}_tolerance"]
    # Thin strip: 33x161 gives 2x6 cells, so the dynamic padding and shapes really vary.
    assert report["sizes"][-1]["cells"] == [2, 6]


def test_parity_with_natural_images(fp32_model, trained, export_museum):
    from muselens.core.data.images import read_image

    image = read_image(next((export_museum / "references" / "a1").iterdir()))
    assert verify_onnx(trained, fp32_model, [(64, 64), (96, 64)], images=[image])["passed"]


def test_a_model_that_computes_something_else_is_caught(fp32_model, trained):
    other = copy.copy(trained)
    other.model = copy.deepcopy(trained.model)
    with torch.no_grad():
        other.model.net.head.shift.add_(0.5)
    with pytest.raises(ParityError, match="descriptor") as caught:
        verify_onnx(other, fp32_model, [(64, 64)])
    assert caught.value.report["passed"] is False
    report = verify_onnx(other, fp32_model, [(64, 64)], strict=False)
    assert report["failures"] and report["min_cosine"] < 0.9999


def test_sizes_with_fewer_than_k_cells_are_refused(fp32_model, trained, tmp_path):
    with pytest.raises(ValueError, match="fewer than k=4"):
        verify_onnx(trained, fp32_model, [(32, 32)])
    with pytest.raises(ValueError, match="fewer than k=4"):
        export_onnx(trained, tmp_path / "m.onnx", sample_size=(32, 64))
    with pytest.raises(ValueError, match="opset"):
        export_onnx(trained, tmp_path / "m.onnx", opset=7)
    with pytest.raises(ValueError, match="height, width"):
        verify_onnx(trained, fp32_model, [(64,)])
    assert not (tmp_path / "m.onnx").exists()


def test_locations_agree_up_to_ties():
    activation = np.array([[[3.0, 1.0, 3.0, 0.0]]], dtype=np.float32)
    assert _locations_agree(np.array([[0, 2]]), np.array([[0, 2]]), activation, 1e-4) == "equal"
    assert _locations_agree(np.array([[2, 0]]), np.array([[0, 2]]), activation, 1e-4) == "ties"
    assert _locations_agree(np.array([[0, 1]]), np.array([[0, 2]]), activation, 1e-4) is None


def test_the_contract_key_is_where_the_runtime_reads_it(fp32_model):
    import onnxruntime as ort

    session = ort.InferenceSession(str(fp32_model), providers=["CPUExecutionProvider"])
    assert METADATA_KEY in session.get_modelmeta().custom_metadata_map


def test_parity_sizes_cover_the_served_shapes_and_beyond():
    from muselens.export.onnx_export import parity_sizes

    assert parity_sizes(448, 2.0, k=4) == ((448, 448), (448, 597), (448, 896), (896, 448), (337, 515), (113, 641))
    tiny = parity_sizes(64, 2.0, k=4)
    assert (64, 128) in tiny and (128, 64) in tiny and all(h * w > 0 for h, w in tiny)
    assert parity_sizes(32, 2.0, k=4) == ((33, 47),)  # the others have fewer than 4 cells
    with pytest.raises(ValueError, match="too small"):
        parity_sizes(8, 1.0, k=4)
    with pytest.raises(ValueError, match="max_aspect"):
        parity_sizes(64, 0.5)
