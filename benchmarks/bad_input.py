"""``muselens bench bad-input BUNDLE --out DIR``: thousands of bad requests, every outcome checked.

Starts ``muselens serve`` as a subprocess with a token file, sends every case of the seeded
:class:`~muselens.benchmarks.corpus.Corpus` through a unary call and (Recognizer cases) through
lock-step streams -- a few frames per stream, a known-good frame after every case, so a
stream is seen to survive a bad frame and to answer the good frame after it -- and compares
each outcome with the corpus's expectation. Records counts per category x outcome, every
mismatch (the first few in full), whether the server stayed alive, and its RSS over the run
(from /proc): growth from after the warm-up to the end, each read once the server's periodic heap
trim has run. The target (< 5%) is on the growth beyond what the served model holds by design
(``muselens_model_state_bytes``, scraped before and after): the corpus's enrolments add
references, and maps are cached to explain against them.

:class:`~muselens.runtime.server.process.ServerProcess` (``muselens serve`` as a child process) is shared with the soak
benchmark and the reconnect test.
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from muselens.benchmarks import common
from muselens.benchmarks.corpus import CATEGORIES, Corpus
from muselens.benchmarks.corpus_cases import ENROLL, IN_STREAM, LAST_IN_STREAM, OK, OWN_STREAM, Case, Outcome, Tokens
from muselens.runtime.frames import REASONS
from muselens.runtime.recognition.explainer import REFERENCE_CACHE_BYTES
from muselens.runtime.server.handlers import MALFORMED
from muselens.runtime.server.malloc import HEAP_TRIM_SECONDS
from muselens.runtime.server.penalty import PENALISED
from muselens.runtime.server.process import ServerProcess
from muselens.v1 import recognition_pb2 as pb

RSS_GROWTH_TARGET = 0.05
# RSS is read after the warm-up and at the end once the server's heap trimmer has run (every
# HEAP_TRIM_SECONDS): freed pages it has not yet handed back are not growth
SETTLE_S = HEAP_TRIM_SECONDS + 1.0
KNOWN_REASONS = frozenset(REASONS) | {"bad_top_k", "bad_heatmap_kind", "bad_roi", "bad_timestamp",
                                      "no_reference_images", MALFORMED, PENALISED}
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
SHOW_MISMATCHES = 10


# -- the server under test ---------------------------------------------------------------------


def write_token_file(path: Path) -> Tokens:
    """A fresh client and admin token in a ``chmod 600`` muselens token file."""
    tokens = Tokens(client=f"client-{secrets.token_hex(16)}", admin=f"admin-{secrets.token_hex(16)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"client {tokens.client}\nadmin {tokens.admin}\n")
    path.chmod(0o600)
    return tokens


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds on a thread: ``(seconds since start, MiB)``."""

    def __init__(self, pid: int, interval: float = 0.5):
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self.marks: dict[str, float] = {}
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> float | None:
        try:
            rss = common.rss_mb(self.pid)
        except OSError:  # the process is gone: nothing to sample
            return None
        self.samples.append((time.monotonic() - self._t0, rss))
        return rss

    def mark(self, name: str) -> None:
        """Remember now (and an RSS sample taken now) under ``name``, e.g. "warm"."""
        self.sample()
        self.marks[name] = time.monotonic() - self._t0

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# -- talking to the server with arbitrary bytes ------------------------------------------------


class Wire:
    """Raw-bytes stubs: requests go out exactly as the corpus built them (malformed ones too)."""

    def __init__(self, address: str, tokens: Tokens):
        self.tokens = tokens
        self.channel = grpc.insecure_channel(address, options=_CHANNEL_OPTIONS)
        self.recognize = self.channel.unary_unary("/muselens.v1.Recognizer/Recognize", request_serializer=None,
                                                  response_deserializer=pb.Recognition.FromString)
        self.stream_recognize = self.channel.stream_stream("/muselens.v1.Recognizer/StreamRecognize",
                                                           request_serializer=None,
                                                           response_deserializer=pb.Recognition.FromString)
        self.enroll = self.channel.unary_unary("/muselens.v1.Admin/Enroll", request_serializer=None,
                                               response_deserializer=pb.EnrollResponse.FromString)

    def metadata(self, case: Case | None) -> tuple[tuple[str, str], ...]:
        if case is not None and case.metadata is not None:
            return case.metadata
        token = self.tokens.admin if case is not None and case.rpc == ENROLL else self.tokens.client
        return (("authorization", f"Bearer {token}"),)

    def close(self) -> None:
        self.channel.close()


