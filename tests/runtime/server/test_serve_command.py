"""``muselens serve`` as a real process, driven by ``muselens recognize`` and ``muselens stream``."""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref

import pytest

from muselens.cli import main as cli


@pytest.fixture
def serving(tiny_bundle, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("client client-token-abcdefghijkl\nadmin admin-token-abcdefghijklm\n")
    tokens.chmod(0o600)
    process = subprocess.Popen([sys.executable, "-m", "muselens", "serve", str(tiny_bundle), "--port", "0",
                                "--host", "127.0.0.1", "--threads", "1", "--token-file", str(tokens),
                                "--inference-slots", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.search(r"on 127\.0\.0\.1:(\d+) .*; 2 inference slot\(s\);", line)
    if match is None:
        process.kill()
        pytest.fail(f"serve did not start: {line!r} {process.stderr.read()}")
    yield f"127.0.0.1:{match.group(1)}", tokens, process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_serve_recognize_and_stream(serving, export_museum, tmp_path, capsys):
    address, tokens, process = serving
    query = export_museum / "queries" / "a0" / "q0.png"
    overlays = tmp_path / "overlays"
    assert cli(["recognize", "--server", address, "--token-file", str(tokens), str(query), "--top-k", "2",
                "--overlay-dir", str(overlays)]) == 0
    out = capsys.readouterr().out
    assert "q0.png:" in out and "1. " in out and "2. " in out
    assert sorted(p.name for p in overlays.iterdir()) == ["q0.query.full.jpg", "q0.query.regions.jpg"]
    assert cli(["recognize", "--server", address, str(query)]) == 1  # no token: refused, status printed
    assert "UNAUTHENTICATED" in capsys.readouterr().err

    frames = tmp_path / "frames"
    frames.mkdir()
    for i, iid in enumerate(["a0", "a0", "a1", "a2"]):
        shutil.copy(export_museum / "queries" / iid / "q0.png", frames / f"{i:03d}.png")
    (frames / "004.png").write_bytes(b"broken")  # reported and skipped by the client
    report = tmp_path / "stream.json"
    assert cli(["stream", "--server", address, "--token-file", str(tokens), "--frames", str(frames), "--fps", "20",
                "--explain", "--out-dir", str(tmp_path / "annotated"), "--out-video", str(tmp_path / "walk.avi"),
                "--json-out", str(report)]) == 0
    captured = capsys.readouterr()
    assert "frame 000000" in captured.out and "frames answered" in captured.out
    assert "skipped" in captured.err
    data = json.loads(report.read_text())
    assert data["summary"]["answered"] == len(data["frames"]) >= 1
    assert data["frames"][-1]["frame_id"] == "000003"
    assert len(list((tmp_path / "annotated").iterdir())) == len(data["frames"])
    assert (tmp_path / "walk.avi").stat().st_size > 0

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert "shutting down" in process.stderr.read()


def test_serve_refuses_what_it_cannot_serve(tiny_bundle, tmp_path, capsys):
    assert cli(["serve", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert "does not exist" in capsys.readouterr().err
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert cli(["serve", str(tiny_bundle), "--port", "0", "--backend", "ort-cuda"]) == 2
        assert "CUDAExecutionProvider" in capsys.readouterr().err
    assert cli(["serve", str(tiny_bundle), "--port", "0", "--tls-cert", str(tmp_path / "c.pem")]) == 2
    assert "both a certificate and a key" in capsys.readouterr().err
    assert cli(["serve", str(tiny_bundle), "--port", "0", "--inference-slots", "0"]) == 2
    assert "inference slots must be >= 1, got 0" in capsys.readouterr().err
    assert cli(["serve", str(tiny_bundle), "--port", "0", "--reference-cache-mb", "-1"]) == 2
    assert "--reference-cache-mb must be >= 0, got -1" in capsys.readouterr().err
    assert cli(["serve", str(tiny_bundle), "--port", "0", "--bundle-root", str(tmp_path / "nowhere")]) == 2
    assert f"--bundle-root {tmp_path / 'nowhere'} is not a directory" in capsys.readouterr().err
    assert cli(["serve", str(tiny_bundle), "--port", "0", "--max-jpeg-scans", "0"]) == 2
    assert "FrameLimits.max_jpeg_scans must be >= 1, got 0" in capsys.readouterr().err


def test_clients_report_an_unreachable_server(export_museum, capsys):
    query = export_museum / "queries" / "a0" / "q0.png"
    assert cli(["recognize", "--server", "127.0.0.1:1", "--timeout", "2", str(query)]) == 2
    assert "unreachable" in capsys.readouterr().err


def test_serve_keeps_no_replaced_model_alive(tiny_bundle, monkeypatch, capsys):
    """After a hot reload the model loaded at start must be freed once no call holds it. The
    command once kept it in a local for the life of the process, pinning its session and its
    cache of reference maps (~96 MiB): the bad-input bench's RSS growth after enrolments."""
    from muselens.runtime.server import serve_command as command

    built, outcome, returned = [], {}, threading.Event()
    real_build = command.build
    monkeypatch.setattr(command, "build", lambda args: built.append(real_build(args)) or built[-1])

    def reload_then_stop() -> None:
        printed, deadline = "", time.monotonic() + 60
        while not (built and built[0].port is not None and "serving" in printed):
            if returned.is_set() or time.monotonic() > deadline:
                return  # never served: cli() returned on its own and the assertions below say so
            printed += capsys.readouterr().out
            time.sleep(0.05)
        try:
            holder = built[0].holder
            first = weakref.ref(holder.current())
            holder.load(tiny_bundle)
            gc.collect()
            outcome["freed"] = first() is None
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # serving, so main's handler is in place: a graceful stop

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    helper = threading.Thread(target=reload_then_stop, daemon=True)
    helper.start()
    try:
        assert cli(["serve", str(tiny_bundle), "--port", "0", "--host", "127.0.0.1", "--threads", "1"]) == 0
    finally:
        returned.set()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    helper.join(10)
    assert outcome == {"freed": True}


def _serve_once(argv: list[str], capsys, monkeypatch) -> tuple[int, str, list]:
    """``muselens serve argv`` in this process until it prints its banner, then a graceful SIGTERM;
    (exit status, banner, the metrics HTTP servers it started)."""
    from muselens.runtime.server.metrics import ServiceMetrics

    started, printed, returned = [], {}, threading.Event()
    real_serve_http = ServiceMetrics.serve_http
    monkeypatch.setattr(ServiceMetrics, "serve_http",
                        lambda self, *a, **k: started.append(real_serve_http(self, *a, **k)) or started[-1])

    def stop_once_serving() -> None:
        out, deadline = "", time.monotonic() + 60
        while "serving" not in out:
            if returned.is_set() or time.monotonic() > deadline:
                return
            out += capsys.readouterr().out
            time.sleep(0.05)
        printed["banner"] = out
        os.kill(os.getpid(), signal.SIGTERM)

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    helper = threading.Thread(target=stop_once_serving, daemon=True)
    helper.start()
    try:
        code = cli(["serve", *argv])
    finally:
        returned.set()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    helper.join(10)
    return code, printed.get("banner", ""), started


def test_the_metrics_endpoint_listens_on_the_servers_host_only(tiny_bundle, capsys, monkeypatch):
    """``--host 127.0.0.1 --metrics-port P`` once served the unauthenticated metrics on 0.0.0.0:P."""
    code, banner, started = _serve_once([str(tiny_bundle), "--port", "0", "--host", "127.0.0.1", "--threads", "1",
                                         "--metrics-port", "0"], capsys, monkeypatch)
    assert code == 0 and len(started) == 1
    host, port = started[0].server_address[:2]
    assert host == "127.0.0.1" and f"; metrics on 127.0.0.1:{port}" in banner


def test_serve_refuses_a_metrics_port_it_cannot_bind(tiny_bundle, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli(["serve", str(tiny_bundle), "--port", "0", "--host", "127.0.0.1", "--threads", "1",
                    "--metrics-port", str(port)]) == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.parametrize("flag, disabled", [((), True), (("--allow-ort-telemetry",), False)])
def test_serve_turns_ort_telemetry_off_unless_allowed(tiny_bundle, monkeypatch, flag, disabled):
    import argparse

    import onnxruntime

    from muselens.runtime.server import serve_command as command

    calls = []
    monkeypatch.setattr(onnxruntime, "disable_telemetry_events", lambda: calls.append(1))
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    server = command.build(parser.parse_args([str(tiny_bundle), "--port", "0", "--threads", "1", *flag]))
    try:
        assert server.holder.current().config.allow_ort_telemetry is not disabled
        assert bool(calls) is disabled
    finally:
        server.stop(0)


def test_serve_writes_nothing_under_the_users_home(tiny_bundle, tmp_path):
    """ONNX Runtime wrote a device id and an event database (OS, CPU, the python path) under
    ~/.cache/Microsoft at import, before any API call could stop it; the environment variable it
    reads at import is the only way, and ``serve`` sets it."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY")}
    env["HOME"] = str(home)
    process = subprocess.Popen([sys.executable, "-m", "muselens", "serve", str(tiny_bundle), "--port", "0",
                                "--host", "127.0.0.1", "--threads", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert "serving" in line, process.stderr.read()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []


def test_serve_names_its_admin_port_in_the_banner(tiny_bundle, capsys, monkeypatch):
    from muselens.runtime.server.process import ADMIN, READY

    code, banner, _ = _serve_once([str(tiny_bundle), "--port", "0", "--host", "127.0.0.1", "--threads", "1",
                                   "--admin-port", "0", "--metrics-port", "0"], capsys, monkeypatch)
    assert code == 0
    main, admin = int(READY.search(banner).group(1)), int(ADMIN.search(banner).group(1))
    assert f"; admin on 127.0.0.1:{admin}; metrics on 127.0.0.1:" in banner and admin not in (0, main)


def test_serve_trims_the_heap_while_it_runs(tiny_bundle, capsys, monkeypatch):
    """Freed heap pages stayed with the server for good (+13 % RSS after a flood of calls)."""
    from muselens.runtime.server import malloc as memory

    made = []

    class Recording(memory.HeapTrimmer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(memory, "HeapTrimmer", Recording)
    code, banner, _ = _serve_once([str(tiny_bundle), "--port", "0", "--host", "127.0.0.1", "--threads", "1"],
                                  capsys, monkeypatch)
    assert code == 0 and "serving" in banner
    assert len(made) == 1 and made[0].interval == memory.HEAP_TRIM_SECONDS
    assert made[0]._thread.ident is not None and not made[0]._thread.is_alive()  # started, stopped at shutdown


def test_serve_flags_for_the_edge_reach_the_server(tiny_bundle):
    """Issue 22's levers and their off switches, from the command line to what runs."""
    import argparse

    from muselens.runtime.server import serve_command as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    defaults = command.build(parser.parse_args([str(tiny_bundle), "--port", "0", "--threads", "1"]))
    try:
        model = defaults.holder.current()
        assert model.variant_choice is not None and model.variant == "fp32"  # --variant auto
        assert model.config.reduced_decode and model.config.regional == 3 and model.describer.short_side == 64
        assert defaults.recognizer.pipeline and defaults.verification.busy_share == 0.5
    finally:
        defaults.stop(0)
    named = command.build(parser.parse_args([
        str(tiny_bundle), "--port", "0", "--threads", "1", "--variant", "default", "--reduced-decode", "off",
        "--pipeline", "off", "--short-side", "96", "--decode-slots", "2", "--verify-share", "1", "--regional", "0"]))
    try:
        model = named.holder.current()
        assert model.variant_choice is None and model.variant == "fp32"
        assert not model.config.reduced_decode and model.config.regional == 0 and model.describer.short_side == 96
        assert not named.recognizer.pipeline and named.recognizer.decode_gate.slots == 2
        assert named.verification.busy_share == 1.0
    finally:
        named.stop(0)
