"""One tiny trained run, its museum and its exported models, shared by every export test.

Training and exporting take seconds, so they happen once per session; tests must not modify
these files (copy them first).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_image

TINY = {
    "train_blocks": 2, "eval_short_side": 64,
    "stage1": {"epochs": 1, "batch_size": 4, "image_size": 64},
    "stage2": {"epochs": 1, "images_per_step": 2, "short_sides": [64]},
    "stage3": {"epochs": 1, "dim": 8, "short_side": 64, "triplets_per_step": 4},
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


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread: on 2 shared cores torch's thread pool competes with ONNX Runtime's
    and with other processes, and small tensors gain nothing from it (seconds become tens)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def export_museum(tmp_path_factory) -> Path:
    return make_museum(tmp_path_factory.mktemp("export") / "museum")


@pytest.fixture(scope="session")
def run_dir(export_museum) -> Path:
    from muselens.training.config import load_config
    from muselens.training.run import TrainingRun

    out = export_museum.parent / "run"
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
    from muselens.export.engine import OrtDescriber
    from muselens.export.precision import calibration_images, quantize_int8
    from muselens.runtime.data.museum import MuseumDataset

    images = calibration_images(MuseumDataset.load(export_museum), OrtDescriber(fp32_model))
    return quantize_int8(fp32_model, fp32_model.parent / "int8.onnx", images)