def status_outcome(error: grpc.RpcError) -> Outcome:
    """A failed call as an Outcome: its status and the muselens reason its details start with."""
    details = error.details() or ""
    prefix = details.split(":", 1)[0]
    return Outcome(error.code().name, prefix if prefix in KNOWN_REASONS else "")


def recognition_outcome(r: pb.Recognition) -> Outcome:
    if r.HasField("error"):
        return Outcome(r.error.code, r.error.reason)
    if r.decision == pb.DECISION_UNSPECIFIED or not r.matches:
        return Outcome("EMPTY_ANSWER")  # no error, yet nothing recognised: a servicer bug
    return Outcome(OK)


def unary(wire: Wire, case: Case, timeout: float) -> Outcome:
    try:
        if case.rpc == ENROLL:
            response = wire.enroll(case.request(), metadata=wire.metadata(case), timeout=timeout)
            return Outcome(OK, ",".join(r.reason for r in response.rejected))
        return recognition_outcome(wire.recognize(case.request(), metadata=wire.metadata(case), timeout=timeout))
    except grpc.RpcError as exc:
        return status_outcome(exc)


class Lockstep:
    """A stream that sends one frame and waits for its answer before the next (nothing dropped)."""

    _END = object()

    def __init__(self, wire: Wire, metadata, timeout: float):
        self.outbox: queue.Queue = queue.Queue()
        self.responses = wire.stream_recognize(self._requests(), metadata=metadata, timeout=timeout)

    def _requests(self):
        while (item := self.outbox.get()) is not self._END:
            yield item

    def send(self, request: bytes) -> pb.Recognition | Outcome:
        """The answer to ``request``, or the stream's final Outcome if it ended instead."""
        self.outbox.put(request)
        try:
            return next(self.responses)
        except grpc.RpcError as exc:
            return status_outcome(exc)
        except StopIteration:
            return Outcome("STREAM_ENDED")

    def close(self) -> Outcome | None:
        """Half-close; None when the server ends the stream cleanly, else what it ended with."""
        self.outbox.put(self._END)
        try:
            extra = next(self.responses, None)
        except grpc.RpcError as exc:
            return status_outcome(exc)
        return None if extra is None else Outcome("UNEXPECTED_ANSWER")


def plan_streams(corpus: Corpus, rng: np.random.Generator, per_stream: tuple[int, int] = (3, 8)) -> list[list[int]]:
    """Group the stream-capable cases into streams of a few frames each (shuffled). A case that
    ends its stream goes last in a stream of its own choosing; an auth case gets a stream alone."""
    kinds = [CATEGORIES[name].stream for name in corpus.categories]
    framed = [i for i, kind in enumerate(kinds) if kind == IN_STREAM]
    framed = [framed[k] for k in rng.permutation(len(framed))]
    streams, pos = [], 0
    while pos < len(framed):
        n = int(rng.integers(per_stream[0], per_stream[1] + 1))
        streams.append(framed[pos:pos + n])
        pos += n
    free = list(rng.permutation(len(streams)))
    for i, kind in enumerate(kinds):
        if kind == LAST_IN_STREAM:
            if free:
                streams[free.pop()].append(i)
            else:
                streams.append([i])
    return streams + [[i] for i, kind in enumerate(kinds) if kind == OWN_STREAM]


# -- the run ---------------------------------------------------------------------------------


