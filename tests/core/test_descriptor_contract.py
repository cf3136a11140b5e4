"""The descriptor contract: one typed record, its JSON (manifest and ONNX metadata), read and checked once."""

from __future__ import annotations

import dataclasses
import json

import pytest

from muselens.core.descriptor_contract import (METADATA_KEY, OUTPUT_NAMES, DescriptorContract, feature_cells,
                                               feature_shape)
from muselens.core.preprocess import PreprocessContract

PREPROCESS = PreprocessContract(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), interpolation="bicubic",
                                antialias=False, stride=16)


def contract(**changes) -> DescriptorContract:
    return DescriptorContract(**{"dim": 8, "k": 4, "short_side": 64, "max_aspect": 2.0, "preprocess": PREPROCESS,
                                 **changes})


def test_its_json_is_what_every_export_wrote():
    d = contract().to_dict()
    assert d == {"dim": 8, "k": 4, "input": "NHWC uint8 RGB", "input_name": "image", "outputs": list(OUTPUT_NAMES),
                 "short_side": 64, "max_aspect": 2.0, "interpolation": "bicubic", "antialias": False, "stride": 16,
                 "normalisation": "l2", "similarity": "dot", "preprocess": PREPROCESS.to_dict()}
    assert DescriptorContract.from_dict(d) == contract()
    assert json.loads(contract().to_json()) == d


def test_extra_keys_are_kept_read_only_and_written_back():
    d = {**contract().to_dict(), "note": {"by": ["exporter"]}}
    c = DescriptorContract.from_dict(d)
    assert c.extra["note"]["by"] == ("exporter",) and c.to_dict() == d
    with pytest.raises(TypeError):
        c.extra["note"] = 1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.dim = 3  # type: ignore[misc]


def test_metadata_round_trip():
    assert DescriptorContract.from_metadata({METADATA_KEY: contract().to_json()}) == contract()


@pytest.mark.parametrize("metadata, match", [
    ({}, "carries no muselens descriptor contract"),
    ({METADATA_KEY: "{not json"}, "not valid JSON"),
    ({METADATA_KEY: "[1, 2]"}, "JSON object"),
    ({METADATA_KEY: json.dumps({"dim": 8})}, r"lacks required keys \['k', 'short_side'"),
])
def test_bad_metadata_is_refused(metadata, match):
    with pytest.raises(ValueError, match=match):
        DescriptorContract.from_metadata(metadata, "m.onnx")


@pytest.mark.parametrize("changes, error, match", [
    ({"stride": 32}, ValueError, r"descriptor.stride is 32 but descriptor.preprocess.stride is 16"),
    ({"antialias": 0}, ValueError, "descriptor.antialias is 0 but"),
    ({"preprocess": [1]}, TypeError, "descriptor.preprocess must be a dict"),
    ({"preprocess": {"mean": [0, 0, 0]}}, ValueError, "descriptor.preprocess: preprocessing contract lacks"),
    ({"input": "NCHW float32"}, ValueError, "descriptor.input must be 'NHWC uint8 RGB'"),
    ({"k": True}, TypeError, "descriptor.k must be an int >= 1"),
    ({"dim": 0}, ValueError, "descriptor.dim must be >= 1"),
    ({"input_name": ""}, ValueError, "descriptor.input_name must not be empty"),
])
def test_a_bad_contract_is_refused_naming_the_key(changes, error, match):
    with pytest.raises(error, match=match):
        DescriptorContract.from_dict({**contract().to_dict(), **changes})


def test_feature_cells_follow_the_stride():
    assert contract().feature_shape(64, 97) == feature_shape(64, 97, 16) == (4, 7)
    assert contract().feature_cells(64, 97) == feature_cells(64, 97, 16) == 28
