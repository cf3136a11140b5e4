"""labels.json: round trip, strictness and coverage of the gallery."""

from __future__ import annotations

import json

import pytest

from muselens.runtime.bundle.labels import (
    LabelInfo,
    check_coverage,
    index_labels,
    labels_from_json,
    labels_to_json,
)


def test_round_trip_sorted_by_id():
    labels = [LabelInfo("b", "Second", {"room": "3"}), LabelInfo("a", "First")]
    data = labels_to_json(labels)
    assert [item["id"] for item in json.loads(data)] == ["a", "b"]
    back = labels_from_json(data)
    assert list(back) == ["a", "b"]
    assert back["b"] == labels[0] and back["a"].metadata == {}


def test_label_is_immutable_and_hashable():
    label = LabelInfo("a", "A", {"k": "v"})
    with pytest.raises(TypeError):
        label.metadata["k"] = "w"  # type: ignore[index]
    assert hash(label) == hash(LabelInfo("a", "A", {"k": "other"}))


@pytest.mark.parametrize("args, error, match", [
    (("", "t"), ValueError, "id must be non-empty"),
    ((3, "t"), TypeError, "id must be a string"),
    (("a", "t", {"year": 1937}), TypeError, "strings to strings"),
    (("a", "t", {"year": None}), TypeError, "strings to strings"),
])
def test_label_validation(args, error, match):
    with pytest.raises(error, match=match):
        LabelInfo(*args)


def test_json_strictness():
    with pytest.raises(ValueError, match="appears twice"):
        labels_from_json(b'[{"id":"a","title":"x","metadata":{}},{"id":"a","title":"y","metadata":{}}]')
    with pytest.raises(ValueError, match="exactly the keys"):
        labels_from_json(b'[{"id":"a","title":"x","metadata":{},"extra":1}]')
    with pytest.raises(ValueError, match="JSON list"):
        labels_from_json(b'{"a": 1}')
    with pytest.raises(ValueError, match="not valid JSON"):
        labels_from_json(b'[{"id":')
    with pytest.raises(ValueError, match="at least one"):
        labels_from_json(b"[]")
    with pytest.raises(TypeError, match="LabelInfo"):
        index_labels([{"id": "a"}])  # type: ignore[list-item]


def test_coverage_names_missing_ids():
    labels = index_labels([LabelInfo("a", "A"), LabelInfo("extra", "No photos yet")])
    check_coverage(labels, ["a"])  # extra labels are allowed
    with pytest.raises(ValueError, match=r"do not cover 2 gallery instance\(s\): 'b', 'c'"):
        check_coverage(labels, ["a", "c", "b"])
