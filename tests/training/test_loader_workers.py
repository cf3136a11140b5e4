"""Worker threads for training's CPU side: same results in the same order, whatever their number."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from muselens.training import loader_workers
from muselens.training.loader_workers import AUTO, in_order, resolve_workers
from muselens.training.train_config import ConfigError, TrainConfig
from muselens.training.trunk import TrunkCache
from muselens.training.view_pool import PoolShape
from tests.training.test_view_pool import CONTRACT, _images, _pool, _trunk


def test_in_order_yields_every_index_in_order_from_worker_threads():
    me = threading.get_ident()
    assert list(in_order(lambda i: i, 0, 2)) == []
    results = list(in_order(lambda i: (i * i, threading.get_ident()), 40, 2))
    assert [r[0] for r in results] == [i * i for i in range(40)]
    assert me not in {r[1] for r in results}  # drawn by the workers, not the caller
    assert {r[1] for r in in_order(lambda i: (i, threading.get_ident()), 3, 0)} == {me}


def test_an_error_in_a_worker_is_raised_at_its_index():
    def fn(i):
        if i == 5:
            raise ValueError("photo 5 is corrupt")
        return i

    got = []
    with pytest.raises(ValueError, match="photo 5 is corrupt"):
        for value in in_order(fn, 20, 3):
            got.append(value)
    assert got == [0, 1, 2, 3, 4]


def test_auto_is_none_on_the_cpu_and_most_cores_on_a_gpu(monkeypatch):
    assert resolve_workers(AUTO, "cpu") == 0
    assert resolve_workers(3, "cpu") == 3
    monkeypatch.setattr(loader_workers.os, "cpu_count", lambda: 16)
    assert resolve_workers(AUTO, "cuda") == 8
    monkeypatch.setattr(loader_workers.os, "cpu_count", lambda: 2)
    assert resolve_workers(AUTO, "cuda") == 1


@pytest.mark.parametrize("bad", [-2, 1.5, True, "4"])
def test_loader_workers_is_checked(bad):
    with pytest.raises(ConfigError, match="loader_workers must be an integer >= 0, or -1"):
        TrainConfig(loader_workers=bad)


@pytest.mark.parametrize("shape, stage", [(PoolShape(square=32), 1), (PoolShape(short_sides=(32, 24), max_aspect=2.0), 2)])
def test_a_pool_drawn_by_workers_is_the_pool_drawn_in_process(tmp_path, shape, stage):
    # 7 photos x 3 views: one full batch of 16 square views and a remainder
    images = _images(7)
    alone = _pool(tmp_path / "alone", _trunk(), images, shape=shape, stage=stage)
    shared = _pool(tmp_path / "shared", _trunk(), images, shape=shape, stage=stage, workers=2)
    assert np.array_equal(alone.index, shared.index)
    assert np.array_equal(np.asarray(alone.data), np.asarray(shared.data))


def test_a_trunk_cache_prepared_by_workers_is_the_cache_prepared_in_process():
    images = _images(5).images
    alone = TrunkCache(_trunk(), images, CONTRACT, short_side=32, progress=False)
    shared = TrunkCache(_trunk(), images, CONTRACT, short_side=32, progress=False, workers=2)
    assert len(shared) == 5
    for a, b in zip(alone.features, shared.features):
        assert torch.equal(a, b)
