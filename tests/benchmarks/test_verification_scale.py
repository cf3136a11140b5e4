"""bench verification: grown museums keep their features, and every size is measured."""

from __future__ import annotations

import json

import numpy as np
import pytest

from muselens.benchmarks import verification_scale
from muselens.cli import main as cli
from muselens.runtime.bundle import load_bundle


def test_a_grown_museum_repeats_artworks_under_new_ids_with_their_features(painted_bundle):
    with load_bundle(painted_bundle) as bundle:
        gallery, store = verification_scale.grown(bundle, 7, seed=0)
        ids = gallery.instance_ids.tolist()
        assert len(set(ids)) == 7 and ids[:6] == bundle.gallery.instance_ids.tolist()
        assert "a0~1" in ids and "a0~2" in ids and "a1~2" not in ids
        assert len(store) == len(ids) == 14
        copy = ids.index("a0~1")
        assert np.array_equal(store.features(copy).descriptors, bundle.local_features.features(0).descriptors)
        assert np.allclose(np.linalg.norm(gallery.descriptors, axis=1), 1, atol=1e-5)
        assert not np.array_equal(gallery.descriptors[copy], bundle.gallery.descriptors[0])


def test_every_size_is_measured_and_written(painted_bundle, tmp_path):
    out = tmp_path / "verification"
    argv = ["bench", "verification", str(painted_bundle), "--data", str(painted_bundle.parent / "museum"),
            "--out", str(out), "--artworks", "3,30", "--queries", "3", "--vote-max", "10"]
    assert cli(argv) == 0
    data = json.loads((out / "bench.json").read_text())
    assert [r["artworks"] for r in data["sizes"]] == [3, 30] and data["queries"] == 3
    small, large = data["sizes"]
    assert large["references"] == 10 * small["references"] and large["local_features_mb"] > small["local_features_mb"]
    for row in data["sizes"]:
        assert row["fit_ms"]["count"] == 3 and row["measured"] and row["verified_share"] == 1.0
    assert small["vote"]["measured"] and small["vote"]["ms"]["count"] == 3 and small["vote"]["index_build_s"] > 0
    assert small["vote"]["kept_index_mb"] > 0 and small["vote"]["kept_index_load_s"] > 0
    assert data["data"] == str(painted_bundle.parent / "museum") and len(json.dumps(data)) < 20_000  # the path, not index bytes
    assert large["vote"] == {"measured": False, "reason": "above --vote-max 10 artworks"}
    assert "| 30 | 60 |" in verification_scale.markdown(out, data) and "; kept: " in verification_scale.markdown(out, data)


def test_a_bundle_without_features_is_refused(painted_bundle, tmp_path, capsys):
    from muselens.runtime.bundle import write_bundle

    with load_bundle(painted_bundle) as b:
        m = b.manifest
        bare = write_bundle(tmp_path / "bare", name=m.name, bundle_version="bare", backbone=m.backbone,
                            descriptor=m.descriptor, model_files={v: b.model_path(v) for v in m.models},
                            gallery=b.gallery, labels=b.labels.values(), training=m.training,
                            data_digest=m.data_digest, metrics=m.metrics, threshold=m.threshold,
                            default_variant=m.default_variant)
    argv = ["bench", "verification", str(bare), "--data", str(painted_bundle.parent / "museum"),
            "--out", str(tmp_path / "v"), "--artworks", "3"]
    assert cli(argv) == 2
    assert "has no local features: export it with --local-features orb" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(argv[:-1] + ["0"])
