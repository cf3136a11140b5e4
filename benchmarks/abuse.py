"""``muselens bench abuse BUNDLE --out DIR [--quick]``: every attack of issue 23, bounded, on loopback.

Starts ``muselens serve`` as a child process on 127.0.0.1 (with ``--admin-port`` and an empty
``--bundle-root``, as an exposed server should run) and a *good client* in a process of its own:
one ``Recognize`` of a 640x480 JPEG every 1/``--good-hz`` s with its own client token, and a
health check on the admin port every second. Its normal p99 is measured first. Then each attack
runs for about ``--seconds`` (2 with ``--quick``), one after another, each from a fresh child
process with a client token of its own (a penalty one attack earns does not carry into the
next; the admin token for Admin calls), sending as fast as it is answered:

- ``idle_streams``: more ``StreamRecognize`` calls than workers, sending nothing, held open;
- ``scan_bomb``: a progressive JPEG of 8192x2928 (inside the pixel limit) with 10,000 extra
  scans, four senders;
- ``enrol_nul``: ``Enroll`` with NUL bytes in the id, the title, a metadata value;
- ``enrol_memory``: ``Enroll`` with 64 PNGs (4 with ``--quick``) that each decode to 24 MP;
- ``log_injection``: a ``LoadBundle`` path with a newline and a forged log line, ids with U+202E;
- ``bundle_root``: ``LoadBundle`` of paths outside the bundle root (a valid bundle among them);
- ``unary_flood``: waves of 500 (100) concurrent ``Recognize`` calls;
- ``timestamp``: streams whose first frame has timestamp 1e308, then normal frames;
- ``largest_raw``: NV21 frames at the raw byte limit, one row over it, and 24 MP (over gRPC's cap).

For each: the statuses the attack got (counted) and whether they are the expected ones, the
server's CPU seconds and peak RSS during it (/proc: ``VmHWM`` after a reset, and sampled every
50 ms), its RSS 6 s after (the server trims its heap every 5 s) against just before (target:
within 5 %), and the good client's calls sent meanwhile: all answered OK within twice its
normal p99? The good client retries a refusal as the server asks (gRPC's retry policy,
RESOURCE_EXHAUSTED only, 3 attempts); its latency includes the retries. Before the baseline
the server sees one frame of each extreme aspect ratio, so its inference arena has its
working size.

The attacking process runs at nice 10 (``--attacker-nice``): on a two-core machine its own
client-side work (building and sending 800 KB frames as fast as they are answered) would take
the cores the server and the good client need, which an attacker on another machine does not.
The server and the good client keep the default priority.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from muselens.benchmarks import common
from muselens.benchmarks.abuse_attacks import ATTACKS, ATTACK_NAMES, Attack, Target
from muselens.benchmarks.corpus_images import smooth_image
from muselens.core.data.images import encode_jpeg
from muselens.runtime.server.malloc import HEAP_TRIM_SECONDS
from muselens.runtime.server.process import ServerProcess
from muselens.v1 import recognition_pb2 as pb

RSS_TARGET = 0.05  # RSS after an attack within 5 % of before
LATENCY_FACTOR = 2.0  # the good client within 2x its normal p99


# -- what the server costs -------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its finished children so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def reset_peak_rss(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark (``VmHWM``) of ``pid``; False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb(pid: int) -> float:
    """``VmHWM``: the process's peak RSS since it started or since :func:`reset_peak_rss`, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise OSError(f"no VmHWM for {pid}")


