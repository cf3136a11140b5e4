"""``muselens bench abuse``: the attacks' expected statuses, the measurements and the report."""

from __future__ import annotations

import json
import os
import time
from collections import Counter

import cv2
import numpy as np
import pytest

from muselens.benchmarks import abuse, abuse_attacks
from muselens.cli import main as cli
from muselens.runtime.frames import FrameLimits, decode_encoded
from muselens.runtime.frames.frame_error import FrameError


def test_the_scan_bomb_is_inside_the_limits_but_refused_for_its_scans():
    bomb = abuse_attacks.scan_bomb(*abuse_attacks.BOMB_SIZE, abuse_attacks.BOMB_SCANS)
    assert len(bomb) < FrameLimits().max_encoded_bytes and bomb.count(b"\xff\xda") > abuse_attacks.BOMB_SCANS
    assert abuse_attacks.BOMB_SIZE[0] * abuse_attacks.BOMB_SIZE[1] <= FrameLimits().max_pixels
    with pytest.raises(FrameError) as err:
        decode_encoded(bomb)
    assert err.value.reason == "too_many_scans"
    small = abuse_attacks.scan_bomb(256, 128, 3)  # the same construction decodes: it is a valid JPEG
    assert cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_COLOR).shape == (128, 256, 3)


def test_the_big_png_decodes_to_its_size():
    png = abuse_attacks.big_png(1000, 700)
    assert len(png) < 10_000 and decode_encoded(png).shape == (700, 1000, 3)


def test_cpu_and_peak_rss_of_a_process():
    assert abuse.cpu_seconds(os.getpid()) > 0
    if abuse.reset_peak_rss(os.getpid()):
        assert abuse.peak_rss_mb(os.getpid()) > 0


def test_the_good_clients_window_and_the_verdicts():
    records = [(t, 10.0 * t, "OK") for t in range(1, 11)] + [(5.5, 1.0, "RESOURCE_EXHAUSTED")]
    w = abuse.window(records, 3, 7)
    assert w["calls"] == 5 and w["codes"] == {"OK": 4, "RESOURCE_EXHAUSTED": 1}
    assert w["latency_ms"]["max"] == 60.0
    result = {"unexpected": [], "good": w, "rss_change": 0.01, "notes": {}}
    abuse.verdicts(result, limit_ms=100.0)
    assert not result["good_served"] and not result["accepted"]  # a refused good call is not served
    result["good"] = abuse.window(records[:10], 3, 7)
    abuse.verdicts(result, limit_ms=100.0)
    assert result["good_within_2x"] and result["rss_within_5pct"] and result["accepted"]
    abuse.verdicts(result, limit_ms=50.0)
    assert not result["good_within_2x"]
    result["notes"] = {"forged_log_lines": 1}
    abuse.verdicts(result, limit_ms=100.0)
    assert not result["accepted"]


@pytest.mark.slow
def test_bench_abuse_quick_on_the_tiny_bundle(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "abuse"
    started = time.monotonic()
    code = cli(["bench", "abuse", str(tiny_bundle), "--out", str(out), "--quick", "--threads", "1"])
    data = json.loads((out / "bench.json").read_text())
    assert data["benchmark"] == "abuse" and data["server_alive"] and code in (0, 1)
    assert [a["name"] for a in data["attacks"]] == list(abuse.ATTACK_NAMES)
    assert data["good_client"]["normal"]["codes"] == {"OK": data["good_client"]["normal"]["calls"]}
    for attack in data["attacks"]:
        name, statuses = attack["name"], Counter(attack["statuses"])
        assert attack["statuses_as_expected"], (name, statuses)
        assert not any(s.startswith(("UNKNOWN", "DEADLINE_EXCEEDED", "bench error")) for s in statuses), name
        assert sum(statuses.values()) > 0 and attack["cpu_s"] >= 0
        assert 0 < attack["rss_before_mb"] <= attack["rss_peak_mb"] and attack["rss_after_mb"] > 0
        assert not set(attack["good"]["codes"]) & {"DEADLINE_EXCEEDED", "UNKNOWN", "INTERNAL"}, (name, attack["good"])
        assert set(attack["admin_health"]["codes"]) <= {"OK"}, (name, attack["admin_health"])
        for key in ("good_within_2x", "rss_within_5pct", "accepted"):
            assert isinstance(attack[key], bool)
    by_name = {a["name"]: a for a in data["attacks"]}
    idle = by_name["idle_streams"]
    assert idle["statuses"]["RESOURCE_EXHAUSTED"] == idle["notes"]["streams"] - idle["notes"]["stream_cap"]
    assert by_name["log_injection"]["notes"] == {"forged_log_lines": 0, "raw_bidi_in_log": 0}
    assert by_name["bundle_root"]["notes"]["distinct_details"] == 1
    assert by_name["timestamp"]["notes"]["streams_answering_every_later_frame"] >= 1
    assert by_name["largest_raw"]["statuses"].get("OK", 0) >= 1
    printed = capsys.readouterr().out
    assert "| attack | statuses (count) |" in printed and time.monotonic() - started < 240
    text = abuse.markdown(out, data)
    assert text.startswith("## abuse") and "| unary_flood |" in text


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert cli(["bench", "abuse", str(tmp_path), "--out", str(tmp_path / "o"), "--attacks", "nope"]) == 2
    assert "unknown attack" in capsys.readouterr().err
    assert cli(["bench", "abuse", str(tmp_path), "--out", str(tmp_path / "o"), "--seconds", "0"]) == 2
    assert "--seconds must be positive" in capsys.readouterr().err
