"""The GPU check of issue 20: one JSON from one bounded run on a CUDA machine (``benchmarks/gpu_check.sh``).

    bash benchmarks/gpu_check.sh --out gpu-check.json            # a CUDA machine with torch; at most 8 minutes
    bash benchmarks/gpu_check.sh --dry-run --out /tmp/check.json # the same parts, toy sized, on the CPU

Parts, in order; each is timed, and its outcome is recorded as ``ok``, ``failed`` or ``skipped``
with the reason, without stopping the others:

``trunk``
    the backbone's conv trunk (ImageNet weights: its speed does not depend on the weights) on a
    batch at short side 448: eager fp32, eager fp16, and fp16 captured once as a CUDA graph
    (``torch.cuda.CUDAGraph``, ``torch.cuda.graph``) and replayed; ms per image, images/s, the
    speed-up over eager fp32 and the cosine of the fp16 features to fp32's.
``museum``
    ``muselens make-museum``: a CLICIDE-sized synthetic museum (464 artworks x 7 references =
    3,248, CLICIDE has 3,245).
``training``
    ``muselens train`` stages 1-3 with a named schedule cut to ``--epochs`` per stage; per stage
    the wall time and ``torch.cuda.max_memory_allocated`` as the run's history.json records them
    (a run stopped at its share of the time reports the stages its checkpoint holds). On the GPU
    ``stage3.grad_cache`` is off: the same gradients with one forward per image fewer.
``export``
    ``muselens export``: the fp32 bundle (the slow optional steps off, flags recorded).
``ort_cuda``
    the bundle's model on ONNX Runtime's CUDA execution provider, bare inference per frame, only
    where ``onnxruntime`` imports and lists ``CUDAExecutionProvider``.
``streams``
    ``muselens bench streams`` with 64 cameras at 30 FPS against the bundle (``ort-cuda`` when the
    previous part ran, else ``ort-cpu``).

The time is shared out: a subprocess part gets what is left of ``--budget`` less what the parts
after it expect to need, and is stopped there. Should training outrun its share, a small museum
is trained with the same schedule and exported, so the serving parts still measure the same network
at the same input size (only the class count and the gallery differ); the JSON says so. The JSON
is rewritten after every part, so a run stopped from outside still leaves what it measured.

Exit status: 0 when every part is ok or skipped, 1 when one failed, 2 when the check cannot run
here (no CUDA device without ``--dry-run``, bad flags, a work folder that is not ours), 124 when
stopped by SIGTERM (the shell script's cap).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from muselens.benchmarks import common
from muselens.benchmarks.bounded_steps import PartFailed, PartSkipped, StepTimedOut, muselens_command, run_step
from muselens.benchmarks.trunk_reference import measure_trunk, trunk_backbone
from muselens.core.files import write_whole

PARTS = ("trunk", "museum", "training", "export", "ort_cuda", "streams")
CLICIDE = {"artworks": 464, "references": 3245}
DEFAULT_OUT = Path("gpu-check.json")
WORK_MARKER = ".muselens-gpu-check"  # a work folder holding this is ours to empty
DRY_RUN_SKIP = "dry run: no CUDA device"
MIN_PART_S = 10.0  # a subprocess part is not started with less time than this


@dataclass(frozen=True)
class Plan:
    """Every size the check runs at; two instances: the GPU run and the dry run."""

    device: str
    instances: int
    references: int  # per artwork
    queries: int  # per artwork
    distractors: int
    photo_size: int
    schedule: str
    epochs: int  # per stage
    train_overrides: dict[str, Any]
    trunk_batch: int
    trunk_short_side: int
    trunk_runs: int
    trunk_warmup: int
    ort_frames: int
    streams: int
    fps: float
    stream_seconds: float
    stream_warmup: float
    stream_frames: int
    export_flags: tuple[str, ...]
    fallback_instances: int | None  # small museum trained when the main run does not finish; None: no fallback
    expected_s: dict[str, float] = field(default_factory=dict)  # seconds kept for each part (see GPU_PLAN)

    @property
    def trunk_hw(self) -> tuple[int, int]:
        """A 16:9 camera frame at the trunk's short side."""
        return self.trunk_short_side, round(self.trunk_short_side * 16 / 9)


