"""``muselens bench bad-input`` on the tiny bundle: every outcome as expected, the server alive."""

from __future__ import annotations

import json
from collections import Counter

import grpc
import numpy as np
import pytest

from muselens.benchmarks import bad_input
from muselens.benchmarks.corpus import CATEGORIES, Corpus
from muselens.benchmarks.corpus_cases import IN_STREAM, LAST_IN_STREAM, OWN_STREAM, Outcome, Tokens
from muselens.cli import main as cli


class _Error(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str):
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_status_outcomes_carry_muselens_reasons_only():
    invalid = _Error(grpc.StatusCode.INVALID_ARGUMENT, "truncated: JPEG of 10 bytes ...")
    assert bad_input.status_outcome(invalid) == Outcome("INVALID_ARGUMENT", "truncated")
    grpc_level = _Error(grpc.StatusCode.RESOURCE_EXHAUSTED, "SERVER: Received message larger than max (1 vs. 0)")
    assert bad_input.status_outcome(grpc_level) == Outcome("RESOURCE_EXHAUSTED")


def test_stream_plan_sends_each_case_once_enders_last_auth_alone():
    corpus = Corpus(600, seed=3, tokens=Tokens("c" * 16, "a" * 16))
    streams = bad_input.plan_streams(corpus, np.random.default_rng(0))
    sent = Counter(i for stream in streams for i in stream)
    kinds = [CATEGORIES[name].stream for name in corpus.categories]
    assert set(sent) == {i for i, k in enumerate(kinds) if k in (IN_STREAM, LAST_IN_STREAM, OWN_STREAM)}
    assert set(sent.values()) == {1}
    for stream in streams:
        stream_kinds = [kinds[i] for i in stream]
        assert LAST_IN_STREAM not in stream_kinds[:-1]
        assert OWN_STREAM not in stream_kinds or len(stream) == 1


def test_rss_growth_is_measured_from_the_warm_up_mark():
    summary = bad_input.rss_summary([(0.0, 100.0), (1.0, 200.0), (2.0, 202.0), (3.0, 204.0)], warm_at=1.0)
    assert summary["rss_after_warmup_mb"] == 200.0 and summary["rss_growth"] == pytest.approx(0.02)
    assert summary["rss_peak_mb"] == 204.0
    assert summary["rss_middle_mb"] == 202.0 and summary["rss_growth_second_half"] == pytest.approx(2 / 202)
    assert "rss_growth_beyond_state" not in summary and bad_input.growth_checked(summary) == pytest.approx(0.02)


def test_the_target_is_on_rss_growth_beyond_what_the_model_holds_by_design():
    """An enrolment adds references (and maps cached for them): RSS growing by that is no leak."""
    warm = {"gallery": 1 << 20, "vote_index": 2 << 20, "reference_maps": 0}
    end = {"gallery": 2 << 20, "vote_index": 3 << 20, "reference_maps": 4 << 20, "enrolled_photos": 1 << 20}
    summary = bad_input.rss_summary([(1.0, 200.0), (2.0, 202.0), (3.0, 210.0)], warm_at=1.0, state=(warm, end))
    assert summary["model_state_growth_mb"] == pytest.approx(7.0)
    assert summary["model_state_growth_by_part_mb"] == {"enrolled_photos": 1.0, "gallery": 1.0, "reference_maps": 4.0,
                                                       "vote_index": 1.0}
    assert summary["rss_growth"] == pytest.approx(0.05) and summary["rss_growth_beyond_state"] == pytest.approx(0.015)
    assert bad_input.growth_checked(summary) == pytest.approx(0.015)


@pytest.mark.slow
def test_the_cache_filling_frames_are_explain_requests_of_the_bundles_references(tiny_bundle):
    from muselens.runtime.frames import decode_encoded
    from muselens.v1 import recognition_pb2 as pb

    frames = [pb.Frame.FromString(f) for f in bad_input.reference_frames(tiny_bundle, 4)]
    assert 0 < len(frames) <= 4
    for frame in frames:
        assert frame.options.explain and frame.options.explain_reference and list(frame.options.heatmap_kinds) == [1, 2, 3]
        assert decode_encoded(frame.image.encoded).ndim == 3


def test_bench_bad_input_on_the_tiny_bundle(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "bad-input"
    code = cli(["bench", "bad-input", str(tiny_bundle), "--out", str(out), "--count", "200", "--workers", "2",
                "--threads", "1"])
    printed = capsys.readouterr().out
    data = json.loads((out / "bench.json").read_text())
    assert data["mismatches"] == 0, data["mismatch_examples"][:3]
    assert code == 0 and data["server_alive"] and data["server_answers_after_run"] == "OK"
    assert sum(data["categories"].values()) == 200
    assert sum(sum(c.values()) for c in data["counts"]["unary"].values()) == 200
    good_after = data["counts"]["stream"]["good_after_case"]
    assert list(good_after) == ["OK"] and good_after["OK"] > 60  # streams survive, answer the next frame
    assert data["rss"]["rss_after_warmup_mb"] > 0 and len(data["rss_samples"]) > 3
    assert (out / "rss.png").stat().st_size > 1000
    assert "| truncated_jpeg |" in printed and "mismatches 0" in printed
    text = bad_input.markdown(out, data)
    assert text.startswith("## bad-input") and "**Mismatches: 0.**" in text and "results/bad-input/rss.png" in text


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert cli(["bench", "bad-input", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
