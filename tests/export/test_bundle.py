"""A trained run to a bundle: gallery, threshold, variants and metrics, loadable without torch."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import muselens.export.bundle as bundle_module
from muselens.export.bundle import ExportOptions, calibrated_threshold, export_bundle, resolve_data
from muselens.export.onnx_export import descriptor_contract
from muselens.runtime.engine import OrtDescriber
from muselens.export.precision import DriftError
from muselens.runtime.bundle import Gallery, dataset_digest, load_bundle
from muselens.core.data.images import read_image
from muselens.core.data.museum_dataset import MuseumDataset
from muselens.core.metrics.threshold import DEFAULT_GENERATED, DISTRACTORS, GENERATED, IMPOSTORS
from muselens.core.metrics.threshold import METHOD as THRESHOLD_METHOD
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
from muselens.core.data.images import read_image
from muselens.core.preprocess import resize_short_side
from muselens.export.precision import measure_variant

bundle = load_bundle(sys.argv[1])
d = bundle.manifest.descriptor
x = resize_short_side(read_image(sys.argv[2]), d.short_side, d.max_aspect,
                      interpolation=d.interpolation, antialias=d.antialias)
out = {}
for variant in sorted(bundle.manifest.models):
    session = ort.InferenceSession(str(bundle.model_path(variant)), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(None, {d.input_name: x[None]})))
    out[variant] = values["descriptor"][0].tolist()
out["gallery_row0"] = bundle.gallery.descriptors[0].tolist()
out["int8_mp_at_1"] = measure_variant(bundle.model_path("int8"), sys.argv[3])["mp_at_1"]
out["torch_loaded"] = any(m.split('.')[0] == 'torch' for m in sys.modules)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def built(run_dir, tmp_path_factory):
    """Every variant, forced: the tiny model's int8 drifts (one query's descriptor at cosine ~0.5
    to fp32's), and these tests check every variant's files and metrics."""
    out = tmp_path_factory.mktemp("bundle") / "tiny-bundle"
    options = ExportOptions(archive=True, name="tiny", bundle_version="1.0.0", force=True,
                            **{**FAST, "latency_runs": 1})
    return export_bundle(run_dir, out, options=options, progress=lambda message: None)


def test_the_bundle_holds_every_variant_with_its_metrics(built, trained, export_museum):
    bundle = load_bundle(built.bundle)
    manifest = bundle.manifest
    assert (manifest.name, manifest.bundle_version, manifest.default_variant) == ("tiny", "1.0.0", "fp32")
    assert sorted(manifest.models) == ["fp16", "fp32", "int8"]
    assert {v: manifest.models[v].precision for v in manifest.models} == {v: v for v in manifest.models}
    assert manifest.descriptor == descriptor_contract(trained)
    assert manifest.to_dict()["descriptor"] == descriptor_contract(trained).to_dict()
    assert manifest.data_digest == dataset_digest(export_museum)
    assert manifest.training["data"] == str(export_museum.resolve())
    assert manifest.training["parity"]["min_cosine"] >= 0.9999
    for variant in ("fp32", "fp16", "int8"):
        metrics = manifest.metrics[variant]
        assert 0 <= metrics["mp_at_1"] <= 1 and 0 <= metrics["map"] <= 1
        assert metrics["size_mb"] > 0 and metrics["ms_p50"] > 0
    for variant in ("fp16", "int8"):
        metrics = manifest.metrics[variant]
        assert "mp_at_1_drop_points" in metrics and metrics["n_photos_compared"] == 6 + 3 + 2
        assert -1 <= metrics["min_cosine_to_fp32"] <= metrics["p05_cosine_to_fp32"] <= metrics["mean_cosine_to_fp32"]
        assert 0 <= metrics["top1_agreement_with_fp32"] <= 1 and 0 <= metrics["top5_overlap_with_fp32"] <= 1
    assert manifest.metrics["fp16"]["min_cosine_to_fp32"] > 0.999
    assert manifest.metrics["fp16"]["top1_agreement_with_fp32"] == 1.0
    assert built.refused == {} and set(built.forced) <= {"int8"}
    assert manifest.training["drift"]["bounds"]["min_cosine"] == 0.95
    assert manifest.training["drift"]["forced"] == built.forced
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


def test_the_threshold_is_calibrated_on_the_distractors_and_the_other_sources(built, export_museum):
    t = load_bundle(built.bundle).manifest.threshold
    assert (t.calibrated, t.n_distractors, t.target_far, t.method) == (True, 2, 0.01, THRESHOLD_METHOD)
    assert [(s.source, s.count) for s in t.sources] == [(DISTRACTORS, 2), (IMPOSTORS, 6),
                                                         (GENERATED, DEFAULT_GENERATED)]
    assert t.value == max(s.threshold for s in t.sources)
    bundle = load_bundle(built.bundle)
    describer = OrtDescriber(bundle.model_path("fp32"))
    museum = MuseumDataset.load(export_museum)
    distractors = describer.describe_many(read_image(r.path) for r in museum.distractors)
    # 2 distractors at FAR 1%: no accept is allowed, so their threshold is the highest top-1 score.
    top1 = (distractors @ bundle.gallery.average_descriptors.T).max(axis=1)
    assert t.sources[0].threshold == pytest.approx(float(top1.max()), abs=1e-6)


class AxisDescriber:
    """Describes an image by the unit vector of its mean colour: enough to score against a 3-D gallery."""

    def describe_many(self, images):
        x = np.stack([np.asarray(image, np.float64).reshape(-1, 3).mean(axis=0) + 1.0 for image in images])
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_calibrated_threshold_against_brute_force():
    gallery = Gallery(np.eye(3, dtype=np.float32), np.array(["a", "b", "c"]))
    rng = np.random.default_rng(0)
    distractors = rng.normal(size=(200, 3)).astype(np.float32)
    distractors /= np.linalg.norm(distractors, axis=1, keepdims=True)
    references = [np.full((16, 16, 3), c, np.uint8) for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    t = calibrated_threshold(AxisDescriber(), gallery, references, ["a", "b", "c"], distractors, 0.05,
                             generated=0, views_per_reference=0)
    top1 = distractors.max(axis=1)
    assert np.mean(top1 > t.value) <= 0.05 and np.mean(top1 >= t.value) > 0.05
    assert (t.n_distractors, [s.source for s in t.sources]) == (200, [DISTRACTORS])
    alone = calibrated_threshold(AxisDescriber(), gallery, references, ["a", "b", "c"], distractors[:0], 0.05,
                                 generated=0, views_per_reference=2)
    assert (alone.n_distractors, alone.calibrated, [(s.source, s.count) for s in alone.sources]) == (
        0, True, [(IMPOSTORS, 6)])
    with pytest.raises(ValueError, match="no negative scores"):
        calibrated_threshold(AxisDescriber(), gallery, references, ["a", "b", "c"], distractors[:0], 0.05,
                             generated=0, views_per_reference=0)


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


def test_a_museum_without_distractors_still_gets_a_calibrated_threshold(run_dir, export_museum, tmp_path):
    """Issue 18, observation 3: it used to get -1.0 ("accept everything"), which also broke every stream."""
    museum = tmp_path / "no-distractors"
    shutil.copytree(export_museum, museum, ignore=shutil.ignore_patterns("distractors"))
    said = []
    result = export_bundle(run_dir, tmp_path / "b", data=museum, progress=said.append,
                           options=ExportOptions(precisions=("fp32",), **FAST))
    t = load_bundle(result.bundle).manifest.threshold
    assert t == result.threshold
    assert (t.calibrated, t.n_distractors, t.target_far, t.method) == (True, 0, 0.01, THRESHOLD_METHOD)
    assert [(s.source, s.count) for s in t.sources] == [(IMPOSTORS, 6), (GENERATED, DEFAULT_GENERATED)]
    assert -1.0 < t.value == max(s.threshold for s in t.sources)
    assert f"threshold {t.describe()}" in said and "impostor-views" in t.describe()
    assert "ms_p50" not in result.metrics["fp32"]


def test_a_drifting_variant_is_left_out_and_the_bundle_still_written(run_dir, tmp_path, scramble):
    scramble("int8")
    said = []
    result = export_bundle(run_dir, tmp_path / "b", options=ExportOptions(**FAST), progress=said.append)
    manifest = load_bundle(result.bundle).manifest
    assert sorted(manifest.models) == sorted(result.metrics) == ["fp16", "fp32"]  # fp16 passed
    assert list(result.refused) == ["int8"] and result.forced == {}
    assert re.fullmatch(r"5th-percentile descriptor cosine to fp32 -?0\.\d+ is below 0\.95; .*", result.refused["int8"])
    assert manifest.training["drift"]["refused"] == result.refused
    assert any(m.startswith("warning: int8 left out of the bundle, it drifts too far from fp32: 5th-percentile")
               for m in said)


def test_a_drifting_variant_is_kept_when_forced(run_dir, tmp_path, scramble):
    scramble("fp16")
    said = []
    options = ExportOptions(precisions=("fp32", "fp16"), force=True, **FAST)
    result = export_bundle(run_dir, tmp_path / "b", options=options, progress=said.append)
    manifest = load_bundle(result.bundle).manifest
    assert sorted(manifest.models) == ["fp16", "fp32"] and result.refused == {}
    assert "cosine" in result.forced["fp16"] and manifest.training["drift"]["forced"] == result.forced
    assert manifest.metrics["fp16"]["p05_cosine_to_fp32"] < 0.95
    assert any(m.startswith("warning: fp16 drifts too far") and m.endswith("kept because --force") for m in said)


def test_a_drifting_default_variant_fails_the_export_and_nothing_is_written(run_dir, tmp_path, scramble):
    """The bundle asked for (served as fp16) cannot be made; the run is kept, and exporting it again
    with another --default-variant is cheap, so failing beats a bundle that serves something else."""
    scramble("fp16")
    options = ExportOptions(precisions=("fp32", "fp16"), default_variant="fp16", **FAST)
    with pytest.raises(DriftError, match=r"fp16, the default variant, drifts too far from fp32: 5th-percentile .*"
                                         r"choose another --default-variant, or --force to keep it"):
        export_bundle(run_dir, tmp_path / "b", options=options, progress=lambda m: None)
    assert [p.name for p in tmp_path.iterdir()] == []  # neither the bundle nor a temporary
    forced = ExportOptions(precisions=("fp32", "fp16"), default_variant="fp16", force=True, **FAST)
    result = export_bundle(run_dir, tmp_path / "b", options=forced, progress=lambda m: None)
    assert load_bundle(result.bundle).manifest.default_variant == "fp16" and "fp16" in result.forced


def test_a_mp_at_1_drop_on_a_few_queries_does_not_refuse_a_variant(run_dir, tmp_path, monkeypatch):
    """Issue 18: on 3 queries one photo is 33 points; such a drop alone is noise, not a refusal."""
    real = bundle_module.retrieval_metrics
    calls = []

    def one_query_lost(*args):
        metrics = real(*args)
        calls.append(1)
        metrics["mp_at_1"] = 1.0 if len(calls) == 1 else 2 / 3
        return metrics

    monkeypatch.setattr(bundle_module, "retrieval_metrics", one_query_lost)
    options = ExportOptions(precisions=("fp32", "fp16"), **FAST)
    result = export_bundle(run_dir, tmp_path / "b", options=options, progress=lambda m: None)
    metrics = load_bundle(result.bundle).manifest.metrics
    assert sorted(metrics) == ["fp16", "fp32"] and metrics["fp16"]["mp_at_1_drop_points"] == pytest.approx(100 / 3)
    assert result.refused == {}


def test_a_variant_is_judged_as_served_its_queries_in_fp32_s_gallery(run_dir, tmp_path, monkeypatch):
    """The runtime searches fp32's references whatever the variant: a variant whose own reference
    descriptors are noise but whose queries are fp32's answers every query as fp32 does, and the
    export's mP@1 says so (judged against its own references, it would have lost them all)."""
    real = bundle_module.OrtDescriber

    class NoisyReferences:
        def __init__(self, describer):
            self.describer = describer

        def describe_records(self, records, skipped=None):
            descriptors, ids = self.describer.describe_records(records, skipped)
            if records and all("references" in Path(r.path).parts for r in records):
                noise = np.random.default_rng(0).normal(size=descriptors.shape).astype(np.float32)
                descriptors = noise / np.linalg.norm(noise, axis=1, keepdims=True)
            return descriptors, ids

    monkeypatch.setattr(bundle_module, "OrtDescriber",
                        lambda path, **kw: NoisyReferences(real(path, **kw)) if Path(path).stem == "fp16"
                        else real(path, **kw))
    options = ExportOptions(precisions=("fp32", "fp16"), force=True, **FAST)
    metrics = export_bundle(run_dir, tmp_path / "b", options=options, progress=lambda m: None).metrics
    assert metrics["fp16"]["mp_at_1"] == metrics["fp32"]["mp_at_1"]
    assert metrics["fp16"]["mp_at_1_drop_points"] == 0.0 and metrics["fp16"]["mp_at_1_lost_queries"] == 0
    assert metrics["fp16"]["p05_cosine_to_fp32"] < 0.95  # the references' drift is still seen


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
    ({"max_drop_points": -1.0}, "max_drop_points"),
    ({"min_cosine": 2.0}, "min_cosine"),
    ({"min_top1_agreement": float("nan")}, "min_top1_agreement"),
    ({"non_artwork_photos": -1}, "non_artwork_photos must be >= 0"),
    ({"impostor_views": 1.5}, "impostor_views must be an int >= 0"),
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
    assert image.dtype == np.uint8 and min(image.shape[:2]) == bundle.manifest.descriptor.short_side
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
