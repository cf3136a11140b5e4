"""Manifest: strict validation of every field, round trips, the self-checksum and versions."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest

from muselens.runtime.bundle._json import canonical
from muselens.runtime.bundle.checksum import sha256_bytes
from muselens.runtime.bundle.manifest import (
    FORMAT_VERSION,
    Manifest,
    ModelEntry,
    Threshold,
    model_file,
    utc_now,
)
from muselens.core.metrics.threshold import METHOD as THRESHOLD_METHOD

from .conftest import DIGEST, descriptor


def fields(**overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = dict(
        format="muselens-bundle", format_version=1, created="2026-11-23T15:00:00Z",
        muselens_version="0.1.0", name="Test Museum", bundle_version="1.2.0", backbone="resnet50",
        descriptor=descriptor(),
        models={"fp32": {"file": "models/fp32.onnx", "sha256": "1" * 64, "bytes": 10, "precision": "fp32"},
                "int8": {"file": "models/int8.onnx", "sha256": "2" * 64, "bytes": 5, "precision": "int8"}},
        default_variant="fp32", files={"gallery.npz": "3" * 64, "labels.json": "4" * 64},
        training={"epochs": 3, "schedule": [1, 2]}, data_digest=DIGEST,
        metrics={"fp32": {"mp_at_1": 0.9, "map": 0.75}},
        threshold={"value": 0.55, "target_far": 0.01, "n_distractors": 30, "calibrated": True},
    )
    out.update(overrides)
    return out


def with_checksum(content: dict[str, Any]) -> bytes:
    return json.dumps({**content, "manifest_sha256": sha256_bytes(canonical(content))}).encode()


def test_round_trips():
    m = Manifest.from_dict(fields())
    assert m.to_dict() == fields()
    assert Manifest.from_dict(m.to_dict()) == m
    assert Manifest.from_json(m.to_json()) == m
    assert m.models["int8"] == ModelEntry("models/int8.onnx", "2" * 64, 5, "int8")
    assert m.threshold == Threshold(0.55, 0.01, 30, True)
    assert m.model().file == "models/fp32.onnx" and m.model("int8").precision == "int8"
    assert model_file("fp16") == "models/fp16.onnx"
    Manifest.from_dict(fields(created=utc_now()))


def test_is_frozen_deeply_and_to_dict_is_a_copy():
    m = Manifest.from_dict(fields())
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        m.descriptor["dim"] = 3  # type: ignore[index]
    assert isinstance(m.training["schedule"], tuple)
    d = m.to_dict()
    d["training"]["epochs"] = 99
    assert m.training["epochs"] == 3


def test_numpy_scalars_become_plain_json():
    m = Manifest.from_dict(fields(metrics={"fp32": {"mp_at_1": np.float32(0.5), "map": np.float64(0.25),
                                                     "n": np.int64(7)}}))
    assert type(m.metrics["fp32"]["n"]) is int and type(m.metrics["fp32"]["mp_at_1"]) is float
    assert Manifest.from_json(m.to_json()) == m


def test_unknown_and_missing_keys():
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        Manifest.from_dict(fields(colour="blue"))
    incomplete = fields()
    del incomplete["threshold"]
    with pytest.raises(ValueError, match=r"lacks keys \['threshold'\]"):
        Manifest.from_dict(incomplete)


def test_format_and_version_are_checked_first():
    with pytest.raises(ValueError, match="format_version 5 is not supported.*reads format_version 1, 2, 3, 4"):
        Manifest.from_dict(fields(format_version=5, name=""))
    with pytest.raises(ValueError, match="format_version must be an int"):
        Manifest.from_dict(fields(format_version=True))
    with pytest.raises(ValueError, match="format is 'other'"):
        Manifest.from_dict(fields(format="other"))
    # from_json: a newer version is named even though its fields (and checksum) differ
    with pytest.raises(ValueError, match="format_version 7 is not supported"):
        Manifest.from_json(json.dumps({"format": "muselens-bundle", "format_version": 7}).encode())
    # 2: the threshold may say how it was set; 3: local features; 4: their vote index, built
    assert FORMAT_VERSION == 4


def test_self_checksum():
    m = Manifest.from_dict(fields())
    raw = json.loads(m.to_json())
    raw["metrics"]["fp32"]["mp_at_1"] = 0.99
    with pytest.raises(ValueError, match="manifest.json checksum mismatch"):
        Manifest.from_json(json.dumps(raw).encode())
    del raw["manifest_sha256"]
    with pytest.raises(ValueError, match="has no manifest_sha256"):
        Manifest.from_json(json.dumps(raw).encode())
    assert Manifest.from_json(with_checksum(fields())) == m  # any key order, any whitespace


def test_json_strictness():
    with pytest.raises(ValueError, match="NaN is not allowed"):
        Manifest.from_json(b'{"format": "muselens-bundle", "x": NaN}')
    with pytest.raises(ValueError, match="duplicate key 'format'"):
        Manifest.from_json(b'{"format": "muselens-bundle", "format": "muselens-bundle"}')
    with pytest.raises(ValueError, match="must hold a JSON object"):
        Manifest.from_json(b"[1]")
    with pytest.raises(ValueError, match="not valid JSON"):
        Manifest.from_json(b"{")


def _descriptor(**changes: Any) -> dict[str, Any]:
    d = descriptor()
    d.update(changes)
    return {k: v for k, v in d.items() if v is not None}


@pytest.mark.parametrize("overrides, error, match", [
    ({"name": ""}, ValueError, "name must not be empty"),
    ({"bundle_version": "v1\n"}, ValueError, "bundle_version must be printable"),
    ({"backbone": 3}, TypeError, "backbone must be a string"),
    ({"created": "2026-11-23T15:00:00+01:00"}, ValueError, "created must be in UTC"),
    ({"created": "2026-11-23T15:00:00"}, ValueError, "created must be in UTC"),
    ({"created": "yesterday"}, ValueError, "ISO 8601"),
    ({"descriptor": _descriptor(dim=None)}, ValueError, r"descriptor lacks required keys \['dim'\]"),
    ({"descriptor": _descriptor(dim=0)}, ValueError, "descriptor.dim must be >= 1"),
    ({"descriptor": _descriptor(short_side=2.5)}, TypeError, "descriptor.short_side must be an int"),
    ({"descriptor": _descriptor(outputs=[])}, TypeError, "descriptor.outputs must be a non-empty list"),
    ({"descriptor": _descriptor(outputs="desc")}, TypeError, "descriptor.outputs must be a non-empty list"),
    ({"descriptor": _descriptor(outputs=["d", "d"])}, ValueError, "duplicate names"),
    ({"descriptor": _descriptor(input={})}, TypeError, "descriptor.input must be"),
    ({"descriptor": _descriptor(normalisation="none")}, ValueError, "normalisation must be 'l2'"),
    ({"descriptor": _descriptor(similarity="euclidean")}, ValueError, "similarity must be 'dot'"),
    ({"descriptor": _descriptor(max_aspect=0.5)}, ValueError, "max_aspect must be finite and >= 1"),
    ({"descriptor": _descriptor(extra={1, 2})}, TypeError, "descriptor.extra must hold only JSON"),
    ({"models": {}}, ValueError, "at least one variant"),
    ({"models": {"fp 32": {"file": "models/fp 32.onnx", "sha256": "1" * 64, "bytes": 1,
                           "precision": "fp32"}}}, ValueError, "variant names"),
    ({"models": {"fp32": {"file": "../fp32.onnx", "sha256": "1" * 64, "bytes": 1,
                          "precision": "fp32"}}}, ValueError, "must be 'models/fp32.onnx'"),
    ({"models": {"fp32": {"file": "models/fp32.onnx", "sha256": "XY", "bytes": 1,
                          "precision": "fp32"}}}, ValueError, "sha256 must be 64 lowercase hex"),
    ({"models": {"fp32": {"file": "models/fp32.onnx", "sha256": "1" * 64, "bytes": 0,
                          "precision": "fp32"}}}, ValueError, "model bytes must be >= 1"),
    ({"models": {"fp32": {"file": "models/fp32.onnx", "sha256": "1" * 64, "bytes": 1,
                          "precision": "fp32", "opset": 17}}}, ValueError, r"unknown keys \['opset'\]"),
    ({"default_variant": "fp16"}, ValueError, "default_variant 'fp16' is not one of"),
    ({"files": {"gallery.npz": "3" * 64}}, ValueError, r"files lacks keys \['labels.json'\]"),
    ({"files": {"gallery.npz": "3" * 64, "labels.json": "nope"}}, ValueError, "64 lowercase hex"),
    ({"training": {1: "x"}}, TypeError, "non-string key 1"),
    ({"training": {"lr": float("inf")}}, ValueError, "training.lr must be finite"),
    ({"data_digest": "abc"}, ValueError, "data_digest must be 64"),
    ({"metrics": {"fp16": {"mp_at_1": 0.5, "map": 0.5}}}, ValueError, "metrics for 'fp16'"),
    ({"metrics": {"fp32": {"mp_at_1": 0.5}}}, ValueError, r"metrics.fp32 lacks \['map'\]"),
    ({"metrics": {"fp32": {"mp_at_1": 1.5, "map": 0.5}}}, ValueError, "mp_at_1 must lie in"),
    ({"metrics": {"fp32": {"mp_at_1": 0.5, "map": 0.5, "note": "x"}}}, TypeError, "note must be a number"),
    ({"threshold": {"value": 1.5, "target_far": 0.01, "n_distractors": 3, "calibrated": True}},
     ValueError, "threshold.value must lie in"),
    ({"threshold": {"value": 0.5, "target_far": 0.01, "n_distractors": 0, "calibrated": True}},
     ValueError, "n_distractors >= 1"),
    ({"threshold": {"value": 0.5, "target_far": None, "n_distractors": 3, "calibrated": True}},
     ValueError, "needs its target_far"),
    ({"threshold": {"value": 0.5, "target_far": 0.01, "n_distractors": 3, "calibrated": 1}},
     TypeError, "calibrated must be a bool"),
    ({"threshold": {"value": 0.5, "n_distractors": 3, "calibrated": False}},
     ValueError, r"threshold lacks keys \['target_far'\]"),
])
def test_field_validation(overrides, error, match):
    with pytest.raises(error, match=match):
        Manifest.from_dict(fields(**overrides))


def test_uncalibrated_threshold_and_empty_metrics_are_allowed():
    m = Manifest.from_dict(fields(metrics={}, threshold={"value": 0.6, "target_far": None,
                                                         "n_distractors": 0, "calibrated": False}))
    assert not m.threshold.calibrated and m.metrics == {}


def test_unknown_variant_lookup_names_the_variants():
    with pytest.raises(KeyError, match=r"no model variant 'fp16'; it has \['fp32', 'int8'\]"):
        Manifest.from_dict(fields()).model("fp16")


# -- TensorRT engine variants (``<precision>-trt`` -> ``models/<variant>.plan``) -----------------

def test_engine_variants_live_in_plan_files_and_say_their_format():
    from muselens.runtime.bundle.manifest import engine_variant, is_engine_variant

    assert engine_variant("fp16") == "fp16-trt" and is_engine_variant("fp16-trt")
    assert not is_engine_variant("fp16") and not is_engine_variant("-trt")
    assert model_file("fp16-trt") == "models/fp16-trt.plan" and model_file("int8") == "models/int8.onnx"
    engine = {"file": "models/fp16-trt.plan", "sha256": "5" * 64, "bytes": 7, "precision": "fp16"}
    m = Manifest.from_dict(fields(models={**fields()["models"], "fp16-trt": engine},
                                  metrics={"fp32": {"mp_at_1": 0.9, "map": 0.75},
                                           "fp16-trt": {"mp_at_1": 0.9, "map": 0.74, "min_cosine_to_fp32": 0.9995}}))
    assert Manifest.from_json(m.to_json()) == m
    assert m.model("fp16-trt").format == "tensorrt" and m.model("fp32").format == "onnx"
    assert m.format_version == 1


def test_engine_variant_must_name_its_plan_file():
    onnx_named = {"file": "models/fp16-trt.onnx", "sha256": "5" * 64, "bytes": 7, "precision": "fp16"}
    with pytest.raises(ValueError, match=r"models.fp16-trt.file must be 'models/fp16-trt.plan'"):
        Manifest.from_dict(fields(models={**fields()["models"], "fp16-trt": onnx_named}))
    plan_named = {"file": "models/fp16.plan", "sha256": "5" * 64, "bytes": 7, "precision": "fp16"}
    with pytest.raises(ValueError, match=r"models.fp16.file must be 'models/fp16.onnx'"):
        Manifest.from_dict(fields(models={**fields()["models"], "fp16": plan_named}))
    with pytest.raises(ValueError, match="no known format"):
        ModelEntry("models/x.bin", "5" * 64, 7, "fp16").format


def test_a_manifest_without_engines_is_byte_identical_to_before():
    """Bundles written before engines existed: same keys, same checksum, still version 1."""
    content = fields()
    m = Manifest.from_json(with_checksum(content))
    assert json.loads(m.to_json()) == json.loads(with_checksum(content))


def test_an_engine_variant_is_written_verified_and_loaded_like_any_model(tmp_path):
    from muselens.runtime.bundle import BundleError, load_bundle, write_bundle

    from .conftest import bundle_kwargs
    from .helpers import flip_byte

    kwargs = bundle_kwargs(tmp_path, model_files={"fp32": b"onnx-fp32", "fp16-trt": b"serialised-engine"},
                           precisions={"fp32": "fp32", "fp16-trt": "fp16"})
    root = write_bundle(tmp_path / "bundle", **kwargs)
    assert sorted(p.name for p in (root / "models").iterdir()) == ["fp16-trt.plan", "fp32.onnx"]
    bundle = load_bundle(root)
    assert bundle.model_path("fp16-trt") == root / "models" / "fp16-trt.plan"
    assert bundle.manifest.model("fp16-trt").precision == "fp16"
    flip_byte(root / "models" / "fp16-trt.plan")
    with pytest.raises(BundleError, match="fp16-trt.plan: sha256 mismatch"):
        load_bundle(root)


# -- how the threshold was set (format_version 2) and older manifests (version 1) --------------------

SOURCES = [{"source": "distractors", "count": 30, "threshold": 0.41},
           {"source": "impostor-views", "count": 12, "threshold": 0.55},
           {"source": "generated-non-artwork", "count": 48, "threshold": 0.38}]
CALIBRATED = {"value": 0.55, "target_far": 0.01, "n_distractors": 30, "calibrated": True,
              "method": THRESHOLD_METHOD, "sources": SOURCES}


def test_the_threshold_records_its_sources():
    m = Manifest.from_dict(fields(format_version=FORMAT_VERSION, threshold=CALIBRATED))
    assert m.to_dict()["threshold"] == CALIBRATED and Manifest.from_json(m.to_json()) == m
    assert [(s.source, s.count) for s in m.threshold.sources] == [("distractors", 30), ("impostor-views", 12),
                                                                  ("generated-non-artwork", 48)]
    assert m.threshold.describe() == ("0.5500 at FAR 0.01, the highest of: distractors 0.4100 (n=30), "
                                      "impostor-views 0.5500 (n=12), generated-non-artwork 0.3800 (n=48)")
    without = {**CALIBRATED, "n_distractors": 0, "sources": SOURCES[1:]}  # a museum without distractors
    assert Manifest.from_dict(fields(format_version=2, threshold=without)).threshold.calibrated


def test_a_capped_impostor_source_round_trips_with_its_rule():
    capped = {"source": "impostor-views", "count": 12, "threshold": 0.55,
              "rule": "equal-error-with-genuine-views", "at_target_far": 0.71}
    threshold = {**CALIBRATED, "sources": [SOURCES[0], capped, SOURCES[2]]}
    m = Manifest.from_dict(fields(format_version=FORMAT_VERSION, threshold=threshold))
    assert m.to_dict()["threshold"] == threshold and Manifest.from_json(m.to_json()) == m
    assert m.threshold.sources[1].rule == "equal-error-with-genuine-views"
    assert "at the target 0.7100" in m.threshold.describe()
    assert m.threshold.sources[0].rule == "target-far"  # a record without the keys: at the target (older bundles)


def test_version_1_manifests_load_unchanged_also_uncalibrated():
    """What older muselens wrote: four threshold keys, possibly -1.0 uncalibrated; same bytes back."""
    for threshold in (fields()["threshold"],
                      {"value": -1.0, "target_far": None, "n_distractors": 0, "calibrated": False}):
        content = fields(format_version=1, threshold=threshold)
        m = Manifest.from_json(with_checksum(content))
        assert m.format_version == 1 and m.threshold.sources == () and m.threshold.method is None
        assert json.loads(m.to_json()) == json.loads(with_checksum(content))
    assert Threshold(-1.0, None, 0, False).describe() == "-1.0000 (uncalibrated)"
    assert Threshold(0.5, 0.01, 30, True).describe() == "0.5000 at FAR 0.01 on 30 distractors"
    with pytest.raises(ValueError, match="threshold sources need format_version 2"):
        Manifest.from_dict(fields(format_version=1, threshold=CALIBRATED))


@pytest.mark.parametrize(("changes", "error", "match"), [
    ({"value": 0.5}, ValueError, r"threshold.value 0.5 must be the highest of its sources' thresholds \(0.55\)"),
    ({"n_distractors": 3}, ValueError, "n_distractors 3 must be the count of its 'distractors' source, 30"),
    ({"sources": SOURCES[1:]}, ValueError, "n_distractors 30 must be the count of its 'distractors' source, 0"),
    ({"sources": []}, ValueError, "threshold.method and threshold.sources come together"),
    ({"method": None}, ValueError, "threshold.method and threshold.sources come together"),
    ({"calibrated": False, "target_far": None}, ValueError, "a threshold with sources is calibrated"),
    ({"sources": [SOURCES[0], SOURCES[1], SOURCES[1]]}, ValueError, "threshold source 'impostor-views' repeats"),
    ({"sources": [{**SOURCES[0], "count": 0}, *SOURCES[1:]]}, ValueError, "count must be >= 1"),
    ({"sources": [{**SOURCES[0], "threshold": 1.5}, *SOURCES[1:]]}, ValueError, "threshold must lie in"),
    ({"sources": [{**SOURCES[0], "n": 1}, *SOURCES[1:]]}, ValueError, r"unknown keys \['n'\]"),
    ({"sources": "distractors"}, TypeError, "threshold.sources must be a list"),
    ({"method": 7}, TypeError, "threshold.method must be a string"),
    ({"extra": 1}, ValueError, r"threshold has unknown keys \['extra'\]"),
    ({"sources": [{**SOURCES[0], "rule": "median", "at_target_far": 0.5}, *SOURCES[1:]]}, ValueError,
     "unknown threshold rule 'median'"),
    ({"sources": [{**SOURCES[0], "rule": "equal-error-with-genuine-views"}, *SOURCES[1:]]}, ValueError,
     r"lacks keys \['at_target_far'\]"),
    ({"sources": [{**SOURCES[0], "rule": "target-far", "at_target_far": 0.5}, *SOURCES[1:]]}, ValueError,
     "at_target_far is recorded exactly when"),
])
def test_threshold_sources_are_checked(changes, error, match):
    with pytest.raises(error, match=match):
        Manifest.from_dict(fields(format_version=2, threshold={**CALIBRATED, **changes}))
