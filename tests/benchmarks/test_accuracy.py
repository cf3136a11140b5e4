from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
import yaml

from muselens.benchmarks import accuracy, accuracy_report, descriptor_store
from muselens.benchmarks.results_md import render
from muselens.cli import main as cli
from muselens.training.backbones.backbone_registry import build_backbone
from muselens.training.baselines.imagenet import build_im_extractor
from tests.tiny_model import TINY


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images(n: int, seed: int = 0, shape=(64, 80, 3)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(n)]


# -- parsing --------------------------------------------------------------------------------------

def test_variants_are_canonical_and_checked():
    assert accuracy.parse_variants("plain, dba+ia ,qe") == ["plain", "ia+dba", "qe"]
    for bad in ("plain,plain", "ia+ia", "ia+nope", " , "):
        with pytest.raises(argparse.ArgumentTypeError):
            accuracy.parse_variants(bad)


def test_variant_options_switch_on_only_their_parts():
    o = accuracy.variant_options("ia+dba", qe=2, dba=3)
    assert (o.instance_avg, o.qe, o.dba) == (True, 0, 3)
    o = accuracy.variant_options("plain", qe=2, dba=3)
    assert (o.instance_avg, o.qe, o.dba) == (False, 0, 0)


def test_runs_methods_and_losses_are_checked(tmp_path):
    assert accuracy.parse_runs(f"proposed={tmp_path}") == {"proposed": tmp_path}
    for bad in ("proposed", f"={tmp_path}", f"a={tmp_path},a={tmp_path}"):
        with pytest.raises(argparse.ArgumentTypeError):
            accuracy.parse_runs(bad)
    assert accuracy.parse_methods("none") == []
    assert accuracy.parse_methods("im-gem-ms,sift,sift") == ["im-gem-ms", "sift"]
    with pytest.raises(argparse.ArgumentTypeError, match="im-logits-ms"):
        accuracy.parse_methods("im-logits-ms")
    with pytest.raises(argparse.ArgumentTypeError, match="nope"):
        accuracy.parse_losses("batch-hard-hinge,nope")


# -- describing once -------------------------------------------------------------------------------

def test_store_describes_each_distinct_image_once_for_all_its_extractors():
    calls = {"a": 0, "b": 0}

    def extractor(name, scale):
        def run(images):
            calls[name] += len(images)
            return np.stack([np.full(2, scale * float(im.mean()), np.float32) for im in images])
        return run

    store = descriptor_store.DescriptorStore({"a": extractor("a", 1.0), "b": extractor("b", 2.0)})
    images = _images(3)
    first = store.extract("a", images + [images[0].copy()])  # a repeated image is described once
    assert calls == {"a": 3, "b": 3}
    again = store.extract("a", images[::-1])
    b = store.extract("b", images)
    assert calls == {"a": 3, "b": 3}
    np.testing.assert_array_equal(again, first[:3][::-1])
    np.testing.assert_allclose(b, 2 * first[:3])
    assert store.described == 3
    with pytest.raises(ValueError, match="no extractor"):
        store.extract("c", images)


def test_store_refuses_an_extractor_that_loses_images():
    store = descriptor_store.DescriptorStore({"bad": lambda images: np.zeros((len(images) - 1, 2), np.float32)})
    with pytest.raises(ValueError, match="gave 1 descriptors for 2 images"):
        store.extract("bad", _images(2))


def test_shared_backbone_gives_each_pooling_exactly_its_own_descriptors():
    """Oracle: every IM method read from one memoised pass equals its own extractor's output."""
    net = build_backbone("tf_efficientnet_lite0", pretrained=False)
    memo = descriptor_store.MemoBackbone(net)
    methods = ("im-gem", "im-mac", "im-rmac-ms", "im-logits")
    shared = {m: build_im_extractor(m.removesuffix("-ms"), memo, size=64, multiscale=m.endswith("-ms"))
              for m in methods}
    store = descriptor_store.DescriptorStore({m: ex.extract for m, ex in shared.items()}, after=memo.forget)
    images = _images(3) + _images(2, seed=1, shape=(70, 64, 3))
    for m in methods:
        alone = build_im_extractor(m.removesuffix("-ms"), net, size=64, multiscale=m.endswith("-ms"))
        np.testing.assert_allclose(store.extract(m, images), alone.extract(images), rtol=0, atol=1e-6)
    # Per image shape (two): one full-size pass shared by im-gem, im-mac and im-rmac-ms's first
    # scale, and its two smaller scales; im-logits' square inputs all share one 224x224 batch.
    assert (memo.misses, memo.hits) == (2 * 3 + 1, 2 * 2)
    assert memo._memo == {}  # forgotten after the joint pass