GPU_PLAN = Plan(
    device="cuda", instances=CLICIDE["artworks"], references=7, queries=1, distractors=48, photo_size=640,
    schedule="full", epochs=1,
    # one forward per image instead of two: the same gradients, in the memory of a step's images (a few GiB)
    train_overrides={"stage3": {"grad_cache": False}},
    trunk_batch=8, trunk_short_side=448, trunk_runs=50, trunk_warmup=5, ort_frames=200,
    streams=64, fps=30.0, stream_seconds=15.0, stream_warmup=2.0, stream_frames=32,
    export_flags=("--precision", "fp32", "--impostor-views", "0", "--non-artwork-photos", "8",
                  "--latency-runs", "0", "--no-reference-photos"),
    fallback_instances=16,
    # seconds kept for each part while the parts before it run; training takes what is left beyond its share
    expected_s={"trunk": 40, "museum": 40, "training": 150, "export": 90, "ort_cuda": 25, "streams": 50},
)

DRY_PLAN = Plan(
    device="cpu", instances=4, references=3, queries=1, distractors=2, photo_size=160,
    schedule="tiny", epochs=1, train_overrides={},
    trunk_batch=2, trunk_short_side=64, trunk_runs=3, trunk_warmup=1, ort_frames=5,
    streams=2, fps=5.0, stream_seconds=1.0, stream_warmup=0.5, stream_frames=4,
    export_flags=("--precision", "fp32", "--impostor-views", "0", "--non-artwork-photos", "2",
                  "--latency-runs", "0", "--no-reference-photos"),
    fallback_instances=None,
    expected_s={"trunk": 10, "museum": 10, "training": 30, "export": 30, "ort_cuda": 5, "streams": 20},
)


class Stopped(Exception):
    """SIGTERM arrived (the shell script's cap): stop the part in progress and write what we have."""


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001 (signal handler signature)
    raise Stopped("stopped by SIGTERM (the time cap of gpu_check.sh)")


def _say(message: str) -> None:
    print(f"gpu-check: {message}", file=sys.stderr, flush=True)


# -- running commands -----------------------------------------------------------------------


# -- the parts --------------------------------------------------------------------------------


@dataclass
class Context:
    plan: Plan
    dry_run: bool
    work: Path
    deadline: float  # time.monotonic() by which every part must be done
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    museum: Path | None = None
    run: Path | None = None
    bundle: Path | None = None
    bundle_source: str | None = None
    training_timed_out: bool = False  # the training part was stopped at its share of the budget

    def timeout(self, part: str, after: Sequence[str]) -> float:
        """Seconds ``part`` may take: what is left less what the parts ``after`` it expect."""
        left = self.deadline - time.monotonic() - sum(self.plan.expected_s.get(p, 0.0) for p in after)
        if left < MIN_PART_S:
            raise PartSkipped(f"not started: {max(0.0, self.deadline - time.monotonic()):.0f} s of the budget "
                              f"left, {sum(self.plan.expected_s.get(p, 0.0) for p in after):.0f} s of them kept "
                              f"for {', '.join(after) or 'nothing'}")
        return left


def part_trunk(ctx: Context) -> dict[str, Any]:
    from muselens.training.schedules import schedule_config

    config = schedule_config(ctx.plan.schedule)
    backbone, weights = trunk_backbone(config.backbone)
    kwargs = dict(batch=ctx.plan.trunk_batch, hw=ctx.plan.trunk_hw, runs=ctx.plan.trunk_runs,
                  warmup=ctx.plan.trunk_warmup)
    if ctx.dry_run:
        return {"status": "skipped", "reason": DRY_RUN_SKIP, "backbone": config.backbone, "weights": weights,
                "cpu_stand_in": measure_trunk(backbone, device="cpu", **kwargs)}
    return {"backbone": config.backbone, "weights": weights, **measure_trunk(backbone, device="cuda", **kwargs)}


