"""A trained run to a bundle: gallery, threshold, variants and metrics, loadable without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import muselens.export.bundle as bundle_module
from muselens.export.bundle import (UNCALIBRATED_THRESHOLD, ExportOptions, calibrated_threshold, export_bundle,
                                    resolve_data)
from muselens.export.contract import descriptor_contract
from muselens.runtime.engine import OrtDescriber
from muselens.export.precision import DriftError
from muselens.runtime.bundle import Gallery, dataset_digest, load_bundle
from muselens.runtime.data.images import read_image
from muselens.runtime.data.museum import MuseumDataset
from tests.tiny_model import TINY_SIZES

FAST = dict(parity_sizes=TINY_SIZES[:2], latency_runs=0, calibration_images=4)

BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'torchvision', 'timm'):
            raise ImportError('torch is blocked in this test')
sys.meta_path.insert(0, Block())
"""

SERVE_WITHOUT_TORCH = BLOCK_TORCH + """
import json
import onnxruntime as ort
from muselens.runtime.bundle import load_bundle
from muselens.runtime.data.images import read_image
from muselens.runtime.preprocess import resize_short_side
from muselens.export.precision import measure_variant

bundle = load_bundle(sys.argv[1])
d = bundle.manifest.descriptor
x = resize_short_side(read_image(sys.argv[2]), d["short_side"], d["max_aspect"],
                      interpolation=d["interpolation"], antialias=d["antialias"])
out = {}
for variant in sorted(bundle.manifest.models):
    session = ort.InferenceSession(str(bundle.model_path(variant)), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(None, {d["input_name"]: x[None]})))
    out[variant] = values["descriptor"][0].tolist()
out["gallery_row0"] = bundle.gallery.descriptors[0].tolist()
out["int8_mp_at_1"] = measure_variant(bundle.model_path("int8"), sys.argv[3])["mp_at_1"]
out["torch_loaded"] = any(m.split('.')[0] == 'torch' for m in sys.modules)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def built(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "tiny-bundle"
    options = ExportOptions(archive=True, name="tiny", bundle_version="1.0.0", **{**FAST, "latency_runs": 1})
    return export_bundle(run_dir, out, options=options, progress=lambda message: None)


def test_the_bundle_holds_every_variant_with_its_metrics(built, trained, export_museum):
    bundle = load_bundle(built.bundle)
    manifest = bundle.manifest
    assert (manifest.name, manifest.bundle_version, manifest.default_variant) == ("tiny", "1.0.0", "fp32")
    assert sorted(manifest.models) == ["fp16", "fp32", "int8"]
    assert {v: manifest.models[v].precision for v in manifest.models} == {v: v for v in manifest.models}
    assert manifest.to_dict()["descriptor"] == json.loads(json.dumps(descriptor_contract(trained)))
    assert manifest.data_digest == dataset_digest(export_museum)
    assert manifest.training["data"] == str(export_museum.resolve())
    assert manifest.training["parity"]["min_cosine"] >= 0.9999
    for variant in ("fp32", "fp16", "int8"):
        metrics = manifest.metrics[variant]
        assert 0 <= metrics["mp_at_1"] <= 1 and 0 <= metrics["map"] <= 1
        assert metrics["size_mb"] > 0 and metrics["ms_p50"] > 0
    for variant in ("fp16", "int8"):
        assert "mp_at_1_drop_points" in manifest.metrics[variant]
        assert manifest.metrics[variant]["min_cosine_to_fp32"] > 0.9
    sizes = [manifest.metrics[v]["size_mb"] for v in ("int8", "fp16", "fp32")]
    assert sizes == sorted(sizes)
    assert sorted(bundle.labels) == ["a0", "a1", "a2"]
    assert bundle.gallery.n_images == 6 and bundle.gallery.dim == 8


def test_the_gallery_is_the_fp32_onnx_description_of_each_reference(built, export_museum):
    bundle = load_bundle(built.bundle)
    museum = MuseumDataset.load(export_museum)
    describer = OrtDescriber(bundle.model_path("fp32"))
    expected = describer.describe_many(read_image(r.path) for r in museum.references)
    np.testing.assert_array_equal(bundle.gallery.descriptors, expected)
    assert bundle.gallery.instance_ids.tolist() == [r.instance_id for r in museum.references]


def test_the_threshold_is_calibrated_on_the_distractors(built, export_museum):
    t = load_bundle(built.bundle).manifest.threshold
    assert (t.calibrated, t.n_distractors, t.target_far) == (True, 2, 0.01)
    bundle = load_bundle(built.bundle)
    describer = OrtDescriber(bundle.model_path("fp32"))
    museum = MuseumDataset.load(export_museum)
    distractors = describer.describe_many(read_image(r.path) for r in museum.distractors)
    # 2 distractors at FAR 1%: no accept is allowed, so the threshold is the highest top-1 score.
    top1 = (distractors @ bundle.gallery.average_descriptors.T).max(axis=1)
    assert t.value == pytest.approx(float(top1.max()), abs=1e-6)


def test_calibrated_threshold_against_brute_force():
    gallery = Gallery(np.eye(3, dtype=np.float32), np.array(["a", "b", "c"]))
    rng = np.random.default_rng(0)
    distractors = rng.normal(size=(200, 3)).astype(np.float32)
    distractors /= np.linalg.norm(distractors, axis=1, keepdims=True)
    t = calibrated_threshold(distractors, gallery, 0.05)
    top1 = distractors.max(axis=1)
    assert np.mean(top1 > t.value) <= 0.05 and np.mean(top1 >= t.value) > 0.05
    uncalibrated = calibrated_threshold(np.zeros((0, 3), np.float32), gallery, 0.05)
    assert (uncalibrated.value, uncalibrated.calibrated) == (UNCALIBRATED_THRESHOLD, False)
    assert uncalibrated.target_far is None and uncalibrated.n_distractors == 0


def test_the_bundle_serves_without_torch(built, export_museum):
    reference = MuseumDataset.load(export_museum).references[0].path
    result = subprocess.run([sys.executable, "-c", SERVE_WITHOUT_TORCH, str(built.archive), str(reference),
                             str(export_museum)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["torch_loaded"] is False
    np.testing.assert_allclose(out["fp32"], out["gallery_row0"], rtol=0, atol=1e-6)
    for variant in ("fp16", "int8"):
        assert np.linalg.norm(out[variant]) == pytest.approx(1.0, abs=1e-5)
    assert out["int8_mp_at_1"] == load_bundle(built.bundle).manifest.metrics["int8"]["mp_at_1"]


def test_a_museum_without_distractors_gets_the_uncalibrated_fallback(run_dir, export_museum, tmp_path):
    museum = tmp_path / "no-distractors"
    shutil.copytree(export_museum, museum, ignore=shutil.ignore_patterns("distractors"))
    result = export_bundle(run_dir, tmp_path / "b", data=museum, progress=lambda m: None,
                           options=ExportOptions(precisions=("fp32",), **FAST))
    t = load_bundle(result.bundle).manifest.threshold
    assert (t.value, t.calibrated, t.n_distractors, t.target_far) == (-1.0, False, 0, None)
    assert "ms_p50" not in result.metrics["fp32"]


def test_a_drifting_variant_is_refused_and_nothing_is_written(run_dir, tmp_path, monkeypatch):
    real = bundle_module.retrieval_metrics
    calls = []

    def fp32_perfect_variants_useless(*args):
        metrics = real(*args)
        calls.append(1)
        metrics["mp_at_1"] = 1.0 if len(calls) == 1 else 0.0
        return metrics

    monkeypatch.setattr(bundle_module, "retrieval_metrics", fp32_perfect_variants_useless)
    options = ExportOptions(precisions=("fp32", "fp16"), **FAST)
    with pytest.raises(DriftError, match=r"fp16: .* 100\.00 points below .* allowed 1"):
        export_bundle(run_dir, tmp_path / "b", options=options, progress=lambda m: None)
    assert not (tmp_path / "b").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary left either
    calls.clear()
    forced = ExportOptions(precisions=("fp32", "fp16"), force=True, **FAST)
    result = export_bundle(run_dir, tmp_path / "b", options=forced, progress=lambda m: None)
    assert load_bundle(result.bundle).manifest.metrics["fp16"]["mp_at_1_drop_points"] == 100.0


def test_the_museum_comes_from_the_run_or_from_data(tmp_path):
    with pytest.raises(ValueError, match="does not record its training museum; pass --data"):
        resolve_data(SimpleNamespace(meta={}, run="r"), None)
    with pytest.raises(ValueError, match="no longer exists"):
        resolve_data(SimpleNamespace(meta={"data": str(tmp_path / "gone")}, run="r"), None)
    with pytest.raises(ValueError, match="not a directory"):
        resolve_data(SimpleNamespace(meta={}, run="r"), tmp_path / "gone")
    assert resolve_data(SimpleNamespace(meta={"data": str(tmp_path)}, run="r"), None) == tmp_path


def test_variants_need_queries_to_measure_drift(run_dir, export_museum, tmp_path):
    museum = tmp_path / "no-queries"
    shutil.copytree(export_museum, museum, ignore=shutil.ignore_patterns("queries"))
    with pytest.raises(ValueError, match="no queries"):
        export_bundle(run_dir, tmp_path / "b", data=museum, options=ExportOptions(**FAST))


@pytest.mark.parametrize("kwargs, match", [
    ({"precisions": ("fp16",)}, "must include fp32"),
    ({"precisions": ("fp32", "bf8")}, "unknown precision"),
    ({"precisions": ("fp32", "fp32")}, "repeat"),
    ({"precisions": ("fp32",), "default_variant": "int8"}, "default_variant"),
    ({"target_far": 1.0}, "target_far"),
    ({"latency_runs": -1}, "latency_runs"),
])
def test_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExportOptions(**kwargs)


def test_precisions_are_put_in_canonical_order():
    assert ExportOptions(precisions=("int8", "fp32")).precisions == ("fp32", "int8")


def test_the_bundle_carries_reference_photos_at_recognition_size(built, export_museum):
    bundle = load_bundle(built.bundle)
    photos = sorted(rel for rel in bundle.manifest.files if rel.startswith("references/"))
    assert photos == [f"references/{row:05d}.jpg" for row in range(bundle.gallery.n_images)]
    image = bundle.reference_image(0)
    assert image.dtype == np.uint8 and min(image.shape[:2]) == bundle.manifest.descriptor["short_side"]
    with pytest.raises(IndexError):
        bundle.reference_image(bundle.gallery.n_images)


def test_a_changed_reference_photo_is_caught(built, tmp_path):
    from muselens.runtime.bundle import BundleError

    copy = tmp_path / "copy"
    shutil.copytree(built.bundle, copy)
    photo = copy / "references" / "00000.jpg"
    photo.write_bytes(photo.read_bytes()[:-10])
    with pytest.raises(BundleError, match="references/00000.jpg"):
        load_bundle(copy)
