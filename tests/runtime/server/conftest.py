"""A real server on port 0 over the session's tiny bundle, and what the tests send it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from muselens.runtime.engine import Cancelled, Describer
from muselens.runtime.recognition.holder import ModelHolder
from muselens.runtime.recognition.served_model import ServedModel
from muselens.runtime.server.app import MuselensServer, ServerConfig
from muselens.v1 import recognition_pb2 as pb
from muselens.v1 import recognition_pb2_grpc as pb_grpc


def rgb(data: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def frame(data: bytes, frame_id: str = "f", **options) -> pb.Frame:
    return pb.Frame(frame_id=frame_id, image=pb.Image(encoded=data), options=pb.RecognizeOptions(**options))


class SlowBackend:
    """Wraps a backend: every run waits ``delay`` seconds (or until cancelled) first."""

    def __init__(self, inner, delay: float):
        self.inner, self.delay = inner, delay
        self.name, self.input_name, self.output_names = inner.name, inner.input_name, inner.output_names
        self.cancelled_runs = 0
        self.started = threading.Event()

    def run(self, batch, outputs, cancel=None):
        self.started.set()
        deadline = time.monotonic() + self.delay
        while time.monotonic() < deadline:
            if cancel is not None and cancel.cancelled:
                self.cancelled_runs += 1
                raise Cancelled("cancelled while waiting")
            time.sleep(0.005)
        return self.inner.run(batch, outputs, cancel)

    def metadata(self):
        return self.inner.metadata()

    def describe(self):
        return "slow " + self.inner.describe()


def slow_model(served: ServedModel, delay: float) -> ServedModel:
    backend = SlowBackend(served.describer.backend, delay)
    describer = Describer(backend, contract=served.describer.contract)
    return ServedModel(served.bundle, describer, served.search, served.labels, served.config, served.variant)


class Running:
    def __init__(self, server: MuselensServer, target: str):
        self.server, self.target = server, target
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.RecognizerStub(self.channel)
        # Admin calls go to the admin port where the server has one
        self.admin_channel = (self.channel if server.admin_port is None
                              else grpc.insecure_channel(f"127.0.0.1:{server.admin_port}"))
        self.admin = pb_grpc.AdminStub(self.admin_channel)


@pytest.fixture
def start_server() -> Iterator:
    """start_server(model_or_holder, **ServerConfig fields) -> Running; all stopped at teardown."""
    started: list[Running] = []

    def start(model, **config) -> Running:
        holder = model if isinstance(model, ModelHolder) else ModelHolder(model)
        server = MuselensServer(holder, ServerConfig(host="127.0.0.1", port=0, **config)).start()
        running = Running(server, f"127.0.0.1:{server.port}")
        started.append(running)
        return running

    yield start
    for running in started:
        running.channel.close()
        running.admin_channel.close()
        running.server.stop(0)


def copy_bundle(src: Path, dst: Path, version: str) -> Path:
    """The bundle re-written with another version (checksums and all, via the real writer)."""
    from muselens.runtime.bundle import load_bundle, write_bundle

    with load_bundle(src) as b:
        m = b.manifest
        write_bundle(dst, name=m.name, bundle_version=version, backbone=m.backbone, descriptor=m.descriptor,
                     model_files={v: b.model_path(v) for v in m.models}, gallery=b.gallery,
                     labels=b.labels.values(), training=m.training, data_digest=m.data_digest,
                     metrics=m.metrics, threshold=m.threshold, default_variant=m.default_variant,
                     local_features=None if b.local_features is None else (m.local_features, b.local_features))
    return dst