def make_museum(ctx: Context, folder: Path, instances: int, log: Path, timeout: float) -> dict[str, Any]:
    p = ctx.plan
    run_step(muselens_command("make-museum", str(folder), "--instances", str(instances), "--references",
                              str(p.references), "--queries", str(p.queries), "--distractors", str(p.distractors),
                              "--seed", "0", "--size", str(p.photo_size), "--no-progress"),
             log, timeout, "make-museum")
    return json.loads((folder / "museum.json").read_text())


def part_museum(ctx: Context) -> dict[str, Any]:
    folder = ctx.work / "museum"
    started = time.perf_counter()
    summary = make_museum(ctx, folder, ctx.plan.instances, ctx.work / "museum.log",
                          ctx.timeout("museum", ("training", "export", "ort_cuda", "streams")))
    ctx.museum = folder
    seconds = time.perf_counter() - started
    refs = summary["instances"] * summary["references"]
    return {"path": str(folder), "artworks": summary["instances"], "references": refs,
            "queries": summary["instances"] * summary["queries"], "distractors": summary["distractors"],
            "photo_long_side": summary["size"], "images": summary["images"],
            "images_per_s_with_startup": round(summary["images"] / seconds, 1),
            "clicide": {**CLICIDE, "note": f"{summary['references']} references per artwork (make-museum takes a "
                                           f"whole number): {refs - CLICIDE['references']:+d} against CLICIDE"}}


def training_config(ctx: Context) -> Path:
    """The schedule, cut to ``epochs`` per stage, written as the run's --config (so it is on record)."""
    from muselens.training.schedules import schedule_config
    from muselens.training.train_config import merge, write_config

    epochs = {f"stage{s}": {"epochs": ctx.plan.epochs} for s in (1, 2, 3)}
    config = schedule_config(ctx.plan.schedule, merge(epochs, ctx.plan.train_overrides))
    path = ctx.work / "train-config.yaml"
    write_config(config, path)
    return path


def stage_records(run: Path) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """Per-stage records and per-epoch history of ``run``: from history.json when it finished, else
    from its checkpoint (the stages it completed), and which of the two."""
    history = run / "history.json"
    if history.exists():
        data = json.loads(history.read_text())
        return data.get("stages", {}), data.get("history", []), "history.json"
    if (run / "checkpoint.pt").exists():
        from muselens.training.checkpoint import CheckpointError, load_checkpoint

        try:
            saved = load_checkpoint(run / "checkpoint.pt")
            return json.loads(saved["stages"]), json.loads(saved["history"]), "checkpoint.pt (the run did not finish)"
        except (CheckpointError, KeyError, ValueError) as error:
            return {}, [], f"nothing readable ({error})"
    return {}, [], "nothing (no checkpoint was written)"


