"""TensorRT export: profile, calibration, argument and parity logic without TensorRT, the
``--tensorrt`` wiring with the engine faked by ONNX Runtime, and the real build on a GPU."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

from muselens.export import tensorrt_build as trt_export
from muselens.export.onnx_export import ParityError
from muselens.export.tensorrt_build import (CalibrationCache, CalibrationFeed, Profile, calibration_batches,
                                      calibration_key, check_build_args, descriptor_cosines, tensorrt_ready_model,
                                      onnx_contract, profile_from_contract, sizes_in_profile, verify_engine)
from muselens.runtime.engine import BackendUnavailable, OrtBackend

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
NO_TENSORRT = ("TensorRT's builder is not installable on this machine: the tensorrt wheel downloads its "
               "libraries from pypi.nvidia.com at install time, and there is no GPU here")


def _contract(**changes):
    from muselens.core.descriptor_contract import DescriptorContract
    from muselens.core.preprocess import PreprocessContract

    pre = PreprocessContract(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), stride=32)
    return DescriptorContract(**{"short_side": 448, "max_aspect": 2.0, "k": 4, "dim": 8, "preprocess": pre, **changes})


def test_profile_validation_and_shapes():
    p = Profile((64, 64), (64, 85), (128, 128))
    assert p.shapes() == ((1, 64, 64, 3), (1, 64, 85, 3), (1, 128, 128, 3))
    assert p.contains((64, 128)) and not p.contains((63, 100)) and p.to_dict()["opt"] == [64, 85]
    assert Profile.of(((64, 64), (64, 85), (128, 128))) == p
    with pytest.raises(ValueError, match="min <= opt <= max"):
        Profile((64, 64), (200, 85), (128, 128))
    with pytest.raises(ValueError, match="profile max must be"):
        Profile((64, 64), (64, 85), (128, 0))
    with pytest.raises(ValueError, match="Profile or"):
        Profile.of(((64, 64), (128, 128)))


def test_profile_from_contract_covers_every_served_size():
    from muselens.core.preprocess import short_side_size

    p = profile_from_contract(_contract())
    assert p == Profile((448, 448), (448, 597), (896, 896))
    for h, w in ((480, 640), (1000, 200), (333, 4000), (640, 480), (448, 448)):  # any photo, resized as served
        assert p.contains(short_side_size(h, w, 448, 2.0))
    assert profile_from_contract(_contract(), short_sides=[320, 448, 512]) == \
        Profile((320, 320), (448, 597), (1024, 1024))
    with pytest.raises(ValueError, match="fewer than k=4"):
        profile_from_contract(_contract(), short_sides=[32])
    with pytest.raises(ValueError, match="short_sides"):
        profile_from_contract(_contract(), short_sides=[])
    with pytest.raises(TypeError, match="contract must be a DescriptorContract"):
        profile_from_contract(_contract().to_dict())


def test_the_tiny_model_profile_and_its_parity_sizes(fp32_model):
    from tests.tiny_model import TINY_SIZES

    p = profile_from_contract(onnx_contract(fp32_model))
    assert p.min == (64, 64) and p.max[0] == p.max[1] >= 128
    assert sizes_in_profile(TINY_SIZES, p) == ((64, 64), (65, 97), (64, 128), (128, 64))  # 33x161 is off-contract
    assert sizes_in_profile([(10, 10)], p) == (p.opt,)


def test_calibration_batches_have_the_opt_shape_and_the_feed_ends():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((50, 70), (64, 64), (90, 40))]
    batches = calibration_batches(images, (64, 85), _contract())
    assert [b.shape for b in batches] == [(1, 64, 85, 3)] * 3 and all(b.dtype == np.uint8 for b in batches)
    floats = calibration_batches(images[:1], (64, 85), _contract(), np.float32)
    assert floats[0].dtype == np.float32 and np.array_equal(floats[0], batches[0].astype(np.float32))
    feed = CalibrationFeed(batches)
    assert len(feed) == 3 and feed.nbytes == 64 * 85 * 3
    assert [feed.next_batch() is b for b in batches] == [True] * 3 and feed.next_batch() is None
    with pytest.raises(ValueError, match="at least one image"):
        calibration_batches([], (64, 85), _contract())
    with pytest.raises(ValueError, match="calibration image 0 must be"):
        calibration_batches([np.zeros((5, 5), np.uint8)], (64, 85), _contract())
    with pytest.raises(ValueError, match="share one shape"):
        CalibrationFeed([np.zeros((1, 2, 2, 3)), np.zeros((1, 3, 2, 3))])


def test_calibration_cache_is_keyed_to_its_model_and_shape(tmp_path, fp32_model, fp16_model):
    cache = CalibrationCache(tmp_path / "int8.cache")
    key = calibration_key(fp32_model, (64, 85))
    assert key["shape"] == [1, 64, 85, 3] and cache.read(key) is None
    cache.write(b"TRT-calibration-table", key)
    assert cache.read(key) == b"TRT-calibration-table"
    with pytest.raises(ValueError, match="was made for"):
        cache.read(calibration_key(fp16_model, (64, 85)))
    with pytest.raises(ValueError, match="was made for"):
        cache.read(calibration_key(fp32_model, (64, 64)))
    cache.key_path.unlink()
    with pytest.raises(ValueError, match="cannot tell which model"):
        cache.read(key)
    with pytest.raises(ValueError, match="empty calibration cache"):
        cache.write(b"", key)


def test_build_arguments_are_checked_before_tensorrt(tmp_path, fp32_model):
    profile = ((64, 64), (64, 85), (128, 128))
    assert check_build_args(fp32_model, "fp16", profile, 2, None, None) == Profile(*profile)
    image = [np.zeros((64, 64, 3), np.uint8)]
    cases = [
        ((tmp_path / "no.onnx", "fp16", profile, 2, None, None), "ONNX model not found"),
        ((fp32_model, "fp32", profile, 2, None, None), "precision must be one of"),
        ((fp32_model, "fp16", profile, 0, None, None), "workspace_gb"),
        ((fp32_model, "fp16", profile, float("nan"), None, None), "workspace_gb"),
        ((fp32_model, "int8", profile, 2, None, None), "needs calibration_images"),
        ((fp32_model, "fp16", profile, 2, image, None), "int8 engines only"),
        ((fp32_model, "fp16", ((64, 64),), 2, None, None), "Profile or"),
    ]
    for args, match in cases:
        with pytest.raises(ValueError, match=match):
            check_build_args(*args)
    (tmp_path / "c.cache").write_bytes(b"x")
    check_build_args(fp32_model, "int8", profile, 2, None, tmp_path / "c.cache")  # a cache alone will do


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed: the refusal cannot be observed")
def test_build_engine_without_tensorrt_names_the_reason(tmp_path, fp32_model):
    with pytest.raises(BackendUnavailable, match=r"TensorRT Python package.*pypi\.nvidia\.com"):
        trt_export.build_engine(fp32_model, tmp_path / "e.plan", precision="fp16",
                                profile=((64, 64), (64, 85), (128, 128)))
    assert not (tmp_path / "e.plan").exists()


@pytest.mark.parametrize("input_dtype, feed", [("uint8", np.uint8), ("float32", np.float32)])
def test_tensorrt_ready_model_casts_first_and_computes_the_same(tmp_path, fp32_model, input_dtype, feed):
    """TensorRT takes uint8 only straight into a Cast; the rewritten graph must not change a value."""
    import onnx
    import onnxruntime as ort

    dst = tensorrt_ready_model(fp32_model, tmp_path / "ready.onnx", input_dtype=input_dtype)
    consumers = [n for n in onnx.load(str(dst)).graph.node if "image" in n.input]
    assert [(n.op_type, n.attribute[0].i) for n in consumers] == [("Cast", onnx.TensorProto.FLOAT)]
    session = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == f"tensor({'uint8' if feed is np.uint8 else 'float'})"
    names = [o.name for o in session.get_outputs()]
    for size in ((64, 96), (128, 64)):
        image = np.random.default_rng(3).integers(0, 256, (1, *size, 3), dtype=np.uint8)
        ours = session.run(names, {"image": image.astype(feed)})
        theirs = OrtBackend(fp32_model).run(image, names)
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="input_dtype"):
        tensorrt_ready_model(fp32_model, tmp_path / "x.onnx", input_dtype="int8")
    if input_dtype == "float32":
        with pytest.raises(ValueError, match="expected a uint8 input"):
            tensorrt_ready_model(dst, tmp_path / "again.onnx")


def test_descriptor_cosines():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(descriptor_cosines(a, np.array([[1.0, 1.0], [0.0, 1.0]])), [2 ** -0.5, 1.0])
    with pytest.raises(ValueError, match="one shape"):
        descriptor_cosines(a, a[:1])
    with pytest.raises(ValueError, match="all zeros"):
        descriptor_cosines(a, np.zeros_like(a))


def test_verify_engine_accepts_a_close_engine_and_refuses_a_drifting_one(tmp_path, fp32_model, fp16_model,
                                                                         int8_model):
    """The parity logic, with ONNX Runtime standing in for the engine (same backend protocol)."""
    sizes = [(64, 64), (64, 128)]
    report = verify_engine(fp16_model, fp32_model, sizes, precision="fp16", engine=OrtBackend(fp16_model))
    assert report["passed"] and report["min_cosine"] >= 0.999 and [r["size"] for r in report["sizes"]] == \
        [[64, 64], [64, 128]]
    path = trt_export.write_report(report, tmp_path / "r.json")
    assert json.loads(path.read_text())["min_cosine_bound"] == 0.999
    same = verify_engine(fp32_model, fp32_model, sizes, precision="int8", engine=OrtBackend(fp32_model))
    assert same["min_cosine"] > 1 - 1e-9
    with pytest.raises(ParityError, match=r"int8 engine .* disagrees with fp32 ONNX Runtime") as caught:
        verify_engine(int8_model, fp32_model, sizes, precision="int8", engine=OrtBackend(int8_model),
                      min_cosine=1.0)
    assert caught.value.report["passed"] is False and len(caught.value.report["sizes"]) == 2
    with pytest.raises(ValueError, match="at least one size"):
        verify_engine(fp16_model, fp32_model, [], precision="fp16", engine=OrtBackend(fp16_model))
    with pytest.raises(ValueError, match="precision must be"):
        verify_engine(fp16_model, fp32_model, sizes, precision="fp32")


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed: the refusal cannot be observed")
def test_export_with_tensorrt_refuses_up_front_when_it_is_missing(run_dir, tmp_path, capsys):
    import argparse

    from muselens.export import export_command as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = tmp_path / "bundle"
    args = parser.parse_args([str(run_dir), "--out", str(out), "--precision", "fp32,fp16", "--tensorrt"])
    assert command.main(args) == 2
    err = capsys.readouterr().err
    assert "TensorRT Python package" in err and "pypi.nvidia.com" in err
    assert "exporting" not in err and list(tmp_path.iterdir()) == []  # nothing started, nothing written


def test_tensorrt_options_are_checked():
    from muselens.export.bundle import ExportOptions

    assert ExportOptions(precisions=("fp32", "fp16", "int8"), tensorrt=True).engine_precisions == ("fp16", "int8")
    assert ExportOptions(precisions=("fp32", "fp16")).engine_precisions == ()
    with pytest.raises(ValueError, match="tensorrt engines are built for"):
        ExportOptions(precisions=("fp32",), tensorrt=True)


def test_export_stores_engines_as_plan_variants(run_dir, tmp_path, monkeypatch):
    """The --tensorrt wiring end to end, TensorRT faked by ONNX Runtime on the fp32 graph
    (build = copy, backend = ORT): variants, metrics, parity record and the bundle layout."""
    from muselens.export.bundle import ExportOptions, export_bundle
    from muselens.runtime.bundle import load_bundle
    from muselens.runtime.engine import Describer
    from tests.tiny_model import TINY_SIZES

    built = []

    def fake_build(onnx_path, engine_path, *, precision, profile, calibration_images, workspace_gb, contract,
                   progress):
        check_build_args(onnx_path, precision, profile, workspace_gb, calibration_images, None)
        shutil.copyfile(onnx_path, engine_path)
        built.append((precision, Profile.of(profile), None if calibration_images is None else len(calibration_images)))
        return {"engine": str(engine_path), "build": {"tensorrt_version": "fake", "precision": precision,
                                                      "profile": Profile.of(profile).to_dict()}}

    monkeypatch.setattr(trt_export, "require_tensorrt", lambda: (None, None))
    monkeypatch.setattr(trt_export, "build_engine", fake_build)
    real_verify = trt_export.verify_engine
    monkeypatch.setattr(trt_export, "verify_engine", lambda engine, onnx, sizes, **kw: real_verify(
        engine, onnx, sizes, engine=OrtBackend(engine), **kw))
    monkeypatch.setattr(trt_export, "engine_describer",
                        lambda engine, contract: Describer(OrtBackend(engine), contract=contract))
    options = ExportOptions(precisions=("fp32", "fp16"), tensorrt=True, parity_sizes=TINY_SIZES,
                            latency_runs=0, name="tiny", bundle_version="1")
    result = export_bundle(run_dir, tmp_path / "b", options=options, progress=lambda m: None)
    assert [b[0] for b in built] == ["fp16"] and built[0][1].min == (64, 64)
    with load_bundle(result.bundle) as bundle:
        m = bundle.manifest
        assert sorted(m.models) == ["fp16", "fp16-trt", "fp32"]
        assert m.model("fp16-trt").file == "models/fp16-trt.plan" and m.model("fp16-trt").precision == "fp16"
        assert m.metrics["fp16-trt"]["mp_at_1"] == m.metrics["fp32"]["mp_at_1"]  # fp32 graph, same numbers
        assert m.metrics["fp16-trt"]["min_cosine_to_fp32"] > 0.99999
        record = m.training["tensorrt"]["fp16-trt"]
        assert record["tensorrt_version"] == "fake" and record["parity"]["min_cosine"] > 0.99999
        assert [list(s["size"]) for s in record["parity"]["sizes"]] == [[64, 64], [65, 97], [64, 128], [128, 64]]
        assert not (bundle.root / "models" / "fp16-trt.plan.json").exists()


@pytest.mark.gpu
def test_engine_on_the_gpu(tmp_path, fp32_model, export_museum):
    """Build fp16 and int8 engines from the tiny model, check them and run them through the backend."""
    pytest.importorskip("tensorrt", reason=NO_TENSORRT)
    pytest.importorskip("cuda", reason="cuda-python is not installed")
    from muselens.export.precision import calibration_images
    from muselens.core.data.museum_dataset import MuseumDataset
    from muselens.runtime.engine import OrtDescriber
    from muselens.runtime.engine.tensorrt_backend import TensorRTBackend

    profile = trt_export.profile_from_onnx(fp32_model)
    fp16 = trt_export.build_engine(fp32_model, tmp_path / "fp16.plan", precision="fp16", profile=profile,
                                   workspace_gb=1)
    assert fp16["build"]["input_dtype"] == "uint8"
    verify_engine(tmp_path / "fp16.plan", fp32_model, [(64, 64), (64, 128), (128, 64)], precision="fp16")
    images = calibration_images(MuseumDataset.load(export_museum), OrtDescriber(fp32_model))
    trt_export.build_engine(fp32_model, tmp_path / "int8.plan", precision="int8", profile=profile,
                            calibration_images=images, cache=tmp_path / "int8.cache", workspace_gb=1)
    assert (tmp_path / "int8.cache").exists()
    verify_engine(tmp_path / "int8.plan", fp32_model, [(64, 64), (64, 96)], precision="int8")
    with TensorRTBackend(tmp_path / "fp16.plan") as backend:
        out = backend.run(np.zeros((1, 64, 96, 3), np.uint8), ["descriptor", "locations"])
        assert out[0].shape == (1, 8) and "tensorrt" in backend.describe()
        with pytest.raises(ValueError, match="outside the engine's optimisation profile"):
            backend.run(np.zeros((1, 32, 32, 3), np.uint8), ["descriptor"])
