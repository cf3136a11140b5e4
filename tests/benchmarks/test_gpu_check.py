"""benchmarks/gpu_check.sh and muselens.benchmarks.gpu_check: the dry run end to end through the shell
script, the refusal without CUDA, and the orchestration (failures recorded, the others still run, the
budget, a stop from outside) with stand-in parts. The CUDA measurements run on the lent GPU only."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from muselens.benchmarks import bounded_steps, gpu_check

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    # the test's own interpreter, whatever venv the checkout has
    env = {**os.environ, "MUSELENS_VENV": str(Path(sys.executable).parents[1])}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=REPO)


@pytest.mark.slow  # about 20 s on 2 idle cores
def test_dry_run_writes_every_part(tmp_path):
    out = tmp_path / "check.json"
    done = _script("--dry-run", "--out", str(out), timeout=300)  # 20 s on 2 idle cores, 90 s when shared
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["check"] == "gpu-check"
    assert list(report["parts"]) == list(gpu_check.PARTS)
    for name, part in report["parts"].items():
        assert part["status"] in ("ok", "skipped"), (name, part)
        assert part["seconds"] >= 0
        if part["status"] != "ok":
            assert part["reason"], name
    parts = report["parts"]
    # the CUDA measurements are skipped with the dry run's reason; their code ran on the CPU instead
    for name in ("trunk", "ort_cuda"):
        assert parts[name]["status"] == "skipped" and parts[name]["reason"] == gpu_check.DRY_RUN_SKIP
    assert parts["trunk"]["cpu_stand_in"]["rows"]["eager_fp32"]["images_per_s"] > 0
    assert parts["ort_cuda"]["cpu_stand_in"]["ms"]["count"] == gpu_check.DRY_PLAN.ort_frames
    assert parts["museum"]["artworks"] == gpu_check.DRY_PLAN.instances
    stages = parts["training"]["stages"]
    assert sorted(stages) == ["1", "2", "3"] and parts["training"]["read_from"] == "history.json"
    for stage in stages.values():
        assert stage["epochs"] == 1 and stage["seconds"] > 0 and stage["cuda_max_allocated_mib"] is None
    assert parts["training"]["schedule"]["name"] == "tiny"
    assert Path(parts["export"]["bundle"], "manifest.json").exists()
    streams = parts["streams"]
    assert streams["backend"] == "ort-cpu" and "dry run" in streams["backend_why"]
    assert [r["streams"] for r in streams["runs"]] == [gpu_check.DRY_PLAN.streams]
    assert streams["runs"][0]["answered_measured"] > 0 and streams["server"]["shutdown"]["exit_code"] == 0
    assert report["environment"]["cpus"] >= 1 and report["wall_s"] > 0
    text = gpu_check.markdown(tmp_path, report)  # RESULTS.md's section
    assert "dry run" in text and all(f"| {name} | " in text for name in gpu_check.PARTS)
    assert "| 1 | 1 |" in text and f"| {gpu_check.DRY_PLAN.streams} | " in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_refuses_without_cuda(tmp_path):
    out = tmp_path / "check.json"
    done = _script("--out", str(out), timeout=60)
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr and "--dry-run" in done.stderr
    assert not out.exists()


def test_the_cap_stops_the_part_in_progress_and_the_json_says_so(tmp_path):
    """GPU_CHECK_SECONDS is the shell's `timeout`: its SIGTERM stops the command running (its whole
    process group), and the JSON names the part it stopped; a larger --budget keeps the parts from
    being planned around the cap."""
    out = tmp_path / "check.json"
    env_cap = {"GPU_CHECK_SECONDS": "8"}
    started = time.monotonic()
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(out), "--budget", "1000"],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env={**os.environ, **env_cap, "MUSELENS_VENV": str(Path(sys.executable).parents[1])})
    assert done.returncode == 124, done.stderr[-2000:]
    assert time.monotonic() - started < 30
    parts = json.loads(out.read_text())["parts"]
    stopped = [n for n, p in parts.items() if p["status"] == "failed"]
    assert len(stopped) == 1 and "SIGTERM" in parts[stopped[0]]["reason"], parts
    after = list(gpu_check.PARTS)[list(gpu_check.PARTS).index(stopped[0]) + 1:]
    assert after and all(parts[n]["reason"] == "not reached" for n in after)


def _fake_parts(monkeypatch, **overrides):
    """Every part a quick stand-in returning ``{"ran": name}``, except ``overrides``."""
    calls: list[str] = []

    def fake(name):
        def part(ctx):
            calls.append(name)
            return {"ran": name}
        return part

    parts = {name: overrides.get(name, fake(name)) for name in gpu_check.PARTS}
    monkeypatch.setattr(gpu_check, "PART_FUNCTIONS", parts)
    return calls


def test_a_failing_part_is_recorded_and_the_others_run(tmp_path, monkeypatch):
    def broken(ctx):
        raise RuntimeError("the trunk broke")

    def not_here(ctx):
        raise gpu_check.PartSkipped("nothing to do here")

    calls = _fake_parts(monkeypatch, trunk=broken, ort_cuda=not_here)
    out = tmp_path / "check.json"
    assert gpu_check.main(["--dry-run", "--out", str(out)]) == 1
    parts = json.loads(out.read_text())["parts"]
    assert parts["trunk"]["status"] == "failed" and parts["trunk"]["reason"] == "RuntimeError: the trunk broke"
    assert parts["ort_cuda"] == {"status": "skipped", "reason": "nothing to do here",
                                 "seconds": parts["ort_cuda"]["seconds"]}
    assert calls == ["museum", "training", "export", "streams"]
    assert all(parts[n]["status"] == "ok" and parts[n]["ran"] == n for n in calls)


def test_sigterm_marks_the_part_in_progress_and_keeps_the_rest(tmp_path, monkeypatch):
    def stopped(ctx):
        raise gpu_check.Stopped("stopped by SIGTERM (the time cap of gpu_check.sh)")

    _fake_parts(monkeypatch, training=stopped)
    out = tmp_path / "check.json"
    assert gpu_check.main(["--dry-run", "--out", str(out)]) == 124
    parts = json.loads(out.read_text())["parts"]
    assert parts["museum"]["status"] == "ok"
    assert parts["training"]["status"] == "failed" and "SIGTERM" in parts["training"]["reason"]
    assert all(parts[n] == {"status": "skipped", "reason": "not reached"} for n in ("export", "ort_cuda", "streams"))


def test_budget_shares(tmp_path):
    plan = gpu_check.GPU_PLAN
    ctx = gpu_check.Context(plan=plan, dry_run=False, work=tmp_path, deadline=time.monotonic() + 400)
    kept = sum(plan.expected_s[p] for p in ("export", "ort_cuda", "streams"))
    assert ctx.timeout("training", ("export", "ort_cuda", "streams")) == pytest.approx(400 - kept, abs=1)
    ctx.deadline = time.monotonic() + kept + 1  # less than MIN_PART_S left beyond the later parts' share
    with pytest.raises(gpu_check.PartSkipped, match="not started"):
        ctx.timeout("training", ("export", "ort_cuda", "streams"))


def test_a_command_past_its_time_is_stopped_with_its_children(tmp_path):
    log = tmp_path / "slow.log"
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    code = bounded_steps.run_logged(["bash", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], log, timeout=1.0)
    assert code is None and time.monotonic() - started < 15
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # the grandchild went with the group
        for _ in range(50):
            os.kill(child, 0)
            time.sleep(0.1)
    with pytest.raises(gpu_check.PartFailed, match="exited with status 3; log ends: boom"):
        gpu_check.run_step(["bash", "-c", "echo boom; exit 3"], tmp_path / "fail.log", 10, "fail")


def test_flags_are_checked(tmp_path, capsys):
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path / "c.json"), "--schedule", "nope"]) == 2
    assert "--schedule 'nope'" in capsys.readouterr().err
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path / "c.json"), "--streams", "0"]) == 2
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not the check's")
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path / "c.json"), "--work", str(foreign)]) == 2
    assert "did not make" in capsys.readouterr().err and (foreign / "keep.txt").exists()


def test_ort_cuda_reason_names_the_providers():
    import onnxruntime as ort

    why = gpu_check.ort_cuda_unavailable()
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert why is None
    else:
        assert "'CUDAExecutionProvider' is not in onnxruntime.get_available_providers()" in why
        assert str(ort.get_available_providers()) in why


def test_export_falls_back_only_when_training_ran_out_of_time(tmp_path, monkeypatch):
    plan = dataclasses.replace(gpu_check.DRY_PLAN, fallback_instances=3)
    ctx = gpu_check.Context(plan=plan, dry_run=True, work=tmp_path, deadline=time.monotonic() + 400)
    with pytest.raises(gpu_check.PartSkipped, match="no finished training run"):
        gpu_check.part_export(ctx)  # training failed for another reason: the fallback would fail alike
    monkeypatch.setattr(gpu_check, "fallback_bundle", lambda ctx: {"bundle": "small"})
    ctx.training_timed_out = True
    record = gpu_check.part_export(ctx)
    assert record["status"] == "skipped" and record["fallback"] == {"bundle": "small"}


def test_fallback_bundle_trains_a_small_museum_the_same_way(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(gpu_check, "make_museum", lambda ctx, folder, n, log, timeout: calls.append(
        ("museum", folder.name, n, timeout > 0)))
    monkeypatch.setattr(gpu_check, "train", lambda ctx, museum, run, log, timeout: calls.append(
        ("train", museum.name, run.name, timeout > 0)))
    monkeypatch.setattr(gpu_check, "export", lambda run, bundle, flags, log, timeout: calls.append(
        ("export", run.name, bundle.name, tuple(flags))))
    plan = dataclasses.replace(gpu_check.DRY_PLAN, fallback_instances=3)
    ctx = gpu_check.Context(plan=plan, dry_run=True, work=tmp_path, deadline=time.monotonic() + 400)
    record = gpu_check.fallback_bundle(ctx)
    assert calls == [("museum", "museum", 3, True), ("train", "museum", "run", True),
                     ("export", "run", "bundle", plan.export_flags)]
    assert ctx.bundle == tmp_path / "fallback" / "bundle"
    assert record["bundle_source"].startswith("fallback: 3 artworks") and ctx.bundle_source == record["bundle_source"]


def test_a_training_that_fails_records_its_schedule_and_stages(tmp_path, monkeypatch):
    def timed_out(argv, log, timeout, what):
        raise gpu_check.StepTimedOut(f"{what} was stopped after its {timeout:.0f} s share of the budget")

    monkeypatch.setattr(gpu_check, "run_step", timed_out)
    ctx = gpu_check.Context(plan=gpu_check.DRY_PLAN, dry_run=True, work=tmp_path, deadline=time.monotonic() + 400,
                            museum=tmp_path / "museum")
    record = gpu_check.run_part(ctx, "training")
    assert record["status"] == "failed" and record["reason"].startswith("train was stopped after")
    assert "stages recorded: none, from nothing (no checkpoint was written)" in record["reason"]
    assert record["stages"] == {} and record["schedule"]["name"] == "tiny" and ctx.training_timed_out
    assert (tmp_path / "train-config.yaml").exists() and ctx.run is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trunk_cuda_graph_matches_eager():
    backbone, _ = gpu_check.trunk_backbone("tf_efficientnet_lite0")
    result = gpu_check.measure_trunk(backbone, device="cuda", batch=2, hw=(224, 398), runs=3, warmup=1)
    rows = result["rows"]
    assert set(rows) == {"eager_fp32", "eager_fp16", "cuda_graph_fp16"}
    assert rows["cuda_graph_fp16"]["cosine_to_fp32"] > 0.99
    assert all(r["images_per_s"] > 0 and r["cuda_max_allocated_mib"] > 0 for r in rows.values())


def test_stages_of_a_stopped_run_come_from_its_checkpoint(tmp_path):
    from muselens.training.checkpoint import save_checkpoint

    stages = {"1": {"seconds": 12.5, "validation_seconds": 1.0, "peak_rss_mib": 900.0, "cuda_max_allocated_mib": 2048.0}}
    history = [{"stage": 1, "epoch": 0, "loss": 2.5, "images": 3248, "val_mp_at_1": 0.25}]
    save_checkpoint(tmp_path / "checkpoint.pt", {"stages": json.dumps(stages), "history": json.dumps(history)})
    found, epochs, source = gpu_check.stage_records(tmp_path)
    assert source.startswith("checkpoint.pt") and found == stages and epochs == history
    assert gpu_check.summarise_stages(found, epochs) == {"1": {
        "epochs": 1, "images_per_epoch": 3248, "seconds": 12.5, "validation_seconds": 1.0,
        "cuda_max_allocated_mib": 2048.0, "peak_rss_mib": 900.0, "loss": 2.5, "val_mp_at_1": 0.25}}


def test_the_h200_check_renders_every_part_and_what_it_measured():
    """The committed run of the first lent GPU: what RESULTS.md shows of it."""
    folder = REPO / "benchmarks" / "results" / "gpu-check-h200"
    text = gpu_check.markdown(folder, json.loads((folder / "gpu-check.json").read_text()))
    assert "on NVIDIA H200" in text and "| training | failed |" in text and "| ort_cuda | skipped |" in text
    assert "| cuda_graph_fp16 | 3.46 |" in text and "1.55x" in text
    assert "| 1 | 1 | 3248 | 74.5 |" in text  # stage 1 from the checkpoint of the stopped run
    assert "| 64 | 1920 | 21.5 |" in text and "\\n" not in text
