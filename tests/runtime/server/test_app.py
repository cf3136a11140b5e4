"""The server around the servicers: health, reflection, TLS, metrics, graceful shutdown."""

from __future__ import annotations

import datetime
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from muselens.runtime.server.app import SERVICE_NAMES, ServerConfig
from muselens.runtime.server.auth import Tokens
from muselens.v1 import recognition_pb2 as pb
from muselens.v1 import recognition_pb2_grpc as pb_grpc
from tests.runtime.server.conftest import frame, slow_model


def test_health_reports_serving_then_not_serving_on_shutdown(served, start_server):
    server = start_server(served, tokens=Tokens(admin=("admin-token-0123456789abcdef",)))
    health = health_pb2_grpc.HealthStub(server.channel)
    for name in ("", "muselens.v1.Recognizer", "muselens.v1.Admin"):
        assert health.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING
    server.server.health.enter_graceful_shutdown()
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.parametrize("tokens", [None, Tokens(client=("client-token-0123456789abcdef",))])
def test_health_says_not_serving_for_admin_where_admin_calls_are_disabled(served, start_server, tokens):
    """Without an admin token every Admin call is refused: health once said SERVING for it all the same."""
    server = start_server(served, tokens=tokens)
    health = health_pb2_grpc.HealthStub(server.channel)
    status = {name: health.Check(health_pb2.HealthCheckRequest(service=name)).status
              for name in ("", "muselens.v1.Recognizer", "muselens.v1.Admin")}
    assert status == {"": health_pb2.HealthCheckResponse.SERVING,
                      "muselens.v1.Recognizer": health_pb2.HealthCheckResponse.SERVING,
                      "muselens.v1.Admin": health_pb2.HealthCheckResponse.NOT_SERVING}
    with pytest.raises(grpc.RpcError) as err:
        server.admin.LoadBundle(pb.LoadBundleRequest(path="x"), timeout=5)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED  # what health now says


def test_reflection_lists_the_api(served, start_server):
    server = start_server(served)
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in next(responses).list_services_response.service}
    assert set(SERVICE_NAMES) <= names and "grpc.health.v1.Health" in names
    assert SERVICE_NAMES == ("muselens.v1.Recognizer", "muselens.v1.Admin")


