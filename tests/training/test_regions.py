"""The region descriptor network (paper 004, 3.4.2) on a tiny random backbone, against loops."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from muselens.core.preprocess import PreprocessContract
from muselens.training.backbones.base import Backbone
from muselens.training.regions import (
    RegionDescriptorHead,
    RegionDescriptorNet,
    aggregate_regions,
    dense_class_logits,
    descriptor_map,
    gather_regions,
    max_class_activation,
    region_contributions,
    top_k_locations,
    unravel_locations,
)

C, CLASSES, DIM = 16, 5, 8




def tiny_backbone(seed: int = 0) -> Backbone:
    """Stride 32 in three convs, ``C`` channels: the Backbone interface at test speed."""
    torch.manual_seed(seed)
    return Backbone(
        "tiny",
        stem=nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU()),
        stages=[nn.Sequential(nn.Conv2d(8, C, 3, stride=4, padding=1), nn.ReLU())],
        head=nn.Conv2d(C, C, 3, stride=2, padding=1),
        classifier=nn.Linear(C, 1000),
        contract=PreprocessContract(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)),
    ).eval()


def network(k: int = 4, seed: int = 0, **kwargs) -> RegionDescriptorNet:
    backbone = tiny_backbone(seed)
    net = RegionDescriptorNet(backbone, nn.Linear(C, CLASSES), DIM, k, **kwargs)
    with torch.no_grad():
        net.head.shift.normal_()
    return net


# ---- pure functions ---------------------------------------------------------------------------

def test_max_class_activation_is_the_max_over_classes():
    logits = torch.randn(2, 7, 3, 4)
    act = max_class_activation(logits)
    assert act.shape == (2, 3, 4)
    for n in range(2):
        for h in range(3):
            for w in range(4):
                assert act[n, h, w] == max(logits[n, :, h, w].tolist())


def oracle_top_k(activation: torch.Tensor, k: int) -> list[list[int]]:
    out = []
    for row in activation.reshape(activation.shape[0], -1).tolist():
        out.append(sorted(range(len(row)), key=lambda i: (-row[i], i))[:k])
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [1, 4, 12])
def test_top_k_locations_match_the_oracle_with_ties(seed, k):
    g = torch.Generator().manual_seed(seed)
    activation = torch.randint(0, 3, (3, 4, 5), generator=g).float()  # many ties
    got = top_k_locations(activation, k)
    assert got.dtype == torch.int64 and got.shape == (3, k)
    assert got.tolist() == oracle_top_k(activation, k)


def test_top_k_on_a_map_smaller_than_k():
    activation = torch.tensor([[[1.0, 3.0], [2.0, 3.0]]])
    with pytest.raises(ValueError, match="fewer than k=6"):
        top_k_locations(activation, 6)
    assert top_k_locations(activation, 6, if_fewer="repeat").tolist() == [[1, 3, 2, 0, 1, 3]]
    assert top_k_locations(activation, 4).tolist() == [[1, 3, 2, 0]]


def test_gather_regions_and_unravel_match_loops():
    fmap = torch.randn(2, 3, 4, 5)
    idx = torch.tensor([[0, 19, 7], [5, 5, 12]])
    got = gather_regions(fmap, idx)
    rc = unravel_locations(idx, 5)
    assert got.shape == (2, 3, 3)
    for n in range(2):
        for j in range(3):
            r, c = rc[n, j].tolist()
            assert (r, c) == divmod(idx[n, j].item(), 5)
            assert torch.equal(got[n, j], fmap[n, :, r, c])


def test_descriptor_map_is_normalise_shift_project_at_every_location():
    fmap = torch.randn(2, C, 3, 2, dtype=torch.float64)
    shift = torch.randn(C, dtype=torch.float64)
    weight = torch.randn(DIM, C, dtype=torch.float64)
    dmap = descriptor_map(fmap, shift, weight)
    assert dmap.shape == (2, DIM, 3, 2)
    for n in range(2):
        for h in range(3):
            for w in range(2):
                v = fmap[n, :, h, w]
                torch.testing.assert_close(dmap[n, :, h, w], weight @ (v / v.norm() + shift))
    torch.testing.assert_close(region_contributions(fmap[:, :, 0, 0], shift, weight), dmap[:, :, 0, 0])


def test_aggregate_is_the_normalised_sum():
    contributions = torch.randn(3, 4, DIM, dtype=torch.float64)
    got = aggregate_regions(contributions)
    s = contributions.sum(1)
    torch.testing.assert_close(got, s / s.norm(dim=1, keepdim=True))


def test_dense_class_logits_are_the_classifier_at_every_location():
    fmap = torch.randn(2, C, 3, 4, dtype=torch.float64)
    classifier = nn.Linear(C, CLASSES).double()
    dense = dense_class_logits(fmap, classifier)
    torch.testing.assert_close(dense.permute(0, 2, 3, 1), classifier(fmap.permute(0, 2, 3, 1)))


# ---- the head ---------------------------------------------------------------------------------

def test_head_forward_is_gordos_region_pipeline():
    head = RegionDescriptorHead(C, DIM, k=3).double()
    with torch.no_grad():
        head.shift.normal_()
    regions = torch.randn(2, 3, C, dtype=torch.float64)
    expected = []
    for n in range(2):
        total = sum(head.projection.weight @ (r / r.norm() + head.shift) for r in regions[n])
        expected.append(total / total.norm())
    torch.testing.assert_close(head(regions), torch.stack(expected))


def test_pca_initialisation_centres_and_rotates():
    g = torch.Generator().manual_seed(0)
    features = torch.rand(50, C, generator=g) * torch.linspace(0.1, 3, C)
    head = RegionDescriptorHead(C, DIM)
    head.init_pca_(features)
    projected = head.contributions(features).double()
    torch.testing.assert_close(projected.mean(0), torch.zeros(DIM, dtype=torch.float64), atol=1e-5, rtol=0)
    w = head.projection.weight.double()
    torch.testing.assert_close(w @ w.T, torch.eye(DIM, dtype=torch.float64), atol=1e-5, rtol=0)
    variances = projected.var(0)
    assert bool((variances[:-1] >= variances[1:] - 1e-6).all())  # principal directions, in order
    with pytest.raises(ValueError, match="more than 8 samples"):
        head.init_pca_(features[:8])
    with pytest.raises(ValueError, match="channels"):
        head.init_pca_(features[:, :5])


# ---- the network ------------------------------------------------------------------------------

def test_network_outputs_and_the_exact_heatmap_identity():
    net = network()
    x = torch.rand(2, 3, 100, 130)
    with torch.no_grad():
        out = net(x)
        fmap = net.backbone.features(x)
    h, w = fmap.shape[2:]
    assert (h, w) == (4, 5)
    assert out.descriptor.shape == (2, DIM) and out.region_logits.shape == (2, 4, CLASSES)
    assert out.activation_map.shape == (2, h, w) and out.locations.shape == (2, 4)
    assert out.descriptor_map.shape == (2, DIM, h, w)
    torch.testing.assert_close(out.descriptor.norm(dim=1), torch.ones(2))
    # The defining property, bit for bit: the descriptor is the normalised sum of its map cells.
    assert torch.equal(out.descriptor, F.normalize(gather_regions(out.descriptor_map, out.locations).sum(1), dim=1))
    # And against an independent path: the head on the gathered conv features.
    torch.testing.assert_close(out.descriptor, net.head(gather_regions(fmap, out.locations)))
    # Locations: top-k of the max over classes of the instance classifier at every location.
    dense = torch.einsum("nchw,kc->nkhw", fmap, net.classifier.weight) + net.classifier.bias[:, None, None]
    torch.testing.assert_close(out.activation_map, dense.amax(1))
    assert out.locations.tolist() == oracle_top_k(out.activation_map, 4)
    torch.testing.assert_close(out.region_logits, net.classifier(gather_regions(fmap, out.locations)))
    # A similarity decomposes exactly over the k cells (what the runtime heatmaps draw).
    query = F.normalize(torch.randn(DIM), dim=0)
    cells = gather_regions(out.descriptor_map, out.locations) @ query
    norm = gather_regions(out.descriptor_map, out.locations).sum(1).norm(dim=1)
    torch.testing.assert_close(cells.sum(1) / norm, out.descriptor @ query)


def test_gradients_reach_backbone_classifier_and_head():
    net = network()
    out = net(torch.rand(2, 3, 96, 96))
    loss = out.descriptor.sum() + F.cross_entropy(out.region_logits.reshape(-1, CLASSES),
                                                  torch.tensor([0, 1]).repeat_interleave(4))
    loss.backward()
    for name, module in (("backbone", net.backbone.body), ("classifier", net.classifier), ("head", net.head)):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    assert net.backbone.classifier.weight.grad is None  # the ImageNet head takes no part


def test_descriptor_is_deterministic_and_per_image():
    net = network()
    x = torch.rand(3, 3, 64, 96)
    with torch.no_grad():
        batch = net(x)
        single = net(x[1:2])
    torch.testing.assert_close(batch.descriptor[1:2], single.descriptor)
    assert torch.equal(batch.locations[1:2], single.locations)


def test_a_classifier_weight_tensor_builds_the_same_network():
    reference = network()
    linear = reference.classifier
    net = RegionDescriptorNet(tiny_backbone(), linear.weight.detach(), DIM, 4, classifier_bias=linear.bias.detach())
    net.head.load_state_dict(reference.head.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x).descriptor, reference(x).descriptor)
    assert net.classifier.weight.data_ptr() != linear.weight.data_ptr()  # copied, not aliased
    assert (net.dim, net.k, net.num_classes) == (DIM, 4, CLASSES)


def test_small_inputs_raise_or_repeat():
    x = torch.rand(1, 3, 32, 64)  # a 1 x 2 map
    with pytest.raises(ValueError, match="fewer than k=4"):
        network()(x)
    with torch.no_grad():
        out = network(if_fewer="repeat")(x)
    assert out.locations.shape == (1, 4) and set(out.locations[0].tolist()) == {0, 1}
    assert torch.equal(out.descriptor, F.normalize(gather_regions(out.descriptor_map, out.locations).sum(1), dim=1))


def test_validation():
    backbone = tiny_backbone()
    with pytest.raises(TypeError, match="Backbone"):
        RegionDescriptorNet(nn.Identity(), nn.Linear(C, 3))
    with pytest.raises(ValueError, match="takes 7 features"):
        RegionDescriptorNet(backbone, nn.Linear(7, 3))
    with pytest.raises(ValueError, match="own"):
        RegionDescriptorNet(backbone, nn.Linear(C, 3), classifier_bias=torch.zeros(3))
    with pytest.raises(ValueError, match=r"classifier_bias must be \(3,\)"):
        RegionDescriptorNet(backbone, torch.zeros(3, C), classifier_bias=torch.zeros(4))
    with pytest.raises(ValueError, match="2-D float"):
        RegionDescriptorNet(backbone, torch.zeros(3, C, dtype=torch.int64))
    with pytest.raises(TypeError, match="nn.Linear or a weight tensor"):
        RegionDescriptorNet(backbone, "classifier")
    with pytest.raises(ValueError, match="if_fewer"):
        RegionDescriptorNet(backbone, nn.Linear(C, 3), if_fewer="pad")
    for bad in ({"feature_dim": 0}, {"dim": -1}, {"k": True}):
        kwargs = {"feature_dim": C, "dim": DIM, "k": 4} | bad
        with pytest.raises(ValueError, match=next(iter(bad))):
            RegionDescriptorHead(**kwargs)
    with pytest.raises(ValueError, match="expected 4 regions"):
        RegionDescriptorHead(C, DIM, 4)(torch.randn(2, 3, C))
    with pytest.raises(ValueError, match="4 dimensions"):
        max_class_activation(torch.randn(2, 3, 4))
    with pytest.raises(TypeError, match="floating point"):
        max_class_activation(torch.zeros(1, 2, 3, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="no classes"):
        max_class_activation(torch.zeros(1, 0, 3, 4))
    with pytest.raises(ValueError, match="k must be"):
        top_k_locations(torch.zeros(1, 2, 2), 0)
    with pytest.raises(ValueError, match="if_fewer"):
        top_k_locations(torch.zeros(1, 2, 2), 1, if_fewer="pad")
    with pytest.raises(ValueError, match="NaN"):
        top_k_locations(torch.full((1, 2, 2), float("nan")), 1)
    with pytest.raises(ValueError, match="empty"):
        top_k_locations(torch.zeros(1, 0, 2), 1)
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        gather_regions(torch.zeros(1, 2, 2, 3), torch.tensor([[6]]))
    with pytest.raises(ValueError, match=r"\(2, k\)"):
        gather_regions(torch.zeros(2, 2, 2, 3), torch.tensor([[0]]))
    with pytest.raises(TypeError, match="int64"):
        gather_regions(torch.zeros(1, 2, 2, 3), torch.tensor([[0]], dtype=torch.int32))
    with pytest.raises(TypeError, match="int64"):
        unravel_locations(torch.tensor([[0.0]]), 3)
    with pytest.raises(ValueError, match="width"):
        unravel_locations(torch.tensor([[0]]), 0)
    with pytest.raises(ValueError, match=r"shift must be \(16,\)"):
        region_contributions(torch.zeros(2, C), torch.zeros(3), torch.zeros(DIM, C))
    with pytest.raises(ValueError, match=r"weight must be \(D, 16\)"):
        region_contributions(torch.zeros(2, C), torch.zeros(C), torch.zeros(DIM, 3))
    with pytest.raises(ValueError, match="classifier expects"):
        dense_class_logits(torch.zeros(1, 3, 2, 2), nn.Linear(C, 2))
    with pytest.raises(TypeError, match="nn.Linear"):
        dense_class_logits(torch.zeros(1, C, 2, 2), torch.zeros(2, C))


def test_gradcheck_of_the_descriptor_path():
    g = torch.Generator().manual_seed(3)
    fmap = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    shift = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor([[0, 4, 8], [2, 2, 7]])

    def descriptor(f, s, w):
        return aggregate_regions(gather_regions(descriptor_map(f, s, w), idx))

    assert torch.autograd.gradcheck(descriptor, (fmap, shift, weight))


def test_top_k_exports_to_onnx_with_the_same_tie_rule():
    """ONNX has no stable sort; the export path uses TopK, whose ties go to the lower index too."""
    ort = pytest.importorskip("onnxruntime", reason="the export check needs ONNX Runtime")
    pytest.importorskip("onnx", reason="the export check needs onnx")
    import io
    import warnings

    class TopK(nn.Module):
        def forward(self, activation):
            return top_k_locations(activation, 4)

    g = torch.Generator().manual_seed(0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TopK(), (torch.zeros(3, 4, 5),), buffer, input_names=["a"],
                          dynamic_axes={"a": {1: "h", 2: "w"}}, dynamo=False)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for shape in [(3, 4, 5), (3, 6, 7), (3, 2, 2)]:
        activation = torch.randint(0, 3, shape, generator=g).float()  # many ties
        got = session.run(None, {"a": activation.numpy()})[0]
        assert got.tolist() == oracle_top_k(activation, 4) == top_k_locations(activation, 4).tolist()
