"""One tiny trained run, its museum, its exported models and its bundle, shared by the suite.

Training and exporting take seconds, so they happen once per session (export tests and the
runtime's service tests both use them); tests must not modify these files (copy them first).
The fixtures import torch lazily: runtime tests that use only ``tiny_bundle`` still run the
runtime itself without torch (the model was merely built with it).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import write_image

TINY = {
    "train_blocks": 2, "eval_short_side": 64,
    "stage1": {"epochs": 1, "batch_size": 4, "image_size": 64},
    "stage2": {"epochs": 1, "images_per_step": 2, "short_sides": [64]},
    "stage3": {"epochs": 1, "dim": 8, "k": 4, "short_side": 64, "triplets_per_step": 4},  # 2x2 feature cells
    # one epoch per stage: a pool would hold one view per photo; fresh draws keep the model the
    # export and runtime tests were written against
    "view_pool": {"stage1_views": 0, "stage2_views": 0},
}
# Five sizes with at least k=4 feature cells at stride 32: square, odd, 1:2, 2:1, a thin strip.
TINY_SIZES = ((64, 64), (65, 97), (64, 128), (128, 64), (33, 161))


def make_museum(root: Path, *, distractors: int = 2) -> Path:
    """3 artworks x 2 references, 1 query each, ``distractors`` distractors (seeded noise)."""
    seed = 100
    for iid in ("a0", "a1", "a2"):
        for k in range(2):
            write_image(root / "references" / iid / f"r{k}.jpg", seed := seed + 1)
        write_image(root / "queries" / iid / "q0.png", seed := seed + 1)
    for k in range(distractors):
        write_image(root / "distractors" / f"d{k}.jpg", seed := seed + 1)
    return root


@contextmanager
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def export_museum(tmp_path_factory) -> Path:
    return make_museum(tmp_path_factory.mktemp("export") / "museum")


@pytest.fixture(scope="session")
def run_dir(export_museum) -> Path:
    from muselens.training.train_config import load_config
    from muselens.training.run import TrainingRun

    out = export_museum.parent / "run"
    with _one_torch_thread():
        TrainingRun(export_museum, out, load_config(None, TINY), pretrained=False, progress=False).run()
    return out


@pytest.fixture(scope="session")
def trained(run_dir):
    from muselens.training.trained import TrainedModel

    return TrainedModel(run_dir)


@pytest.fixture(scope="session")
def fp32_model(trained, run_dir) -> Path:
    from muselens.export.onnx_export import export_onnx

    return export_onnx(trained, run_dir.parent / "models" / "fp32.onnx", sample_size=(64, 96))


@pytest.fixture(scope="session")
def fp16_model(fp32_model) -> Path:
    from muselens.export.precision import convert_fp16

    return convert_fp16(fp32_model, fp32_model.parent / "fp16.onnx")


@pytest.fixture(scope="session")
def int8_model(fp32_model, export_museum) -> Path:
    from muselens.runtime.engine import OrtDescriber
    from muselens.export.precision import calibration_images, quantize_int8
    from muselens.core.data.museum_dataset import MuseumDataset

    images = calibration_images(MuseumDataset.load(export_museum), OrtDescriber(fp32_model))
    return quantize_int8(fp32_model, fp32_model.parent / "int8.onnx", images)


@pytest.fixture(scope="session")
def tiny_bundle(run_dir) -> Path:
    """The tiny run exported as an fp32 bundle (threshold calibrated on its 2 distractors, phone views and
    generated photos of no artwork)."""
    from muselens.export.bundle import ExportOptions, export_bundle

    out = run_dir.parent / "tiny-bundle"
    options = ExportOptions(precisions=("fp32",), name="tiny", bundle_version="1.0.0",
                            parity_sizes=TINY_SIZES[:2], latency_runs=0)
    with _one_torch_thread():
        return export_bundle(run_dir, out, options=options, progress=lambda message: None).bundle


@pytest.fixture(scope="session")
def served(tiny_bundle):
    """The tiny bundle loaded for serving (ONNX Runtime on one CPU thread), torch-free."""
    from muselens.runtime.recognition.served_model import ServedModel, ServingConfig

    return ServedModel.load(tiny_bundle, ServingConfig(threads=1))


@pytest.fixture(scope="session")
def query_images(export_museum) -> list[bytes]:
    """The tiny museum's three query photos as PNG bytes (a0, a1, a2)."""
    return [(export_museum / "queries" / iid / "q0.png").read_bytes() for iid in ("a0", "a1", "a2")]


@pytest.fixture(scope="session")
def painted_bundle(run_dir, tmp_path_factory) -> Path:
    """The tiny run exported against painted references of the same artworks (a0, a1, a2: paintings 1-3,
    2 references each at two sizes), so the bundle's ORB features can verify photos of them. It keeps
    its vote index built (``vote_index="always"``); the tiny bundle, too small for "auto", does not."""
    from muselens.export.bundle import ExportOptions, export_bundle
    from tests.paintings import write_painting

    root = tmp_path_factory.mktemp("painted") / "museum"
    for n, iid in enumerate(("a0", "a1", "a2"), start=1):
        write_painting(root / "references" / iid / "r0.jpg", n)
        write_painting(root / "references" / iid / "r1.jpg", n, 240, 320)
        write_painting(root / "queries" / iid / "q0.png", n, 300, 400)
    options = ExportOptions(precisions=("fp32",), name="painted", bundle_version="1.0.0",
                            parity_sizes=TINY_SIZES[:2], latency_runs=0, non_artwork_photos=8, impostor_views=1,
                            vote_index="always")
    with _one_torch_thread():
        return export_bundle(run_dir, root.parent / "bundle", data=root, options=options,
                             progress=lambda message: None).bundle


@pytest.fixture(scope="session")
def painted(painted_bundle):
    """The painted bundle loaded for serving, torch-free."""
    from muselens.runtime.recognition.served_model import ServedModel, ServingConfig

    return ServedModel.load(painted_bundle, ServingConfig(threads=1))
