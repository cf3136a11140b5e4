"""bench real-photos: the figures from served answers, the subset museum, and CI's run on real photos.

The real sets live in ../shared/datasets and are never copied here; the end-to-end test skips,
saying why, where that folder is absent.
"""

import argparse
import json
from pathlib import Path

import pytest

from muselens.benchmarks.real_photos import _set_names, default_datasets, main, subset_museum
from muselens.benchmarks.through_service import Answer, Photo, figures

DATASETS = default_datasets()


def _a(decision, ranking):
    return Answer(decision, tuple(ranking), 0.5, 10.0, 12.0)


def test_figures_are_counted_from_the_services_answers():
    photos = [Photo(Path("q1"), "query", "a"), Photo(Path("q2"), "query", "b"), Photo(Path("q3"), "query", "c"),
              Photo(Path("d1"), "distractor", None), Photo(Path("u1"), "unknown", None),
              Photo(Path("u2"), "unknown", None)]
    answers = [_a("ARTWORK", "abc"),          # right and accepted
               _a("NO_ARTWORK", "cba"),       # right artwork second: AP 1/2, rejected
               _a("UNCERTAIN", "cab"),        # right, but not accepted
               _a("NO_ARTWORK", "abc"),
               _a("ARTWORK", "bca"),          # an unknown accepted
               _a("NO_ARTWORK", "abc")]
    f = figures(photos, answers, {"a", "b", "c"})
    assert f["queries"] == 3 and f["verified_right"] == 0.0 and f["verified_wrong"] == 0.0
    assert f["mp_at_1"] == pytest.approx(2 / 3)
    assert f["map_artworks"] == pytest.approx((1 + 1 / 2 + 1) / 3)
    assert f["correct_accept_rate"] == pytest.approx(1 / 3)
    assert f["uncertain_rate"] == pytest.approx(1 / 3)
    assert f["distractor_false_accept_rate"] == 0.0
    assert f["unknown_false_accept_rate"] == pytest.approx(1 / 2)
    assert f["errors"] == 0


def test_a_query_of_an_artwork_outside_the_gallery_is_not_counted():
    photos = [Photo(Path("q1"), "query", "a"), Photo(Path("q2"), "query", "zz")]
    f = figures(photos, [_a("ARTWORK", "a"), _a("ARTWORK", "a")], {"a"})
    assert f["queries"] == 1 and f["mp_at_1"] == 1.0
    assert f["unknowns"] == 0 and f["unknown_false_accept_rate"] is None


def _museum(root: Path, artworks: dict[str, int]) -> Path:
    for name, queries in artworks.items():
        (root / "references" / name).mkdir(parents=True)
        (root / "references" / name / "r.jpg").write_bytes(b"x")
        (root / "queries" / name).mkdir(parents=True)
        for k in range(queries):
            (root / "queries" / name / f"q{k}.jpg").write_bytes(b"x")
    (root / "instances.csv").write_text("id,title\n" + "".join(f"{n},Title {n}\n" for n in artworks))
    return root


def test_a_subset_keeps_artworks_with_queries_as_links(tmp_path):
    src = _museum(tmp_path / "src", {"a": 0, "b": 1, "c": 2, "d": 1})
    out = subset_museum(src, tmp_path / "sub", 2)
    assert sorted(p.name for p in (out / "references").iterdir()) == ["b", "c"]
    assert (out / "queries" / "c" / "q1.jpg").is_symlink()
    assert (out / "instances.csv").read_text().splitlines() == ["id,title", "b,Title b", "c,Title c"]
    with pytest.raises(ValueError, match="at least 2"):
        subset_museum(src, tmp_path / "sub2", 1)


def test_a_missing_set_is_refused_before_any_work(tmp_path, capsys):
    args = argparse.Namespace(datasets=tmp_path, out=tmp_path / "out", sets=["mcv-paintings"], methods=[],
                              schedule="none", seeds=[0], artworks=None, size=None, no_progress=True)
    assert main(args) == 2
    assert "lacks mcv-paintings" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_any_museum_beside_the_real_sets_is_a_set(tmp_path):
    """Table 5.3's synthetic museum is measured by the same command as the real sets."""
    assert _set_names("museum60,mcv-paintings") == ["museum60", "mcv-paintings"]
    for bad in ("../museum60", "a/b", ".."):
        with pytest.raises(argparse.ArgumentTypeError, match="folder names inside --datasets"):
            _set_names(bad)
    _museum(tmp_path / "museum60", {"a": 1, "b": 2})
    args = argparse.Namespace(datasets=tmp_path, out=tmp_path / "out", sets=["museum60"], methods=[],
                              schedule="none", seeds=[0], artworks=None, size=None, no_progress=True)
    assert main(args) == 0
    (measured,) = json.loads((tmp_path / "out" / "bench.json").read_text())["sets"]
    assert measured["set"] == "museum60" and measured["counts"]["artworks"] == 2 and measured["counts"]["queries"] == 3


@pytest.mark.slow
@pytest.mark.skipif(not (DATASETS / "mcv-paintings").is_dir() or not (DATASETS / "ukbench-250").is_dir(),
                    reason=f"the real photo sets are not at {DATASETS} (they live in ../shared/datasets)")
