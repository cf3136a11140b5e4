"""Serving the fastest variant that is as accurate as fp32 on the museum's queries."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from muselens.runtime.recognition.served_model import ServedModel, ServingConfig
from muselens.runtime.recognition.variant_choice import (MAX_DRIFT_POINTS, choose_variant_by_speed,
                                                         eligible_variants)


def _bundle(metrics: dict, formats: dict | None = None, default: str = "fp32"):
    formats = formats or {v: "onnx" for v in metrics}
    models = {v: SimpleNamespace(format=f) for v, f in formats.items()}
    return SimpleNamespace(name="b", manifest=SimpleNamespace(models=models, metrics=metrics, default_variant=default))


def _m(mp: float, n: int = 128) -> dict:
    return {"mp_at_1": mp, "n_queries": n}


def test_only_variants_within_the_drift_bound_are_eligible():
    bundle = _bundle({"fp32": _m(0.900), "fp16": _m(0.899), "int8": _m(0.890)})
    reference, eligible, drops, excluded = eligible_variants(bundle)
    assert reference == "fp32" and eligible == ["fp32", "fp16"]
    assert drops == {"fp16": pytest.approx(0.1), "int8": pytest.approx(1.0)}
    assert "int8" in excluded and "1.00 points below fp32" in excluded["int8"]


def test_a_variant_better_than_fp32_is_eligible_and_an_unmeasured_one_is_not():
    bundle = _bundle({"fp32": _m(0.5), "int8": _m(0.6)}, formats={"fp32": "onnx", "int8": "onnx", "fp16": "onnx"})
    _, eligible, _, excluded = eligible_variants(bundle)
    assert eligible == ["fp32", "int8"] and "not measured" in excluded["fp16"]


def test_engines_are_judged_against_fp32_onnx():
    bundle = _bundle({"fp32": _m(0.9), "fp16-trt": _m(0.9), "int8-trt": _m(0.8)},
                     formats={"fp32": "onnx", "fp16-trt": "tensorrt", "int8-trt": "tensorrt"})
    reference, eligible, _, excluded = eligible_variants(bundle, "tensorrt")
    assert reference == "fp32" and eligible == ["fp16-trt"] and set(excluded) == {"fp32", "int8-trt"}


class _Timed:
    """A describer whose runs take ``ms``."""

    def __init__(self, ms: float):
        self.ms, self.short_side = ms, 32

    def run(self, frame, outputs):
        import time
        time.sleep(self.ms / 1e3)


def test_the_fastest_eligible_variant_is_chosen_and_the_summary_says_why():
    bundle = _bundle({"fp32": _m(0.90), "fp16": _m(0.90), "int8": _m(0.89)})
    speeds = {"fp32": 12.0, "fp16": 4.0, "int8": 1.0}
    opened = []

    def open_describer(variant):
        opened.append(variant)
        return _Timed(speeds[variant])

    choice = choose_variant_by_speed(bundle, open_describer, runs=3)
    assert choice.variant == "fp16"  # int8 is faster but 1 point less accurate
    assert opened == ["fp32", "fp16"]  # the ineligible one is never even opened
    assert choice.latency_ms["fp16"] < choice.latency_ms["fp32"]
    line = choice.summary()
    assert line.startswith("variant fp16") and f"within {MAX_DRIFT_POINTS:g} mP@1 points of fp32" in line
    assert "128 queries" in line and "int8 (mP@1 1.00 points below fp32)" in line


def test_one_eligible_variant_is_served_without_timing():
    choice = choose_variant_by_speed(_bundle({"fp32": _m(0.9)}), lambda v: pytest.fail("timed"))
    assert choice.variant == "fp32" and choice.latency_ms == {}
    assert choice.summary() == "variant fp32: the only one the bundle offers within 0.5 mP@1 points"


def test_no_eligible_variant_is_an_error():
    with pytest.raises(ValueError, match="no tensorrt variant"):
        choose_variant_by_speed(_bundle({"fp32": _m(0.9)}), lambda v: None, model_format="tensorrt")


def test_auto_on_a_real_bundle(tiny_bundle):
    model = ServedModel.load(tiny_bundle, ServingConfig(threads=1, variant="auto"))
    try:
        assert model.variant == "fp32" and model.variant_choice is not None
        assert model.info()["variant_choice"].startswith("variant fp32")
    finally:
        model.close()
    named = ServedModel.load(tiny_bundle, ServingConfig(threads=1, variant="fp32"))
    assert named.variant_choice is None and named.info()["variant_choice"] == ""
    named.close()
