"""Global poolings of conv feature maps (MAC, SPoC, GeM, R-MAC): pure functions and modules."""

from muselens.training.pooling.functional import gem, mac, rmac, rmac_regions, spoc
from muselens.training.pooling.modules import MAC, RMAC, GeM, SPoC
from muselens.training.pooling.pooling_registry import POOLINGS, build_pooling

__all__ = ["MAC", "POOLINGS", "RMAC", "GeM", "SPoC", "build_pooling", "gem", "mac", "rmac", "rmac_regions", "spoc"]
