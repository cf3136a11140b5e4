"""Prometheus metrics of the service: frames, per-stage latency, drops, decisions, streams, reloads,
and the process's own (resident memory, CPU time, open files: ``process_*``).

Each server owns its registry (several servers in one process -- the tests -- do not collide);
``muselens serve --metrics-port P`` exposes it over HTTP for Prometheus to scrape.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Mapping

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest,
                               start_http_server)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from muselens.runtime.engine.activity import RUNS

log = logging.getLogger(__name__)

# 0.5 ms .. 2.5 s: a stage on an H100 takes a fraction of a millisecond, a CPU inference tens.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class _InferenceRuns:
    """``muselens_inference_runs_total{cores}``: CPU inference runs over every core (nothing else
    going on) or one core (beside other work), read from the engine's tally when scraped."""

    def collect(self):
        family = CounterMetricFamily("muselens_inference_runs", "CPU inference runs by the cores they took: all "
                                     "(nothing else going on) or one (beside other work)", labels=["cores"])
        for cores, count in RUNS.counts().items():
            family.add_metric([cores], count)
        yield family


class _ModelState:
    """``muselens_model_state_bytes{part}``: what the served model holds beside its network (its
    references' descriptors, local features and vote index, enrolled photos, cached reference maps),
    read from the model being served when scraped. Enrolments grow it by design; RSS growing beyond
    it is what to look into."""

    def __init__(self, state: Callable[[], Mapping[str, int]]):
        self._state = state

    def collect(self):
        family = GaugeMetricFamily("muselens_model_state_bytes", "Bytes the served model holds beside its "
                                   "network, by part", labels=["part"])
        for part, size in self._state().items():
            family.add_metric([part], size)
        yield family


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.frames = Counter("muselens_frames", "Frames received, by call and outcome",
                              ["method", "outcome"], registry=r)
        self.stage_seconds = Histogram("muselens_stage_seconds", "Time per processing stage of a frame",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.dropped = Counter("muselens_dropped_frames", "Stale stream frames dropped for newer ones",
                               registry=r)
        self.decisions = Counter("muselens_decisions", "Per-frame decisions", ["decision"], registry=r)
        self.verifications = Counter("muselens_verifications", "Geometric verifications by call and outcome "
                                     "(verified, not_verified, unavailable)", ["method", "outcome"], registry=r)
        self.active_streams = Gauge("muselens_active_streams", "Streams open now", registry=r)
        self.streams_closed = Counter("muselens_streams_refused_or_closed", "Streams the server refused (capacity) "
                                      "or closed (idle)", ["reason"], registry=r)
        self.reloads = Counter("muselens_bundle_reloads", "Hot reloads by outcome", ["outcome"], registry=r)
        self.enrolments = Counter("muselens_enrolments", "Enrol calls by outcome", ["outcome"], registry=r)
        self.refused = Counter("muselens_auth_refused", "Calls refused by authentication", ["code"], registry=r)
        r.register(_InferenceRuns())
        if registry is None:  # a registry of the caller's may hold the process metrics already
            ProcessCollector(registry=r)  # process_resident_memory_bytes: RSS over time, per server

    def watch_model_state(self, state: Callable[[], Mapping[str, int]]) -> None:
        """Expose ``state()`` (the served model's :meth:`state_bytes`) at every scrape."""
        self.registry.register(_ModelState(state))

    def observe(self, method: str, decision: str, timings_ms: Mapping[str, float]) -> None:
        self.frames.labels(method, "ok").inc()
        self.decisions.labels(decision).inc()
        for stage, ms in timings_ms.items():
            self.stage_seconds.labels(stage).observe(ms / 1000.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def serve_http(self, port: int, host: str):
        """Start the scrape endpoint on ``host`` (``--host``'s form, as the gRPC server binds it);
        returns the HTTP server (``.server_address``, ``.shutdown()``).

        The endpoint has no authentication, so it must listen where the gRPC server does and no
        wider: it once ignored ``--host 127.0.0.1`` and listened on 0.0.0.0. '[::]' falls back to
        0.0.0.0 on a machine without IPv6, as gRPC's own '[::]' does.
        """
        address = http_address(host)
        try:
            server, _thread = start_http_server(port, addr=address, registry=self.registry)
        except OSError as exc:
            if address != "::" or exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise
            log.info("no IPv6 here (%s): metrics on 0.0.0.0 for host [::]", exc.strerror or exc)
            server, _thread = start_http_server(port, addr="0.0.0.0", registry=self.registry)
        return server


def http_address(host: str) -> str:
    """The address to bind for a ``--host`` in gRPC's form: '[::1]' is '::1', names and IPv4 as given."""
    if host.startswith("[") and host.endswith("]"):
        address = host[1:-1]
        valid = ":" in address
    else:
        address = host
        valid = bool(host) and not any(c in host for c in ":[]")
    if not valid:
        raise ValueError(f"metrics host {host!r} is no IPv4 address, host name or bracketed IPv6 address "
                         f"('[::]', '[::1]')")
    return address
