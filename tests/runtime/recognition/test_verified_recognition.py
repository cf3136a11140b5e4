"""Recognition with geometric verification, on the tiny run exported against painted references.

The tiny model's descriptors are nearly random, so what these tests see is verification's own
doing: the photographed artwork is answered, first and accepted, because its reference fits.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from muselens.runtime.recognition.decision_rule import Decision, decide_verified
from muselens.runtime.recognition.options import RecognizeOptions
from muselens.runtime.recognition.served_model import ServedModel
from muselens.runtime.verification import (NOT_REQUESTED, NOT_VERIFIED, UNAVAILABLE, VERIFIED,
                                           VerificationReport)
from muselens.runtime.verification.shortlist import INLIER_WEIGHT, ShortlistVerifier, evidence
from tests.paintings import painting, photographed

FRAME = (720, 960)


@pytest.fixture(scope="module")
def photo_of_a1():
    return photographed(painting(2), seed=5, frame=FRAME)


def test_a_photographed_artwork_is_verified_ranked_first_and_accepted(painted, photo_of_a1):
    frame, truth = photo_of_a1
    result = painted.recognize(frame, RecognizeOptions(verify=True, explain=False))
    report = result.verification
    assert report.state == VERIFIED and report.instance_id == "a1" and report.inliers >= 30
    assert result.matches[0].instance_id == "a1"
    assert result.decision is Decision.ARTWORK  # whatever the tiny model's score: the fit decides
    assert np.abs(report.outline - truth / np.array([FRAME[1], FRAME[0]])).max() < 0.01
    assert report.pairs is None and report.candidates >= 3
    assert result.timings_ms["verify"] > 0


def test_explained_verification_returns_its_inlier_pairs_normalised(painted, photo_of_a1):
    report = painted.recognize(photo_of_a1[0], RecognizeOptions(verify=True, explain=True)).verification
    assert report.pairs.shape == (report.inliers, 4)
    assert (report.pairs >= -0.01).all() and (report.pairs <= 1.01).all()


def test_the_server_default_verifies_and_a_call_may_turn_it_off(painted, photo_of_a1):
    assert painted.recognize(photo_of_a1[0]).verification.state == VERIFIED
    off = painted.recognize(photo_of_a1[0], RecognizeOptions(verify=False))
    assert off.verification.state == NOT_REQUESTED and off.timings_ms["verify"] < 1
    quiet = dataclasses.replace(painted, config=dataclasses.replace(painted.config, verify=False))
    assert quiet.recognize(photo_of_a1[0]).verification.state == NOT_REQUESTED
    assert quiet.recognize(photo_of_a1[0], RecognizeOptions(verify=True)).verification.state == VERIFIED


def test_an_artwork_the_museum_does_not_hold_is_not_verified_and_keeps_the_descriptor_answer(painted):
    frame, _ = photographed(painting(7), seed=9, frame=FRAME)
    verified = painted.recognize(frame, RecognizeOptions(verify=True))
    plain = painted.recognize(frame, RecognizeOptions(verify=False))
    assert verified.verification.state == NOT_VERIFIED and verified.verification.instance_id is None
    assert verified.decision is plain.decision
    assert [m.instance_id for m in verified.matches] == [m.instance_id for m in plain.matches]


def test_a_bundle_without_local_features_says_so_when_asked_and_is_quiet_otherwise(painted, photo_of_a1):
    bare = ServedModel(dataclasses.replace(painted.bundle, local_features=None), painted.describer, painted.search,
                       painted.labels, painted.config, painted.variant)
    assert bare.verifier is None and bare.info()["verification"] == "none"
    assert bare.recognize(photo_of_a1[0]).verification.state == NOT_REQUESTED
    assert bare.recognize(photo_of_a1[0], RecognizeOptions(verify=True)).verification.state == UNAVAILABLE
    assert painted.info()["verification"] == "orb"


def test_an_enrolled_artwork_is_verified_too(painted):
    photos = [painting(11), painting(11, 240, 320)]
    enrolled = painted.with_enrolled("new", "New", {}, photos)
    assert len(enrolled.verifier) == len(painted.verifier) + 2
    frame, _ = photographed(painting(11), seed=3, frame=FRAME)
    result = enrolled.recognize(frame, RecognizeOptions(verify=True))
    assert result.verification.instance_id == "new" and result.matches[0].instance_id == "new"
    assert painted.recognize(frame, RecognizeOptions(verify=True)).verification.state == NOT_VERIFIED


@pytest.mark.parametrize("scores_said", list(Decision))
def test_a_verified_answer_overrides_the_scores_unless_another_artwork_has_as_much_evidence(scores_said):
    clear = VerificationReport(VERIFIED, "a1", 0, inliers=100, evidence=0.9, runner_up_evidence=0.85)
    close = VerificationReport(VERIFIED, "a1", 0, inliers=100, evidence=0.9, runner_up_evidence=0.89)
    assert decide_verified(scores_said, clear) is Decision.ARTWORK
    assert decide_verified(scores_said, close) is Decision.UNCERTAIN
    assert decide_verified(scores_said, close, uncertain_margin=0.0) is Decision.ARTWORK
    assert decide_verified(scores_said, VerificationReport(NOT_VERIFIED)) is scores_said


def test_evidence_adds_a_fit_to_the_score_growing_with_the_log_of_its_inliers():
    assert evidence(0.5, 0) == 0.5
    assert evidence(0.5, 12) == pytest.approx(0.5 + INLIER_WEIGHT * np.log(13))
    # a sibling with more inliers does not beat a clearly better descriptor score...
    assert evidence(0.85, 109) > evidence(0.78, 133)
    # ...but a fit five times stronger beats a hair's better score
    assert evidence(0.945, 509) > evidence(0.947, 116)


def test_the_answer_is_the_verified_candidate_of_most_evidence_not_of_most_inliers(painted, photo_of_a1):
    frame = painted.verifier.frame_features(photo_of_a1[0])
    rows = {iid: painted.search.references(iid) for iid in ("a0", "a1", "a2")}
    plain = painted.verifier.verify(frame, [(iid, 0.5, rows[iid]) for iid in rows])
    assert plain.instance_id == "a1" and plain.inliers_by_artwork == {"a1": plain.inliers}
    assert plain.evidence == pytest.approx(evidence(0.5, plain.inliers)) and plain.runner_up_evidence == 0.5
    # a fit outweighs a better descriptor score...
    fitted = painted.verifier.verify(frame, [("a0", 0.6, rows["a0"]), ("a1", 0.5, rows["a1"])])
    assert fitted.instance_id == "a1" and fitted.runner_up_evidence == 0.6
    # ...up to a point: a far better score of one that does not fit outweighs it at the default weight
    outscored = painted.verifier.verify(frame, [("a0", 0.99, rows["a0"]), ("a1", 0.2, rows["a1"])])
    assert outscored.state == NOT_VERIFIED and outscored.inliers_by_artwork == {"a1": plain.inliers}
    # ...and not where the museum's own queries measured that a fit should weigh more
    heavy = ShortlistVerifier(painted.verifier.store, painted.verifier.features, painted.verifier.row_ids,
                              evidence_weight=1.0, vote=False)
    fitted_first = heavy.verify(frame, [("a0", 0.99, rows["a0"]), ("a1", 0.2, rows["a1"])])
    assert fitted_first.instance_id == "a1" and decide_verified(Decision.ARTWORK, fitted_first) is Decision.ARTWORK
    for bad in (0.0, float("inf")):
        with pytest.raises(ValueError, match="evidence_weight"):
            ShortlistVerifier(painted.verifier.store, painted.verifier.features, painted.verifier.row_ids,
                              evidence_weight=bad, vote=False)


def test_a_report_names_its_artwork_exactly_when_verified():
    with pytest.raises(ValueError, match="verified report names its artwork"):
        VerificationReport(VERIFIED)
    with pytest.raises(ValueError, match="verified report names its artwork"):
        VerificationReport(NOT_VERIFIED, "a1")
    with pytest.raises(ValueError, match="unknown verification state"):
        VerificationReport("maybe")


def test_the_local_feature_vote_finds_an_artwork_the_descriptor_shortlist_missed(painted, photo_of_a1):
    frame = photo_of_a1[0]
    descriptor = painted.describer.describe(frame)
    votes = painted.verifier.voter.votes(painted.verifier.frame_features(frame))
    assert max(votes, key=votes.get) == "a1"
    report = painted.verify(frame, ["a0"], descriptor)  # a shortlist without the artwork in view
    assert report.voted[0] == "a1" and report.state == VERIFIED and report.instance_id == "a1"
    assert "a1" not in painted.verify(frame, ["a1"], descriptor).voted  # never what the shortlist holds


def test_without_the_vote_the_shortlist_alone_is_fitted(painted, photo_of_a1):
    config = dataclasses.replace(painted.config, vote=False)
    plain = ServedModel(painted.bundle, painted.describer, painted.search, painted.labels, config, painted.variant)
    assert plain.verifier.voter is None
    report = plain.verify(photo_of_a1[0], ["a0"], painted.describer.describe(photo_of_a1[0]))
    assert report.state == NOT_VERIFIED and report.voted == ()


def test_an_artwork_away_from_the_frames_centre_is_not_the_answer(painted):
    import cv2

    art = painting(2)  # a1
    h, w = art.shape[:2]
    frame = cv2.resize(painting(1099, 90, 120), (960, 720), interpolation=cv2.INTER_NEAREST)
    corner = np.float32([[30, 30], [330, 40], [320, 260], [40, 250]])  # top left: the visitor points elsewhere
    H = cv2.getPerspectiveTransform(np.float32([[0, 0], [w, 0], [w, h], [0, h]]), corner)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), H, (960, 720)) > 0
    frame[mask] = cv2.warpPerspective(art, H, (960, 720))[mask]
    rows = {iid: painted.search.references(iid) for iid in ("a0", "a1", "a2")}
    report = painted.verifier.verify(painted.verifier.frame_features(frame), [(i, 0.5, r) for i, r in rows.items()])
    assert report.state == NOT_VERIFIED and report.inliers_by_artwork == {}
    # ... but where it is, is reported: a stream carries it into the next frames (outline_tracking)
    assert set(report.placed) == {"a1"}
    placed = report.placed["a1"]
    np.testing.assert_allclose(placed.outline, corner / np.float32([960, 720]), atol=0.02)
    assert placed.evidence == pytest.approx(evidence(0.5, placed.inliers, painted.verifier.evidence_weight))
    # the others were tried on a frame sharp enough to fit one, and fit nowhere: not in view
    assert sorted(report.unfitted) == ["a0", "a2"]
    centred, _ = photographed(art, seed=5, frame=FRAME)
    assert painted.verifier.verify(painted.verifier.frame_features(centred),
                                   [(i, 0.5, r) for i, r in rows.items()]).instance_id == "a1"


def test_a_call_that_ends_during_verification_stops_it(painted, photo_of_a1):
    from muselens.runtime.engine import Cancellation, Cancelled

    cancel = Cancellation()
    checks = []

    def ends_after_the_first_fit():
        checks.append(1)
        if len(checks) > 1:
            cancel.cancel()
        cancel.check()

    frame = painted.verifier.frame_features(photo_of_a1[0])
    rows = {iid: painted.search.references(iid) for iid in ("a0", "a1", "a2")}
    with pytest.raises(Cancelled):
        painted.verifier.verify(frame, [(i, 0.5, r) for i, r in rows.items()], check=ends_after_the_first_fit)
    assert len(checks) == 2  # stopped before the second fit
    cancel = Cancellation()
    cancel.cancel()
    with pytest.raises(Cancelled):
        painted.verify(photo_of_a1[0], ["a1"], painted.describer.describe(photo_of_a1[0]), cancel=cancel)


@pytest.mark.parametrize("slots, cores_gated", [(None, True), (1, False)])
def test_a_verification_holds_one_of_the_cores_where_the_gate_counts_cores(painted_bundle, photo_of_a1,
                                                                             monkeypatch, slots, cores_gated):
    """Outside the gate, one client's two one-core inferences and another's verification were
    three on two cores. Where the gate counts cores (ort-cpu) a verification holds one of them;
    where it counts a device's slots, it holds none (it runs on the CPU beside the device)."""
    from muselens.runtime.recognition import served_model as module
    from muselens.runtime.recognition.served_model import ServingConfig

    model = ServedModel.load(painted_bundle, ServingConfig(inference_slots=slots))
    assert model.cores_gated is cores_gated
    seen = []
    verify_shortlist = module.verify_shortlist

    def watching(*args, **kwargs):
        seen.append(model.describer.gate.in_use)
        return verify_shortlist(*args, **kwargs)

    monkeypatch.setattr(module, "verify_shortlist", watching)
    result = model.recognize(photo_of_a1[0], RecognizeOptions(verify=True))
    assert result.verification.state == VERIFIED
    assert seen == [1 if cores_gated else 0] and model.describer.gate.in_use == 0