class PeakSampler:
    """RSS of ``pid`` every ``interval`` s on a thread; :attr:`peak` is the largest seen."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval, self.peak = pid, interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, common.rss_mb(self.pid))
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- the good client, in a process of its own (the attacks' threads do not slow it) ----------


def _timed(call: Callable[[], Any], record: list[tuple[float, float, str]]) -> None:
    t0 = time.monotonic()
    try:
        call()
        code = "OK"
    except grpc.RpcError as exc:
        code = exc.code().name
    record.append((t0, (time.monotonic() - t0) * 1e3, code))


# A good client does what a refusal asks ("retry later"): gRPC's own retry policy, for
# RESOURCE_EXHAUSTED only; the latency it records includes the retries.
GOOD_RETRY = json.dumps({"methodConfig": [{
    "name": [{"service": "muselens.v1.Recognizer"}],
    "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.02s", "maxBackoff": "0.1s", "backoffMultiplier": 2,
                    "retryableStatusCodes": ["RESOURCE_EXHAUSTED"]}}]})


def _good_client(address: str, admin_address: str, token: str, frame: bytes, hz: float, stop, results) -> None:
    """Recognize ``frame`` every 1/``hz`` s (retrying a refusal as asked, see :data:`GOOD_RETRY`)
    and check health on the admin port every second until ``stop`` is set; then put
    ``{"calls": [(t, ms, code)], "health": [...]}`` on ``results``."""
    metadata = (("authorization", f"Bearer {token}"),)
    request = pb.Frame(frame_id="good", image=pb.Image(encoded=frame)).SerializeToString()
    calls: list[tuple[float, float, str]] = []
    health: list[tuple[float, float, str]] = []
    options = [("grpc.service_config", GOOD_RETRY), ("grpc.enable_retries", 1)]
    with grpc.insecure_channel(address, options=options) as channel, grpc.insecure_channel(admin_address) as admin:
        recognize = channel.unary_unary("/muselens.v1.Recognizer/Recognize")
        check = admin.unary_unary("/grpc.health.v1.Health/Check")
        period = 1.0 / hz
        next_call = next_health = time.monotonic()
        while not stop.is_set():
            _timed(lambda: recognize(request, metadata=metadata, timeout=5.0), calls)
            if time.monotonic() >= next_health:
                _timed(lambda: check(b"", timeout=2.0), health)
                next_health += 1.0
            next_call = max(next_call + period, time.monotonic())  # one call at a time: never a burst
            stop.wait(max(0.0, next_call - time.monotonic()))
    results.put({"calls": calls, "health": health})


def window(records: list[tuple[float, float, str]], start: float, end: float) -> dict[str, Any]:
    """Calls of the good client sent in ``[start, end)``: their codes and the OK ones' latency."""
    inside = [(ms, code) for t, ms, code in records if start <= t < end]
    codes = Counter(code for _, code in inside)
    return {"calls": len(inside), "codes": dict(sorted(codes.items())),
            "latency_ms": common.percentiles(ms for ms, code in inside if code == "OK")}


# -- the run ------------------------------------------------------------------------------------


def write_tokens(path: Path, attackers: tuple[str, ...] = ATTACK_NAMES) -> dict[str, str]:
    """Client tokens (the good client's, and one per attack: a penalty one attack earns must not
    spill into the next) and an admin token, ``chmod 600``."""
    roles = ("good", *(f"attacker-{name}" for name in attackers), "admin")
    tokens = {role: f"{role.split('-')[0]}-{secrets.token_hex(16)}" for role in roles}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{'admin' if role == 'admin' else 'client'} {token}\n" for role, token in tokens.items()))
    path.chmod(0o600)
    return tokens


def _attacker(name: str, target: Target, niceness: int, ready, go, results) -> None:
    """A child process: lower its CPU priority, say it is ready, run attack ``name`` on ``go``,
    put ``(statuses, notes)`` on ``results``."""
    if niceness:
        os.nice(niceness)  # before any thread exists: every thread of the attack inherits it
    attack = next(a for a in ATTACKS if a.name == name)
    ready.set()
    go.wait()
    try:
        statuses, notes = attack.run(target)
    except Exception as exc:  # noqa: BLE001 -- an attack that breaks is reported, the others still run
        statuses, notes = Counter({f"bench error: {type(exc).__name__}": 1}), {"error": str(exc)}
    finally:
        target.close()
    results.put((dict(statuses), notes))


def warm_up(address: str, token: str) -> None:
    """One frame of each extreme shape the model takes (2:1, 1:2, 4:3), so ONNX Runtime's arena
    has touched the pages of its largest runs before any RSS is read: a server meets every
    aspect ratio within minutes, and the first wide frame of an attack is no leak."""
    rng = np.random.default_rng([23, 6])
    with grpc.insecure_channel(address) as channel:
        recognize = channel.unary_unary("/muselens.v1.Recognizer/Recognize",
                                        request_serializer=pb.Frame.SerializeToString)
        for height, width in ((640, 1280), (1280, 640), (480, 640)):
            frame = pb.Frame(frame_id="warm-up", image=pb.Image(encoded=encode_jpeg(smooth_image(rng, height, width))))
            recognize(frame, metadata=(("authorization", f"Bearer {token}"),), timeout=60)


