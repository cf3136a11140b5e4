"""muselens: recognise a museum's artworks from a camera frame, and show why.

The source folders at the top of the repository are installed under this namespace:
``muselens.core`` (the shared base: dataset format, synthetic museum, metrics, preprocessing),
``muselens.runtime`` (torch-free serving: bundles, engines, the gRPC service and its client),
``muselens.training`` (torch: backbones, baselines, training),
``muselens.export`` (ONNX/TensorRT engines and bundles) and ``muselens.benchmarks``.
Dependencies point one way: core <- runtime | training <- export <- benchmarks, the CLI; runtime and
training never import each other (the import-linter contracts in pyproject.toml).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("muselens")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
