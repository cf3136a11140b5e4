"""Serving, torch-free: bundle loading, inference engines, recognition, explanation, streams, the
gRPC server and its client. It builds on :mod:`muselens.core` and never imports training or torch."""
