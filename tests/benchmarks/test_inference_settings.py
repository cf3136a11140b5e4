from __future__ import annotations

import json

import pytest

from muselens.benchmarks import inference_settings
from muselens.cli import main as cli
from muselens.runtime.engine.backends import OrtBackend


def test_every_setting_and_size_measured_against_the_default(tiny_bundle, export_museum, tmp_path):
    out = tmp_path / "settings"
    assert cli(["bench", "inference-settings", str(tiny_bundle), "--out", str(out), "--sizes", "96",
                "--runs", "3", "--warmup", "1", "--concurrent", "1x1,2x1", "--data", str(export_museum)]) == 0
    data = json.loads((out / "bench.json").read_text())
    rows = data["rows"]
    labels = [label for label, _ in inference_settings.SETTINGS]
    assert [r["setting"] for r in rows if r["short_side"] == 64] == labels
    assert [(r["short_side"], r["setting"]) for r in rows if r["short_side"] != 64] == [(96, "default")]
    default = rows[0]
    assert default["ratio_to_default"] == pytest.approx(1.0) and default["input_hw"] == [64, 114]
    for r in rows:
        assert r["count"] == 3 and r["p50"] > 0 and r["ratio_to_default"] == pytest.approx(r["p50"] / default["p50"])
    assert [(t["in_flight"], t["threads"]) for t in data["throughput"]] == [(1, 1), (2, 1)]
    assert all(t["fps"] > 0 and t["ms_p50"] > 0 for t in data["throughput"])
    accuracy = data["accuracy"]
    assert [(a["variant"], a["short_side"]) for a in accuracy] == [("fp32", 64), ("fp32", 96)]
    assert accuracy[0]["drop_points"] == 0.0 and accuracy[0]["queries"] == 3
    assert accuracy[1]["drop_points"] == pytest.approx(100 * (accuracy[0]["mp_at_1"] - accuracy[1]["mp_at_1"]))
    assert 0 <= accuracy[1]["top1_agreement_with_fp32"] <= 1
    text = inference_settings.markdown(out, data)
    assert "| fp32 | 64 | 64x114 | no spinning |" in text and "| 2 x 1 |" in text
    assert "| fp32 | 96 |" in text and "top-1 agreement with fp32" in text


def test_settings_reach_the_session(tiny_bundle):
    from muselens.runtime.bundle import load_bundle

    with load_bundle(tiny_bundle) as bundle:
        path = bundle.model_path("fp32")
        backend = OrtBackend(path, spinning=False, optimisation="basic", arena="none")
        assert backend.settings == {"optimisation": "basic", "spinning": False, "spin_after_run": False,
                                    "arena": "none"}
        options = backend.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert options.get_session_config_entry("session.force_spinning_stop") == "1"  # the default
        spinning_on = OrtBackend(path, spin_after_run=True).session.get_session_options()
        with pytest.raises(RuntimeError, match="does not have configuration"):  # ORT's default: spin on
            spinning_on.get_session_config_entry("session.force_spinning_stop")
        assert not options.enable_cpu_mem_arena
        for bad in ({"optimisation": "max"}, {"arena": "gpu"}, {"spinning": "no"}, {"spin_after_run": 1}):
            with pytest.raises((ValueError, TypeError)):
                OrtBackend(path, **bad)


def test_a_dataset_without_queries_is_refused_naming_it(tiny_bundle, export_museum, tmp_path, capsys):
    import shutil

    museum = tmp_path / "no-queries"
    shutil.copytree(export_museum / "references", museum / "references")
    assert cli(["bench", "inference-settings", str(tiny_bundle), "--out", str(tmp_path / "x"), "--runs", "1",
                "--concurrent", "none", "--data", str(museum)]) == 2
    assert "has no queries" in capsys.readouterr().err


def test_camera_jpegs_are_described_after_a_full_and_a_reduced_decode(tiny_bundle, export_museum, tmp_path):
    out = tmp_path / "drift"
    assert cli(["bench", "inference-settings", str(tiny_bundle), "--out", str(out), "--runs", "1", "--warmup", "0",
                "--concurrent", "none", "--data", str(export_museum), "--camera-jpeg", "640"]) == 0
    data = json.loads((out / "bench.json").read_text())
    drift = data["decode_drift"]
    assert drift["long_side"] == 640 and drift["queries"] == 3 and drift["short_side"] == 64
    assert max(drift["frame_hw"]) == 640 and min(drift["reduced_hw"]) >= 64  # reduced, yet holding the size
    assert max(drift["reduced_hw"]) < 640 and drift["reduced_share"] == 1.0
    # the tiny untrained model is no judge of the drift itself (the real sets are, in RESULTS.md)
    assert 0 < drift["mean_cosine_to_fp32"] <= 1.0 + 1e-6 and drift["min_cosine_to_fp32"] <= drift["mean_cosine_to_fp32"]
    assert 0 <= drift["mp_at_1_full"] <= 1 and 0 <= drift["mp_at_1_reduced"] <= 1
    assert "| reduced (served), then resize |" in inference_settings.markdown(out, data)


def test_camera_jpegs_need_the_queries(tiny_bundle, tmp_path, capsys):
    assert cli(["bench", "inference-settings", str(tiny_bundle), "--out", str(tmp_path / "x"), "--runs", "1",
                "--concurrent", "none", "--camera-jpeg", "640"]) == 2
    assert "--camera-jpeg needs --data" in capsys.readouterr().err
