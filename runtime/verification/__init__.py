"""Geometric verification: local features of a frame matched to a reference's, checked by a homography.

A global descriptor ranks artworks; a homography with many inliers says the frame *shows*
that artwork, seen from some angle, even when it fills a fifth of the view. The runtime
verifies the global shortlist with it; the bundle stores each reference's local features as
plain arrays (:mod:`.store`), and an index over them votes for artworks the shortlist lacks
(:mod:`.voting`).
"""

from muselens.runtime.verification.features import FEATURE_KINDS, FeatureConfig, LocalFeatures, extract_features
from muselens.runtime.verification.geometry import Verification, VerifyConfig, verify
from muselens.runtime.verification.shortlist import (DEFAULT_SHORTLIST, DEFERRED, NO_FEATURES, NOT_ASKED,
                                                     NOT_REQUESTED, NOT_VERIFIED, OVER_SHARE, UNAVAILABLE,
                                                     VERIFIED, ShortlistVerifier, VerificationReport)
from muselens.runtime.verification.store import LocalFeatureStore
from muselens.runtime.verification.voting import LocalVoter

__all__ = ["DEFAULT_SHORTLIST", "DEFERRED", "FEATURE_KINDS", "NOT_ASKED", "NOT_REQUESTED", "NOT_VERIFIED",
           "NO_FEATURES", "OVER_SHARE", "UNAVAILABLE", "VERIFIED", "FeatureConfig", "LocalFeatureStore", "LocalFeatures", "LocalVoter", "ShortlistVerifier",
           "Verification", "VerificationReport", "VerifyConfig", "extract_features", "verify"]
