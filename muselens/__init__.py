"""muselens: recognise a museum's artworks from a camera frame, and show why.

The source folders at the top of the repository are installed under this namespace:
``muselens.runtime`` (torch-free: dataset format, metrics, the service),
``muselens.training`` (torch: backbones, baselines, training),
``muselens.export`` (ONNX/TensorRT engines and bundles) and ``muselens.benchmarks``.
Dependencies point one way: runtime <- training <- export.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("muselens")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