class Tally:
    """Counts per (mode, category, outcome) and the mismatches, from several threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.mismatches: list[dict[str, Any]] = []
        self.n_mismatches = 0
        self.good_after_bad = Counter()  # stream: good frames answered / not, after a bad case

    def record(self, mode: str, case: Case | None, category: str, outcome: Outcome,
               expected: tuple[Outcome, ...], detail: str = "") -> None:
        ok = outcome in expected
        with self.lock:
            self.counts[(mode, category, str(outcome))] += 1
            if not ok:
                self.n_mismatches += 1
                if len(self.mismatches) < 200:
                    self.mismatches.append({
                        "mode": mode, "case": None if case is None else case.index, "category": category,
                        "note": None if case is None else case.note, "expected": [str(e) for e in expected],
                        "got": str(outcome), "detail": detail})


def run_unary(wire: Wire, corpus: Corpus, tally: Tally, workers: int, timeout: float, progress) -> None:
    def one(index: int) -> None:
        case = corpus.case(index)
        tally.record("unary", case, case.category, unary(wire, case, timeout), case.expected)
        progress()

    with ThreadPoolExecutor(workers, thread_name_prefix="bad-unary") as pool:
        list(pool.map(one, range(len(corpus))))


def run_streams(wire: Wire, corpus: Corpus, tally: Tally, streams: list[list[int]], good: bytes, workers: int,
                timeout: float, progress) -> None:
    """Each stream: case, good frame, case, good frame, ...; the good frames must all be answered."""
    good_expected = (Outcome(OK),)

    def one(indices: list[int]) -> None:
        first = corpus.case(indices[0])
        stream = Lockstep(wire, wire.metadata(first), timeout)
        ended = False
        for index in indices:
            case = first if index == indices[0] else corpus.case(index)
            answer = stream.send(case.request())
            if isinstance(answer, Outcome):  # the stream ended (expected for enders and refused auth)
                tally.record("stream", case, case.category, answer, case.expected)
                ended = True
            else:
                detail = "" if answer.frame_id == case.answered_frame_id else f"answer for {answer.frame_id!r}"
                outcome = recognition_outcome(answer) if not detail else Outcome("WRONG_FRAME_ID")
                tally.record("stream", case, case.category, outcome, case.expected, detail)
            progress()
            if ended:
                break
            reply = stream.send(good)
            outcome = reply if isinstance(reply, Outcome) else recognition_outcome(reply)
            tally.record("stream", case, "good_after_case", outcome, good_expected,
                         f"the good frame after case {case.index} ({case.category})")
            if isinstance(reply, Outcome):
                ended = True
                break
        if not ended:
            closing = stream.close()
            if closing is not None:
                tally.record("stream", None, "stream_close", closing, (Outcome(OK),), f"stream {indices[:3]}...")

    with ThreadPoolExecutor(workers, thread_name_prefix="bad-stream") as pool:
        list(pool.map(one, streams))


# Warm-up frames span the corpus's extremes (sides 32..400, both orientations), with every
# heatmap and an overlay: ONNX Runtime's arena and the heatmap buffers grow to their largest
# shapes here, so what the run adds afterwards is growth, not first use.
WARMUP_SIZES = ((32, 400), (400, 32), (400, 400), (32, 32), (240, 320))


def warmup_frames(seed: int) -> list[bytes]:
    from muselens.benchmarks.corpus_images import smooth_image
    from muselens.core.data.images import encode_jpeg

    rng = np.random.default_rng([seed, 0x3A3])
    frames = []
    for h, w in WARMUP_SIZES:
        image = pb.Image(encoded=encode_jpeg(smooth_image(rng, h, w)))
        frames.append(pb.Frame(image=image).SerializeToString())
        frames.append(pb.Frame(image=image, options=pb.RecognizeOptions(
            explain=True, overlay=True, top_k=10, heatmap_kinds=[1, 2, 3],
            region_of_interest=pb.RegionOfInterest(x0=0.1, y0=0.1, x1=0.9, y1=0.9))).SerializeToString())
    return frames


# Valid requests of every size and kind the corpus sends: "growth after warm-up" must measure what
# stays after the server has once held its largest working set, not that working set itself.
WORKING_SET_CATEGORIES = ("valid_image_variant", "raw_valid", "top_k_valid", "options_valid")
WORKING_SET_PER_CATEGORY = 12


def working_set_frames(corpus: Corpus) -> list[bytes]:
    """The corpus's largest valid frames of each kind (by request size), served before measuring."""
    frames = []
    for name in WORKING_SET_CATEGORIES:
        cases = [corpus.case(i) for i in range(len(corpus.categories)) if corpus.categories[i] == name]
        cases = [c for c in cases if c.rpc == "Recognize" and c.payload is not None and c.metadata is None
                 and {o.status for o in c.expected} == {"OK"}]
        cases.sort(key=lambda c: _pixels(c.payload), reverse=True)
        frames += [c.payload for c in cases[:WORKING_SET_PER_CATEGORY]]
    return frames


