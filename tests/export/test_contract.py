"""The descriptor contract: what the manifest requires, and reading it back from metadata."""

from __future__ import annotations

import json

import pytest

from muselens.export.contract import METADATA_KEY, OUTPUT_NAMES, contract_from_metadata, descriptor_contract
from muselens.runtime.bundle.manifest import check_descriptor


def test_the_contract_passes_the_manifest_checks(trained):
    contract = descriptor_contract(trained)
    check_descriptor(contract)
    assert contract["input"] == "NHWC uint8 RGB"
    assert contract["outputs"] == list(OUTPUT_NAMES)
    assert (contract["dim"], contract["k"], contract["short_side"]) == (8, 4, 64)
    assert contract["max_aspect"] == trained.max_aspect
    assert contract["interpolation"] == trained.contract.interpolation
    assert contract["preprocess"] == trained.contract.to_dict()


def test_metadata_round_trip(trained):
    contract = descriptor_contract(trained)
    assert contract_from_metadata({METADATA_KEY: json.dumps(contract)}) == contract


@pytest.mark.parametrize("metadata, match", [
    ({}, "carries no muselens descriptor contract"),
    ({METADATA_KEY: "{not json"}, "not valid JSON"),
    ({METADATA_KEY: "[1, 2]"}, "JSON object"),
    ({METADATA_KEY: json.dumps({"dim": 8})}, "lacks 'short_side'"),
])
def test_bad_metadata_is_refused(metadata, match):
    with pytest.raises(ValueError, match=match):
        contract_from_metadata(metadata, "m.onnx")
