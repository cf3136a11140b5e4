from __future__ import annotations

import json

from muselens.cli import main


def test_make_museum_command_writes_a_museum_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "m"
    rc = main(["make-museum", str(out), "--instances", "2", "--references", "1", "--queries", "1",
               "--distractors", "1", "--seed", "4", "--size", "80", "--workers", "1"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "wrote 5 images" in captured.out and "images/s" in captured.out
    assert "make-museum" in captured.err, "the progress bar goes to stderr"
    assert json.loads((out / "museum.json").read_text())["seed"] == 4


def test_make_museum_command_reports_bad_input_with_exit_status_2(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("keep me")
    rc = main(["make-museum", str(tmp_path), "--instances", "1", "--references", "1", "--queries", "0",
               "--distractors", "0", "--seed", "0", "--size", "64", "--no-progress"])
    assert rc == 2
    assert "not empty" in capsys.readouterr().err
    rc = main(["make-museum", str(tmp_path / "x"), "--instances", "0", "--references", "1", "--queries", "0",
               "--distractors", "0", "--seed", "0"])
    assert rc == 2
    assert "instances must be >= 1" in capsys.readouterr().err
