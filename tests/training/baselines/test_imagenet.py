"""Global descriptors: unit norm, deterministic, batching equal to one by one, multi-scale averaging."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch

from muselens.training.backbones import build_backbone
from muselens.training.baselines.imagenet import (
    DEFAULT_SHORT_SIDE,
    add_extractor_arguments,
    extractor_from_args,
    IM_METHODS,
    MULTI_SCALE,
    GlobalDescriptorExtractor,
    build_im_extractor,
)
from muselens.training.pooling import POOLINGS, GeM




@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return build_backbone("tf_efficientnet_lite0", pretrained=False)


def _images(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in shapes]


# Two share a shape (batched together), one portrait, one elongated beyond the 2.0 cap.
SHAPES = [(60, 80), (60, 80), (90, 50), (40, 130), (77, 77)]


@pytest.mark.parametrize("pooling", sorted(POOLINGS))
def test_descriptors_are_unit_norm_float32_and_deterministic(backbone, pooling):
    ex = GlobalDescriptorExtractor(backbone, pooling, size=64)
    images = _images(SHAPES)
    d = ex.extract(images)
    assert d.shape == (len(images), 1280) and d.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(d, ex.extract(images))
    assert not np.allclose(d[0], d[1], atol=1e-3)  # different images, different descriptors


@pytest.mark.parametrize("pooling", ["gem", "rmac"])
def test_batching_equals_one_by_one(backbone, pooling):
    images = _images(SHAPES + [(60, 80), (80, 60)], seed=1)
    batched = GlobalDescriptorExtractor(backbone, pooling, size=64, batch_size=16).extract(images)
    single = np.concatenate([
        GlobalDescriptorExtractor(backbone, pooling, size=64, batch_size=1).extract([im]) for im in images
    ])
    np.testing.assert_allclose(batched, single, atol=2e-5)
    chunked = GlobalDescriptorExtractor(backbone, pooling, size=64, batch_size=2).extract(images)
    np.testing.assert_allclose(batched, chunked, atol=2e-5)


def test_multiscale_is_the_renormalised_mean_of_the_scales(backbone):
    images = _images(SHAPES, seed=2)
    multi = GlobalDescriptorExtractor(backbone, "gem", size=96, scales=MULTI_SCALE).extract(images)
    assert GlobalDescriptorExtractor(backbone, "gem", size=96, scales=MULTI_SCALE).sizes == (96, 68, 48)
    per_scale = [GlobalDescriptorExtractor(backbone, "gem", size=s).extract(images) for s in (96, 68, 48)]
    mean = np.mean(per_scale, axis=0)
    expected = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    np.testing.assert_allclose(multi, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(multi, axis=1), 1.0, atol=1e-5)


def test_descriptor_equals_pooled_features_of_the_prepared_image(backbone):
    """The extractor is exactly: short-side resize (cap 2.0), contract, features, pooling, L2."""
    from muselens.core.preprocess import prepare_short_side

    (image,) = _images([(40, 130)], seed=3)
    d = GlobalDescriptorExtractor(backbone, GeM(p=3.0), size=64).extract([image])
    x = torch.from_numpy(prepare_short_side(image, backbone.contract, 64, 2.0))
    assert x.shape == (1, 3, 64, 128)
    with torch.inference_mode():
        v = GeM(p=3.0)(backbone.features(x))
    np.testing.assert_allclose(d[0], (v / v.norm()).numpy()[0], atol=1e-6)


def test_logits_output_is_the_normalised_classifier_output(backbone):
    ex = GlobalDescriptorExtractor(backbone, None, size=64, resize="square", output="logits")
    images = _images(SHAPES, seed=4)
    d = ex.extract(images)
    assert d.shape == (len(images), 1000) and ex.dim == 1000
    from muselens.core.preprocess import prepare_square

    with torch.inference_mode():
        logits = backbone.logits(torch.from_numpy(prepare_square(images[2], backbone.contract, 64)))[0]
    np.testing.assert_allclose(d[2], (logits / logits.norm()).numpy(), atol=1e-6)


def test_im_methods_registry(backbone):
    assert set(IM_METHODS) == {"im-mac", "im-spoc", "im-gem", "im-rmac", "im-logits"}
    images = _images(SHAPES[:3], seed=5)
    for name in IM_METHODS:
        ex = build_im_extractor(name, backbone, size=64, multiscale=True)
        d = ex.extract(images)
        assert d.shape == (3, ex.dim)
        np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)


def test_im_default_sizes(backbone):
    assert build_im_extractor("im-gem", backbone).sizes == (DEFAULT_SHORT_SIDE,)
    assert build_im_extractor("im-logits", backbone).sizes == (backbone.contract.native_size,)
    ms = build_im_extractor("im-mac", backbone, multiscale=True)
    assert ms.sizes == (448, round(448 / math.sqrt(2)), 224)
    described = ms.describe()
    assert described["backbone"] == "tf_efficientnet_lite0" and described["dim"] == 1280
    assert described["contract"]["interpolation"] == "bicubic"


def test_pretrained_im_logits_sees_espresso():
    skimage_data = pytest.importorskip("skimage.data")
    ex = build_im_extractor("im-logits", build_backbone("tf_efficientnet_lite0"))
    assert int(np.argmax(ex.extract([skimage_data.coffee()])[0])) == 967


def test_extraction_restores_training_mode(backbone):
    backbone.train()
    try:
        GlobalDescriptorExtractor(backbone, "mac", size=32).extract(_images([(32, 40)]))
        assert backbone.training
    finally:
        backbone.eval()


def test_empty_input_gives_an_empty_matrix(backbone):
    d = GlobalDescriptorExtractor(backbone, "mac", size=32).extract([])
    assert d.shape == (0, 1280) and d.dtype == np.float32


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"pooling": None}, ValueError, "needs a pooling"),
        ({"pooling": "mac", "output": "logits"}, ValueError, "pooling=None"),
        ({"pooling": "vlad"}, ValueError, "unknown pooling"),
        ({"pooling": 3}, TypeError, "pooling must be"),
        ({"pooling": "mac", "output": "embedding"}, ValueError, "output"),
        ({"pooling": "mac", "resize": "crop"}, ValueError, "resize"),
        ({"pooling": "mac", "size": 0}, ValueError, "size"),
        ({"pooling": "mac", "scales": ()}, ValueError, "scales"),
        ({"pooling": "mac", "scales": (1.0, -0.5)}, ValueError, "scales"),
        ({"pooling": "mac", "batch_size": 0}, ValueError, "batch_size"),
        ({"pooling": "mac", "max_aspect": 0.5}, ValueError, "max_aspect"),
    ],
)
def test_constructor_rejects_bad_configuration(backbone, kwargs, error, match):
    with pytest.raises(error, match=match):
        GlobalDescriptorExtractor(backbone, **kwargs)


def test_constructor_needs_a_backbone():
    with pytest.raises(TypeError, match="Backbone"):
        GlobalDescriptorExtractor(torch.nn.Identity(), "mac")


def test_unknown_im_method(backbone):
    with pytest.raises(ValueError, match="im-gem"):
        build_im_extractor("im-vlad", backbone)


@pytest.mark.parametrize(
    "images, error",
    [
        (np.zeros((32, 32, 3), dtype=np.uint8), TypeError),
        ([np.zeros((32, 32, 3), dtype=np.float32)], TypeError),
        ([np.zeros((32, 32), dtype=np.uint8)], ValueError),
    ],
)
def test_extract_rejects_bad_images(backbone, images, error):
    with pytest.raises(error):
        GlobalDescriptorExtractor(backbone, "mac", size=32).extract(images)


def test_command_line_options_build_the_extractor():
    parser = argparse.ArgumentParser()
    add_extractor_arguments(parser)
    args = parser.parse_args(["--backbone", "mobilenet_v2", "--method", "im-rmac", "--size", "320",
                              "--multiscale", "--max-aspect", "1.5", "--batch-size", "4"])
    ex = extractor_from_args(args, pretrained=False)
    assert ex.backbone.name == "mobilenet_v2" and ex.sizes == (320, 226, 160)
    assert ex.max_aspect == 1.5 and ex.batch_size == 4 and ex.resize == "short_side"
    defaults = parser.parse_args([])
    assert (defaults.backbone, defaults.method, defaults.size) == ("tf_efficientnet_lite0", "im-gem", None)
    with pytest.raises(SystemExit):
        parser.parse_args(["--method", "im-vlad"])
