"""Assembling the server: servicers, auth, health, reflection, metrics, TLS, graceful shutdown.

:class:`MuselensServer` is what ``muselens serve`` runs and what the tests start on port 0.
Health (``grpc.health.v1``) reports SERVING for the whole server and each muselens service
(Admin NOT_SERVING where admin calls are disabled: no admin token), and NOT_SERVING as soon as
shutdown begins, so a load balancer stops sending new calls while those in flight finish
within the grace period. Reflection lets ``grpcurl`` discover the API.

A gRPC sync server runs every call on one pool of workers, so a flood of unary calls fills
it and the health check and admin calls are refused (RESOURCE_EXHAUSTED) with the rest. With
``ServerConfig.admin_port`` a second gRPC server, on its own :data:`ADMIN_WORKERS` workers,
serves Admin, health and reflection behind the same TLS and tokens, and answers under any load
on the main port. Admin is then served there only: on the main port an admin call, once
authenticated, is answered UNIMPLEMENTED with the admin port's number (the method is not served
on this port; PERMISSION_DENIED would read as a wrong token). The main port keeps its health
service, for the load balancer, without Admin in it (NOT_FOUND); the admin port's health
reports every service.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from muselens.core import checks
from muselens.runtime.frames import FrameLimits
from muselens.runtime.recognition.holder import ModelHolder
from muselens.runtime.recognition.background_verification import DEFAULT_BUSY_SHARE, VerificationPool
from muselens.runtime.server.admission import (CallAdmissionInterceptor, TokenAdmission,
                                                default_max_calls_per_token, default_max_streams)
from muselens.runtime.server.auth import AuthInterceptor, Tokens
from muselens.runtime.server.handlers import MALFORMED, add_refusing_service, add_servicer
from muselens.runtime.server.metrics import ServiceMetrics
from muselens.runtime.server.penalty import DEFAULT_FLOOD_PENALTY_AFTER, DEFAULT_PENALTY_AFTER, RefusalPenalty
from muselens.runtime.server.servicer import AdminServicer, RecognizerServicer, default_decode_slots
from muselens.runtime.streams import SmootherConfig
from muselens.v1 import recognition_pb2 as pb

log = logging.getLogger(__name__)

SERVICE_NAMES = tuple(service.full_name for service in pb.DESCRIPTOR.services_by_name.values())
ADMIN_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["Admin"]
ADMIN_SERVICE = ADMIN_DESCRIPTOR.full_name
RECOGNIZER_SERVICE = pb.DESCRIPTOR.services_by_name["Recognizer"].full_name
RECOGNIZE_METHOD = f"/{RECOGNIZER_SERVICE}/Recognize"
STREAM_METHOD = f"/{RECOGNIZER_SERVICE}/StreamRecognize"
# Room in a message for the rest of a Frame (id, options) beside its image; a message bigger
# than ServerConfig.max_message_bytes is refused by gRPC itself (RESOURCE_EXHAUSTED) before a
# byte of it is decoded.
MESSAGE_OVERHEAD = 64 * 1024
# The admin port's own workers and the calls it holds at once (more are refused at once):
# health checks take microseconds, a bundle load a few seconds, and an operator makes few calls.
ADMIN_WORKERS = 2
ADMIN_PENDING_CALLS = 8
# Dead peers are found and closed: the server pings a connection silent for 60 s and drops it
# if no answer comes in 20 s; a client may ping at most every 10 s without data (more often
# twice and the connection is closed), and a connection with no call for 10 minutes is closed.
KEEPALIVE = (("grpc.keepalive_time_ms", 60_000), ("grpc.keepalive_timeout_ms", 20_000),
             ("grpc.keepalive_permit_without_calls", 1),
             ("grpc.http2.min_ping_interval_without_data_ms", 10_000), ("grpc.http2.max_ping_strikes", 2),
             ("grpc.max_connection_idle_ms", 600_000))


@dataclass(frozen=True)
class ServerConfig:
    host: str = "[::]"
    port: int = 50051
    max_workers: int = 16
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tokens: Tokens | None = None
    limits: FrameLimits = field(default_factory=FrameLimits)
    smoothing: SmootherConfig = field(default_factory=SmootherConfig)
    default_top_k: int = 5
    grace_seconds: float = 5.0
    max_enrol_bytes: int = 16 * 1024 * 1024  # one Enroll request: a few photos, JPEG
    bundle_root: Path | None = None  # Admin.LoadBundle loads only bundles inside it (None: any path)
    max_streams: int | None = None  # streams open at once; None: default_max_streams(max_workers)
    max_streams_per_token: int | None = None  # per client token (None: only the server's cap)
    stream_idle_seconds: float | None = 30.0  # a stream with no frame this long is closed (None: never)
    max_pending_calls: int | None = None  # calls running or queued; more are refused at once (None: 2 x workers)
    max_calls_per_token: int | None = None  # unary calls one client token may run at once (None: workers / 4)
    admin_port: int | None = None  # Admin, health and reflection on their own workers here (0: any free port)
    verify_workers: int = 1  # threads verifying streams' frames in the background (0: streams are not verified)
    verify_interval_s: float = 0.5  # a stream's frames are verified at most this often
    verify_busy_share: float = DEFAULT_BUSY_SHARE  # of the verification threads' time, whatever the streams
    pipeline: bool = True  # a stream's next frame is decoded and resized while its current one is inferred
    decode_slots: int | None = None  # frames decoded at once, fairly between clients; None: half the cores
    penalty_after: int = DEFAULT_PENALTY_AFTER  # a client's frames refused for their cost within 2 s before it is penalised (0: never)
    flood_penalty_after: int = DEFAULT_FLOOD_PENALTY_AFTER  # its calls refused over its cap within 2 s (0: never)

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.admin_port is not None and not 0 <= self.admin_port <= 65535:
            raise ValueError(f"admin_port must be in 0..65535, got {self.admin_port}")
        if self.admin_port is not None and self.admin_port != 0 and self.admin_port == self.port:
            raise ValueError(f"admin_port must differ from port ({self.port}): admin calls get a server of their own")
        checks.integer(self.verify_workers, "verify_workers", low=0)
        checks.number(self.verify_interval_s, "verify_interval_s", low=0)
        checks.number(self.verify_busy_share, "verify_busy_share", low=0.01, high=1.0)
        checks.flag(self.pipeline, "pipeline")
        checks.optional_int(self.decode_slots, "decode_slots", low=1)
        checks.optional_int(self.penalty_after, "penalty_after", low=0)
        checks.optional_int(self.flood_penalty_after, "flood_penalty_after", low=0)
        if self.max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {self.max_workers}")
        if self.max_streams is not None and not 1 <= self.max_streams <= self.max_workers:
            raise ValueError(f"max_streams must be in 1..max_workers ({self.max_workers}): each open stream holds "
                             f"a worker; got {self.max_streams}")
        if self.max_streams_per_token is not None and self.max_streams_per_token < 1:
            raise ValueError(f"max_streams_per_token must be >= 1, got {self.max_streams_per_token}")
        if self.stream_idle_seconds is not None and not self.stream_idle_seconds > 0:
            raise ValueError(f"stream_idle_seconds must be > 0 (or None), got {self.stream_idle_seconds}")
        if self.max_calls_per_token is not None and self.max_calls_per_token < 1:
            raise ValueError(f"max_calls_per_token must be >= 1, got {self.max_calls_per_token}")
        if self.max_pending_calls is not None and self.max_pending_calls < self.max_workers:
            raise ValueError(f"max_pending_calls must be >= max_workers ({self.max_workers}), "
                             f"got {self.max_pending_calls}")
        carried = self.max_message_bytes - MESSAGE_OVERHEAD
        if self.limits.max_raw_bytes is not None and self.limits.max_raw_bytes > carried:
            raise ValueError(f"FrameLimits.max_raw_bytes ({self.limits.max_raw_bytes}) exceeds the {carried} bytes "
                             f"of image a message to this server can carry (its largest message, "
                             f"{self.max_message_bytes} bytes, less {MESSAGE_OVERHEAD} for the rest of the Frame)")

    @property
    def stream_cap(self) -> int:
        return self.max_streams if self.max_streams is not None else default_max_streams(self.max_workers)

    @property
    def calls_per_token_cap(self) -> int:
        return (self.max_calls_per_token if self.max_calls_per_token is not None
                else default_max_calls_per_token(self.max_workers))

    @property
    def identifies_clients(self) -> bool:
        """Whether calls carry client tokens the server checks: the only way it tells clients apart."""
        return self.tokens is not None and bool(self.tokens.client)

    @property
    def pending_cap(self) -> int:
        return self.max_pending_calls if self.max_pending_calls is not None else 2 * self.max_workers

    @property
    def max_message_bytes(self) -> int:
        """The largest request gRPC receives: an encoded frame at its limit with the rest of its
        message, or an Enroll call, whichever is larger."""
        return max(self.limits.max_encoded_bytes + MESSAGE_OVERHEAD, self.max_enrol_bytes)

    @property
    def frame_limits(self) -> FrameLimits:
        """``limits`` as the servicers apply them: raw frames capped at what a message can carry, so
        muselens, not gRPC, answers every frame (one number, :attr:`max_message_bytes`, sets both)."""
        if self.limits.max_raw_bytes is not None:
            return self.limits
        return replace(self.limits, max_raw_bytes=self.max_message_bytes - MESSAGE_OVERHEAD)


class MuselensServer:
    def __init__(self, holder: ModelHolder, config: ServerConfig = ServerConfig(),
                 metrics: ServiceMetrics | None = None):
        self.holder = holder
        self.config = config
        self.metrics = metrics or ServiceMetrics()
        self.metrics.watch_model_state(lambda: holder.current().state_bytes())
        self._stopped = threading.Event()
        self.auth = AuthInterceptor(config.tokens,
                                    on_refused=lambda method, code: self.metrics.refused.labels(code.name).inc())
        # beyond maximum_concurrent_rpcs calls running or queued for a worker, gRPC refuses at
        # once (RESOURCE_EXHAUSTED) instead of queueing a call until its deadline
        self.admission = TokenAdmission(config.stream_cap, config.max_streams_per_token)
        self.calls = TokenAdmission(config.pending_cap, config.calls_per_token_cap, what="calls in flight")
        penalty = RefusalPenalty(config.penalty_after, config.flood_penalty_after)
        self.penalty = penalty if penalty.active else None
        self.call_admission = CallAdmissionInterceptor(
            self.calls, frozenset({RECOGNIZE_METHOD}), identifies_clients=config.identifies_clients,
            penalty=self.penalty, penalised=frozenset({RECOGNIZE_METHOD, STREAM_METHOD}),
            on_refused=lambda method, outcome: self.metrics.frames.labels(method.rsplit("/", 1)[-1], outcome).inc(),
            known=(lambda token: config.tokens.role_of(token) is not None) if config.tokens is not None else None)
        self.server = self._grpc_server(config.max_workers, config.pending_cap, "muselens-rpc")
        limits = config.frame_limits
        self.verification = VerificationPool(config.verify_workers, config.verify_busy_share) \
            if config.verify_workers else None
        self.recognizer = RecognizerServicer(holder, self.metrics, limits=limits,
                                             smoothing=config.smoothing, default_top_k=config.default_top_k,
                                             admission=self.admission, calls=self.calls, penalty=self.penalty,
                                             identifies_clients=config.identifies_clients,
                                             stream_idle_seconds=config.stream_idle_seconds,
                                             verification=self.verification,
                                             verify_interval_s=config.verify_interval_s,
                                             pipeline=config.pipeline,
                                             decode_slots=config.decode_slots or default_decode_slots())
        malformed = lambda method: self.metrics.frames.labels(method, MALFORMED).inc()  # noqa: E731
        add_servicer(self.server, pb.DESCRIPTOR.services_by_name["Recognizer"], self.recognizer, malformed)
        admin = AdminServicer(holder, self.metrics, limits=limits, bundle_root=config.bundle_root)
        self.health = health.HealthServicer()
        self.port = self._bind(self.server, config.port)
        self.admin_server: grpc.Server | None = None
        self.admin_health: health.HealthServicer | None = None
        self.admin_port: int | None = None
        if config.admin_port is None:
            add_servicer(self.server, ADMIN_DESCRIPTOR, admin, malformed)
            self._health = {self.health: ("", *SERVICE_NAMES)}
        else:
            self.admin_server = self._grpc_server(ADMIN_WORKERS, ADMIN_PENDING_CALLS, "muselens-admin")
            add_servicer(self.admin_server, ADMIN_DESCRIPTOR, admin, malformed)
            self.admin_health = health.HealthServicer()
            _add_health_and_reflection(self.admin_server, self.admin_health, SERVICE_NAMES)
            self.admin_port = self._bind(self.admin_server, config.admin_port)
            add_refusing_service(self.server, ADMIN_DESCRIPTOR, grpc.StatusCode.UNIMPLEMENTED,
                                 f"Admin calls are served on this server's admin port ({self.admin_port}), "
                                 f"not on this one")
            self._health = {self.health: ("", RECOGNIZER_SERVICE), self.admin_health: ("", *SERVICE_NAMES)}
        _add_health_and_reflection(self.server, self.health, self._health[self.health][1:])
        self.secure = config.tls_cert is not None

    def _grpc_server(self, workers: int, pending: int, name: str) -> grpc.Server:
        return grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name),
            interceptors=[self.auth, self.call_admission],
            options=[("grpc.max_receive_message_length", self.config.max_message_bytes),
                     ("grpc.max_send_message_length", 32 * 1024 * 1024),
                     ("grpc.so_reuseport", 0), *KEEPALIVE],
            maximum_concurrent_rpcs=pending,
        )

    def _bind(self, server: grpc.Server, port: int) -> int:
        """Listen on ``host:port`` (TLS when configured); the port bound (the OS's choice for 0)."""
        config = self.config
        address = f"{config.host}:{port}"
        if config.tls_cert is not None:
            credentials = grpc.ssl_server_credentials([(Path(config.tls_key).read_bytes(),
                                                        Path(config.tls_cert).read_bytes())])
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
        if bound == 0:
            raise OSError(f"could not bind {address}")
        return bound

    @property
    def _servers(self) -> tuple[grpc.Server, ...]:
        return (self.server,) if self.admin_server is None else (self.server, self.admin_server)

    def start(self) -> MuselensServer:
        for server in self._servers:
            server.start()
        for servicer, names in self._health.items():
            for name in names:
                refused = name == ADMIN_SERVICE and not self.auth.admin_enabled  # every call: PERMISSION_DENIED
                servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING if refused
                             else health_pb2.HealthCheckResponse.SERVING)
        model = self.holder.current()
        log.info("muselens serving %s %s on port %d%s (%s, %s)", model.bundle.name, model.bundle_version,
                 self.port, "" if self.admin_port is None else f", admin on port {self.admin_port}",
                 model.describer.backend.describe(), "TLS" if self.secure else "plaintext")
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop taking calls (health NOT_SERVING first, on both ports), let those in flight
        finish within ``grace``."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        for servicer in self._health:
            servicer.enter_graceful_shutdown()
        grace = self.config.grace_seconds if grace is None else grace
        for done in [server.stop(grace) for server in self._servers]:  # both at once, then wait for both
            done.wait()
        if self.verification is not None:
            self.verification.shutdown()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the server (both ports) to stop; True if ``timeout`` passed first (as gRPC's)."""
        return any(server.wait_for_termination(timeout) for server in self._servers)

    def __enter__(self) -> MuselensServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(0)


def _add_health_and_reflection(server: grpc.Server, servicer: health.HealthServicer, services: tuple[str, ...]) -> None:
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection((*services, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
