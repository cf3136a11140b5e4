"""A bundle's local features: written with their config, verified, loaded, refused when they disagree."""

from __future__ import annotations

import json

import numpy as np
import pytest

from muselens.runtime.bundle import BundleError, Manifest, load_bundle, write_bundle
from muselens.runtime.bundle.manifest import LOCAL_FEATURES_FILE
from muselens.runtime.verification import FeatureConfig, LocalFeatures, LocalFeatureStore

from .conftest import bundle_kwargs
from .helpers import flip_byte, rewrite_consistently


def features(n: int, seed: int, width: int = 32) -> LocalFeatures:
    rng = np.random.default_rng(seed)
    return LocalFeatures(rng.uniform(0, 60, (n, 2)).astype(np.float32),
                         rng.integers(0, 256, (n, width), dtype=np.uint8), (64, 48))


def store(rows: int = 6, width: int = 32) -> LocalFeatureStore:
    return LocalFeatureStore.from_features([features(5 + r, r, width) for r in range(rows)], width)


def test_local_features_round_trip_with_their_config(tmp_path):
    config = FeatureConfig(kind="orb", max_side=512, count=300)
    out = write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path, local_features=(config, store())))
    bundle = load_bundle(out)
    assert bundle.manifest.local_features == config and bundle.manifest.format_version == 4
    loaded = bundle.local_features
    assert len(loaded) == 6 and np.array_equal(loaded.descriptors, store().descriptors)
    assert np.array_equal(loaded.features(3).points, store().features(3).points)
    raw = json.loads((out / "manifest.json").read_bytes())
    assert raw["local_features"] == {"kind": "orb", "max_side": 512, "count": 300, "fast_threshold": 10,
                                     "frame_max_side": 960}
    assert LOCAL_FEATURES_FILE in raw["files"]


def test_a_bundle_without_local_features_has_neither_the_key_nor_the_file(tmp_path):
    out = write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path))
    assert "local_features" not in json.loads((out / "manifest.json").read_bytes())
    assert not (out / LOCAL_FEATURES_FILE).exists() and load_bundle(out).local_features is None


@pytest.mark.parametrize("bad, message", [
    ((FeatureConfig(), store(rows=5)), "local features hold 5 references but the gallery has 6"),
    ((FeatureConfig(kind="rootsift"), store()), "rootsift descriptors are 128 bytes wide, the store's are 32"),
    ((FeatureConfig(),), "must be a \\(FeatureConfig, LocalFeatureStore\\) pair"),
])
def test_local_features_that_do_not_fit_the_gallery_are_refused_before_writing(tmp_path, bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path, local_features=bad))
    assert not (tmp_path / "b").exists()


def test_a_corrupted_features_file_is_caught_by_its_checksum(tmp_path):
    out = write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path, local_features=(FeatureConfig(), store())))
    flip_byte(out / LOCAL_FEATURES_FILE, 100)
    with pytest.raises(BundleError, match="local_features.npz"):
        load_bundle(out)


def test_features_of_another_gallery_are_refused_even_when_checksummed(tmp_path):
    out = write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path, local_features=(FeatureConfig(), store())))
    rewrite_consistently(out, LOCAL_FEATURES_FILE, store(rows=4).to_bytes())
    with pytest.raises(BundleError, match="features of 4 references, but the gallery has 6 images"):
        load_bundle(out)
    rewrite_consistently(out, LOCAL_FEATURES_FILE, b"PK\x03\x04 not a zip")
    with pytest.raises(BundleError, match="not a readable .npz of local features"):
        load_bundle(out)


def test_the_manifest_pairs_config_and_file_and_needs_version_3(tmp_path):
    out = write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path, local_features=(FeatureConfig(), store())))
    fields = load_bundle(out).manifest.to_dict()
    without_file = {**fields, "files": {k: v for k, v in fields["files"].items() if k != LOCAL_FEATURES_FILE}}
    with pytest.raises(ValueError, match="come together: the manifest has the config only"):
        Manifest.from_dict(without_file)
    with pytest.raises(ValueError, match="come together: the manifest has the file only"):
        Manifest.from_dict({k: v for k, v in fields.items() if k != "local_features"})
    with pytest.raises(ValueError, match="local features need format_version 3"):
        Manifest.from_dict({**fields, "format_version": 2})
    with pytest.raises(ValueError, match="unknown local feature kind 'sift'"):
        Manifest.from_dict({**fields, "local_features": {"kind": "sift", "max_side": 640, "count": 100}})
    with pytest.raises(ValueError, match="local_features has unknown keys"):
        Manifest.from_dict({**fields, "local_features": {**fields["local_features"], "extra": 1}})
    with pytest.raises(ValueError, match="local_features lacks keys \\['count'\\]"):
        Manifest.from_dict({**fields, "local_features": {"kind": "orb", "max_side": 640}})
    # written before the frame size and corner threshold were recorded: read as it was extracted then
    older = Manifest.from_dict({**fields, "local_features": {"kind": "orb", "max_side": 512, "count": 300}})
    assert older.local_features == FeatureConfig(max_side=512, count=300, fast_threshold=20, frame_max_side=512)


def test_a_store_appends_enrolled_rows_and_parses_only_plain_arrays(tmp_path):
    grown = store().extend([features(7, 40), features(0, 41)])
    assert len(grown) == 8 and len(grown.features(6)) == 7 and len(grown.features(7)) == 0
    assert np.array_equal(grown.features(6).descriptors, features(7, 40).descriptors)
    np.savez(tmp_path / "pickled.npz", points=np.array([object()], dtype=object), descriptors=np.zeros(1),
             offsets=np.zeros(1), sizes=np.zeros(1))
    with pytest.raises(ValueError, match="pickled.npz"):
        LocalFeatureStore.load(tmp_path / "pickled.npz")
    np.savez(tmp_path / "partial.npz", points=np.zeros((0, 2), np.float32))
    with pytest.raises(ValueError, match="lacks arrays"):
        LocalFeatureStore.load(tmp_path / "partial.npz")