# -- comparison ------------------------------------------------------------------------------------

def _row(label, values):
    return {"label": label, "results": {v: None if x is None else {"retrieval": {"mp_at_1": x[0], "map": x[1]}}
                                        for v, x in values.items()}}


def test_comparison_says_who_wins_and_by_how_much():
    rows = [_row("IM-GeM", {"plain": (0.4, 0.3), "ia": (0.5, 0.6)}),
            _row("proposed", {"plain": (0.45, 0.35), "ia": (0.45, 0.5)})]
    c = accuracy_report.comparison(rows, ["plain", "ia"])
    assert c["beats"] and c["mp_at_1"]["points"] == pytest.approx(5.0)
    assert c["best"] == {"a_variant": "ia", "b_variant": "ia", "mp_at_1_points": pytest.approx(-5.0)}
    line = accuracy_report.comparison_line(c)
    assert "proposed beats IM-GeM" in line and "+5.00 points" in line
    c = accuracy_report.comparison(list(reversed(rows)), ["plain", "ia"], a="IM-GeM", b="proposed")
    assert "does not beat" in accuracy_report.comparison_line(c)
    missing = accuracy_report.comparison(rows[:1], ["plain"])
    assert "no proposed row" in accuracy_report.comparison_line(missing)


def test_best_variant_prefers_the_first_listed_on_ties_and_skips_na():
    assert accuracy_report.best_variant(_row("x", {"plain": (0.5, 0.5), "ia": (0.5, 0.5), "qe": None})) == "plain"
    assert accuracy_report.best_variant(_row("x", {"plain": None})) is None


