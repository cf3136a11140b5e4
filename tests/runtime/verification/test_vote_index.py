"""The local-feature vote index built once (at export) and loaded, not rebuilt, at every load."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from muselens.runtime.bundle import BundleError, Manifest, load_bundle, write_bundle
from muselens.runtime.bundle.manifest import VOTE_INDEX_FILE
from muselens.runtime.verification import FeatureConfig, LocalFeatures, LocalFeatureStore, LocalVoter
from muselens.runtime.verification.shortlist import ShortlistVerifier
from tests.paintings import painting, photographed
from tests.runtime.bundle.conftest import bundle_kwargs
from tests.runtime.bundle.helpers import flip_byte
from tests.runtime.bundle.test_local_features import features

ROWS = ["a0", "a0", "a1", "a2", "a2", "a2"]


def store(rows: int = 6, width: int = 32) -> LocalFeatureStore:
    return LocalFeatureStore.from_features([features(40 + r, r, width) for r in range(rows)], width)


def frame_of(row: LocalFeatures, seed: int = 9) -> LocalFeatures:
    """A frame holding ``row``'s descriptors with a bit flipped in each: its keypoints vote for ``row``."""
    descriptors = row.descriptors.copy()
    descriptors[:, np.random.default_rng(seed).integers(0, row.descriptors.shape[1], len(descriptors))] ^= 1
    return LocalFeatures(row.points, descriptors, row.size)


@pytest.mark.parametrize("kind, width", [("orb", 32), ("rootsift", 128)])
def test_a_kept_index_loads_and_votes_exactly_as_the_one_it_was_kept_from(kind, width):
    kept = store(width=width)
    built = LocalVoter(kept, FeatureConfig(kind=kind), ROWS)
    loaded = LocalVoter(kept, FeatureConfig(kind=kind), ROWS, index_bytes=built.to_bytes())
    frame = frame_of(kept.features(3))
    assert np.array_equal(loaded.row_votes(frame), built.row_votes(frame))
    assert max(loaded.votes(frame).items(), key=lambda kv: kv[1])[0] == "a2"


def test_a_search_on_one_thread_votes_as_on_every_core_and_leaves_other_threads_alone():
    """Beside a stream the vote search runs on one OpenMP thread: the same votes, that thread only,
    and the thread's own setting back afterwards."""
    import threading

    import faiss

    from muselens.runtime.verification.voting import omp_threads

    kept = store()
    voter = LocalVoter(kept, FeatureConfig(), ROWS)
    frame = frame_of(kept.features(3))
    seen = []

    class Recording:
        def __init__(self, index):
            self.index = index

        def search(self, query, k):
            seen.append(faiss.omp_get_max_threads())
            return self.index.search(query, k)

    every = faiss.omp_get_max_threads()
    voter.index = Recording(voter.index)
    assert np.array_equal(voter.row_votes(frame, threads=1), voter.row_votes(frame))
    assert seen == [1, every] and faiss.omp_get_max_threads() == every
    inside, other = [], []
    with omp_threads(1):
        inside.append(faiss.omp_get_max_threads())
        worker = threading.Thread(target=lambda: other.append(faiss.omp_get_max_threads()))
        worker.start()
        worker.join()
    assert inside == [1] and other == [every]
    with pytest.raises(ValueError, match="OpenMP threads must be >= 1, got 0"):
        with omp_threads(0):
            pass


def test_an_index_that_is_not_of_these_features_is_refused_naming_why():
    kept = store()
    data = LocalVoter(kept, FeatureConfig(), ROWS).to_bytes()
    with pytest.raises(ValueError, match="not a readable faiss index"):
        LocalVoter(kept, FeatureConfig(), ROWS, index_bytes=data[:len(data) // 2])
    with pytest.raises(ValueError, match="not a readable faiss index"):
        LocalVoter(kept, FeatureConfig(), ROWS, index_bytes=b"\0" * 64)
    with pytest.raises(ValueError, match="indexes 255 descriptors of dimension 256, but the references have 210"):
        LocalVoter(store(rows=5), FeatureConfig(), ROWS[:5], index_bytes=data)
    sift = store(width=128)
    with pytest.raises(ValueError, match="not a readable faiss index"):  # a float index read as a binary one
        LocalVoter(kept, FeatureConfig(), ROWS, index_bytes=LocalVoter(sift, FeatureConfig(kind="rootsift"),
                                                                         ROWS).to_bytes())


def test_a_verifier_rebuilds_an_index_that_does_not_load_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="muselens.runtime.verification.shortlist"):
        verifier = ShortlistVerifier(store(), FeatureConfig(), ROWS, vote_index=b"not an index")
    assert len(verifier.voter) == len(store().descriptors)
    assert "vote index does not load (not a readable faiss index" in caplog.text
    assert "rebuilding it from 255 local descriptors" in caplog.text


def test_an_enrolment_copies_the_index_and_adds_to_it_leaving_the_old_one_as_it_was():
    old = store()
    voter = LocalVoter(old, FeatureConfig(), ROWS)
    grown = old.extend([features(50, 77)])
    bigger = voter.extended(grown, [*ROWS, "new"])
    assert len(voter) == len(old.descriptors) and len(bigger) == len(grown.descriptors)
    frame = frame_of(grown.features(6))
    assert max(bigger.votes(frame).items(), key=lambda kv: kv[1])[0] == "new"
    assert "new" not in voter.votes(frame)
    with pytest.raises(ValueError, match="fewer than this voter's"):
        bigger.extended(old, ROWS)


def test_a_bundle_keeps_the_index_checksummed_and_reads_it_when_asked(tmp_path):
    kept = store()
    data = LocalVoter(kept, FeatureConfig(), ROWS).to_bytes()
    out = write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path, local_features=(FeatureConfig(), kept)),
                       vote_index=data)
    bundle = load_bundle(out)
    assert bundle.manifest.format_version == 4 and VOTE_INDEX_FILE in bundle.manifest.files
    assert bundle.read_vote_index() == data
    without = write_bundle(tmp_path / "c", **bundle_kwargs(tmp_path, local_features=(FeatureConfig(), kept)))
    assert load_bundle(without).read_vote_index() is None and not (without / VOTE_INDEX_FILE).exists()
    flip_byte(out / VOTE_INDEX_FILE, 200)
    with pytest.raises(BundleError, match="local_vote_index.faiss: sha256 mismatch"):
        load_bundle(out)
    with pytest.raises(BundleError, match="changed since the bundle was loaded"):
        bundle.read_vote_index()


