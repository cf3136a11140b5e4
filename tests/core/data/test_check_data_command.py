"""``muselens check-data``: the report printed, written as JSON, and the exit status."""

from __future__ import annotations

import json

from muselens.cli import main as cli


def test_all_references_unreadable_is_unusable(tiny_museum, capsys):
    for path in (tiny_museum / "references").rglob("*.jpg"):
        path.write_bytes(b"junk")
    assert cli(["check-data", str(tiny_museum), "--no-progress"]) == 1
    assert "NOT usable" in capsys.readouterr().out


def test_cli_writes_json_and_exits_zero(tiny_museum, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert cli(["check-data", str(tiny_museum), "--json", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["images"]["references"] == 6
    assert "verdict: usable" in capsys.readouterr().out


def test_cli_wrong_layout_exits_nonzero_with_advice(tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    assert cli(["check-data", str(tmp_path), "--no-progress"]) == 2
    assert "references/<instance_id>" in capsys.readouterr().err
