"""Small synthetic museums with one reference per artwork, and a folder of artworks it lacks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from muselens.core.synthetic.museum import make_museum

SIZE = 160  # long side: small photos keep the random-weight CNN fast


def _museum(root: Path, *, distractors: int, seed: int = 0, references: int = 1) -> Path:
    make_museum(root, instances=5, references=references, queries=1, distractors=distractors, seed=seed, size=SIZE,
                workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def one_reference_museum(tmp_path_factory) -> Path:
    """5 artworks, 1 reference and 1 query each, no distractors: k-means cannot make 3 clusters each."""
    return _museum(tmp_path_factory.mktemp("one-ref") / "museum", distractors=0)


@pytest.fixture(scope="module")
def museum_with_distractors(tmp_path_factory) -> Path:
    """5 artworks, 2 references (so the instance-averaged gallery differs from the references) and
    1 query each, 3 distractors."""
    return _museum(tmp_path_factory.mktemp("two-ref-d") / "museum", distractors=3, references=2)


@pytest.fixture(scope="module")
def unknown_folder(tmp_path_factory) -> Path:
    """4 photos of artworks no museum above holds (another seed's references), flat in one folder."""
    other = _museum(tmp_path_factory.mktemp("other") / "museum", distractors=0, seed=1)
    folder = tmp_path_factory.mktemp("unknown") / "unknown"
    folder.mkdir()
    for path in sorted((other / "references").glob("*/*.jpg"))[:4]:
        shutil.copy(path, folder / path.name)
    return folder
