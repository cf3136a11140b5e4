"""The served model in process: recognition, options, enrolment, hot swap."""

from __future__ import annotations

import numpy as np
import pytest

from muselens.runtime.recognition.decision_rule import Decision
from muselens.runtime.recognition.holder import ModelHolder
from muselens.runtime.recognition.options import HeatmapKind, HeatmapSide, OptionsError, RecognizeOptions
from tests.runtime.server.conftest import rgb


def test_recognition_ranks_the_gallery_by_dot_product(served, query_images):
    image = rgb(query_images[0])
    result = served.recognize(image, RecognizeOptions(top_k=3))
    d = served.describer.describe(image)
    vectors, ids = served.bundle.gallery.instance_average()
    expected = sorted(zip(vectors @ d, ids), key=lambda p: -p[0])
    assert [m.instance_id for m in result.matches] == [str(i) for _, i in expected]
    np.testing.assert_allclose([m.score for m in result.matches], [s for s, _ in expected], atol=1e-5)
    assert result.decision in set(Decision)
    assert set(result.timings_ms) >= {"preprocess", "inference", "match", "heatmap", "total"}


def test_options_are_validated():
    with pytest.raises(OptionsError, match="top_k"):
        RecognizeOptions(top_k=0)
    with pytest.raises(OptionsError, match="x0 < x1"):
        RecognizeOptions(roi=(0.5, 0, 0.5, 1))
    with pytest.raises(OptionsError, match="4 numbers"):
        RecognizeOptions(roi=(0, 0, 1))
    assert RecognizeOptions(heatmap_kinds=()).heatmap_kinds == (HeatmapKind.REGIONS, HeatmapKind.FULL)
    assert RecognizeOptions(heatmap_kinds=("class", "class")).heatmap_kinds == (HeatmapKind.CLASS,)


def test_enrolment_builds_a_new_model_and_leaves_the_old_one(served, query_images):
    holder = ModelHolder(served)
    photo = rgb(query_images[2])
    new = holder.enroll("extra", "Extra", {}, [photo])
    assert holder.current() is new and new is not served
    assert served.search.gallery.n_images + 1 == new.search.gallery.n_images
    assert "extra" not in served.labels and new.labels["extra"].title == "Extra"
    assert new.recognize(photo).matches[0].instance_id == "extra"
    assert new.info()["enrolled_images"] == 1 and served.info()["enrolled_images"] == 0
    with pytest.raises(ValueError, match="at least one"):
        new.with_enrolled("x", "", {}, [])


def test_enrolled_photos_are_kept_as_jpeg_and_explain_matches(served):
    y, x = np.mgrid[0:480, 0:640] / 80.0  # a smooth photo-like picture (JPEG's easy case, like photos)
    big = np.stack([127 + 120 * np.sin(x), 127 + 120 * np.cos(y), 127 + 120 * np.sin(x + y)], -1).astype(np.uint8)
    new = served.with_enrolled("extra", "Extra", {}, [big])
    row = new.search.gallery.n_images - 1
    kept = new.explainer._extra[row]
    resized = new.describer.resize(big)
    assert isinstance(kept, bytes) and kept[:2] == b"\xff\xd8" and len(kept) < resized.nbytes
    image, _ = new.explainer.reference(row)
    assert image.shape == resized.shape
    assert np.abs(image.astype(int) - resized).mean() < 8  # JPEG at quality 95
    answer = new.recognize(big, RecognizeOptions(explain=True, explain_reference=True))
    assert answer.matches[0].instance_id == "extra"
    assert {h.side for h in answer.heatmaps} == {HeatmapSide.QUERY, HeatmapSide.REFERENCE}


def test_an_enrolment_keeps_the_cached_reference_maps(served, query_images, monkeypatch):
    first = served.explainer.reference(0)
    assert first is not None
    new = served.with_enrolled("extra", "Extra", {}, [rgb(query_images[2])])

    def no_inference(*args, **kwargs):
        raise AssertionError("a cached reference was computed again")

    monkeypatch.setattr(new.describer, "run", no_inference)
    assert new.explainer.reference(0) is first  # the same maps, not recomputed
    monkeypatch.undo()
    row = new.search.gallery.n_images - 1
    assert new.explainer.reference(row) is not None
    assert row not in served.explainer._cache  # the old model's cache is not the new one's


