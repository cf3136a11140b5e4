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
