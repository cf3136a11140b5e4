"""The gRPC servicers: translate messages, hand the work to the recogniser, map errors to statuses.

Unary calls answer a bad frame with its status (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED when
the frame is too large to decode); streams answer it in that frame's ``Recognition.error`` and
go on, also for bytes that are no valid Frame (:mod:`.handlers` parses requests). A stream
reads frames on its own thread into a :class:`LatestSlot`, so the worker always processes the
newest frame and drops the stale ones; when the client cancels or the deadline passes,
inference under way is terminated and the stream ends.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np

from muselens.runtime.bundle import BundleError
from muselens.runtime.engine import Cancellation, Cancelled
from muselens.runtime.engine.activity import ACTIVITY
from muselens.runtime.engine.gate import InferenceGate, fair_share
from muselens.runtime.frames import FrameError, FrameLimits
from muselens.runtime.recognition.background_verification import (DEFAULT_INTERVAL_S, StreamVerification,
                                                                   VerificationPool)
from muselens.runtime.recognition.holder import ModelHolder
from muselens.runtime.recognition.served_model import RecognitionResult, ServedModel
from muselens.runtime.recognition.options import OptionsError
from muselens.runtime.verification import NOT_REQUESTED
from muselens.runtime.safe_text import first_unsafe, log_safe, log_safe_traceback
from muselens.runtime.server import convert
from muselens.runtime.server.admission import TokenAdmission
from muselens.runtime.server.auth import bearer_token
from muselens.runtime.server.frame_pipeline import Decode, FramePreparer, prepare
from muselens.runtime.server.handlers import MALFORMED, MalformedMessage
from muselens.runtime.server.latest import LatestSlot
from muselens.runtime.server.metrics import ServiceMetrics
from muselens.runtime.server.penalty import CAPACITY, PENALISED, RefusalPenalty
from muselens.runtime.streams import SmootherConfig, StreamSmoother
from muselens.runtime.streams.outline_tracking import OutlineTracker
from muselens.v1 import recognition_pb2 as pb
from muselens.v1 import recognition_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

MAX_ENROL_PHOTOS = 64


def default_decode_slots() -> int:
    """Frames decoded (and resized) at once: half the cores, so decoding never takes the cores an
    inference runs on, and one client's flood of frames waits its turn instead of filling them."""
    return max(1, (os.cpu_count() or 2) // 2)


class _Call:
    """One frame's cancellation, tied to its RPC (client gone or deadline passed)."""

    def __init__(self, context: grpc.ServicerContext):
        self.cancel = Cancellation()
        context.add_callback(self.cancel.cancel)


class RecognizerServicer(pb_grpc.RecognizerServicer):
    """Recognize, StreamRecognize, GetBundleInfo; registered with :func:`.handlers.add_servicer`."""

    def __init__(self, holder: ModelHolder, metrics: ServiceMetrics, *, limits: FrameLimits = FrameLimits(),
                 smoothing: SmootherConfig | None = None, default_top_k: int = 5,
                 admission: TokenAdmission | None = None, calls: TokenAdmission | None = None,
                 penalty: RefusalPenalty | None = None,
                 identifies_clients: bool = False, stream_idle_seconds: float | None = None,
                 verification: VerificationPool | None = None, verify_interval_s: float = DEFAULT_INTERVAL_S,
                 pipeline: bool = True, decode_slots: int = 1):
        self.holder = holder
        self.metrics = metrics
        self.limits = limits
        self.smoothing = smoothing or SmootherConfig()
        self.default_top_k = default_top_k
        self.admission = admission  # None: streams are not counted (tests of one servicer)
        self.calls = calls  # None: unary calls are not counted
        self.penalty = penalty  # None: no client is penalised for frames refused for their cost
        self.identifies_clients = identifies_clients  # client tokens are checked: they tell clients apart
        self.stream_idle_seconds = stream_idle_seconds  # None: a stream may wait for frames for ever
        self.verification = verification  # None: streams are not verified in the background
        self.verify_interval_s = verify_interval_s
        self.pipeline = pipeline  # a stream's next frame decoded while its current one is inferred
        # Decoding is CPU work a client controls (a 16 MB raw frame, a big JPEG): it takes turns
        # between clients, like inference, so a flood of frames from one delays another by one decode.
        self.decode_gate = InferenceGate(decode_slots)

    # -- one frame, any call --------------------------------------------------------------

    def _recognize(self, model: ServedModel, frame: pb.Frame, cancel: Cancellation,
                   queue_ms: float = 0.0) -> RecognitionResult:
        """Decode, validate and recognise; raises FrameError / OptionsError / Cancelled."""
        options = convert.recognize_options(frame.options, self.default_top_k)
        with self.decode_gate.slot(cancel) as waited_ms:
            t0 = time.perf_counter()  # the frame decoded no larger than this call needs of it
            pixels = convert.image_pixels(frame.image, self.limits,
                                          at_least=model.decode_need(verify=model.verifies(options)))
            decode_ms = (time.perf_counter() - t0) * 1e3
        cancel.check()
        return model.recognize(pixels, options, cancel=cancel,
                               timings_ms={"queue": queue_ms + waited_ms, "decode": decode_ms})

    def _client(self, context: grpc.ServicerContext) -> str | None:
        """The caller's client token where the server checks them (it tells clients apart), else None."""
        return bearer_token(context.invocation_metadata()) if self.identifies_clients else None

    def Recognize(self, request: pb.Frame, context: grpc.ServicerContext) -> pb.Recognition:
        client = self._client(context)
        refused = self.calls.enter(client) if self.calls is not None else None
        if refused is not None:  # at once: its place in gRPC's queue is free again for other clients
            self.metrics.frames.labels("Recognize", CAPACITY).inc()
            if self.penalty is not None:
                self.penalty.record(client, CAPACITY)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"call refused: {refused}; retry later")
        try:
            with ACTIVITY.busy():  # other calls' inferences take one core while this one runs
                return self._recognize_call(request, context, client)
        finally:
            if self.calls is not None:
                self.calls.leave(client)

    def _recognize_call(self, request: pb.Frame, context: grpc.ServicerContext, client: str | None) -> pb.Recognition:
        call = _Call(context)
        model = self.holder.current()
        try:
            with fair_share(client):  # the inference gate serves clients in turn
                result = self._recognize(model, request, call.cancel)
        except FrameError as exc:
            self.metrics.frames.labels("Recognize", exc.reason).inc()
            if self.penalty is not None:
                self.penalty.record(client, exc.reason)
            context.abort(getattr(grpc.StatusCode, exc.status), f"{exc.reason}: {exc}")
        except OptionsError as exc:
            self.metrics.frames.labels("Recognize", exc.reason).inc()
            context.abort(getattr(grpc.StatusCode, exc.status), f"{exc.reason}: {exc}")
        except Cancelled:
            self.metrics.frames.labels("Recognize", "cancelled").inc()
            code = grpc.StatusCode.DEADLINE_EXCEEDED if _deadline_passed(context) else grpc.StatusCode.CANCELLED
            context.abort(code, "the call ended before recognition finished; the work was stopped")
        self.metrics.observe("Recognize", result.decision.value, result.timings_ms)
        if result.verification.state != NOT_REQUESTED:
            self.metrics.verifications.labels("Recognize", result.verification.state).inc()
        return convert.recognition_message(request.frame_id, result)

    def StreamRecognize(self, request_iterator: Iterator[pb.Frame | MalformedMessage],
                        context: grpc.ServicerContext) -> Iterator[pb.Recognition]:
        client = self._client(context)
        refused = self.admission.enter(client) if self.admission is not None else None
        if refused is not None:
            self.metrics.streams_closed.labels("capacity").inc()
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"stream refused: {refused}; retry later")
        try:
            yield from self._stream(request_iterator, context, client)
        finally:
            if self.admission is not None:
                self.admission.leave(client)

    def _decoder_for(self, client: str | None, cancel: Cancellation) -> Decode:
        """How a stream's frames are decoded: no larger than the descriptor path needs, in turn
        with every other client's frames (see ``decode_gate``)."""
        def decode(frame: pb.Frame, model: ServedModel, timings_ms: dict) -> np.ndarray:
            with fair_share(client), self.decode_gate.slot(cancel) as waited_ms:
                t0 = time.perf_counter()
                try:
                    return convert.image_pixels(frame.image, self.limits, at_least=model.decode_need())
                finally:
                    timings_ms.update(queue=waited_ms, decode=(time.perf_counter() - t0) * 1e3)
        return decode

    def _stream(self, request_iterator: Iterator[pb.Frame | MalformedMessage],
                context: grpc.ServicerContext, client: str | None) -> Iterator[pb.Recognition]:
        call = _Call(context)
        slot: LatestSlot[pb.Frame] = LatestSlot()
        reader = threading.Thread(target=_read_frames, args=(request_iterator, slot, call.cancel),
                                  name="muselens-stream-reader", daemon=True)
        reader.start()
        call.cancel.on_cancel(slot.close)
        decode = self._decoder_for(client, call.cancel)
        preparer = FramePreparer(slot, self.holder.current, decode, call.cancel) if self.pipeline else None
        if preparer is not None:
            call.cancel.on_cancel(preparer.wake)
        smoother: StreamSmoother | None = None
        verifying = StreamVerification(self.verification, self.verify_interval_s) if self.verification else None
        tracker = OutlineTracker() if verifying is not None else None
        counted_drops = 0
        self.metrics.active_streams.inc()
        try:
            while not call.cancel.cancelled:
                if preparer is not None:
                    prepared = preparer.take(self.stream_idle_seconds)
                    ended = preparer.finished
                else:  # one frame at a time: decoded and resized after the previous answer left
                    arrival = slot.take(self.stream_idle_seconds)
                    prepared = None if arrival is None else prepare(arrival, self.holder.current(), decode)
                    ended = slot.closed
                if prepared is None:
                    if ended or call.cancel.cancelled:
                        break
                    self.metrics.streams_closed.labels("idle").inc()
                    context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                  f"no frame for {self.stream_idle_seconds:g} s: the server closed the stream; "
                                  f"open a new one when frames come")
                if slot.dropped > counted_drops:
                    self.metrics.dropped.inc(slot.dropped - counted_drops)
                    counted_drops = slot.dropped
                if isinstance(prepared.failure, Cancelled):
                    break
                if prepared.failure is not None:
                    raise prepared.failure
                frame, model, arrival = prepared.frame, prepared.model, prepared.arrival
                if isinstance(frame, MalformedMessage):  # this frame only: gRPC's framing is intact
                    self.metrics.frames.labels("StreamRecognize", MALFORMED).inc()
                    yield convert.error_recognition("", "INVALID_ARGUMENT", MALFORMED, frame.message,
                                                    bundle_version=model.bundle_version, dropped_frames=slot.dropped)
                    continue
                if smoother is None or smoother.threshold != model.threshold:
                    smoother = StreamSmoother(model.threshold, self.smoothing.for_threshold(model.threshold))
                timestamp = frame.timestamp if frame.timestamp else None
                try:  # a timestamp going backwards or absurd: this frame only, refused before inference
                    smoother.check_timestamp(timestamp)
                except ValueError as exc:
                    self.metrics.frames.labels("StreamRecognize", "bad_timestamp").inc()
                    yield convert.error_recognition(frame.frame_id, "INVALID_ARGUMENT", "bad_timestamp", str(exc),
                                                    bundle_version=model.bundle_version, dropped_frames=slot.dropped)
                    continue
                # queue: from arrival to now, but for the decode and resize (a wait for a decode turn is queue too)
                work_ms = prepared.timings_ms.get("decode", 0.0) + prepared.timings_ms.get("preprocess", 0.0)
                queue_ms = max(0.0, (time.perf_counter() - arrival.received) * 1e3 - work_ms)
                try:
                    if prepared.error is not None:
                        raise prepared.error
                    options = convert.recognize_options(frame.options, self.default_top_k)
                    background = verifying is not None and options.verify is not False
                    # only a frame verification will take is searched by parts for candidates
                    due = background and verifying.due(client)
                    # answered from the descriptor path: verification runs beside the stream
                    options = dataclasses.replace(options, verify=False)
                    track_ms = 0.0
                    if background:  # the camera's motion since the last frame carries verified outlines into this one
                        t0 = time.perf_counter()
                        tracker.observe(arrival.received, prepared.resized if prepared.resized is not None
                                        else prepared.pixels)
                        track_ms = (time.perf_counter() - t0) * 1e3
                    with fair_share(client):
                        result = model.recognize(prepared.pixels, options, cancel=call.cancel,
                                                 timings_ms={**prepared.timings_ms, "queue": queue_ms,
                                                             "track": track_ms},
                                                 resized=prepared.resized, regional=due)
                    if preparer is not None:  # the next frame's decode now takes no core from an inference
                        preparer.inferred()
                except (FrameError, OptionsError) as exc:
                    self.metrics.frames.labels("StreamRecognize", exc.reason).inc()
                    if self.penalty is not None and self.penalty.record(client, exc.reason):
                        self.metrics.streams_closed.labels("penalised").inc()
                        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self.penalty.message(client)
                                      or f"{PENALISED}: this client's frames were refused for their cost")
                    code = getattr(exc, "status", "INVALID_ARGUMENT")
                    yield convert.error_recognition(frame.frame_id, code, exc.reason, str(exc),
                                                    bundle_version=model.bundle_version, dropped_frames=slot.dropped)
                    continue
                except Cancelled:
                    self.metrics.frames.labels("StreamRecognize", "cancelled").inc()
                    break
                verified, in_view = None, None
                if background:
                    verifying.record(arrival.received, (time.perf_counter() - arrival.received) * 1e3)
                    # decoded again in the background, at the size its local features need
                    if due:  # with the candidates and part scores a verifying unary call would fit and weigh
                        verifying.offer(model, frame.frame_id, _decoder(frame, self.limits, model), result.shortlist,
                                        result.descriptor, arrival.received, keep_pairs=options.explain,
                                        regional_scores=result.part_scores, client=client)
                    new = verifying.take_new()
                    if new is not None:
                        self.metrics.verifications.labels("StreamRecognize", new.report.state).inc()
                        tracker.verified(new.received, new.report.placed, new.report.unfitted)
                    in_view = tracker.in_view(arrival.received, verifying.current_interval_s)
                    if in_view is not None:  # where the fitted artworks are now decides, not where they were
                        if in_view.centre is not None and in_view.centre.instance_id in model.labels:
                            smoother.confirm(in_view.centre.instance_id)
                        else:
                            smoother.release()
                            smoother.refute(in_view.not_in_view)
                    elif new is not None and new.report.verified and new.report.instance_id in model.labels:
                        smoother.confirm(new.report.instance_id)
                    elif new is not None and not new.report.verified:
                        smoother.release(fitted=new.report.inliers_by_artwork.keys())
                    verified = verifying.latest
                smoothed = smoother.update([(m.instance_id, m.score) for m in result.matches], result.decision,
                                           timestamp)  # its timestamp was checked above, on this smoother
                self.metrics.observe("StreamRecognize", result.decision.value, result.timings_ms)
                yield convert.recognition_message(
                    frame.frame_id, result, smoothed=smoothed, labels=model.labels, dropped_frames=slot.dropped,
                    verification=None if verified is None else convert.verification_message(
                        verified.report, verified.frame_id, verified.age_ms(), in_view))
        finally:
            self.metrics.active_streams.dec()
            slot.close()
            call.cancel.cancel()  # the preparer stops too (the stream may have ended by the client's half-close)

    def GetBundleInfo(self, request: pb.GetBundleInfoRequest, context: grpc.ServicerContext) -> pb.BundleInfo:
        return convert.bundle_info_message(self.holder.current().info())


