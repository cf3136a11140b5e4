"""The pooling modules are the functions, plus GeM's optional learnable p."""

from __future__ import annotations

import pytest
import torch

from muselens.training.pooling import functional as PF
from muselens.training.pooling.modules import MAC, RMAC, GeM, SPoC


@pytest.fixture
def fmap() -> torch.Tensor:
    return torch.rand(2, 5, 6, 9, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("module, fn", [(MAC(), PF.mac), (SPoC(), PF.spoc), (GeM(), PF.gem), (RMAC(), PF.rmac)])
def test_modules_call_their_functions(module, fn, fmap):
    torch.testing.assert_close(module(fmap), fn(fmap))
    assert module(fmap).shape == (2, 5)


def test_gem_p_is_a_buffer_unless_learnable(fmap):
    fixed = GeM(p=3.0)
    assert list(fixed.parameters()) == [] and float(fixed.p) == 3.0
    assert "p" in fixed.state_dict()
    learnable = GeM(p=2.0, learnable=True)
    (param,) = list(learnable.parameters())
    learnable(fmap).sum().backward()
    assert param.grad is not None and torch.isfinite(param.grad) and float(param.grad) != 0.0
    torch.testing.assert_close(learnable(fmap), PF.gem(fmap, p=2.0))


def test_rmac_levels_change_the_result(fmap):
    assert not torch.allclose(RMAC(levels=1)(fmap), RMAC(levels=3)(fmap))
    assert "levels=3" in repr(RMAC())


@pytest.mark.parametrize("kwargs", [{"p": 0}, {"p": -2.0}, {"eps": 0.0}])
def test_gem_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        GeM(**kwargs)


@pytest.mark.parametrize("kwargs", [{"levels": 0}, {"levels": 2.0}, {"eps": -1.0}])
def test_rmac_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        RMAC(**kwargs)