def measure(attack: Attack, target: Target, pid: int, settle: float, niceness: int) -> dict[str, Any]:
    """Run ``attack`` once, from a child process, against the server ``pid``: the statuses it got,
    the server's CPU seconds and RSS."""
    context = multiprocessing.get_context("spawn")  # no fork of a process holding gRPC channels
    ready, go, results = context.Event(), context.Event(), context.Queue()
    child = context.Process(target=_attacker, args=(attack.name, target, niceness, ready, go, results),
                            name=f"attack-{attack.name}", daemon=True)
    child.start()
    if not ready.wait(120):
        child.kill()
        raise RuntimeError(f"the {attack.name} attacker did not start")
    rss_before, cpu_before = common.rss_mb(pid), cpu_seconds(pid)
    hwm = reset_peak_rss(pid)
    start = time.monotonic()
    with PeakSampler(pid) as sampler:
        go.set()
        statuses, notes = results.get(timeout=target.seconds + 600)
        end = time.monotonic()
        cpu = cpu_seconds(pid) - cpu_before
        child.join(30)
        time.sleep(settle)
    rss_after = common.rss_mb(pid)
    peak = max(sampler.peak, peak_rss_mb(pid) if hwm else 0.0)
    unexpected = sorted(set(statuses) - attack.expected)
    return {"name": attack.name, "description": attack.description, "start": start, "end": end,
            "wall_s": end - start, "statuses": dict(sorted(statuses.items())), "expected": sorted(attack.expected),
            "unexpected": unexpected, "cpu_s": cpu, "rss_before_mb": rss_before, "rss_peak_mb": peak,
            "peak_from": "VmHWM and samples" if hwm else "samples every 50 ms", "rss_after_mb": rss_after,
            "rss_change": rss_after / rss_before - 1.0, "notes": notes}


def verdicts(result: dict[str, Any], limit_ms: float) -> None:
    """Add the acceptance checks of issue 23 to one attack's result."""
    good = result["good"]
    p99 = good["latency_ms"].get("p99")
    result["statuses_as_expected"] = not result["unexpected"]
    result["good_served"] = good["calls"] > 0 and set(good["codes"]) == {"OK"}
    result["good_within_2x"] = result["good_served"] and p99 is not None and p99 <= limit_ms
    result["rss_within_5pct"] = result["rss_change"] <= RSS_TARGET
    notes = result["notes"]
    extra_ok = (notes.get("forged_log_lines", 0) == 0 and notes.get("raw_bidi_in_log", 0) == 0
                and notes.get("distinct_details", 1) == 1)
    result["accepted"] = (result["statuses_as_expected"] and extra_ok and result["good_within_2x"]
                          and result["rss_within_5pct"])