def test_real_photos_retrained_exported_served_every_frame_answered(tmp_path):
    """CI on real photos: 15 artworks of two sets, tiny schedule, through the service."""
    args = argparse.Namespace(datasets=DATASETS, out=tmp_path / "out", sets=["mcv-paintings", "ukbench-250"],
                              methods=[], schedule="tiny", seeds=[0], artworks=15, size=None, no_progress=True,
                              argv=["bench", "real-photos", "--artworks", "15", "--schedule", "tiny"])
    assert main(args) == 0
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    for s in data["sets"]:
        (run,) = s["runs"]
        service = run["service"]
        assert service["frames"] == s["counts"]["queries"] + s["counts"]["distractors"] + s["counts"]["unknowns"]
        assert service["verification"] == "orb"
        assert service["variant"] == "fp32"  # what served the answers (the real-photos export is fp32 only)
        for mode in ("unary", "unary_descriptor", "stream"):
            assert service[mode]["errors"] == 0
            assert service[mode]["client_ms"]["count"] == service["frames"]  # every frame answered
        # one frame at a time: the stream answers as a unary call without verification
        assert service["descriptor_stream_agreement"] == 1.0
        assert service["unary"]["verify_ms"]["count"] == service["frames"]  # the default unary call verifies
        assert service["unary_descriptor"]["verify_ms"]["count"] == 0
        assert service["unary"]["mp_at_1"] >= service["unary_descriptor"]["mp_at_1"] - 1e-9
        assert run["service"]["unary"]["queries"] == s["counts"]["queries"]
    mcv = data["sets"][0]
    assert mcv["counts"]["unknowns"] == 10 and mcv["runs"][0]["service"]["unary"]["unknowns"] == 10


def test_verified_answers_are_counted_right_wrong_and_on_negatives():
    photos = [Photo(Path("q1"), "query", "a"), Photo(Path("q2"), "query", "b"), Photo(Path("q3"), "query", "c"),
              Photo(Path("d1"), "distractor", None), Photo(Path("u1"), "unknown", None)]
    answers = [Answer("ARTWORK", ("a",), 0.5, 10.0, 12.0, "a", 30.0), Answer("ARTWORK", ("c",), 0.5, 10.0, 12.0, "c", 40.0),
               _a("NO_ARTWORK", "abc"), _a("NO_ARTWORK", "abc"), Answer("ARTWORK", ("a",), 0.5, 10.0, 12.0, "a", 20.0)]
    f = figures(photos, answers, {"a", "b", "c"})
    assert f["verified_right"] == pytest.approx(1 / 3) and f["verified_wrong"] == pytest.approx(1 / 3)
    assert f["distractors_verified"] == 0 and f["unknowns_verified"] == 1
    assert f["verify_ms"]["count"] == 3


def test_seeds_are_summarised_as_mean_and_spread_only_where_there_are_several():
    from muselens.benchmarks.real_photos import seed_table

    def row(label, seed, mp):
        return {"label": label, "seed": seed, "mp_at_1": mp, "map": mp / 2, "correct_accept_rate": None}

    payload = {"sets": [{"set": "mcv-paintings", "rows": [
        {"label": "SIFT", "mp_at_1": 0.9, "map": 0.8, "correct_accept_rate": 0.7},  # a baseline: no seed
        row("proposed (unary)", 0, 0.90), row("proposed (unary)", 1, 0.94), row("proposed (unary)", 2, 0.98),
        row("proposed (stream)", 0, 0.5)]}]}
    (head, rule, line) = seed_table(payload).splitlines()
    assert "seeds" in head and "mP@1" in head
    assert line == "| mcv-paintings | proposed (unary) | 3 | 94.0 ± 4.0 | 47.0 ± 2.0 | – |"
    assert seed_table({"sets": [{"set": "x", "rows": [row("one", 0, 0.5)]}]}) == ""


def test_each_seeded_mode_is_judged_against_the_better_im_baseline_by_its_spread():
    from muselens.benchmarks.real_photos import verdicts

    def row(label, seed, mp):
        return {"label": label, "method": "proposed-unary", "seed": seed, "mp_at_1": mp}

    payload = {"sets": [
        {"set": "grocery", "rows": [
            {"label": "IM-GeM", "method": "im-gem", "mp_at_1": 0.40}, {"label": "IM-R-MAC", "method": "im-rmac",
                                                                       "mp_at_1": 0.52},
            {"label": "SIFT + RANSAC", "method": "sift", "mp_at_1": 0.95},  # not the comparison
            row("proposed (unary)", 0, 0.88), row("proposed (unary)", 1, 0.90), row("proposed (unary)", 2, 0.92)]},
        {"set": "ukbench", "rows": [
            {"label": "IM-GeM", "method": "im-gem", "mp_at_1": 1.0},
            row("proposed (unary)", 0, 0.99), row("proposed (unary)", 1, 1.0)]}]}
    lines = verdicts(payload).splitlines()
    assert lines[2] == "| grocery | proposed (unary) | 90.0 ± 2.0 | IM-R-MAC 52.0 | +38.0 | yes |"
    assert lines[3] == "| ukbench | proposed (unary) | 99.5 ± 0.7 | IM-GeM 100.0 | -0.5 | **no** |"
    assert verdicts({"sets": [{"set": "x", "rows": [row("one", 0, 0.5)]}]}) == ""