def test_the_reference_cache_is_bounded_in_bytes_oldest_first(served, query_images):
    from muselens.runtime.recognition.explainer import Explainer, _entry_bytes

    probe = Explainer(served.describer, served.bundle.reference_image)
    rows = list(range(min(4, served.search.gallery.n_images)))
    sizes = [_entry_bytes(probe.reference(row)) for row in rows]
    assert probe.cached_bytes == sum(sizes) and probe.cache_bytes >= sum(sizes)
    budget = sizes[-1] + sizes[-2]  # room for the last two only
    small = Explainer(served.describer, served.bundle.reference_image, cache_bytes=budget)
    for row in rows:
        small.reference(row)
    assert list(small._cache) == rows[-2:] and small.cached_bytes == budget
    small.reference(rows[-2])  # used again: now the newest, the other one goes first
    grown = small.with_references(served.search.gallery.n_images, [rgb(query_images[2])])
    assert grown.cache_bytes == budget and grown.cached_bytes == budget and list(grown._cache) == [rows[-1], rows[-2]]
    assert Explainer(served.describer, cache_bytes=0).cache_bytes == 0
    with pytest.raises(ValueError, match="cache_bytes"):
        Explainer(served.describer, cache_bytes=-1)


def test_a_failed_load_keeps_the_model(served, tmp_path):
    holder = ModelHolder(served)
    with pytest.raises(Exception, match="does not exist"):
        holder.load(tmp_path / "missing")
    assert holder.current() is served and holder.reloads == 0


def test_the_variant_must_suit_the_backend(tiny_bundle):
    from muselens.runtime.recognition.served_model import ServedModel, ServingConfig

    with pytest.raises(ValueError, match="needs a TensorRT engine"):
        ServedModel.load(tiny_bundle, ServingConfig(backend="tensorrt"))
    with pytest.raises(ValueError, match="no variant 'int8'"):
        ServedModel.load(tiny_bundle, ServingConfig(variant="int8"))


def test_a_served_cpu_model_warms_side_by_side_runs_and_a_failing_one_fails_the_load(tiny_bundle, monkeypatch):
    from muselens.runtime.recognition.served_model import ServedModel

    model = ServedModel.load(tiny_bundle)  # as serve loads it: the CPU gate counts cores
    assert model.describer.gate.whole and model.describer.backend.one_thread_session is not None
    shapes = []
    run = model.describer.backend.run

    def recording_run(batch, outputs, cancel=None, *, one_thread=False):
        shapes.append((batch.shape[1:3], one_thread))
        return run(batch, outputs, cancel, one_thread=one_thread)

    monkeypatch.setattr(model.describer.backend, "run", recording_run)
    model._warm_side_by_side()
    wide = model.describer.output_size(1, 1_000_000)
    slots = model.describer.gate.slots
    assert sorted(shapes) == sorted([(wide, True)] * 2 * slots + [(wide[::-1], True)] * 2 * slots)

    def broken(*args, **kwargs):
        raise RuntimeError("engine broke")

    monkeypatch.setattr(model.describer.backend, "run", broken)
    with pytest.raises(RuntimeError, match="engine broke"):
        model._warm_side_by_side()


def test_a_served_model_leaves_numpys_blas_one_thread_and_openmp_as_it_was(tiny_bundle):
    import faiss  # noqa: F401 -- its OpenBLAS runs on OpenMP: loaded first, it must not be limited
    import threadpoolctl

    from muselens.runtime.recognition.served_model import ServedModel

    def threads(**select) -> set[int]:
        return {pool["num_threads"] for pool in threadpoolctl.threadpool_info()
                if all(pool.get(k) == v for k, v in select.items())}

    with threadpoolctl.threadpool_limits(limits=2):  # every pool, restored after the test
        if threads(threading_layer="pthreads") != {2} or threads(user_api="openmp") != {2}:
            pytest.skip(f"numpy's BLAS or OpenMP cannot take 2 threads here ({threadpoolctl.threadpool_info()})")
        ServedModel.load(tiny_bundle)
        assert threads(internal_api="openblas", threading_layer="pthreads") == {1}
        assert threads(user_api="openmp") == {2}