# -- the command -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_table_53_with_a_trained_alternative_and_the_bundle(export_museum, run_dir, tiny_bundle, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "results" / "tiny-accuracy"
    argv = ["bench", "accuracy", str(export_museum), "--out", str(out), "--runs", f"proposed={run_dir}",
            "--methods", "sift,im-gem", "--size", "64", "--workers", "1", "--no-progress",
            "--train-alternatives", "batch-hard-hinge,batch-hard-squared", "--train-config", str(config),
            "--train-set", "stage3.epochs=1", "--bundle", str(tiny_bundle)]
    assert cli(argv) == 0
    captured = capsys.readouterr()
    assert "training" in captured.err and "IM-GeM" in captured.out
    # The fixture's proposed run started from random weights, so the first alternative trains all
    # three stages; the second shares the first's stages 1-2.
    assert "not sharing stages 1-2" in captured.err and "initial weights" in captured.err

    data = json.loads((out / "bench.json").read_text())
    assert data["benchmark"] == "accuracy" and data["command"] == "muselens " + " ".join(argv)
    labels = [r["label"] for r in data["rows"]]
    assert labels == ["SIFT", "IM-GeM", "FT", "proposed", "batch-hard-hinge pooled", "batch-hard-hinge",
                      "batch-hard-squared pooled", "batch-hard-squared", "bundle fp32"]
    assert data["variants"] == list(accuracy.DEFAULT_VARIANTS)
    rows = {r["label"]: r for r in data["rows"]}
    sift = rows["SIFT"]["results"]
    assert sift["qe"] is None and sift["ia+qe+dba"] is None and sift["ia"]["options"]["instance_avg"]
    for row in data["rows"]:
        for variant, result in row["results"].items():
            if result is not None:
                assert 0.0 <= result["retrieval"]["mp_at_1"] <= 1.0
                assert result["counts"]["queries"] == 3
    assert rows["IM-GeM"]["results"]["ia+qe+dba"]["options"] == {"instance_avg": True, "qe": 1, "dba": 1}
    # The bundle is the proposed run exported: through ONNX Runtime it ranks the same way.
    assert rows["bundle fp32"]["default_variant"] is True
    for v in data["variants"]:
        assert rows["bundle fp32"]["results"][v]["retrieval"]["map"] == pytest.approx(
            rows["proposed"]["results"][v]["retrieval"]["map"], abs=1e-6)
    # ... and served, the product's own modes: the descriptor alone ranks as the instance averages do
    served = data["served"]
    assert [r["mode"] for r in served["rows"]] == ["unary", "unary_descriptor", "stream"]
    assert served["service"]["frames"] == 3 + 2  # queries and distractors
    by_mode = {r["mode"]: r for r in served["rows"]}
    assert by_mode["unary_descriptor"]["mp_at_1"] == pytest.approx(
        rows["bundle fp32"]["results"]["ia"]["retrieval"]["mp_at_1"])
    assert by_mode["stream"]["mp_at_1"] == by_mode["unary_descriptor"]["mp_at_1"]
    assert "Through `muselens serve`" in captured.out and (out / "serve.log").exists()
    alt, second = data["alternatives"]
    assert alt["loss"] == "batch-hard-hinge" and alt["trained_now"] is True and alt["stages_1_2_from"] is None
    assert second["stages_1_2_from"] == str(out / "runs" / "batch-hard-hinge")
    history = json.loads((out / "runs" / "batch-hard-squared" / "history.json").read_text())
    assert history["stages"]["2"]["shared_from"] == second["stages_1_2_from"]
    assert "shared_from" not in history["stages"]["3"]
    run = out / "runs" / "batch-hard-hinge"
    assert yaml.safe_load((run / "config.yaml").read_text())["stage3"]["loss"] == "batch-hard-hinge"
    assert rows["batch-hard-hinge"]["source"]["stage3_loss"] == "batch-hard-hinge"
    assert set(rows["batch-hard-hinge"]["training_seconds"]) == {"1", "2", "3"}
    assert data["comparison"]["a"] == "proposed" and "mp_at_1" in data["comparison"]
    assert (out / "accuracy.png").stat().st_size > 1000

    # The section of RESULTS.md: Table 5.3's layout, the verdict line and the plot.
    text = accuracy_report.markdown(out, data)
    assert text.startswith("## tiny-accuracy") and "| method | mP@1 plain | mP@1 ia |" in text
    assert "| SIFT |" in text and "N/A" in text and "| bundle fp32 (default) |" in text
    assert "| unary, verified |" in text and "| stream |" in text
    assert "IM-GeM** (plain)" in text and "![tiny-accuracy](results/tiny-accuracy/accuracy.png)" in text
    assert "## tiny-accuracy" in render(out.parent)

    # A re-run reuses the finished alternative instead of training it again.
    stamp = (run / "model.pt").stat().st_mtime_ns
    assert cli(argv[:5] + ["--runs", f"proposed={run_dir}", "--methods", "none", "--variants", "plain",
                           "--no-progress", "--train-alternatives", "batch-hard-hinge", "--train-config", str(config),
                           "--train-set", "stage3.epochs=1"]) == 0
    assert "reusing finished run" in capsys.readouterr().err
    assert (run / "model.pt").stat().st_mtime_ns == stamp
    again = json.loads((out / "bench.json").read_text())
    assert again["alternatives"][0]["trained_now"] is False
    assert [r["label"] for r in again["rows"]] == ["FT", "proposed", "batch-hard-hinge pooled", "batch-hard-hinge"]

    # ... and refuses one made with another configuration rather than mislabel it.
    assert cli(argv[:5] + ["--methods", "none", "--no-progress", "--train-alternatives", "batch-hard-hinge",
                           "--train-config", str(config), "--train-set", "stage3.epochs=2"]) == 2
    assert "another configuration" in capsys.readouterr().err