def test_a_model_counts_what_its_references_hold_and_an_enrolment_grows_each_part(painted):
    """``state_bytes`` is what a memory check subtracts from RSS growth: an enrolment's references
    (descriptors, local features, vote index, the kept photo) and the reference maps it caches."""
    before = painted.state_bytes()
    assert set(before) == {"gallery", "local_features", "vote_index", "enrolled_photos", "reference_maps"}
    assert before["local_features"] >= painted.verifier.store.nbytes and before["vote_index"] > 0
    enrolled = painted.with_enrolled("new", "New", {}, [painting(11), painting(11, 240, 320)])
    after = enrolled.state_bytes()
    for part in ("gallery", "local_features", "vote_index", "enrolled_photos"):
        assert after[part] > before[part], part
    assert after["enrolled_photos"] == sum(len(photo) for photo in enrolled.explainer._extra.values())
    frame, _ = photographed(painting(11), seed=3, frame=FRAME)
    enrolled.recognize(frame, RecognizeOptions(explain=True, explain_reference=True, verify=False))
    assert enrolled.state_bytes()["reference_maps"] == enrolled.explainer.cached_bytes > 0


def test_the_vote_search_and_the_matching_run_on_the_threads_asked_and_give_them_back(painted, photo_of_a1,
                                                                                       monkeypatch):
    """A stream's background verification asks for one OpenMP thread: both of its faiss searches
    (the vote and every reference's ratio matching) must keep to it, not only the vote."""
    import faiss

    from muselens.runtime.verification import geometry, voting

    seen = {"vote": [], "match": []}
    ratio_matches, row_votes = geometry._ratio_matches, voting.LocalVoter.row_votes

    def matching(*args, **kwargs):
        seen["match"].append(faiss.omp_get_max_threads())
        return ratio_matches(*args, **kwargs)

    def voting_(self, frame, threads=None):
        seen["vote"].append(faiss.omp_get_max_threads())
        return row_votes(self, frame, threads)

    monkeypatch.setattr(geometry, "_ratio_matches", matching)
    monkeypatch.setattr(voting.LocalVoter, "row_votes", voting_)
    before = faiss.omp_get_max_threads()
    report = painted.verify(photo_of_a1[0], ["a1"], painted.search.vector("a1"), search_threads=1)
    assert report.state == VERIFIED
    assert seen["vote"] == [1] and seen["match"] and set(seen["match"]) == {1}
    assert faiss.omp_get_max_threads() == before