def _pixels(payload: bytes) -> int:
    """Decoded size of a Frame's image (what the server allocates), from its header or raw size."""
    from muselens.runtime.frames import FrameError, sniff

    frame = pb.Frame.FromString(payload)
    if frame.image.WhichOneof("source") == "raw":
        return frame.image.raw.width * frame.image.raw.height
    try:
        header = sniff(frame.image.encoded)
    except FrameError:
        return 0
    return header.width * header.height


def reference_frames(bundle: Path, fill_bytes: int) -> list[bytes]:
    """Explain requests whose queries are the bundle's own reference photos (spread over the
    gallery), enough of them that their maps fill ``fill_bytes``. Each makes the server explain
    against, and cache, that reference: its byte-bounded cache of reference maps
    (``REFERENCE_CACHE_BYTES``) is full before measuring, as after any long run, so filling it is
    not counted as growth. An entry's size is estimated from the photo's shape at the model's
    input size (pixels plus a ``dim`` x cells float32 map)."""
    from muselens.core.data.images import encode_jpeg
    from muselens.runtime.bundle import load_bundle

    loaded = load_bundle(bundle)
    try:
        contract = loaded.manifest.descriptor
        short, stride, dim = contract.short_side, contract.stride, contract.dim
        n = loaded.gallery.n_images
        frames, estimated = [], 0
        for row in np.random.default_rng(0).permutation(n).tolist():  # spread over the gallery
            if estimated >= fill_bytes:
                break
            image = loaded.reference_image(row)
            if image is None:
                continue
            scale = short / min(image.shape[:2])
            h, w = (round(side * scale) for side in image.shape[:2])
            estimated += h * w * 3 + math.ceil(h / stride) * math.ceil(w / stride) * dim * 4
            frames.append(pb.Frame(image=pb.Image(encoded=encode_jpeg(image)), options=pb.RecognizeOptions(
                explain=True, explain_reference=True, top_k=3, heatmap_kinds=[1, 2, 3])).SerializeToString())
        return frames
    finally:
        loaded.close()


def fill_caches(wire: Wire, frames: list[bytes], timeout: float, workers: int) -> None:
    """Each frame once, from ``workers`` threads (see :func:`reference_frames`)."""
    with ThreadPoolExecutor(workers, thread_name_prefix="fill-caches") as pool:
        list(pool.map(lambda frame: wire.recognize(frame, metadata=wire.metadata(None), timeout=timeout), frames))


def warm_up(wire: Wire, frames: list[bytes], timeout: float, workers: int, rounds: int = 3) -> None:
    """The warm-up frames from ``workers`` threads at once, as the run will send them: the server's
    worker threads (and their allocator arenas) each reach their working size here."""

    # The largest frames from every worker at once, several times: the server's peak working set
    # (all its threads decoding and resizing the biggest frames together) is reached here.
    peak = sorted(frames, key=_pixels, reverse=True)[:workers]
    barrier = threading.Barrier(workers)

    def one(_: int) -> None:
        for _ in range(rounds):
            for frame in peak:
                barrier.wait(timeout)
                wire.recognize(frame, metadata=wire.metadata(None), timeout=timeout)
            for frame in frames:
                wire.recognize(frame, metadata=wire.metadata(None), timeout=timeout)
            stream = Lockstep(wire, wire.metadata(None), timeout)
            for frame in frames:
                answer = stream.send(frame)
                if isinstance(answer, Outcome) or answer.HasField("error"):
                    raise RuntimeError(f"warm-up stream failed: {answer}")
            stream.close()

    with ThreadPoolExecutor(workers, thread_name_prefix="warm-up") as pool:
        list(pool.map(one, range(workers)))


