"""The torch-free ONNX Runtime describer and the latency probe."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from muselens.core.descriptor_contract import feature_cells
from muselens.runtime.engine import OrtDescriber, latency_ms
from muselens.core.data.images import read_image
from muselens.core.data.museum_dataset import MuseumDataset
from muselens.core.preprocess import resize_short_side


def test_it_reads_the_contract_and_describes_like_pytorch(fp32_model, trained, export_museum):
    describer = OrtDescriber(fp32_model)
    assert (describer.short_side, describer.k, describer.dim) == (64, 4, 8)
    image = read_image(next((export_museum / "references" / "a0").iterdir()))  # 48x64 -> 64x85
    resized = describer.resize(image)
    expected_resize = resize_short_side(image, 64, trained.max_aspect, interpolation=trained.contract.interpolation,
                                        antialias=trained.contract.antialias)
    np.testing.assert_array_equal(resized, expected_resize)
    d = describer.describe(image)
    assert d.shape == (8,) and d.dtype == np.float32
    np.testing.assert_allclose(d, trained.describe([image])[0], rtol=0, atol=1e-5)


def test_records_skip_unreadable_images(fp32_model, export_museum, tmp_path):
    from muselens.core.data.images import SkippedImages
    from muselens.core.data.museum_dataset import ImageRecord

    museum = MuseumDataset.load(export_museum)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    skipped = SkippedImages()
    records = [*museum.references[:2], ImageRecord(broken, "references", "a9")]
    descriptors, ids = OrtDescriber(fp32_model).describe_records(records, skipped)
    assert descriptors.shape == (2, 8) and ids == ["a0", "a0"]
    assert [s["path"] for s in skipped.to_list()] == [str(broken)]


def test_bad_inputs_are_refused(fp32_model, tmp_path):
    describer = OrtDescriber(fp32_model)
    with pytest.raises(ValueError, match="fewer than k=4"):
        describer.run(np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        describer.run(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="short_side"):
        OrtDescriber(fp32_model, short_side=0)
    with pytest.raises(ValueError, match="not found"):
        OrtDescriber(tmp_path / "missing.onnx")
    bare = onnx.load(str(fp32_model))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ValueError, match="no muselens descriptor contract"):
        OrtDescriber(tmp_path / "bare.onnx")


def test_feature_cells_round_up():
    assert feature_cells(64, 64, 32) == 4
    assert feature_cells(33, 161, 32) == 12
    assert feature_cells(448, 597, 32) == 14 * 19


def test_latency_reports_percentiles(fp32_model):
    timing = latency_ms(fp32_model, (64, 85), runs=3, warmup=1)
    assert 0 < timing["ms_p50"] <= timing["ms_p95"]
    assert (timing["height"], timing["width"], timing["runs"]) == (64, 85, 3)
    with pytest.raises(ValueError, match="runs"):
        latency_ms(fp32_model, (64, 85), runs=0)
