"""``muselens serve`` as a child process: ready on its banner, refused bundles reported, stopped gracefully."""

from __future__ import annotations

import pytest

from muselens.runtime.server.process import ServerProcess


def test_a_server_that_cannot_start_is_an_error(tmp_path):
    server = ServerProcess(tmp_path / "missing", log=tmp_path / "serve.log")
    with pytest.raises(RuntimeError, match="did not start"):
        server.start(timeout=60)
    assert "does not exist" in (tmp_path / "serve.log").read_text()


def test_start_then_stop(tiny_bundle, tmp_path):
    with ServerProcess(tiny_bundle, threads=1, log=tmp_path / "serve.log") as server:
        assert server.alive() and server.address.startswith("127.0.0.1:")
    assert not server.alive() and server.process.returncode == 0


def test_a_server_with_a_metrics_port_says_what_its_model_holds(tiny_bundle, tmp_path):
    """What ``bench bad-input`` subtracts from the server's RSS growth: enrolments grow it by design."""
    with ServerProcess(tiny_bundle, threads=1, log=tmp_path / "serve.log", extra=("--metrics-port", "0")) as server:
        state = server.model_state()
        assert server.metrics_port is not None and state["gallery"] > 0
        assert set(state) == {"gallery", "local_features", "vote_index", "enrolled_photos", "reference_maps"}
    with ServerProcess(tiny_bundle, threads=1, log=tmp_path / "serve.log") as server:
        with pytest.raises(RuntimeError, match="no metrics endpoint"):
            server.model_state()
