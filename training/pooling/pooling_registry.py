"""The pooling registry: names -> module classes, the one list the CLI offers."""

from __future__ import annotations

from typing import Any

from torch import nn

from muselens.training.pooling.modules import MAC, RMAC, GeM, SPoC

POOLINGS: dict[str, type[nn.Module]] = {"mac": MAC, "spoc": SPoC, "gem": GeM, "rmac": RMAC}


def build_pooling(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate a registered pooling, e.g. ``build_pooling("gem", p=3.0)``."""
    if not isinstance(name, str) or name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; expected one of {sorted(POOLINGS)}")
    return POOLINGS[name](**kwargs)
