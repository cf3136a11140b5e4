"""The trunk's speed on a device: eager fp32, eager fp16 and an fp16 CUDA graph, timed the same way.

The GPU check's first part (:mod:`muselens.benchmarks.gpu_check`); on the CPU (its dry run) the
eager paths run as a stand-in and the graph is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from muselens.benchmarks import common


def _percentile_row(ms: list[float], batch: int) -> dict[str, Any]:
    stats = common.percentiles(ms)
    return {"ms_per_batch": stats, "ms_per_image_p50": stats["p50"] / batch,
            "images_per_s": 1000.0 * batch / stats["mean"]}


def time_calls(call: Callable[[], Any], *, runs: int, warmup: int, sync: Callable[[], None]) -> list[float]:
    """ms of each of ``runs`` calls after ``warmup`` untimed ones; ``sync`` waits for the device."""
    for _ in range(warmup):
        call()
    sync()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        sync()
        times.append((time.perf_counter() - started) * 1e3)
    return times


def trunk_backbone(name: str):
    """The backbone with its ImageNet weights, or randomly initialised when they are not installed
    (the trunk's speed does not depend on its weights); and a line saying which."""
    from muselens.training.backbones.backbone_registry import build_backbone
    from muselens.training.backbones.weights import WeightsError

    try:
        return build_backbone(name, pretrained=True), "imagenet"
    except WeightsError as error:
        return build_backbone(name, pretrained=False), f"random init ({error}); the speed does not depend on them"


def measure_trunk(backbone, *, device: str, batch: int, hw: tuple[int, int], runs: int,
                  warmup: int) -> dict[str, Any]:
    """The trunk (``backbone.features``) on a ``(batch, 3, H, W)`` input: eager fp32 on any device;
    on CUDA also eager fp16 and an fp16 CUDA graph replayed on the same static input."""
    import copy

    import torch
    import torch.nn.functional as F

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    fp32 = backbone.to(dev).float().eval()
    generator = torch.Generator().manual_seed(0)
    x32 = torch.randn(batch, 3, *hw, generator=generator).to(dev)
    rows: dict[str, Any] = {}
    with torch.no_grad():
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        reference = fp32.features(x32).float()
        rows["eager_fp32"] = _percentile_row(time_calls(lambda: fp32.features(x32), runs=runs, warmup=warmup,
                                                        sync=sync), batch)
        if cuda:
            rows["eager_fp32"]["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
            fp16 = copy.deepcopy(fp32).half()
            static = x32.half()  # the graph reads this tensor: new frames are copied into it
            torch.cuda.reset_peak_memory_stats(dev)
            rows["eager_fp16"] = _percentile_row(time_calls(lambda: fp16.features(static), runs=runs,
                                                            warmup=warmup, sync=sync), batch)
            rows["eager_fp16"]["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
            # Warm up on a side stream (cuDNN picks its algorithms there, outside the capture), then
            # capture one forward; replay() reruns its kernels on whatever `static` holds.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    fp16.features(static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            torch.cuda.reset_peak_memory_stats(dev)
            with torch.cuda.graph(graph):
                static_out = fp16.features(static)
            rows["cuda_graph_fp16"] = _percentile_row(time_calls(graph.replay, runs=runs, warmup=warmup,
                                                                 sync=sync), batch)
            rows["cuda_graph_fp16"]["cuda_max_allocated_mib"] = round(
                torch.cuda.max_memory_allocated(dev) / 2**20, 1)
            graph.replay()
            sync()
            rows["cuda_graph_fp16"]["cosine_to_fp32"] = float(
                F.cosine_similarity(static_out.float().flatten(1), reference.flatten(1)).min())
    base = rows["eager_fp32"]["ms_per_batch"]["p50"]
    for row in rows.values():
        row["speedup_vs_eager_fp32"] = base / row["ms_per_batch"]["p50"]
    return {"device": torch.cuda.get_device_name(dev) if cuda else "cpu", "torch": torch.__version__,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "input": [batch, 3, *hw], "output": list(reference.shape), "runs": runs, "warmup": warmup, "rows": rows}