def summarise_stages(stages: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for key, info in sorted(stages.items(), key=lambda kv: int(kv[0])):
        epochs = [h for h in history if h.get("stage") == int(key)]
        last = epochs[-1] if epochs else {}
        out[key] = {"epochs": len(epochs), "images_per_epoch": last.get("images"), "seconds": info.get("seconds"),
                    "validation_seconds": info.get("validation_seconds"),
                    "cuda_max_allocated_mib": info.get("cuda_max_allocated_mib"),
                    "peak_rss_mib": info.get("peak_rss_mib"), "loss": last.get("loss"),
                    "val_mp_at_1": last.get("val_mp_at_1")}
    return out


def train(ctx: Context, museum: Path, run: Path, log: Path, timeout: float) -> dict[str, Any]:
    """``muselens train`` of the plan's schedule; the per-stage record, raising :class:`PartFailed`
    (with the stages that did finish in the message) when it does not finish."""
    config = training_config(ctx)
    started = time.perf_counter()
    try:
        run_step(muselens_command("train", str(museum), "--out", str(run), "--config", str(config), "--device",
                                  ctx.plan.device, "--no-progress"), log, timeout, "train")
    except PartFailed as error:
        stages, history, source = stage_records(run)
        done = summarise_stages(stages, history)
        raise type(error)(f"{error} (stages recorded: {', '.join(done) or 'none'}, from {source})",
                          {"stages": done, "read_from": source}) from None
    stages, history, source = stage_records(run)
    return {"run": str(run), "config": str(config), "wall_s": round(time.perf_counter() - started, 2),
            "stages": summarise_stages(stages, history), "read_from": source}


def part_training(ctx: Context) -> dict[str, Any]:
    if ctx.museum is None:
        raise PartSkipped("no museum (the museum part did not finish)")
    from muselens.training.schedules import SCHEDULES

    after = ("export", "ort_cuda", "streams")  # or the fallback, which takes no longer than the export
    schedule = {"name": ctx.plan.schedule, "epochs_per_stage": ctx.plan.epochs,
                "settings": SCHEDULES[ctx.plan.schedule], "overrides": ctx.plan.train_overrides}
    try:
        result = train(ctx, ctx.museum, ctx.work / "run", ctx.work / "training.log", ctx.timeout("training", after))
    except PartFailed as error:
        ctx.training_timed_out = isinstance(error, StepTimedOut)
        raise type(error)(str(error), {"device": ctx.plan.device, "schedule": schedule, **error.details}) from None
    ctx.run = ctx.work / "run"
    return {"device": ctx.plan.device, "schedule": schedule, **result}


def export(run: Path, bundle: Path, flags: Sequence[str], log: Path, timeout: float) -> None:
    run_step(muselens_command("export", str(run), "--out", str(bundle), *flags), log, timeout, "export")


def fallback_bundle(ctx: Context) -> dict[str, Any]:
    """A small museum trained with the same schedule and exported: the serving parts' network and
    input size without the CLICIDE-size training (which did not finish)."""
    folder = ctx.work / "fallback"
    folder.mkdir(exist_ok=True)
    n = ctx.plan.fallback_instances
    after = ("ort_cuda", "streams")
    make_museum(ctx, folder / "museum", n, folder / "museum.log", ctx.timeout("export", after))
    train(ctx, folder / "museum", folder / "run", folder / "training.log", ctx.timeout("export", after))
    export(folder / "run", folder / "bundle", ctx.plan.export_flags, folder / "export.log",
           ctx.timeout("export", after))
    ctx.bundle = folder / "bundle"
    ctx.bundle_source = (f"fallback: {n} artworks x {ctx.plan.references} references trained with the same "
                         "schedule (the CLICIDE-size training ran out of time); the same network and input size, "
                         "fewer classes and a smaller gallery")
    return {"bundle": str(ctx.bundle), "bundle_source": ctx.bundle_source, "flags": list(ctx.plan.export_flags)}


def part_export(ctx: Context) -> dict[str, Any]:
    if ctx.run is None:
        if ctx.plan.fallback_instances and ctx.training_timed_out:
            _say("export: the CLICIDE-size run ran out of time; training a small fallback museum for the "
                 "serving parts")
            try:
                fallback = fallback_bundle(ctx)
            except PartFailed as error:
                raise PartFailed(f"no finished training run to export, and the fallback bundle failed: {error}",
                                 error.details) from None
            return {"status": "skipped", "reason": "no finished training run to export; the serving parts use a "
                                                   "fallback bundle", "fallback": fallback}
        raise PartSkipped("no finished training run to export (the training part did not finish)")
    bundle = ctx.work / "bundle"
    export(ctx.run, bundle, ctx.plan.export_flags, ctx.work / "export.log",
           ctx.timeout("export", ("ort_cuda", "streams")))
    ctx.bundle, ctx.bundle_source = bundle, "the training part's run"
    return {"bundle": str(bundle), "flags": list(ctx.plan.export_flags)}


def ort_cuda_unavailable() -> str | None:
    """Why ONNX Runtime cannot run on CUDA here, or None when it lists the CUDA provider."""
    from importlib import metadata

    installed = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            installed.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    try:
        import onnxruntime as ort
    except ImportError as error:
        return f"onnxruntime is not importable ({error})"
    providers = list(ort.get_available_providers())
    if "CUDAExecutionProvider" not in providers:
        return (f"'CUDAExecutionProvider' is not in onnxruntime.get_available_providers() = {providers} "
                f"(installed: {', '.join(installed) or 'no onnxruntime distribution'}; install onnxruntime-gpu)")
    return None


def bare_latency(bundle: Path, backend: str, frames: int, seed: int = 0) -> dict[str, Any]:
    """ms per frame of the bundle's default model alone (``descriptor`` output) on ``backend``, on
    synthetic camera frames resized as the service resizes them."""
    from muselens.benchmarks.latency import measure_bare
    from muselens.benchmarks.load import load_frames
    from muselens.runtime.frames import decode_encoded
    from muselens.runtime.recognition.served_model import ServedModel, ServingConfig

    encoded, source = load_frames(None, min(frames, 32), seed=seed)
    model = ServedModel.load(bundle, ServingConfig(backend=backend))
    try:
        resized = [model.describer.resize(decode_encoded(f)) for f in encoded]
        values = measure_bare(model.describer, [resized[i % len(resized)] for i in range(frames)],
                              warmup=min(10, frames))
        stats = common.percentiles(values["inference"])
        return {"backend": model.describer.backend.describe(), "short_side": model.describer.short_side,
                "input_hw": sorted({tuple(r.shape[:2]) for r in resized}), "frames": source, "ms": stats,
                "fps": 1000.0 / stats["mean"]}
    finally:
        model.close()


def part_ort_cuda(ctx: Context) -> dict[str, Any]:
    if ctx.dry_run:
        if ctx.bundle is None:
            return {"status": "skipped", "reason": DRY_RUN_SKIP}
        return {"status": "skipped", "reason": DRY_RUN_SKIP, "cpu_stand_in": bare_latency(ctx.bundle, "ort-cpu",
                                                                                           ctx.plan.ort_frames)}
    why = ort_cuda_unavailable()
    if why is not None:
        raise PartSkipped(why)
    if ctx.bundle is None:
        raise PartSkipped("no bundle (neither the export nor its fallback finished)")
    from muselens.runtime.engine import BackendUnavailable

    try:
        return {"bundle_source": ctx.bundle_source, **bare_latency(ctx.bundle, "ort-cuda", ctx.plan.ort_frames)}
    except BackendUnavailable as error:  # listed, but the session could not start it (CUDA/cuDNN libraries)
        raise PartFailed(str(error)) from None


def part_streams(ctx: Context) -> dict[str, Any]:
    if ctx.bundle is None:
        raise PartSkipped("no bundle (neither the export nor its fallback finished)")
    p = ctx.plan
    ort = ctx.results.get("ort_cuda", {})
    backend = "ort-cuda" if ort.get("status") == "ok" else "ort-cpu"
    why = "the ort_cuda part ran" if backend == "ort-cuda" else \
        f"ort-cuda is not usable here ({ort.get('reason', 'the ort_cuda part did not run')})"
    out = ctx.work / "streams"
    run_step(muselens_command("bench", "streams", str(ctx.bundle), "--out", str(out), "--streams", str(p.streams),
                              "--fps", f"{p.fps:g}", "--duration", f"{p.stream_seconds:g}", "--warmup",
                              f"{p.stream_warmup:g}", "--frames", str(p.stream_frames), "--backend", backend),
             ctx.work / "streams.log", ctx.timeout("streams", ()), "bench streams")
    data = json.loads((out / "bench.json").read_text())
    runs = [{k: v for k, v in run.items() if k != "per_stream"} for run in data["runs"]]
    failures = [f for run in runs for f in run.get("failures", [])]
    result = {"backend": backend, "backend_why": why, "bundle_source": ctx.bundle_source,
              "bench_json": str(out / "bench.json"), "settings": data["settings"], "server": data["server"],
              "bare": data["bare"], "runs": runs}
    if failures:
        return {"status": "failed", "reason": f"{len(failures)} stream(s) failed: {failures[:3]}", **result}
    return result


PART_FUNCTIONS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "trunk": part_trunk, "museum": part_museum, "training": part_training, "export": part_export,
    "ort_cuda": part_ort_cuda, "streams": part_streams,
}


