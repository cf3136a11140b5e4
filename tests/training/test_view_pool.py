"""The pooled augmented views of stages 1-2: exact features, honest view order, safe reuse."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import muselens.training.view_pool as view_pool
from muselens.core.preprocess import PreprocessContract, prepare_short_side, prepare_square
from muselens.training.augment import AugmentConfig, augment, cap_aspect_with_noise
from muselens.training.backbones.backbone_registry import build_backbone
from muselens.training.classifier import InstanceClassifier, set_trainable_blocks, split_blocks
from muselens.training.datasets import InstanceLabels, LabelledImages
from muselens.training.run import TrainingRun
from muselens.training.train_config import ConfigError, load_config
from muselens.training.view_pool import (POOL_STREAM, PooledViews, PoolShape, TrunkViewPool, ViewPoolConfig,
                                         view_order)

CONTRACT = PreprocessContract(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), interpolation="bilinear")


def _images(n: int = 3) -> LabelledImages:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40 + 4 * i, 56, 3), dtype=np.uint8) for i in range(n)]
    return LabelledImages(images, list(range(n)), [], InstanceLabels(tuple(f"a{i}" for i in range(n))))


def _trunk() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU())


def _pool(folder, trunk=None, images=None, **kw) -> TrunkViewPool:
    args = dict(shape=PoolShape(square=32), views=3, augment_config=AugmentConfig(), seed=0, stage=1, progress=False)
    args.update(kw)
    return TrunkViewPool.open_or_build(folder, trunk or _trunk(), images or _images(), CONTRACT, **args)


def test_a_square_view_is_the_trunk_of_that_augmented_draw(tmp_path):
    trunk, images = _trunk(), _images()
    pool = _pool(tmp_path / "pool", trunk, images)
    assert (pool.items, pool.views, pool.scales) == (3, 3, 1)
    draw = augment(images.images[2], AugmentConfig(), np.random.default_rng([0, POOL_STREAM, 1, 2, 1]))
    with torch.no_grad():
        expected = trunk(torch.from_numpy(prepare_square(draw, CONTRACT, 32)))[0]
    got = pool.features(2, 1)
    assert got.dtype == torch.float32 and got.shape == (4, 16, 16)
    torch.testing.assert_close(got, expected.half().float())
    assert not torch.equal(pool.features(2, 0), got)  # each view is its own draw


def test_a_short_side_view_holds_every_scale_at_the_photos_aspect(tmp_path):
    trunk, images = _trunk(), _images()
    pool = _pool(tmp_path / "pool", trunk, images, shape=PoolShape(short_sides=(32, 24), max_aspect=2.0), stage=2)
    assert pool.scales == 2
    draw = augment(images.images[0], AugmentConfig(), np.random.default_rng([0, POOL_STREAM, 2, 0, 2]))
    draw = cap_aspect_with_noise(draw, 2.0, np.random.default_rng([0, POOL_STREAM, 2, 0, 2, 1]))
    for scale, side in enumerate((32, 24)):
        with torch.no_grad():
            expected = trunk(torch.from_numpy(prepare_short_side(draw, CONTRACT, side, 2.0)))[0]
        torch.testing.assert_close(pool.features(0, 2, scale), expected.half().float())
    item, label = PooledViews(pool, [5, 6, 7], start_block=2, seed=0, short_sides=(32, 24))[1]
    assert label == 6 and len(item) == 2 and item[0].shape[1:] != item[1].shape[1:]


def test_every_cycle_of_epochs_shows_each_view_once_in_a_seeded_order():
    for item in range(5):
        for cycle in range(3):
            shown = [view_order(item, cycle * 4 + e, 4, seed=1) for e in range(4)]
            assert sorted(shown) == [0, 1, 2, 3]
    orders = {tuple(view_order(item, e, 4, seed=1) for e in range(4)) for item in range(20)}
    assert len(orders) > 5  # photos do not march through their views in step
    assert view_order(3, 9, 4, seed=1) == view_order(3, 9, 4, seed=1)
    with pytest.raises(ValueError):
        view_order(0, 0, 0, seed=0)


def test_a_complete_matching_pool_is_reopened_and_anything_else_rebuilt(tmp_path, monkeypatch):
    built = []
    real = view_pool._write_features
    monkeypatch.setattr(view_pool, "_write_features", lambda *a: built.append(1) or real(*a))
    folder = tmp_path / "pool"
    first = _pool(folder)
    _pool(folder)
    assert len(built) == 1
    torch.testing.assert_close(_pool(folder).features(1, 2), first.features(1, 2))
    _pool(folder, seed=1)  # other draws
    _pool(folder, augment_config=AugmentConfig(max_rotation=10.0))
    trunk = _trunk()
    with torch.no_grad():
        trunk[0].bias.add_(1.0)  # other frozen weights
    _pool(folder, trunk=trunk)
    assert len(built) == 4
    (folder / "manifest.json").unlink()  # a build killed before its manifest was written
    _pool(folder, trunk=trunk)
    (folder / "manifest.json").write_text("{not json")
    _pool(folder, trunk=trunk)
    assert len(built) == 6
    assert json.loads((folder / "manifest.json").read_text())["views"] == 3


def test_pooled_trunk_features_give_the_full_networks_logits():
    model = InstanceClassifier(build_backbone(pretrained=False), ["a", "b", "c"])
    set_trainable_blocks(model, 3)
    frozen, _ = split_blocks(model, 3)
    model.eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        features = nn.Sequential(*frozen)(x)
        torch.testing.assert_close(model.logits(features, len(frozen)), model.logits(x))
        torch.testing.assert_close(model.dense_logits(features, len(frozen)), model.dense_logits(x))
        with pytest.raises(ValueError, match="start_block"):
            model.logits(features, 99)


def test_pool_settings_are_checked():
    with pytest.raises(ValueError):
        ViewPoolConfig(stage1_views=-1)
    with pytest.raises(ValueError):
        ViewPoolConfig(phone_share=1.5)
    with pytest.raises(ValueError, match="either"):
        PoolShape()
    with pytest.raises(ConfigError, match="view_pool"):
        load_config(None, {"view_pool": {"stage1_views": -2}})


TINY = {
    "train_blocks": 2, "eval_short_side": 64,
    "stage1": {"epochs": 3, "batch_size": 4, "image_size": 64},
    "stage2": {"epochs": 2, "images_per_step": 2, "short_sides": [64, 48]},
    "stage3": {"epochs": 1, "dim": 8, "k": 4, "short_side": 64, "triplets_per_step": 4},
}


def test_a_run_draws_stages_1_2_from_its_pools_and_resumes_with_them(tiny_museum, tmp_path, capsys):
    config = load_config(None, {**TINY, "view_pool": {"stage1_views": 2, "stage2_views": 5, "phone_share": 0.5}})
    out = tmp_path / "run"
    summary = TrainingRun(tiny_museum, out, config, pretrained=False, progress=False).run()
    err = capsys.readouterr().err
    assert "stage 1: 2 pooled views per photo" in err and "shows 2 distinct augmentations" in err
    assert "stage 2: 2 pooled views per photo" in err  # capped at the stage's 2 epochs
    for stage, views in ((1, 2), (2, 2)):
        manifest = json.loads((out / "view-pool" / f"stage{stage}" / "manifest.json").read_text())
        assert (manifest["views"], manifest["items"]) == (views, 6)
    fresh = TrainingRun(tiny_museum, tmp_path / "fresh", load_config(None, {
        **TINY, "view_pool": {"stage1_views": 0, "stage2_views": 0}}), pretrained=False, progress=False).run()
    assert not (tmp_path / "fresh" / "view-pool").exists()
    assert [h["stage"] for h in fresh["history"]] == [h["stage"] for h in summary["history"]]
    # the pooled run's losses are its own, not the fresh draws'
    assert summary["history"][1]["loss"] != fresh["history"][1]["loss"]


def test_a_pool_that_would_not_fit_on_disk_is_refused_naming_the_setting(tmp_path, monkeypatch):
    trunk, images = _trunk(), _images()
    need = view_pool.estimate_bytes(trunk, images, PoolShape(square=32), 3, "cpu")
    assert need == 3 * 3 * 4 * 16 * 16 * 2  # 3 photos x 3 views x (4, 16, 16) float16
    built = _pool(tmp_path / "pool", trunk, images)
    assert built.nbytes == need
    short = view_pool.estimate_bytes(trunk, images, PoolShape(short_sides=(32,), max_aspect=2.0), 1, "cpu")
    assert short > 3 * 4 * 16 * 16 * 2  # the photos are wider than tall
    monkeypatch.setattr(view_pool.shutil, "disk_usage", lambda _: type("U", (), {"free": need - 1})())
    with pytest.raises(ValueError, match=r"view pool needs about .* lower view_pool.stage1_views"):
        _pool(tmp_path / "other", trunk, images)
