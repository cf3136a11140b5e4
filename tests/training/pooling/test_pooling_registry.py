"""One table of pooling names."""

from __future__ import annotations

import pytest
import torch

from muselens.training.pooling.modules import GeM
from muselens.training.pooling.pooling_registry import POOLINGS, build_pooling


def test_registry_names():
    assert set(POOLINGS) == {"mac", "spoc", "gem", "rmac"}


@pytest.mark.parametrize("name", sorted(POOLINGS))
def test_every_pooling_builds_and_pools(name):
    out = build_pooling(name)(torch.rand(2, 3, 4, 5))
    assert out.shape == (2, 3)


def test_build_passes_arguments():
    pool = build_pooling("gem", p=4.0)
    assert isinstance(pool, GeM) and float(pool.p) == 4.0


def test_unknown_pooling_names_the_choices():
    with pytest.raises(ValueError, match="expected one of .*'gem'"):
        build_pooling("netvlad")
