"""bench training-speed: pooled against fresh stages 1-2, per stage and over seeds, from one command."""

from __future__ import annotations

import argparse
import json

from muselens.benchmarks.training_speed import main, markdown


def _args(tiny_museum, out, **kw):
    base = dict(museum=tiny_museum, out=out, schedule="tiny", seeds=[0, 1], modes=["pooled", "fresh"],
                settings=["stage1.epochs=3"], no_progress=True, argv=["bench", "training-speed"])
    return argparse.Namespace(**{**base, **kw})


def test_pooled_and_fresh_runs_are_timed_per_stage_and_summarised_over_seeds(tiny_museum, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_args(tiny_museum, out)) == 0
    data = json.loads((out / "bench.json").read_text())
    assert data["complete"] and [(r["mode"], r["seed"]) for r in data["runs"]] == [
        ("pooled", 0), ("pooled", 1), ("fresh", 0), ("fresh", 1)]
    for run in data["runs"]:
        assert set(run["stages"]) == {"1", "2", "3"} and 0 <= run["mp_at_1"] <= 1
        assert run["stages"]["1"]["epochs"] == 3 and run["stages"]["1"]["epoch_seconds"] > 0
        # only the pooled runs build pools, capped at the stage's epochs
        pool = run["stages"]["1"].get("view_pool")
        assert (pool is not None) == (run["mode"] == "pooled")
        if pool:
            assert pool["views"] == pool["distinct_views"] == 3 and pool["seconds"] > 0
    assert (out / "pooled-seed1" / "view-pool" / "stage2" / "manifest.json").exists()
    assert not (out / "fresh-seed0" / "view-pool").exists()
    text = markdown(out, data)
    assert "| pooled | 2 |" in text and "| fresh | 2 |" in text and " ± " in text
    assert "Speed-up of the pooled run over fresh augmentation" in text
    assert "Speed-up" in capsys.readouterr().out


def test_bad_requests_are_refused_before_any_training(tiny_museum, tmp_path, capsys):
    assert main(_args(tiny_museum, tmp_path / "a", modes=["cached"])) == 2
    assert "--modes" in capsys.readouterr().err
    assert main(_args(tiny_museum, tmp_path / "b", settings=["stage1.epochs"])) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(_args(tmp_path, tmp_path / "c")) == 2
    assert "no queries" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in ("a", "b", "c"))
