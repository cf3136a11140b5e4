from __future__ import annotations

import json

import pytest

from muselens.cli import main as cli


def test_evaluate_sift_writes_table_json_and_plot(tiny_museum, tmp_path, capsys):
    out = tmp_path / "eval"
    code = cli(["evaluate", str(tiny_museum), "--method", "sift", "--instance-avg", "--out", str(out),
                "--no-progress", "--workers", "1"])
    assert code == 0
    payload = json.loads((out / "results.json").read_text())
    assert payload["command"].startswith("muselens evaluate")
    result = payload["results"][0]
    assert result["name"] == "sift+ia" and result["counts"]["queries"] == 3
    assert 0.0 <= result["retrieval"]["mp_at_1"] <= 1.0
    assert (out / "evaluation.png").stat().st_size > 1000
    assert "sift+ia" in (out / "results.md").read_text()
    assert "mP@1" in capsys.readouterr().out


def test_unknown_method_is_named(tiny_museum):
    with pytest.raises(SystemExit):
        cli(["evaluate", str(tiny_museum), "--method", "im-gem,nope"])


def test_dataset_without_queries_is_refused(tiny_museum, capsys):
    import shutil

    shutil.rmtree(tiny_museum / "queries")
    assert cli(["evaluate", str(tiny_museum), "--method", "sift", "--no-progress"]) == 2
    assert "no queries" in capsys.readouterr().err


@pytest.fixture
def random_weights(monkeypatch):
    """The CLI's CNN methods with random weights: the same code paths, fast and offline."""
    from muselens.training.evaluation import methods

    build = methods.build_method
    monkeypatch.setattr(methods, "build_method",
                        lambda name, **kw: build(name, **{**kw, "size": 64, "pretrained": False}))


def test_a_one_reference_museum_shows_clustering_it_cannot_run_and_the_shipped_open_set(
        one_reference_museum, unknown_folder, random_weights, tmp_path, capsys):
    out = tmp_path / "eval"
    code = cli(["evaluate", str(one_reference_museum), "--method", "im-gem", "--unknown", str(unknown_folder),
                "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    reason = "NMI×3/F1×3 of im-gem not measured: cannot make 15 clusters from 10 samples"
    result = json.loads((out / "results.json").read_text())["results"][0]
    assert result["clustering"]["3"] == {"n_clusters": 15, "nmi": None, "f1": None,
                                         "skipped": "cannot make 15 clusters from 10 samples"}
    assert result["clustering"]["1"]["nmi"] is not None
    shipped = result["shipped"]
    assert shipped["n_unknown"] == 4 and shipped["n_distractors"] == 0 and shipped["distractor_far"] is None
    assert {s["source"] for s in shipped["calibration"]["sources"]} == {"impostor-views", "generated-non-artwork"}
    md = (out / "results.md").read_text()
    for text in (printed, md):
        assert reason in text
        assert "Open set at the shipped threshold" in text and f"{shipped['threshold']:.4f}" in text
        assert f"({round(shipped['unknown_far'] * 4)}/4)" in text and "threshold of im-gem: calibrated as export" in text
    table_row = next(line for line in md.splitlines() if line.startswith("| im-gem |"))
    assert table_row.split(" | ")[7:9] == ["–", "–"]  # NMI×3, F1×3


def test_unknown_and_target_far_are_checked(one_reference_museum, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(["evaluate", str(one_reference_museum), "--unknown", str(empty), "--no-progress"]) == 2
    assert "no images directly inside" in capsys.readouterr().err
    assert cli(["evaluate", str(one_reference_museum), "--unknown", str(tmp_path / "nope"), "--no-progress"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert cli(["evaluate", str(one_reference_museum), "--unknown", str(one_reference_museum / "queries" / "a000"),
                "--target-far", "1.5", "--no-progress"]) == 2
    assert "--target-far must be in [0, 1)" in capsys.readouterr().err
