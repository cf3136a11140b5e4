"""Assembling the server: servicers, auth, health, reflection, metrics, TLS, graceful shutdown.

:class:`MuselensServer` is what ``muselens serve`` runs and what the tests start on port 0.
Health (``grpc.health.v1``) reports SERVING for the whole server and each muselens service
(Admin NOT_SERVING where admin calls are disabled: no admin token), and NOT_SERVING as soon as
shutdown begins, so a load balancer stops sending new calls while those in flight finish
within the grace period. Reflection lets ``grpcurl`` discover the API.
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

from muselens.runtime.frames import FrameLimits
from muselens.runtime.recognition.holder import ModelHolder
from muselens.runtime.server.admission import StreamAdmission, default_max_streams
from muselens.runtime.server.auth import AuthInterceptor, Tokens
from muselens.runtime.server.handlers import MALFORMED, add_servicer
from muselens.runtime.server.metrics import ServiceMetrics
from muselens.runtime.server.servicer import AdminServicer, RecognizerServicer
from muselens.runtime.streams import SmootherConfig
from muselens.v1 import recognition_pb2 as pb

log = logging.getLogger(__name__)

SERVICE_NAMES = tuple(service.full_name for service in pb.DESCRIPTOR.services_by_name.values())
ADMIN_SERVICE = pb.DESCRIPTOR.services_by_name["Admin"].full_name
# Room in a message for the rest of a Frame (id, options) beside its image; a message bigger
# than ServerConfig.max_message_bytes is refused by gRPC itself (RESOURCE_EXHAUSTED) before a
# byte of it is decoded.
MESSAGE_OVERHEAD = 64 * 1024
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

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {self.max_workers}")
        if self.max_streams is not None and not 1 <= self.max_streams <= self.max_workers:
            raise ValueError(f"max_streams must be in 1..max_workers ({self.max_workers}): each open stream holds "
                             f"a worker; got {self.max_streams}")
        if self.max_streams_per_token is not None and self.max_streams_per_token < 1:
            raise ValueError(f"max_streams_per_token must be >= 1, got {self.max_streams_per_token}")
        if self.stream_idle_seconds is not None and not self.stream_idle_seconds > 0:
            raise ValueError(f"stream_idle_seconds must be > 0 (or None), got {self.stream_idle_seconds}")
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
        self._stopped = threading.Event()
        self.auth = AuthInterceptor(config.tokens,
                                    on_refused=lambda method, code: self.metrics.refused.labels(code.name).inc())
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="muselens-rpc"),
            interceptors=[self.auth],
            options=[("grpc.max_receive_message_length", config.max_message_bytes),
                     ("grpc.max_send_message_length", 32 * 1024 * 1024),
                     ("grpc.so_reuseport", 0), *KEEPALIVE],
            # beyond this many calls running or queued for a worker, gRPC refuses at once
            # (RESOURCE_EXHAUSTED) instead of queueing a call until its deadline
            maximum_concurrent_rpcs=config.pending_cap,
        )
        self.admission = StreamAdmission(config.stream_cap, config.max_streams_per_token)
        limits = config.frame_limits
        self.recognizer = RecognizerServicer(holder, self.metrics, limits=limits,
                                             smoothing=config.smoothing, default_top_k=config.default_top_k,
                                             admission=self.admission,
                                             stream_idle_seconds=config.stream_idle_seconds)
        malformed = lambda method: self.metrics.frames.labels(method, MALFORMED).inc()  # noqa: E731
        add_servicer(self.server, pb.DESCRIPTOR.services_by_name["Recognizer"], self.recognizer, malformed)
        add_servicer(self.server, pb.DESCRIPTOR.services_by_name["Admin"],
                     AdminServicer(holder, self.metrics, limits=limits, bundle_root=config.bundle_root),
                     malformed)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME),
                                            self.server)
        address = f"{config.host}:{config.port}"
        if config.tls_cert is not None:
            credentials = grpc.ssl_server_credentials([(Path(config.tls_key).read_bytes(),
                                                        Path(config.tls_cert).read_bytes())])
            self.port = self.server.add_secure_port(address, credentials)
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"could not bind {address}")
        self.secure = config.tls_cert is not None

    def start(self) -> MuselensServer:
        self.server.start()
        for name in ("", *SERVICE_NAMES):
            refused = name == ADMIN_SERVICE and not self.auth.admin_enabled  # every call would be PERMISSION_DENIED
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING if refused
                            else health_pb2.HealthCheckResponse.SERVING)
        model = self.holder.current()
        log.info("muselens serving %s %s on port %d (%s, %s)", model.bundle.name, model.bundle_version,
                 self.port, model.describer.backend.describe(), "TLS" if self.secure else "plaintext")
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop taking calls (health NOT_SERVING first), let those in flight finish within ``grace``."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(self.config.grace_seconds if grace is None else grace).wait()

    def wait(self, timeout: float | None = None) -> bool:
        return self.server.wait_for_termination(timeout)

    def __enter__(self) -> MuselensServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(0)