def _certificate(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "muselens-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "server.crt", tmp_path / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_with_a_generated_certificate(served, start_server, query_images, tmp_path):
    cert, key = _certificate(tmp_path)
    server = start_server(served, tls_cert=cert, tls_key=key)
    assert server.server.secure
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    with grpc.secure_channel(f"localhost:{server.server.port}", credentials) as channel:
        r = pb_grpc.RecognizerStub(channel).Recognize(frame(query_images[0]), timeout=10)
        assert r.matches
    with grpc.insecure_channel(f"localhost:{server.server.port}") as plain:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.RecognizerStub(plain).Recognize(frame(query_images[0]), timeout=3)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_needs_both_files():
    with pytest.raises(ValueError, match="both a certificate and a key"):
        ServerConfig(tls_cert="cert.pem")


def test_prometheus_metrics_count_frames_stages_and_decisions(tiny_bundle, start_server, query_images):
    from muselens.runtime.engine.activity import RUNS
    from muselens.runtime.recognition.served_model import ServedModel

    served = ServedModel.load(tiny_bundle)  # as serve runs it: the CPU gate counts cores
    server = start_server(served)
    before = RUNS.counts()
    server.stub.Recognize(frame(query_images[0]))
    after = RUNS.counts()  # the call ran alone: over every core (one core where that is all there is)
    assert after["all"] == before["all"] + 1 and after["one"] == before["one"]
    with pytest.raises(grpc.RpcError):
        server.stub.Recognize(pb.Frame(image=pb.Image(encoded=b"junk")))
    http = server.server.metrics.serve_http(0, "127.0.0.1")
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{http.server_port}/metrics", timeout=5).read().decode()
    finally:
        http.shutdown()
    assert 'muselens_frames_total{method="Recognize",outcome="ok"} 1.0' in text
    assert 'muselens_frames_total{method="Recognize",outcome="unknown_format"} 1.0' in text
    assert 'muselens_stage_seconds_count{stage="inference"} 1.0' in text
    assert "muselens_decisions_total" in text and "muselens_dropped_frames_total 0.0" in text
    assert "process_resident_memory_bytes" in text  # the process's own, for RSS over time
    assert f'muselens_inference_runs_total{{cores="all"}} {float(after["all"])}' in text


def test_process_metrics_are_on_each_servers_own_registry_only():
    """Two servers' registries each get process_*; a caller's registry is left as the caller made it."""
    from prometheus_client import CollectorRegistry

    from muselens.runtime.server.metrics import ServiceMetrics

    for metrics in (ServiceMetrics(), ServiceMetrics()):
        assert metrics.registry.get_sample_value("process_resident_memory_bytes") > 0
    assert ServiceMetrics(CollectorRegistry()).registry.get_sample_value("process_resident_memory_bytes") is None


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("host, bound", [
    ("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "0.0.0.0"), ("localhost", {"127.0.0.1", "::1"}),
    pytest.param("[::1]", "::1", marks=pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")),
    pytest.param("[::]", "::", marks=pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6")),
])
def test_the_metrics_endpoint_binds_the_servers_host(host, bound):
    """Hosts in ``--host``'s (gRPC's) form: IPv6 in brackets, names, any-address."""
    from muselens.runtime.server.metrics import ServiceMetrics

    http = ServiceMetrics().serve_http(0, host)
    try:
        address = http.server_address[0]
        assert address in bound if isinstance(bound, set) else address == bound
    finally:
        http.shutdown()
        http.server_close()


def test_the_metrics_endpoint_falls_back_to_ipv4_where_there_is_no_ipv6(monkeypatch):
    """gRPC's '[::]' binds 0.0.0.0 on a host without IPv6; the metrics endpoint does the same."""
    import errno

    from muselens.runtime.server import metrics as module

    real = module.start_http_server

    def no_ipv6(port, addr, registry):
        if ":" in addr:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real(port, addr=addr, registry=registry)

    monkeypatch.setattr(module, "start_http_server", no_ipv6)
    http = module.ServiceMetrics().serve_http(0, "[::]")
    try:
        assert http.server_address[0] == "0.0.0.0"
    finally:
        http.shutdown()
        http.server_close()
    with pytest.raises(OSError, match="not supported"):
        module.ServiceMetrics().serve_http(0, "[::1]")  # a named IPv6 address has no IPv4 stand-in


@pytest.mark.parametrize("host", ["", "[]", "[::1", "1.2.3.4:80"])
def test_the_metrics_endpoint_refuses_a_malformed_host(host):
    from muselens.runtime.server.metrics import ServiceMetrics

    with pytest.raises(ValueError, match="host"):
        ServiceMetrics().serve_http(0, host)


ADMIN_TOKEN = "admin-token-0123456789abcdef"
AS_ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
SERVING = health_pb2.HealthCheckResponse.SERVING


def test_health_and_admin_answer_on_the_admin_port_while_the_main_pool_is_full(served, start_server, query_images,
                                                                                tiny_bundle):
    """One pool serves every call on a port: with it full of slow calls the health check and
    Admin are refused (RESOURCE_EXHAUSTED) with the rest, as on the main port here. The admin
    port has workers of its own: health and LoadBundle answer there within 2 s."""
    slow = slow_model(served, 4.0)
    server = start_server(slow, max_workers=1, max_pending_calls=1, admin_port=0,
                          tokens=Tokens(admin=(ADMIN_TOKEN,)))
    busy = server.stub.Recognize.future(frame(query_images[0]), timeout=30)
    assert slow.describer.backend.started.wait(10), "the slow call never reached the model"
    with pytest.raises(grpc.RpcError) as err:
        health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # the main port: one pool, full
    admin_health = health_pb2_grpc.HealthStub(server.admin_channel)
    started = time.monotonic()
    for name in ("", "muselens.v1.Recognizer", "muselens.v1.Admin"):
        assert admin_health.Check(health_pb2.HealthCheckRequest(service=name), timeout=2).status == SERVING
    info = server.admin.LoadBundle(pb.LoadBundleRequest(path=str(tiny_bundle)), metadata=AS_ADMIN, timeout=2)
    assert info.bundle_version == "1.0.0" and time.monotonic() - started < 2
    assert not busy.done()  # the main port was full all along
    assert busy.result().matches


def test_admin_is_served_on_the_admin_port_only(served, start_server, tiny_bundle):
    server = start_server(served, admin_port=0, tokens=Tokens(admin=(ADMIN_TOKEN,)))
    main = pb_grpc.AdminStub(server.channel)
    with pytest.raises(grpc.RpcError) as err:  # an admin learns where to go
        main.LoadBundle(pb.LoadBundleRequest(path=str(tiny_bundle)), metadata=AS_ADMIN, timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert f"admin port ({server.server.admin_port})" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:  # anyone else learns nothing: the tokens are checked first
        main.Enroll(pb.EnrollRequest(instance_id="x"), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert server.admin.LoadBundle(pb.LoadBundleRequest(path=str(tiny_bundle)), metadata=AS_ADMIN,
                                   timeout=30).bundle_version == "1.0.0"
    with pytest.raises(grpc.RpcError) as err:  # the admin port's token check is the same
        server.admin.LoadBundle(pb.LoadBundleRequest(path=str(tiny_bundle)), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    main_health = health_pb2_grpc.HealthStub(server.channel)
    assert main_health.Check(health_pb2.HealthCheckRequest(service="muselens.v1.Recognizer")).status == SERVING
    with pytest.raises(grpc.RpcError) as err:
        main_health.Check(health_pb2.HealthCheckRequest(service="muselens.v1.Admin"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert _listed(server.channel) >= {"muselens.v1.Recognizer", "grpc.health.v1.Health"}
    assert "muselens.v1.Admin" not in _listed(server.channel)
    assert _listed(server.admin_channel) >= {*SERVICE_NAMES, "grpc.health.v1.Health"}


def _listed(channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    return {s.name for s in next(responses).list_services_response.service}


def test_the_admin_port_says_not_serving_for_disabled_admin_and_stops_with_the_server(served, start_server):
    server = start_server(served, admin_port=0)  # no admin token: admin calls disabled
    admin_health = health_pb2_grpc.HealthStub(server.admin_channel)
    assert admin_health.Check(health_pb2.HealthCheckRequest(service="muselens.v1.Admin")).status == \
        health_pb2.HealthCheckResponse.NOT_SERVING
    server.server.stop(0)
    for channel in (server.channel, server.admin_channel):
        with pytest.raises(grpc.RpcError) as err:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert server.server.wait(1) is False  # both terminated, no time-out


@pytest.mark.parametrize("fields, match", [
    ({"admin_port": 65536}, "admin_port must be in 0..65535"),
    ({"admin_port": -1}, "admin_port must be in 0..65535"),
    ({"port": 50051, "admin_port": 50051}, "admin_port must differ from port"),
])
def test_admin_port_settings_are_checked(fields, match):
    with pytest.raises(ValueError, match=match):
        ServerConfig(**fields)