def rss_summary(samples: list[tuple[float, float]], warm_at: float,
                state: tuple[Mapping[str, int], Mapping[str, int]] | None = None) -> dict[str, Any]:
    """RSS after the warm-up, at the end and over the second half. ``state`` is the served model's
    state by part (``muselens_model_state_bytes``) after the warm-up and at the end: the corpus
    enrols photos, which the model keeps (descriptors, local features, vote-index entries, the
    photo) and explains against (cached maps, up to their bound). The target is on the growth
    beyond that state; RSS growing by what the server holds by design is no leak."""
    after = [rss for t, rss in samples if t >= warm_at]
    if not after:
        return {}
    start, end = after[0], after[-1]
    # Growth over the second half too: a leak keeps climbing there, a slow warm-up (allocator
    # arenas of threads first used late, new frame shapes) has levelled off by then.
    middle_t = (warm_at + samples[-1][0]) / 2
    middle = next(rss for t, rss in samples if t >= middle_t)
    summary: dict[str, Any] = {
        "rss_after_warmup_mb": start, "rss_end_mb": end, "rss_peak_mb": max(rss for _, rss in samples),
        "rss_growth": (end - start) / start, "rss_growth_target": RSS_GROWTH_TARGET,
        "rss_middle_mb": middle, "rss_growth_second_half": (end - middle) / middle}
    if state is not None:
        first, last = state
        grown = (sum(last.values()) - sum(first.values())) / 2**20
        summary.update({
            "model_state_after_warmup": dict(first), "model_state_end": dict(last), "model_state_growth_mb": grown,
            "model_state_growth_by_part_mb": {part: (last.get(part, 0) - first.get(part, 0)) / 2**20
                                              for part in sorted({*first, *last})},
            "rss_growth_beyond_state": (end - start - grown) / start})
    return summary


def growth_checked(rss: Mapping[str, Any]) -> float | None:
    """The growth the target is on: beyond the model's state where it was read, else all of it."""
    return rss.get("rss_growth_beyond_state", rss.get("rss_growth"))


