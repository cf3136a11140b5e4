"""The open set on real photos: a slice of mcv-paintings and 10 paintings it does not hold.

The sets live beside the repository (``../shared/datasets``, never copied into it); these tests
skip, saying so, where they are absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from muselens.cli import main as cli

DATASETS = Path(__file__).resolve().parents[3] / ".." / "shared" / "datasets"
PAINTINGS, UNKNOWN = DATASETS / "mcv-paintings", DATASETS / "mcv-paintings-unknown"
ARTWORKS = 20

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (PAINTINGS.is_dir() and UNKNOWN.is_dir()),
                       reason=f"real photo sets not found at {DATASETS.resolve()} (mcv-paintings, "
                              "mcv-paintings-unknown): they live beside the repository, not in it"),
]


@pytest.fixture(scope="module")
def twenty_paintings(tmp_path_factory) -> Path:
    """The first 20 paintings that have queries, linked (not copied) into a museum of their own."""
    root = tmp_path_factory.mktemp("mcv") / "museum"
    ids = sorted(p.name for p in (PAINTINGS / "queries").iterdir() if p.is_dir())[:ARTWORKS]
    for split in ("references", "queries"):
        for iid in ids:
            (root / split / iid).mkdir(parents=True)
            for photo in sorted((PAINTINGS / split / iid).iterdir()):
                (root / split / iid / photo.name).symlink_to(photo)
    return root


def test_im_gem_on_real_paintings_accepts_queries_and_reports_unknown_paintings(twenty_paintings, tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli(["evaluate", str(twenty_paintings), "--method", "im-gem", "--size", "224", "--unknown", str(UNKNOWN),
                "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())["results"][0]
    queries = result["counts"]["queries"]
    # One reference per painting: 3 clusters per painting cannot be made, and the table says why.
    assert result["clustering"]["3"]["skipped"].startswith(f"cannot make {3 * ARTWORKS} clusters from")
    assert result["clustering"]["1"]["nmi"] is not None
    assert "NMI×3/F1×3 of im-gem not measured" in printed
    shipped = result["shipped"]
    assert shipped["n_unknown"] == 10 and shipped["n_queries"] == queries and shipped["distractor_far"] is None
    assert shipped["set_by"] == "calibrated" and 0.0 < shipped["threshold"] < 1.0
    # Pretrained IM-GeM finds nearly every crop (README: 95 % mP@1 on the whole set); the shipped
    # threshold must keep some of them, and accept a smaller share of paintings it does not hold.
    assert result["retrieval"]["mp_at_1"] >= 0.8
    assert shipped["correct_accept_rate"] > 0.0
    assert shipped["unknown_far"] < shipped["correct_accept_rate"]
