"""Local features of one image: keypoint positions and their descriptors, as plain arrays.

Two kinds, both in OpenCV (no weights, nothing to download): ``orb`` (binary, 32 bytes, matched
by Hamming distance; about 4 ms for a 640-pixel frame) and ``rootsift`` (SIFT with Arandjelovic
and Zisserman's square-rooted L1 normalisation, 128 floats stored as uint8 after scaling;
slower, more tolerant of viewpoint). Measured on mcv-paintings (128 wall photos against the
global descriptor's top 5, 12 inliers, 2 busy cores): ORB verified 96.1 % of the queries with
the right artwork, none with a wrong one and none of the 10 unknown paintings, in 120 ms a
query; RootSIFT 94.5 %, 0, 0 in 400 ms.
Keypoints are in the coordinates of the image as given, whatever size it was extracted at.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FEATURE_KINDS = ("orb", "rootsift")
ROOTSIFT_SCALE = 512.0  # square-rooted L1-normalised SIFT lies in [0, 1]: x 512 fits uint8 (clipped at 255)


@dataclass(frozen=True)
class FeatureConfig:
    """Which features, how many, and at what size they are extracted.

    References are extracted with their longer side brought down to ``max_side``; a camera frame
    is brought to ``frame_max_side`` (up or down), because the artwork in it is smaller than in its
    reference photo: on the demo's 640 x 360 walk frames, ORB found 100-300 keypoints and
    verification (every reference fitted) named the artwork in view on 79 of 100 frames; with frames
    at 960 and ORB's corner threshold at 10 instead of 20, on 92, wrong on 1 (with the centre rule of
    :mod:`.shortlist`). ``fast_threshold`` is ORB's (FAST's) corner contrast; RootSIFT ignores it.
    """

    kind: str = "orb"
    max_side: int = 640  # references: the longer side is brought down to this first (never up)
    count: int = 1000
    fast_threshold: int = 10
    frame_max_side: int = 960  # frames: the longer side is brought to this (up or down)

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"unknown local feature kind {self.kind!r}; choose from {FEATURE_KINDS}")
        for name in ("max_side", "count", "frame_max_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 16:
                raise ValueError(f"FeatureConfig.{name} must be an int >= 16, got {value!r}")
        value = self.fast_threshold
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            raise ValueError(f"FeatureConfig.fast_threshold must be an int in 1..100, got {value!r}")

    @property
    def norm(self) -> int:
        """How descriptors are compared: Hamming for ORB's bits, L2 for RootSIFT."""
        return cv2.NORM_HAMMING if self.kind == "orb" else cv2.NORM_L2

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "max_side": self.max_side, "count": self.count,
                "fast_threshold": self.fast_threshold, "frame_max_side": self.frame_max_side}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FeatureConfig:
        """As written by :meth:`to_dict`; the two later keys default to what bundles without them did."""
        known = {"kind", "max_side", "count", "fast_threshold", "frame_max_side"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"local_features has unknown keys {unknown}")
        missing = sorted({"kind", "max_side", "count"} - set(data))
        if missing:
            raise ValueError(f"local_features lacks keys {missing}")
        return cls(**{"fast_threshold": 20, "frame_max_side": data["max_side"], **data})


@dataclass(frozen=True)
class LocalFeatures:
    """``points`` (N, 2) float32 x, y in the given image's pixels; ``descriptors`` (N, D) uint8;
    ``size`` the image's (width, height)."""

    points: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]

    def __post_init__(self) -> None:
        if self.points.ndim != 2 or self.points.shape[1] != 2 or self.points.dtype != np.float32:
            raise ValueError(f"points must be (N, 2) float32, got {self.points.shape} {self.points.dtype}")
        if self.descriptors.ndim != 2 or self.descriptors.dtype != np.uint8:
            raise ValueError(f"descriptors must be (N, D) uint8, got {self.descriptors.shape} {self.descriptors.dtype}")
        if self.descriptors.shape[0] != self.points.shape[0]:
            raise ValueError(f"{self.points.shape[0]} points but {self.descriptors.shape[0]} descriptors")

    def __len__(self) -> int:
        return self.points.shape[0]


def _detector(config: FeatureConfig):
    if config.kind == "orb":
        return cv2.ORB_create(nfeatures=config.count, fastThreshold=config.fast_threshold)
    return cv2.SIFT_create(nfeatures=config.count)


def _grey_at(image: np.ndarray, max_side: int, upscale: bool) -> tuple[np.ndarray, float]:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be RGB uint8 (H, W, 3), got {image.shape} {image.dtype}")
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    scale = max_side / max(grey.shape)
    if not upscale:
        scale = min(1.0, scale)
    if scale != 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return grey, scale


def extract_features(image: np.ndarray, config: FeatureConfig = FeatureConfig(), *,
                     frame: bool = False) -> LocalFeatures:
    """The local features of an RGB uint8 image (at most ``config.count``; none on a flat image):
    a reference's at ``max_side`` at most, a camera ``frame``'s at ``frame_max_side``."""
    grey, scale = _grey_at(image, config.frame_max_side if frame else config.max_side, upscale=frame)
    keypoints, descriptors = _detector(config).detectAndCompute(grey, None)
    size = (int(image.shape[1]), int(image.shape[0]))
    width = 32 if config.kind == "orb" else 128
    if descriptors is None or not keypoints:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, width), np.uint8), size)
    points = (np.array([k.pt for k in keypoints], np.float32) / np.float32(scale)).astype(np.float32)
    if config.kind == "rootsift":
        d = descriptors.astype(np.float32)
        d /= d.sum(axis=1, keepdims=True) + 1e-7
        descriptors = np.clip(np.sqrt(d) * ROOTSIFT_SCALE, 0, 255).astype(np.uint8)
    return LocalFeatures(points, np.ascontiguousarray(descriptors, dtype=np.uint8), size)