def run(bundle: Path, out: Path, *, count: int, seed: int, workers: int = 4, threads: int | None = None,
        timeout: float = 120.0, show_progress: bool = True) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    tokens = write_token_file(out / "tokens.txt")
    corpus = Corpus(count, seed, tokens=tokens)
    rng = np.random.default_rng([seed, 0x57])
    streams = plan_streams(corpus, rng)
    good = corpus.good_frame(np.random.default_rng([seed, 0x600D])).SerializeToString()
    stream_cases = sum(len(s) for s in streams)
    total = count + stream_cases
    tally = Tally()
    # every call carries the one client token: the server must let it run as many calls as we send,
    # and answer each costly frame for itself (a flood of them would get the client penalised)
    server = ServerProcess(bundle, token_file=out / "tokens.txt", threads=threads, log=out / "server.log",
                           extra=("--max-calls-per-token", str(workers), "--penalty-after", "0",
                                  "--flood-penalty-after", "0", "--metrics-port", "0"))
    started = time.monotonic()
    with server:
        wire = Wire(server.address, tokens)
        try:
            with RssSampler(server.pid) as rss:
                warm_up(wire, warmup_frames(seed) + working_set_frames(corpus), timeout, workers)
                fill_caches(wire, reference_frames(bundle, REFERENCE_CACHE_BYTES * 5 // 4), timeout, workers)
                time.sleep(SETTLE_S)  # RSS read as the server keeps it: after its periodic heap trim
                rss.mark("warm")
                state_warm = server.model_state()
                bar = _progress(total, show_progress)
                run_unary(wire, corpus, tally, workers, timeout, bar.update)
                rss.mark("unary_done")
                run_streams(wire, corpus, tally, streams, good, workers, timeout, bar.update)
                bar.close()
                time.sleep(SETTLE_S)
                rss.mark("end")
                state_end = server.model_state()
                try:  # after everything: still alive and answering a good frame
                    last = recognition_outcome(wire.recognize(good, metadata=wire.metadata(None), timeout=timeout))
                except grpc.RpcError as exc:
                    last = status_outcome(exc)
                alive = server.alive()
        finally:
            wire.close()
    elapsed = time.monotonic() - started
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for (mode, category, outcome), n in sorted(tally.counts.items()):
        counts.setdefault(mode, {}).setdefault(category, {})[outcome] = n
    return {
        "bundle": str(bundle), "count": count, "seed": seed, "workers": workers, "streams": len(streams),
        "stream_cases": stream_cases, "elapsed_s": elapsed, "categories": dict(Counter(corpus.categories)),
        "expected": {name: (["OK/<reasons of the unusable photos>"] if name == "enroll_partial" else
                            sorted({str(o) for i in _first_of(corpus, name) for o in corpus.case(i).expected}))
                     for name in sorted(set(corpus.categories))},
        "counts": counts, "mismatches": tally.n_mismatches, "mismatch_examples": tally.mismatches,
        "server_alive": alive, "server_answers_after_run": str(last),
        "rss": {**rss_summary(rss.samples, rss.marks["warm"], (state_warm, state_end)), "marks": rss.marks},
        "rss_samples": [[round(t, 2), round(m, 2)] for t, m in rss.samples],
    }


def _first_of(corpus: Corpus, name: str, n: int = 20) -> list[int]:
    return [i for i, c in enumerate(corpus.categories) if c == name][:n]


class _progress:
    def __init__(self, total: int, show: bool):
        self.lock = threading.Lock()
        self.bar = None
        if show:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="bad input", unit="req", file=sys.stderr, mininterval=2)

    def update(self) -> None:
        if self.bar is not None:
            with self.lock:
                self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- output ----------------------------------------------------------------------------------


def plot(path: Path, data: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = np.asarray(data["rss_samples"], dtype=np.float64).reshape(-1, 2)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(samples[:, 0], samples[:, 1], lw=1.2, label="server RSS")
    for name, t in data["rss"].get("marks", {}).items():
        ax.axvline(t, color="grey", lw=0.8, ls="--")
        ax.text(t, ax.get_ylim()[1], f" {name}", va="top", fontsize=8, color="grey")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB")
    growth, beyond = data["rss"].get("rss_growth"), data["rss"].get("rss_growth_beyond_state")
    ax.set_title("bad-input: server RSS" + (f" (growth after warm-up {growth * 100:+.2f}%" if growth is not None
                                            else "")
                 + (f", beyond the model's state {beyond * 100:+.2f}%" if beyond is not None else "")
                 + (")" if growth is not None else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(data: dict[str, Any]) -> str:
    """Markdown: category | cases | expected | unary outcomes | stream outcomes."""
    lines = ["| category | cases | expected | unary | stream |", "|---|---:|---|---|---|"]
    counts = data["counts"]

    def cell(mode: str, category: str) -> str:
        found = counts.get(mode, {}).get(category, {})
        return ", ".join(f"{o} {n}" for o, n in sorted(found.items())) or "-"

    for category, n in sorted(data["categories"].items()):
        lines.append(f"| {category} | {n} | {' or '.join(data['expected'].get(category, []))} | "
                     f"{cell('unary', category)} | {cell('stream', category)} |")
    lines.append(f"| good_after_case | - | OK | - | {cell('stream', 'good_after_case')} |")
    return "\n".join(lines)


def markdown(folder: Path, data: dict[str, Any]) -> str:
    rss = data["rss"]
    growth = rss.get("rss_growth")
    lines = [f"## {folder.name}", "", f"`{data['command']}`", "", common.machine_line(data["environment"]), "",
             f"{data['count']} cases (seed {data['seed']}) through unary calls, {data['stream_cases']} of them again "
             f"through {data['streams']} lock-step streams with a good frame after each case; "
             f"{data['elapsed_s']:.0f} s.", "",
             f"**Mismatches: {data['mismatches']}.** Server alive at the end: {data['server_alive']} "
             f"(a good frame afterwards: {data['server_answers_after_run']}).", ""]
    if growth is not None:
        lines += [f"Server RSS {rss['rss_after_warmup_mb']:.1f} MiB after warm-up, {rss['rss_end_mb']:.1f} MiB at "
                  f"the end ({growth * 100:+.2f}%"
                  + ("" if "rss_growth_beyond_state" in rss else f", target < {RSS_GROWTH_TARGET * 100:.0f}%")
                  + f"), peak "
                  f"{rss['rss_peak_mb']:.1f} MiB; over the second half {rss['rss_middle_mb']:.1f} -> "
                  f"{rss['rss_end_mb']:.1f} MiB ({rss['rss_growth_second_half'] * 100:+.2f}%).", ""]
    if "rss_growth_beyond_state" in rss:
        parts = ", ".join(f"{part.replace('_', ' ')} {mb:+.1f}" for part, mb in rss["model_state_growth_by_part_mb"].items()
                          if abs(mb) >= 0.05)
        lines += [f"What the served model holds beside its network (`muselens_model_state_bytes`) grew by "
                  f"{rss['model_state_growth_mb']:.1f} MiB ({parts or 'nothing'}): the corpus's enrolled photos, "
                  f"kept by design, and the reference maps cached for explanations against them. **RSS growth "
                  f"beyond it: {rss['rss_growth_beyond_state'] * 100:+.2f}%, target < {RSS_GROWTH_TARGET * 100:.0f}%.**",
                  ""]
    lines += [table(data), "",
              "Oversized messages and metadata beyond gRPC's limits are refused by gRPC itself and end a "
              "stream (a stream cannot continue after them); every other bad frame, unparsable protobuf "
              "included, is answered in its own `Recognition.error` and the stream goes on.", ""]
    for example in data.get("mismatch_examples", [])[:SHOW_MISMATCHES]:
        lines.append(f"- mismatch: {json.dumps(example)}")
    lines.append(f"![server RSS](results/{folder.name}/rss.png)")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle folder or archive to serve")
    parser.add_argument("--out", type=Path, required=True, help="folder for bench.json, rss.png, the server log")
    parser.add_argument("--count", type=int, default=10_000, help="cases in the corpus (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent client calls (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="the server's inference threads")
    parser.add_argument("--timeout", type=float, default=120.0, help="per-call deadline in seconds")


def main(args: argparse.Namespace) -> int:
    if args.count < 1 or args.workers < 1:
        print("error: --count and --workers must be >= 1", file=sys.stderr)
        return 2
    if not args.bundle.exists():
        print(f"error: bundle {args.bundle} does not exist", file=sys.stderr)
        return 2
    try:
        data = run(args.bundle, args.out, count=args.count, seed=args.seed, workers=args.workers,
                   threads=args.threads, timeout=args.timeout)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = common.write_bench(args.out, "bad-input", getattr(args, "argv", None), data)
    plot(args.out / "rss.png", {**data})
    print(table({**data}))
    growth, rss = data["rss"].get("rss_growth"), data["rss"]
    print(f"mismatches {data['mismatches']}; server alive {data['server_alive']}"
          + (f"; RSS growth after warm-up {growth * 100:+.2f}%, over the second half "
             f"{rss['rss_growth_second_half'] * 100:+.2f}%" if growth is not None else "")
          + (f"; the model's state grew {rss['model_state_growth_mb']:.1f} MiB, RSS beyond it "
             f"{rss['rss_growth_beyond_state'] * 100:+.2f}% (target < {RSS_GROWTH_TARGET * 100:.0f}%)"
             if "rss_growth_beyond_state" in rss else ""))
    checked = growth_checked(rss)
    if checked is not None:
        print(f"memory: {'within' if checked < RSS_GROWTH_TARGET else 'OVER'} the target ({checked * 100:+.2f}%)")
    for example in data["mismatch_examples"][:SHOW_MISMATCHES]:
        print("mismatch:", json.dumps(example))
    print(f"wrote {path}")
    return 0 if data["mismatches"] == 0 and data["server_alive"] else 1