# -- the report -----------------------------------------------------------------------------------


def _reason(record: dict[str, Any], limit: int = 160) -> str:
    reason = " ".join(str(record.get("reason", "")).replace("\\n", " ").replace("\\t", " ").split())
    return reason if len(reason) <= limit else reason[:limit - 1] + "…"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def markdown(folder: Path, data: dict[str, Any]) -> str:
    """RESULTS.md's section for a check's JSON (``folder/gpu-check.json``): every part's outcome,
    the trunk's rows, the training stages and the stream run, as far as each was measured."""
    env, parts = data["environment"], data["parts"]
    machine = ", ".join(str(env[k]) for k in ("cuda_device", "cpu") if k in env)
    lines = [f"## {folder.name}", "", f"`bash benchmarks/gpu_check.sh` ({data['command']}), "
             f"{'dry run' if data.get('dry_run') else 'on ' + machine}, {env.get('cpus', '?')} cores, "
             f"torch {env.get('torch', '?')}, onnxruntime {env.get('onnxruntime', '?')}; {data.get('started', '')}, "
             f"{data.get('wall_s', 0):.0f} s in all.", "",
             "| part | status | s | outcome |", "|---|---|---|---|"]
    for name in PARTS:
        record = parts.get(name)
        if record is None:
            lines.append(f"| {name} | not reached | | |")
            continue
        lines.append(f"| {name} | {record.get('status', 'ok')} | {record.get('seconds', 0):.1f} | {_reason(record)} |")
    trunk = parts.get("trunk", {})
    if trunk.get("rows"):
        lines += ["", f"Trunk `{trunk['backbone']}` on a batch of {trunk['input'][0]} at "
                  f"{trunk['input'][2]}x{trunk['input'][3]} ({trunk['runs']} timed runs after {trunk['warmup']}):", "",
                  "| mode | ms per batch p50 | ms per image | images/s | vs eager fp32 | CUDA MiB | cosine to fp32 |",
                  "|---|---|---|---|---|---|---|"]
        for mode, row in trunk["rows"].items():
            cosine = f"{row['cosine_to_fp32']:.5f}" if "cosine_to_fp32" in row else "-"
            lines.append(f"| {mode} | {row['ms_per_batch']['p50']:.2f} | {row['ms_per_image_p50']:.3f} | "
                         f"{row['images_per_s']:.0f} | {row['speedup_vs_eager_fp32']:.2f}x | "
                         f"{row.get('cuda_max_allocated_mib', 0):.0f} | {cosine} |")
    stages = parts.get("training", {}).get("stages") or {}
    if stages:
        lines += ["", f"Training ({parts['training'].get('read_from', 'history.json')}):", "",
                  "| stage | epochs | images/epoch | s | of which validation | CUDA peak MiB | peak RSS MiB | val mP@1 |",
                  "|---|---|---|---|---|---|---|---|"]
        for stage, row in stages.items():
            val = row.get("val_mp_at_1")
            lines.append(f"| {stage} | {row.get('epochs', '')} | {row.get('images_per_epoch', '')} | "
                         f"{row.get('seconds', 0):.1f} | {row.get('validation_seconds', 0):.1f} | "
                         f"{_mib(row.get('cuda_max_allocated_mib'))} | {_mib(row.get('peak_rss_mib'))} | "
                         f"{'-' if val is None else f'{100 * val:.2f}'} |")
    streams = parts.get("streams", {})
    if streams.get("runs"):
        bare = streams.get("bare", {})
        lines += ["", f"Streams ({streams.get('backend')}; bare inference p50 {bare.get('p50', 0):.1f} ms; "
                  f"{streams.get('bundle_source') or 'the exported bundle'}):", "",
                  "| cameras | offered FPS | answered FPS | latency p50 / p99 ms | queue p50 ms | inference p50 ms | "
                  "server CPU % of one core | failures |", "|---|---|---|---|---|---|---|---|"]
        for run in streams["runs"]:
            latency, stage = run.get("latency_ms", {}), run.get("stages_ms", {})
            lines.append(f"| {run['streams']} | {run['offered_fps_total']:.0f} | {run['achieved_fps_total']:.1f} | "
                         f"{latency.get('p50', 0):.0f} / {latency.get('p99', 0):.0f} | "
                         f"{stage.get('queue', {}).get('p50', 0):.0f} | {stage.get('inference', {}).get('p50', 0):.1f} | "
                         f"{run.get('server_cpu', {}).get('percent_of_one_core', 0):.0f} | "
                         f"{len(run.get('failures', []))} |")
    return "\n".join(lines) + "\n"