def test_a_vote_index_needs_local_features_and_format_version_4(tmp_path):
    with pytest.raises(ValueError, match="vote_index indexes local features"):
        write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path), vote_index=b"x")
    kept = store()
    out = write_bundle(tmp_path / "b", **bundle_kwargs(tmp_path, local_features=(FeatureConfig(), kept)),
                       vote_index=LocalVoter(kept, FeatureConfig(), ROWS).to_bytes())
    fields = load_bundle(out).manifest.to_dict()
    with pytest.raises(ValueError, match="a vote index needs format_version 4, this manifest is version 3"):
        Manifest.from_dict({**fields, "format_version": 3})
    with pytest.raises(ValueError, match="indexes local features, and the manifest has none"):
        Manifest.from_dict({k: v for k, v in fields.items() if k != "local_features"}
                           | {"files": {k: v for k, v in fields["files"].items() if k != "local_features.npz"}})


def test_an_exported_bundle_keeps_its_index_and_serving_loads_it_instead_of_building_one(
        painted, tiny_bundle, monkeypatch):
    from muselens.runtime.recognition.served_model import ServedModel, ServingConfig

    assert VOTE_INDEX_FILE in painted.bundle.manifest.files  # exported with vote_index="always"
    assert VOTE_INDEX_FILE not in load_bundle(tiny_bundle).manifest.files  # "auto": too few descriptors

    def no_building(*args, **kwargs):
        raise AssertionError("the vote index was built, not loaded")

    monkeypatch.setattr(LocalVoter, "_new_index", no_building)
    served = ServedModel.load(painted.bundle.root, ServingConfig(threads=1))
    try:
        frame, _ = photographed(painting(2), seed=5, frame=(720, 960))
        features_of_frame = served.verifier.frame_features(frame)
        votes = served.verifier.voter.votes(features_of_frame)
        assert votes == painted.verifier.voter.votes(features_of_frame) and max(votes, key=votes.get) == "a1"
        enrolled = served.with_enrolled("new", "New", {}, [painting(11)])  # copied and added to, not built
        assert len(enrolled.verifier.voter) > len(served.verifier.voter)
    finally:
        served.close()


def test_export_keeps_the_index_from_a_size_or_as_told():
    from muselens.export.bundle import VOTE_INDEX_MIN_DESCRIPTORS, ExportOptions, _keeps_vote_index

    assert not _keeps_vote_index("auto", VOTE_INDEX_MIN_DESCRIPTORS - 1)
    assert _keeps_vote_index("auto", VOTE_INDEX_MIN_DESCRIPTORS)
    assert _keeps_vote_index("always", 10) and not _keeps_vote_index("always", 0)
    assert not _keeps_vote_index("never", 10 * VOTE_INDEX_MIN_DESCRIPTORS)
    with pytest.raises(ValueError, match="vote_index must be one of \\['auto', 'always', 'never'\\], got 'yes'"):
        ExportOptions(vote_index="yes")


@pytest.mark.parametrize("kind, width", [("orb", 32), ("rootsift", 128)])
def test_an_index_counts_the_bytes_it_holds_as_its_serialisation_does(kind, width):
    """``nbytes`` reads faiss's arrays in place (a scrape must not serialise the index to size it)."""
    kept = store(width=width)
    voter = LocalVoter(kept, FeatureConfig(kind=kind), ROWS)
    own = voter.owner.nbytes + voter.row_ids.nbytes
    assert voter.nbytes - own == pytest.approx(len(voter.to_bytes()), rel=0.02)
    grown = voter.extended(kept.extend([features(50, 77, width)]), [*ROWS, "new"])
    assert grown.nbytes > voter.nbytes