def run(bundle: Path, out: Path, *, quick: bool = False, seconds: float | None = None, baseline: float | None = None,
        settle: float | None = None, good_hz: float = 5.0, workers: int = 16, threads: int | None = None,
        attacker_nice: int = 10,
        attacks: tuple[str, ...] = ATTACK_NAMES, progress: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    seconds = seconds if seconds is not None else (2.0 if quick else 15.0)
    baseline = baseline if baseline is not None else (4.0 if quick else 20.0)
    settle = settle if settle is not None else (1.0 if quick else HEAP_TRIM_SECONDS + 1.0)  # one trim at least
    out = out.absolute()  # paths sent to LoadBundle must not be read relative to the server's bundle root
    out.mkdir(parents=True, exist_ok=True)
    tokens = write_tokens(out / "tokens.txt")
    root = out / "bundle-root"
    root.mkdir(exist_ok=True)
    log = out / "server.log"
    log.write_text("")
    frame = encode_jpeg(smooth_image(np.random.default_rng([23, 5]), 480, 640), 85)
    extra = ("--admin-port", "0", "--bundle-root", str(root), "--workers", str(workers))
    chosen = [a for a in ATTACKS if a.name in attacks]
    context = multiprocessing.get_context("spawn")  # no fork of a process holding gRPC channels
    stop, results = context.Event(), context.Queue()
    with ServerProcess(bundle, token_file=out / "tokens.txt", threads=threads, log=log, extra=extra) as server:
        from muselens.runtime.server.admission import default_max_streams

        target = Target(server.address, server.admin_address, "", tokens["admin"], Path(bundle),
                        root, log, seconds, quick, workers, default_max_streams(workers), frame)
        warm_up(server.address, tokens["good"])
        good = context.Process(target=_good_client, name="good-client", daemon=True,
                               args=(server.address, server.admin_address, tokens["good"], frame, good_hz, stop,
                                     results))
        good.start()
        time.sleep(1.0)  # its first calls warm the server up; the baseline starts after them
        base_start = time.monotonic()
        idle_cpu = cpu_seconds(server.pid)
        time.sleep(baseline)
        base_end = time.monotonic()
        idle_cpu = (cpu_seconds(server.pid) - idle_cpu) / (base_end - base_start)
        progress(f"[abuse] baseline {baseline:g} s done; server RSS {common.rss_mb(server.pid):.1f} MiB")
        measured = []
        for attack in chosen:
            attacker = dataclasses.replace(target, client=tokens[f"attacker-{attack.name}"])
            measured.append(measure(attack, attacker, server.pid, settle, attacker_nice))
            m = measured[-1]
            progress(f"[abuse] {attack.name}: {m['statuses']} cpu {m['cpu_s']:.1f} s peak {m['rss_peak_mb']:.0f} MiB "
                     f"RSS {m['rss_before_mb']:.0f} -> {m['rss_after_mb']:.0f} MiB")
        time.sleep(1.0)
        stop.set()
        good_records = results.get(timeout=60)
        good.join(30)
        alive = server.alive()
    normal = window(good_records["calls"], base_start, base_end)
    normal_p99 = normal["latency_ms"].get("p99")
    limit = LATENCY_FACTOR * normal_p99 if normal_p99 is not None else float("nan")
    for m in measured:
        m["good"] = window(good_records["calls"], m["start"], m["end"])
        m["admin_health"] = window(good_records["health"], m["start"], m["end"])
        verdicts(m, limit)
        m["start"], m["end"] = m["start"] - base_start, m["end"] - base_start  # seconds since the baseline began
    return {"bundle": str(bundle), "quick": quick, "seconds_per_attack": seconds, "baseline_s": baseline,
            "attacker_nice": attacker_nice,
            "settle_s": settle, "workers": workers, "stream_cap": target.stream_cap, "pending_cap": 2 * workers,
            "good_client": {"hz": good_hz, "normal": normal, "limit_ms": limit,
                            "admin_health_normal": window(good_records["health"], base_start, base_end)},
            "server_idle_cpu_per_s": idle_cpu, "attacks": measured, "server_alive": alive,
            "accepted": alive and all(m["accepted"] for m in measured)}


# -- reporting --------------------------------------------------------------------------------------


def _statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{name} x{count}" for name, count in statuses.items())


def _tick(ok: bool) -> str:
    return "yes" if ok else "**no**"


def summary_table(data: dict[str, Any]) -> str:
    rows = ["| attack | statuses (count) | as expected | server CPU s | peak RSS MiB | RSS after / before | "
            "good client p99 ms (calls; codes) | within 2x | RSS within 5 % |",
            "|---|---|---|---:|---:|---:|---|---|---|"]
    for m in data["attacks"]:
        good, p99 = m["good"], m["good"]["latency_ms"].get("p99")
        codes = ", ".join(f"{c} {n}" for c, n in good["codes"].items())
        rows.append(f"| {m['name']} | {_statuses(m['statuses'])} | {_tick(m['statuses_as_expected'])} | "
                    f"{m['cpu_s']:.1f} | {m['rss_peak_mb']:.0f} | {m['rss_before_mb']:.0f} -> {m['rss_after_mb']:.0f} "
                    f"({100 * m['rss_change']:+.1f} %) | {'-' if p99 is None else f'{p99:.0f}'} ({good['calls']}; "
                    f"{codes or 'none'}) | {_tick(m['good_within_2x'])} | {_tick(m['rss_within_5pct'])} |")
    return "\n".join(rows)


def _good_line(data: dict[str, Any]) -> str:
    g = data["good_client"]
    lat = g["normal"]["latency_ms"]
    return (f"Good client: one Recognize of a 640x480 JPEG every {1 / g['hz']:g} s with its own token, in its own "
            f"process; normal p50 / p99 {lat.get('p50', float('nan')):.1f} / {lat.get('p99', float('nan')):.1f} ms "
            f"over {data['baseline_s']:g} s ({lat.get('count', 0)} calls), so the limit is "
            f"{g['limit_ms']:.1f} ms. Server: {data['workers']} workers, at most {data['stream_cap']} streams, "
            f"{data['pending_cap']} calls pending; each attack ~{data['seconds_per_attack']:g} s, RSS read "
            f"{data['settle_s']:g} s after it.")


def markdown(folder: Path, data: dict[str, Any]) -> str:
    health = [m["admin_health"]["latency_ms"].get("max") for m in data["attacks"]]
    health = [h for h in health if h is not None]
    notes = [f"- {m['name']}: " + ", ".join(f"{k} {v}" for k, v in m["notes"].items())
             for m in data["attacks"] if m["notes"]]
    lines = [f"## {folder.name}", "", f"`{data['command']}`", "", common.machine_line(data["environment"]), "",
             _good_line(data), "", summary_table(data), "",
             f"**Every attack accepted (statuses, good client within 2x p99, RSS within 5 %): {data['accepted']}.** "
             f"Server alive at the end: {data['server_alive']}. Health on the admin port during the attacks: "
             f"slowest {max(health) if health else float('nan'):.0f} ms.", "", *notes]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle folder or archive to serve (the demo's, say)")
    parser.add_argument("--out", type=Path, required=True, help="folder for bench.json and the server log")
    parser.add_argument("--quick", action="store_true",
                        help="a few seconds per attack, 4 enrolment photos, floods of 100 (what CI runs)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="how long each attack goes on (default: 15, 2 with --quick)")
    parser.add_argument("--baseline", type=float, default=None,
                        help="seconds of good calls alone, for the normal p99 (default: 20, 4 with --quick)")
    parser.add_argument("--good-hz", type=float, default=5.0,
                        help="good client's calls a second (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=16, help="the server's --workers (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="the server's inference threads")
    parser.add_argument("--attacker-nice", type=int, default=10,
                        help="the attacking process's nice value: on a machine this small the attacker's own "
                             "client-side work would otherwise take the server's cores, which an attacker "
                             "elsewhere does not (0: same priority; default: %(default)s)")
    parser.add_argument("--attacks", default=",".join(ATTACK_NAMES),
                        help="comma-separated subset of: " + ", ".join(ATTACK_NAMES))


def main(args: argparse.Namespace) -> int:
    attacks = tuple(a.strip() for a in args.attacks.split(",") if a.strip())
    unknown = sorted(set(attacks) - set(ATTACK_NAMES))
    problems = [f"unknown attack(s) {unknown}; choose from {', '.join(ATTACK_NAMES)}"] if unknown or not attacks else []
    positive = (("--seconds", args.seconds), ("--baseline", args.baseline), ("--good-hz", args.good_hz),
                ("--workers", args.workers))
    problems += [f"{name} must be positive" for name, value in positive if value is not None and not value > 0]
    if not args.bundle.exists():
        problems.append(f"bundle {args.bundle} does not exist")
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    try:
        data = run(args.bundle, args.out, quick=args.quick, seconds=args.seconds, baseline=args.baseline,
                   good_hz=args.good_hz, workers=args.workers, threads=args.threads, attacks=attacks,
                   attacker_nice=args.attacker_nice,
                   progress=lambda line: print(line, file=sys.stderr, flush=True))
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = common.write_bench(args.out, "abuse", getattr(args, "argv", None), data)
    print(summary_table(data))
    print(f"wrote {path}")
    return 0 if data["accepted"] else 1
