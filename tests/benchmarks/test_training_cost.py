from __future__ import annotations

import json
import shutil

import pytest
import torch

from muselens.benchmarks import training_cost
from muselens.benchmarks.results_md import render
from muselens.cli import main as cli


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_table_51_is_what_the_run_recorded(run_dir):
    history = json.loads((run_dir / "history.json").read_text())
    cost = training_cost.training_cost(run_dir)
    assert cost["name"] == run_dir.name and cost["device"] == "cpu" and cost["loss"] == "triplet-dot"
    assert [s["stage"] for s in cost["stages"]] == [1, 2, 3]
    for s in cost["stages"]:
        recorded = history["stages"][str(s["stage"])]
        assert s["seconds"] == recorded["seconds"] and s["peak_rss_mib"] == recorded["peak_rss_mib"]
        assert s["epochs"] == 1 and s["images_per_epoch"] > 0
    assert "loss triplet-dot" in cost["stages"][2]["what"]
    totals = {t["label"]: t for t in cost["totals"]}
    seconds = [history["stages"][k]["seconds"] for k in ("1", "2", "3")]
    assert totals["stages 1-2 (FT)"]["seconds"] == pytest.approx(sum(seconds[:2]), abs=0.01)
    assert totals["stages 1-3 (proposed)"]["seconds"] == pytest.approx(sum(seconds), abs=0.01)
    assert totals["stages 1-3 (proposed)"]["peak_rss_mib"] == max(history["stages"][k]["peak_rss_mib"]
                                                                   for k in ("1", "2", "3"))
    assert cost["file_span_s"] >= 0


def test_tables_51_52_plot_and_section(run_dir, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "results" / "tiny-training"
    argv = ["bench", "training", str(run_dir), "--out", str(out), "--bundle", str(tiny_bundle), "--images", "3",
            "--warmup", "1", "--threads", "1", "--in-process"]
    assert cli(argv) == 0
    assert "Table 5.2" in capsys.readouterr().out
    data = json.loads((out / "bench.json").read_text())
    assert data["benchmark"] == "training" and data["command"] == "muselens " + " ".join(argv)
    assert [r["name"] for r in data["runs"]] == [run_dir.name]
    rows = data["test"]["rows"]
    assert [r["label"] for r in rows] == [f"PyTorch FT ({run_dir.name})", f"PyTorch proposed ({run_dir.name})",
                                          "ONNX fp32 (default)"]
    assert len(data["test"]["paths"]) == 3 and "queries" in data["test"]["paths"][0]  # queries first
    for r in rows:
        assert r["ms"]["count"] == 3 and 0 < r["ms"]["p50"] <= r["ms"]["p95"]
        assert "peak_rss_delta_mib" in r and r["rss_window"] in ("stage", "process lifetime")
    assert rows[2]["backend"].startswith("ort-cpu") and rows[0]["torch_threads"] == 1
    assert (out / "training_cost.png").stat().st_size > 1000

    text = training_cost.markdown(out, data)
    assert text.startswith("## tiny-training") and "| run | stage | what |" in text
    assert "**stages 1-3 (proposed)**" in text and "| ONNX fp32 (default) |" in text
    assert "(--in-process)" in text and "![tiny-training](results/tiny-training/training_cost.png)" in text
    assert "## tiny-training" in render(out.parent)


@pytest.mark.slow
def test_a_model_measured_in_its_own_process(export_museum, tiny_bundle):
    rows = training_cost.run_isolated({"engine": "onnx", "bundle": str(tiny_bundle), "variant": "fp32",
                                       "default": "fp32", "backend": "ort-cpu", "data": str(export_museum),
                                       "images": 2, "warmup": 1, "threads": 1})
    assert len(rows) == 1 and rows[0]["ms"]["count"] == 2 and rows[0]["load_rss_mib"] > 0


def test_data_defaults_to_the_runs_museum_and_must_exist(run_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("history.json", "config.yaml", "model.json"):
        shutil.copy(run_dir / name, run / name)
    (run / "model.pt").symlink_to(run_dir / "model.pt")
    meta = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**meta, "data": str(tmp_path / "gone")}))
    assert cli(["bench", "training", str(run), "--out", str(tmp_path / "out"), "--in-process"]) == 2
    assert "pass --data" in capsys.readouterr().err


def test_bad_arguments_are_named(run_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["bench", "training", str(tmp_path), "--out", str(out)]) == 2
    assert "not a finished training run" in capsys.readouterr().err
    assert cli(["bench", "training", str(run_dir), "--out", str(out), "--images", "0"]) == 2
    assert "--images" in capsys.readouterr().err
    assert cli(["bench", "training", str(run_dir), "--out", str(out), "--bundle", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()