# -- the check ----------------------------------------------------------------------------------


def run_part(ctx: Context, name: str) -> dict[str, Any]:
    """One part, timed; whatever it raises (but SIGTERM) becomes its failure."""
    started = time.perf_counter()
    try:
        record = PART_FUNCTIONS[name](ctx)
        record = {"status": "ok", **record} if "status" not in record else record
    except PartSkipped as why:
        record = {"status": "skipped", "reason": str(why)}
    except PartFailed as why:
        record = {"status": "failed", "reason": str(why), **why.details}
    except Stopped:
        raise
    except Exception as error:  # noqa: BLE001 -- any failure of one part is recorded, and the others run
        record = {"status": "failed", "reason": f"{type(error).__name__}: {error}"}
    record["seconds"] = round(time.perf_counter() - started, 2)
    return record


def environment() -> dict[str, Any]:
    env = common.environment()
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.version.cuda
        env["cuda_available"] = torch.cuda.is_available()
        if env["cuda_available"]:
            env["cuda_device"] = torch.cuda.get_device_name(0)
    except ImportError as error:
        env["torch"] = f"not importable ({error})"
    return env


def refuse_without_cuda() -> str | None:
    """Why a real (not dry) run cannot start here, or None."""
    try:
        import torch
    except ImportError as error:
        return f"torch is not importable ({error}); the GPU check needs torch with CUDA"
    if not torch.cuda.is_available():
        return (f"no CUDA device: torch {torch.__version__} (CUDA build {torch.version.cuda}) reports "
                "torch.cuda.is_available() == False; run it on a GPU machine, or pass --dry-run for the CPU toy run")
    return None


