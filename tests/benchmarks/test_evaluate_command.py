"""``muselens evaluate --bundle``: the bundle measured through the service beside the methods."""

from __future__ import annotations

import json

import pytest

from muselens.benchmarks.served_table import percent, served_table
from muselens.cli import main as cli


@pytest.fixture
def unknown_dir(tmp_path):
    from tests.conftest import write_image

    for k in range(2):
        write_image(tmp_path / "unknown" / f"u{k}.png", 700 + k)
    return tmp_path / "unknown"


@pytest.mark.slow
def test_a_bundle_is_measured_in_every_service_mode(export_museum, tiny_bundle, unknown_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli(["evaluate", str(export_museum), "--method", "none", "--bundle", str(tiny_bundle),
                "--unknown", str(unknown_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    served = json.loads((out / "served.json").read_text())
    assert served["command"].startswith("muselens evaluate") and served["bundle"] == str(tiny_bundle)
    assert [r["mode"] for r in served["rows"]] == ["unary", "unary_descriptor", "stream"]
    figures = served["service"]
    assert (figures["unary"]["queries"], figures["unary"]["distractors"], figures["unary"]["unknowns"]) == (3, 2, 2)
    for row in served["rows"]:
        assert 0.0 <= row["mp_at_1"] <= 1.0 and row["errors"] == 0 and row["server_ms_p50"] > 0
    assert served["rows"][0]["verified_right"] is not None and served["rows"][2]["verified_right"] is None
    assert "| unary, verified |" in printed and "| unary, descriptor only |" in printed
    assert not (out / "results.json").exists()  # --method none: no method measured


def test_a_missing_bundle_is_refused_before_any_work(export_museum, tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli(["evaluate", str(export_museum), "--bundle", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "nope" in capsys.readouterr().err
    assert not out.exists()


def test_a_bad_unknown_folder_is_refused_before_the_service_starts(export_museum, tiny_bundle, tmp_path, capsys):
    assert cli(["evaluate", str(export_museum), "--method", "none", "--bundle", str(tiny_bundle),
                "--unknown", str(tmp_path / "missing"), "--out", str(tmp_path / "eval")]) == 2
    assert "missing" in capsys.readouterr().err


def test_a_museum_without_queries_is_refused_before_the_service_starts(tiny_bundle, tmp_path, capsys):
    from tests.conftest import write_image

    write_image(tmp_path / "museum" / "references" / "a" / "0.png", 1)
    assert cli(["evaluate", str(tmp_path / "museum"), "--method", "none", "--bundle", str(tiny_bundle),
                "--out", str(tmp_path / "eval")]) == 2
    assert "no queries" in capsys.readouterr().err


def test_method_none_without_a_bundle_has_nothing_to_measure(export_museum, tmp_path, capsys):
    assert cli(["evaluate", str(export_museum), "--method", "none", "--out", str(tmp_path / "eval")]) == 2
    assert "no method" in capsys.readouterr().err


def test_the_served_table_gives_rates_as_percentages_and_dashes_where_none():
    row = {"mode": "unary", "label": "unary, verified", "mp_at_1": 0.5, "map": 0.75, "correct_accept_rate": 0.25,
           "distractor_false_accept_rate": None, "unknown_false_accept_rate": 0.0, "verified_right": 0.5,
           "verified_wrong": 0.0, "server_ms_p50": 12.34}
    served = {"service": {"variant": "int8", "bundle_version": "v1", "frames": 4},
              "rows": [row, {**row, "label": "stream", "verified_right": None, "server_ms_p50": None}]}
    text = served_table(served)
    assert "(int8, bundle v1, 4 photos)" in text
    assert "| unary, verified | 50.0 | 75.0 | 25.0 | – | 0.0 | 50.0 / 0.0 | 12 |" in text
    assert "| stream | 50.0 | 75.0 | 25.0 | – | 0.0 | – | – |" in text
    assert percent(None) == "–" and percent(0.1234) == "12.3"
