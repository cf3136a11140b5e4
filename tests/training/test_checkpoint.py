from __future__ import annotations

import os
import pickle

import pytest
import torch

from muselens.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 3, "history": [{"loss": 0.5}], "note": None}
    save_checkpoint(tmp_path / "c.pt", state)
    back = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "c.pt", {"epoch": 1})

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path / "c.pt", {"epoch": 2})
    assert load_checkpoint(tmp_path / "c.pt")["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(CheckpointError, match="not a readable muselens checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"garbage", pickle.dumps([1, 2])[:5]])
def test_truncated_or_foreign_files(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_missing(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