def prepare_work(work: Path) -> None:
    """An empty work folder: created, or emptied when an earlier check left it (it holds our marker)."""
    if work.exists():
        if not work.is_dir():
            raise ValueError(f"--work {work} exists and is not a folder")
        if any(work.iterdir()) and not (work / WORK_MARKER).exists():
            raise ValueError(f"--work {work} is a non-empty folder this check did not make; choose another")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / WORK_MARKER).write_text("made by muselens.benchmarks.gpu_check; emptied by the next check\n")


def write_report(path: Path, report: dict[str, Any]) -> None:
    text = json.dumps(report, indent=2, default=str) + "\n"
    write_whole(path, lambda f: f.write(text.encode()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON to write (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true",
                        help="every part toy sized on the CPU; the CUDA measurements recorded as skipped")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the museum, run, bundle and logs (default: beside --out, OUT-work/)")
    parser.add_argument("--budget", type=float, default=465.0,
                        help="seconds every part together may take (default: %(default)s; the shell script "
                             "passes its cap less a margin)")
    parser.add_argument("--schedule", default=None, help="training schedule (default: full; tiny with --dry-run)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of each stage (default: 1)")
    parser.add_argument("--trunk-batch", type=int, default=None, help="images per trunk forward (default: 8)")
    parser.add_argument("--streams", type=int, default=None, help="cameras of the stream bench (default: 64)")
    parser.add_argument("--fps", type=float, default=None, help="frames per second per camera (default: 30)")
    parser.add_argument("--stream-seconds", type=float, default=None,
                        help="measured seconds of the stream bench (default: 15)")
    return parser


def plan_from_args(args: argparse.Namespace) -> Plan:
    from muselens.training.schedules import SCHEDULES

    plan = DRY_PLAN if args.dry_run else GPU_PLAN
    changes = {name: value for name, value in (("schedule", args.schedule), ("epochs", args.epochs),
                                               ("trunk_batch", args.trunk_batch), ("streams", args.streams),
                                               ("fps", args.fps), ("stream_seconds", args.stream_seconds))
               if value is not None}
    if "schedule" in changes and changes["schedule"] not in SCHEDULES:
        raise ValueError(f"--schedule {changes['schedule']!r} is not one of {sorted(SCHEDULES)}")
    for name in ("epochs", "trunk_batch", "streams"):
        if name in changes and changes[name] < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {changes[name]}")
    for name in ("fps", "stream_seconds"):
        if name in changes and not changes[name] > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {changes[name]}")
    return dataclasses.replace(plan, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.budget > 0:
            raise ValueError(f"--budget must be > 0 seconds, got {args.budget}")
        plan = plan_from_args(args)
        if not args.dry_run:
            refused = refuse_without_cuda()
            if refused is not None:
                print(f"gpu-check: error: {refused}", file=sys.stderr)
                return 2
        work = args.work if args.work is not None else args.out.with_name(args.out.stem + "-work")
        prepare_work(work)
    except ValueError as error:
        print(f"gpu-check: error: {error}", file=sys.stderr)
        return 2
    started = time.monotonic()
    ctx = Context(plan=plan, dry_run=args.dry_run, work=work.resolve(), deadline=started + args.budget)
    report: dict[str, Any] = {
        "check": "gpu-check", "command": " ".join(["gpu_check", *(argv if argv is not None else sys.argv[1:])]),
        "dry_run": args.dry_run, "budget_s": args.budget, "work": str(ctx.work),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "environment": environment(),
        "plan": {**dataclasses.asdict(plan), "trunk_hw": list(plan.trunk_hw)},
        "parts": {name: {"status": "skipped", "reason": "not reached"} for name in PARTS},
    }
    ctx.results = report["parts"]
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    code = 0
    try:
        for index, name in enumerate(PARTS, 1):
            report["parts"][name] = {"status": "failed", "reason": "in progress when the check was stopped"}
            write_report(args.out, report)
            _say(f"[{index}/{len(PARTS)}] {name}")
            try:
                record = run_part(ctx, name)
            except Stopped as stop:
                report["parts"][name] = {"status": "failed", "reason": str(stop)}
                code = 124
                break
            report["parts"][name] = record
            _say(f"[{index}/{len(PARTS)}] {name}: {record['status']} in {record['seconds']:.1f} s"
                 + (f" ({record['reason']})" if record.get("reason") else ""))
    finally:
        signal.signal(signal.SIGTERM, previous)
        report["wall_s"] = round(time.monotonic() - started, 2)
        report["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_report(args.out, report)
    if code == 0 and any(p["status"] == "failed" for p in report["parts"].values()):
        code = 1
    summary = ", ".join(f"{name} {p['status']}" for name, p in report["parts"].items())
    _say(f"wrote {args.out} in {report['wall_s']:.1f} s: {summary}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
