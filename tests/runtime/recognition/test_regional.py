"""Regional search: R-MAC regions of the feature map described by their own most active cells."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from muselens.runtime.recognition.options import RecognizeOptions
from muselens.runtime.recognition.regional import (REGION_OVERLAP, best_regional_scores, holding_centre,
                                                   regional_candidates, regional_descriptors, rmac_regions)
from tests.paintings import painting, photographed


@pytest.mark.parametrize("h, w", [(10, 18), (18, 10), (7, 7), (2, 3), (1, 1)])
def test_regions_cover_the_map_at_every_scale_and_stay_inside(h, w):
    regions = rmac_regions(h, w)
    assert regions and len(set(regions)) == len(regions)
    covered = np.zeros((h, w), bool)
    for top, left, rh, rw in regions:
        assert 0 <= top and 0 <= left and top + rh <= h and left + rw <= w and rh == rw
        covered[top:top + rh, left:left + rw] = True
    assert covered.all()
    assert regions[0][2] == min(h, w)  # the first scale spans the short side


def test_neighbouring_regions_overlap_about_as_rmac_says():
    regions = [r for r in rmac_regions(10, 40) if r[2] == 10]  # the largest scale, along the long side
    lefts = [r[1] for r in regions]
    steps = np.diff(lefts)
    assert len(regions) > 2 and (steps <= 10 * (1 - REGION_OVERLAP) + 1).all()


def test_a_region_is_described_by_its_most_active_cells():
    d, h, w = 4, 4, 8
    dmap = np.zeros((d, h, w), np.float32)
    activation = np.zeros((h, w), np.float32)
    dmap[0, 1, 6] = dmap[1, 2, 1] = 1.0  # one salient cell in the right half, one in the left
    activation[1, 6] = activation[2, 1] = 5.0
    right, left = (0, 4, 4, 4), (0, 0, 4, 4)
    out = regional_descriptors(dmap, activation, k=2, regions=[right, left])  # 2 * 16/32: one cell each
    assert np.allclose(out[0], [1, 0, 0, 0]) and np.allclose(out[1], [0, 1, 0, 0])
    with pytest.raises(ValueError, match="must agree"):
        regional_descriptors(dmap, activation[:, :4], 2, [right])


def test_candidates_are_the_best_regional_scores_beyond_the_shortlist():
    vectors = np.eye(4, dtype=np.float32)
    ids = ("a", "b", "c", "d")
    regions = np.array([[0.0, 0.6, 0.8, 0.0], [0.9, 0.0, 0.0, 0.1]], np.float32)
    best = best_regional_scores(vectors, regions)
    assert np.allclose(best, [0.9, 0.6, 0.8, 0.1])
    assert regional_candidates(best, ids, exclude=["a"], n=2) == ("c", "b")
    assert regional_candidates(best, ids, exclude=[], n=0) == ()


@pytest.fixture(scope="module")
def painted_photos():
    return [photographed(painting(2), seed=5, frame=(720, 960))[0]]


def test_a_verified_call_verifies_the_regions_candidates_too(painted, painted_photos):
    model = dataclasses.replace(painted, config=dataclasses.replace(painted.config, regional=2, shortlist=1))
    assert model.searches_regions()
    result = model.recognize(painted_photos[0], RecognizeOptions(top_k=3, verify=True))
    assert len(result.regional) == 2 and result.matches[0].instance_id not in result.regional
    assert result.verification.candidates >= 3  # the shortlist's one artwork and the regions' two
    off = dataclasses.replace(painted, config=dataclasses.replace(painted.config, regional=0))
    assert not off.searches_regions()
    assert off.recognize(painted_photos[0], RecognizeOptions(verify=True)).regional == ()
    unverified = model.recognize(painted_photos[0], RecognizeOptions(verify=False))
    assert unverified.regional == ()  # nothing would look at them


def test_a_later_verification_of_a_described_frame_judges_it_as_a_verifying_call(painted, painted_photos):
    """A stream answers from the descriptor and verifies the frame in the background: that must fit
    the same candidates and weigh them from the same part scores as a call that verifies at once,
    even when the stream asks for fewer matches than the shortlist holds."""
    model = dataclasses.replace(painted, config=dataclasses.replace(painted.config, regional=1, shortlist=2))
    image = painted_photos[0]
    at_once = model.recognize(image, RecognizeOptions(top_k=1, verify=True))
    described = model.recognize(image, RecognizeOptions(top_k=1, verify=False), regional=True)
    assert len(described.matches) == 1 and len(described.shortlist) == 2 + 1
    assert described.shortlist[2:] == described.regional and described.part_scores is not None
    later = model.verify(image, described.shortlist, described.descriptor, regional_scores=described.part_scores)
    assert later.instance_id == at_once.verification.instance_id
    assert dict(later.inliers_by_artwork) == dict(at_once.verification.inliers_by_artwork)
    assert later.evidence == pytest.approx(at_once.verification.evidence)


def test_only_regions_around_the_centre_count():
    regions = rmac_regions(10, 18)
    held = holding_centre(regions, 10, 18)
    assert 0 < len(held) < len(regions)
    for top, left, size, _ in held:
        assert top <= 4.5 <= top + size - 1 and left <= 8.5 <= left + size - 1
    assert holding_centre([(0, 0, 1, 1)], 4, 4) == [(0, 0, 1, 1)]  # none holds it: all of them
