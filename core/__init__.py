"""The shared base of every other layer (numpy and OpenCV only; no torch, no grpc).

The museum dataset format and its checks (:mod:`~muselens.core.data`), the seeded synthetic
museum and visitor's walk (:mod:`~muselens.core.synthetic`), retrieval metrics and the
"no artwork" threshold (:mod:`~muselens.core.metrics`), the one image preprocessing
(:mod:`~muselens.core.preprocess`), files written whole and the machine a measurement ran on.
Training and the serving runtime both build on it; it imports neither.
"""
