"""What a caller may ask of one recognition, validated once at the edge of the service."""

from __future__ import annotations

from muselens.core import checks
import enum
import math
from dataclasses import dataclass

DEFAULT_TOP_K = 5
MAX_TOP_K = 100


class HeatmapKind(str, enum.Enum):
    REGIONS = "regions"  # the k regions' contributions; cells sum to the score
    FULL = "full"        # every location's contribution (only the k region cells sum to the score)
    CLASS = "class"      # class similarity: summed over every reference of the artwork


class HeatmapSide(str, enum.Enum):
    QUERY = "query"
    REFERENCE = "reference"


DEFAULT_HEATMAPS = (HeatmapKind.REGIONS, HeatmapKind.FULL)


class OptionsError(ValueError):
    """A request option that cannot be honoured; ``status`` is the gRPC code name to answer with."""

    def __init__(self, reason: str, message: str, status: str = "INVALID_ARGUMENT"):
        super().__init__(message)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class RecognizeOptions:
    """``top_k`` artworks; heatmaps when ``explain``; ``roi`` = (x0, y0, x1, y1) in [0, 1] for
    region-specific retrieval (paper 001, 4.6); ``verify``: fit the shortlist's references into
    the frame (None: as the server is configured)."""

    top_k: int = DEFAULT_TOP_K
    explain: bool = False
    heatmap_kinds: tuple[HeatmapKind, ...] = DEFAULT_HEATMAPS
    explain_reference: bool = False
    overlay: bool = False
    roi: tuple[float, float, float, float] | None = None
    verify: bool | None = None  # geometric verification; None: the server's default

    def __post_init__(self) -> None:
        if not checks.is_integer(self.top_k) or not 1 <= self.top_k <= MAX_TOP_K:
            raise OptionsError("bad_top_k", f"top_k must be between 1 and {MAX_TOP_K}, got {self.top_k!r}")
        kinds = tuple(HeatmapKind(k) for k in self.heatmap_kinds) or DEFAULT_HEATMAPS
        object.__setattr__(self, "heatmap_kinds", tuple(dict.fromkeys(kinds)))
        if self.roi is not None:
            object.__setattr__(self, "roi", check_roi(self.roi))
        if self.verify is not None and not isinstance(self.verify, bool):
            raise OptionsError("bad_verify", f"verify must be a bool or None, got {self.verify!r}")


def check_roi(roi: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A normalised rectangle with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1."""
    if len(roi) != 4:
        raise OptionsError("bad_roi", f"region_of_interest needs 4 numbers, got {len(roi)}")
    x0, y0, x1, y1 = (float(v) for v in roi)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise OptionsError("bad_roi", f"region_of_interest has a non-finite coordinate: {roi}")
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise OptionsError("bad_roi", f"region_of_interest must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, "
                                      f"got x0={x0:g} y0={y0:g} x1={x1:g} y1={y1:g}")
    return x0, y0, x1, y1
