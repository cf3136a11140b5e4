"""Gallery: validation, instance averages against a loop oracle, enrolment, pickle-free .npz."""

from __future__ import annotations

import io

import numpy as np
import pytest

from muselens.runtime.bundle.gallery import NPZ_KEYS, Gallery

from .conftest import make_gallery, unit_rows


def _loop_average(x: np.ndarray, ids: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for iid in sorted(set(ids)):
        rows = [x[i].astype(np.float64) for i in range(len(ids)) if ids[i] == iid]
        mean = np.mean(rows, axis=0)
        out[iid] = mean / np.linalg.norm(mean)
    return out


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_averages_match_loop_oracle_and_arrays_are_read_only():
    x = unit_rows(7, seed=3)
    ids = ["b", "a", "b", "c", "a", "a", "b"]
    g = Gallery(x, ids)
    avg, avg_ids = g.instance_average()
    assert avg_ids.tolist() == ["a", "b", "c"] and avg.dtype == np.float32
    oracle = _loop_average(x, ids)
    for row, iid in zip(avg, avg_ids):
        np.testing.assert_allclose(row, oracle[iid], rtol=1e-5, atol=1e-6)
    assert (g.dim, g.n_images, g.n_instances, len(g)) == (8, 7, 3, 7)
    with pytest.raises(ValueError, match="read-only"):
        g.descriptors[0, 0] = 1.0
    assert x.flags.writeable  # the caller's array is copied, not frozen
    with pytest.raises(AttributeError):
        g.descriptors = x  # type: ignore[misc]


def test_accepts_float64_and_tolerates_fp16_normalisation():
    x = unit_rows(3).astype(np.float64) * (1 + 5e-4)
    assert Gallery(x, ["a", "b", "c"]).descriptors.dtype == np.float32


@pytest.mark.parametrize("desc, ids, error, match", [
    (unit_rows(2) * 2, ["a", "b"], ValueError, "L2-normalised.*row 0 has norm 2"),
    (np.full((2, 8), np.nan, np.float32), ["a", "b"], ValueError, "NaN or inf"),
    (np.ones((2, 8), np.int32), ["a", "b"], TypeError, "floating point"),
    (np.zeros((0, 8), np.float32), [], ValueError, "non-empty"),
    (unit_rows(2)[0], ["a"], ValueError, r"\(N, D\)"),
    (unit_rows(2), ["a"], ValueError, "1 entries but there are 2"),
    (unit_rows(2), [1, 2], TypeError, "must hold strings"),
    (unit_rows(2), ["a", ""], ValueError, "non-empty strings"),
])
def test_validation(desc, ids, error, match):
    with pytest.raises(error, match=match):
        Gallery(desc, ids)


def test_add_enrols_new_and_known_instances():
    g = make_gallery()
    new_rows = unit_rows(2, seed=9)
    g2 = g.add(new_rows, "a-new-longer-id")
    assert g2.n_images == g.n_images + 2 and g.n_images == 6  # the original is untouched
    assert "a-new-longer-id" in g2.average_ids.tolist()
    g3 = g2.add(new_rows[0], "a1")  # a single (D,) descriptor for a known artwork
    ids = g3.instance_ids.tolist()
    oracle = _loop_average(g3.descriptors, ids)
    idx = g3.average_ids.tolist().index("a1")
    np.testing.assert_allclose(g3.average_descriptors[idx], oracle["a1"], rtol=1e-5, atol=1e-6)
    assert ids.count("a1") == 2
    with pytest.raises(ValueError, match="dimension 4, the gallery has 8"):
        g.add(unit_rows(1, dim=4), "x")
    with pytest.raises(TypeError, match="instance_id must be a string"):
        g.add(new_rows, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="L2-normalised"):
        g.add(new_rows * 3, "x")


def test_npz_round_trip(tmp_path):
    g = make_gallery()
    assert Gallery.from_bytes(g.to_bytes()) == g
    path = tmp_path / "gallery.npz"
    g.save(path)
    back = Gallery.load(path)
    assert back == g and back.instance_ids.dtype.kind == "U"
    assert back != make_gallery(seed=1)
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(NPZ_KEYS)


def test_npz_with_object_array_is_refused():
    g = make_gallery()
    arrays = {k: getattr(g, k) for k in NPZ_KEYS}
    arrays["instance_ids"] = g.instance_ids.astype(object)  # np.savez pickles object arrays
    with pytest.raises(ValueError, match="cannot be read without unpickling"):
        Gallery.from_bytes(_npz(**arrays))


def test_npz_contents_are_checked():
    g = make_gallery()
    arrays = {k: getattr(g, k) for k in NPZ_KEYS}
    with pytest.raises(ValueError, match="exactly the arrays"):
        Gallery.from_bytes(_npz(**{k: v for k, v in arrays.items() if k != "average_ids"}))
    with pytest.raises(ValueError, match="exactly the arrays"):
        Gallery.from_bytes(_npz(**arrays, extra=np.zeros(1)))
    with pytest.raises(TypeError, match="descriptors must be float32"):
        Gallery.from_bytes(_npz(**{**arrays, "descriptors": g.descriptors.astype(np.float64)}))
    with pytest.raises(TypeError, match="unicode string array"):
        Gallery.from_bytes(_npz(**{**arrays, "instance_ids": g.instance_ids.astype("S")}))
    shifted = np.roll(g.average_descriptors, 1, axis=0)
    with pytest.raises(ValueError, match="average_descriptors do not match"):
        Gallery.from_bytes(_npz(**{**arrays, "average_descriptors": shifted}))
    with pytest.raises(ValueError, match="average_ids do not match"):
        Gallery.from_bytes(_npz(**{**arrays, "average_ids": g.average_ids[::-1]}))


def test_not_an_npz_is_refused():
    with pytest.raises(ValueError, match="not a readable .npz"):
        Gallery.from_bytes(b"definitely not a zip file")
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    with pytest.raises(ValueError, match="must be an .npz archive"):
        Gallery.from_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="not a readable .npz|unreadable"):
        Gallery.from_bytes(make_gallery().to_bytes()[:200])
