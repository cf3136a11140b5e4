"""The exported graph in PyTorch: shapes, the heatmap decomposition, and agreement with the run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from muselens.core.descriptor_contract import OUTPUT_NAMES
from muselens.export.inference_graph import InferenceGraph, normalise_pixels, pixel_normalisation
from muselens.core.preprocess import PreprocessContract, to_network_input


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _run(graph: InferenceGraph, image: np.ndarray) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return dict(zip(OUTPUT_NAMES, graph(torch.from_numpy(image)[None])))


def test_outputs_have_the_promised_shapes_and_types(trained):
    graph = InferenceGraph(trained)
    out = _run(graph, _image(64, 96))
    d, k, c = trained.model.net.dim, trained.model.net.k, trained.model.classifier.num_instances
    assert out["descriptor"].shape == (1, d) and out["descriptor"].dtype == torch.float32
    assert out["activation"].shape == (1, 2, 3)
    assert out["descriptor_map"].shape == (1, d, 2, 3)
    assert out["locations"].shape == (1, k) and out["locations"].dtype == torch.int64
    assert out["class_logits"].shape == (1, c)
    assert torch.linalg.vector_norm(out["descriptor"]).item() == pytest.approx(1.0, abs=1e-6)


def test_descriptor_is_the_normalised_sum_of_the_map_at_its_locations(trained):
    out = _run(InferenceGraph(trained), _image(65, 97, seed=1))
    dmap = out["descriptor_map"][0].reshape(trained.model.net.dim, -1)
    summed = dmap[:, out["locations"][0]].sum(dim=1)
    torch.testing.assert_close(out["descriptor"][0], summed / summed.norm(), rtol=0, atol=1e-6)


def test_locations_are_the_top_activations(trained):
    out = _run(InferenceGraph(trained), _image(96, 128, seed=2))
    flat = out["activation"][0].flatten()
    picked = flat[out["locations"][0]]
    assert torch.all(picked[:-1] >= picked[1:])
    assert picked[-1] >= torch.sort(flat, descending=True).values[trained.model.net.k - 1]


def test_graph_computes_what_the_trained_run_describes(trained):
    image = _image(64, 96, seed=3)  # already at the recognition size (short side 64)
    out = _run(InferenceGraph(trained), image)
    expected = trained.describe([image], "proposed")
    np.testing.assert_allclose(out["descriptor"].numpy(), expected, rtol=0, atol=1e-6)
    x = torch.from_numpy(to_network_input(image, trained.contract))
    with torch.no_grad():
        logits = trained.model.classifier.logits(x)
    torch.testing.assert_close(out["class_logits"], logits, rtol=0, atol=1e-5)


def test_pixel_normalisation_matches_the_runtime_preprocessing(trained):
    graph = InferenceGraph(trained)
    image = _image(33, 47, seed=4)
    x = normalise_pixels(torch.from_numpy(image)[None], graph.offset, graph.factor)
    np.testing.assert_allclose(x.numpy(), to_network_input(image, trained.contract), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mean, std, shape", [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), ()),
                                               ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (1, 3, 1, 1))])
def test_normalisation_constants_are_scalars_only_where_every_channel_agrees(mean, std, shape):
    contract = PreprocessContract(mean=mean, std=std)
    offset, factor = pixel_normalisation(contract)
    assert tuple(offset.shape) == shape and tuple(factor.shape) == shape
    image = _image(9, 14, seed=5)
    x = normalise_pixels(torch.from_numpy(image)[None], offset, factor)
    np.testing.assert_allclose(x.numpy(), to_network_input(image, contract), rtol=0, atol=1e-6)


def test_bad_inputs_are_refused(trained):
    graph = InferenceGraph(trained)
    with pytest.raises(TypeError, match="uint8"):
        graph(torch.zeros((1, 64, 64, 3), dtype=torch.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        graph(torch.zeros((1, 3, 64, 64), dtype=torch.uint8))
    with pytest.raises(TypeError, match="TrainedModel"):
        InferenceGraph(object())