def test_bad_arguments_are_named(export_museum, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["bench", "accuracy", str(export_museum), "--out", str(out), "--runs", f"proposed={tmp_path}"]) == 2
    assert "not a finished training run" in capsys.readouterr().err
    assert cli(["bench", "accuracy", str(export_museum), "--out", str(out), "--train-set", "seed=1"]) == 2
    assert "--train-alternatives" in capsys.readouterr().err
    assert cli(["bench", "accuracy", str(export_museum), "--out", str(out), "--qe", "0"]) == 2
    assert "--qe" in capsys.readouterr().err
    assert cli(["bench", "accuracy", str(export_museum), "--out", str(out), "--bundle", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["bench", "accuracy", str(export_museum), "--out", str(out), "--variants", "ia+nope"])
    assert not out.exists()


# -- open set at the shipped threshold (--unknown) ---------------------------------------------------

@pytest.fixture
def unknown_dir(tmp_path):
    from tests.conftest import write_image

    for k in range(3):
        write_image(tmp_path / "unknown" / f"u{k}.png", 500 + k)
    return tmp_path / "unknown"


def test_unknown_photos_give_each_row_its_shipped_open_set_once(export_museum, unknown_dir, tmp_path, capsys):
    from muselens.core.data.museum_dataset import MuseumDataset
    from muselens.training.evaluation.methods import build_method
    from muselens.training.evaluation.protocol import EvalOptions, evaluate_method, unknown_images

    out = tmp_path / "out"
    argv = ["bench", "accuracy", str(export_museum), "--out", str(out), "--methods", "sift,im-gem",
            "--variants", "qe,plain", "--size", "64", "--workers", "1", "--no-progress", "--unknown", str(unknown_dir)]
    assert cli(argv) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "bench.json").read_text())
    assert data["options"]["unknown"] == str(unknown_dir) and data["options"]["target_far"] == 0.01
    rows = {r["label"]: r for r in data["rows"]}
    for row in rows.values():
        shipped = row["shipped"]
        assert shipped["set_by"] == "calibrated" and (shipped["n_unknown"], shipped["n_distractors"]) == (3, 2)
        assert all("shipped" not in result for result in row["results"].values() if result)  # kept once, per row
    # SIFT's first variant (qe) cannot run: it is measured with plain, on its inlier counts, unclipped.
    assert rows["SIFT"]["results"]["qe"] is None
    # The IM-GeM row is what `muselens evaluate` measures for the same method.
    alone = evaluate_method(MuseumDataset.load(export_museum), build_method("im-gem", size=64),
                            EvalOptions(clustering=False), progress=False, unknown=unknown_images(unknown_dir)).shipped
    got = rows["IM-GeM"]["shipped"]
    assert got["threshold"] == pytest.approx(alone["threshold"], abs=1e-6) and got["how"] == alone["how"]
    for key in ("correct_accept_rate", "wrong_accept_rate", "unknown_far", "distractor_far"):
        assert got[key] == alone[key], key
    text = accuracy_report.markdown(out, data)
    for shown in (printed, text):
        assert "Open set at the shipped threshold" in shown and "threshold of IM-GeM: calibrated as export" in shown
        assert f"{alone['threshold']:.4f}" in shown


def test_a_bad_unknown_folder_fails_before_any_work(export_museum, tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    assert cli(["bench", "accuracy", str(export_museum), "--out", str(out), "--unknown", str(tmp_path / "empty")]) == 2
    assert "no images directly inside" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_bundle_rows_are_measured_at_the_manifest_threshold(export_museum, tiny_bundle, unknown_dir, tmp_path):
    from muselens.runtime.bundle import load_bundle

    out = tmp_path / "out"
    assert cli(["bench", "accuracy", str(export_museum), "--out", str(out), "--methods", "none", "--variants", "plain",
                "--bundle", str(tiny_bundle), "--no-progress", "--threads", "1", "--unknown", str(unknown_dir),
                "--no-served"]) == 0
    data = json.loads((out / "bench.json").read_text())
    assert "served" not in data
    row = data["rows"][0]
    with load_bundle(tiny_bundle) as loaded:
        manifest = loaded.manifest.threshold
    shipped = row["shipped"]
    assert row["label"] == "bundle fp32" and shipped["set_by"] == "given"
    assert shipped["threshold"] == manifest.value and shipped["calibration"] == manifest.to_dict()
    assert shipped["how"].startswith("the bundle manifest's")
    assert (shipped["n_unknown"], shipped["n_queries"]) == (3, 3)