def _decoder(frame: pb.Frame, limits: FrameLimits, model: ServedModel) -> Callable[[], np.ndarray]:
    """The frame's pixels at the size its local features are found at, decoded when called."""
    return lambda: convert.image_pixels(frame.image, limits, at_least=model.decode_need(describe=False, verify=True))


def _read_frames(request_iterator: Iterator[pb.Frame], slot: LatestSlot, cancel: Cancellation) -> None:
    """Drain the client's frames into the slot until it half-closes or the call ends."""
    try:
        for frame in request_iterator:
            slot.put(frame)
    except grpc.RpcError:
        cancel.cancel()  # the call was cancelled or failed: stop the worker too
    except Exception as exc:  # noqa: BLE001 -- a reader crash must not leave the worker waiting forever
        log.error("stream reader failed: %s", log_safe_traceback(exc))
        cancel.cancel()
    finally:
        slot.close()


def _deadline_passed(context: grpc.ServicerContext) -> bool:
    remaining = context.time_remaining()
    return remaining is not None and remaining <= 0


class AdminServicer(pb_grpc.AdminServicer):
    """LoadBundle and Enroll. With a ``bundle_root``, LoadBundle loads only bundles inside it
    (relative paths are relative to it) and answers every path outside it alike."""

    def __init__(self, holder: ModelHolder, metrics: ServiceMetrics, *, limits: FrameLimits = FrameLimits(),
                 bundle_root: Path | str | None = None):
        self.holder = holder
        self.metrics = metrics
        self.limits = limits
        self.bundle_root = None if bundle_root is None else Path(os.path.realpath(bundle_root))

    def _confined(self, path: str) -> Path | None:
        """``path`` resolved (symlinks, '..') if it lies inside the bundle root, else None.

        Resolving never fails (a missing part stays as written), so whether anything exists
        outside the root makes no difference to the answer.
        """
        resolved = Path(os.path.realpath(self.bundle_root / path))
        return resolved if resolved.is_relative_to(self.bundle_root) else None

    def LoadBundle(self, request: pb.LoadBundleRequest, context: grpc.ServicerContext) -> pb.BundleInfo:
        if not request.path:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "LoadBundle needs a path")
        unsafe = first_unsafe(request.path)
        if unsafe is not None:  # no real bundle path needs one; in a log it forges or hides lines
            self.metrics.reloads.labels("refused").inc()
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bundle path holds a control or bidi character "
                                                            f"({unsafe[1]} at position {unsafe[0]})")
        path: Path | str = request.path
        if self.bundle_root is not None:
            path = self._confined(request.path)
            if path is None:  # one answer for a missing path, a system file, a valid bundle, a symlink out
                self.metrics.reloads.labels("refused").inc()
                log.warning("refused bundle path outside the bundle root: %s", log_safe(request.path))
                context.abort(grpc.StatusCode.PERMISSION_DENIED,
                              "bundle path is outside the server's bundle root; this server loads bundles "
                              "from its bundle root only (--bundle-root)")
        try:
            model = self.holder.load(path, request.variant or None)
        except (BundleError, ValueError, OSError) as exc:
            self.metrics.reloads.labels("refused").inc()
            log.warning("refused bundle %s: %s", log_safe(request.path), log_safe(exc))
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"bundle refused, still serving the previous one: {exc}")
        except Exception as exc:  # noqa: BLE001 -- e.g. the backend cannot start: keep serving
            self.metrics.reloads.labels("failed").inc()
            log.error("loading bundle %s failed: %s", log_safe(request.path), log_safe_traceback(exc))
            context.abort(grpc.StatusCode.INTERNAL, f"loading the bundle failed, still serving the previous one: "
                                                    f"{type(exc).__name__}: {exc}")
        self.metrics.reloads.labels("ok").inc()
        return convert.bundle_info_message(model.info())

    def _refuse_enrolment(self, context: grpc.ServicerContext, message: str) -> None:
        self.metrics.enrolments.labels("refused").inc()
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)

    def Enroll(self, request: pb.EnrollRequest, context: grpc.ServicerContext) -> pb.EnrollResponse:
        with ACTIVITY.busy():  # decoding and describing photos: the visitors' inferences take one core meanwhile
            return self._enroll(request, context)

    def _enroll(self, request: pb.EnrollRequest, context: grpc.ServicerContext) -> pb.EnrollResponse:
        # Checked before anything is decoded: ids, titles and metadata end up in logs, labels and the
        # gallery, where a NUL used to crash the call (UNKNOWN) and a newline forges a log line.
        fields = [("instance_id", request.instance_id), ("title", request.title)]
        for key, value in sorted(request.metadata.items()):
            fields += [("a metadata key", key), (f"metadata[{log_safe(key)!r}]", value)]
        for name, text in fields:
            unsafe = first_unsafe(text)
            if unsafe is not None:
                self._refuse_enrolment(context, f"{name} holds a control or bidi character ({unsafe[1]} at "
                                                f"position {unsafe[0]}); enrolment text must be plain")
        iid = request.instance_id.strip()
        if not iid or len(iid) > 200 or any(c in iid for c in "/\\"):
            self._refuse_enrolment(context, "instance_id must be 1-200 characters without slashes")
        if not request.photos:
            self._refuse_enrolment(context, "Enroll needs at least one photo")
        if len(request.photos) > MAX_ENROL_PHOTOS:
            self._refuse_enrolment(context, f"at most {MAX_ENROL_PHOTOS} photos per Enroll call, "
                                            f"got {len(request.photos)}")
        # One photo decoded at a time and brought to the recognition size at once: 64 photos
        # of 24 MP each were all decoded first, 4.6 GB for one 5 MB request.
        resize = self.holder.current().describer.resize
        images: list[np.ndarray] = []
        rejected = []
        for index, photo in enumerate(request.photos):
            try:
                images.append(resize(convert.image_pixels(photo, self.limits, what=f"photo {index}")))
            except FrameError as exc:
                rejected.append(pb.FrameError(code=exc.status, reason=exc.reason, message=f"photo {index}: {exc}"))
        if not images:
            self._refuse_enrolment(context, "no usable photo: " + "; ".join(r.message for r in rejected))
        model = self.holder.enroll(iid, request.title, dict(request.metadata), images)
        self.metrics.enrolments.labels("ok").inc()
        return pb.EnrollResponse(instance_id=iid, photos_used=len(images), rejected=rejected,
                                 bundle=convert.bundle_info_message(model.info()))
