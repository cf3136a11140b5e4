"""Recognising a frame, gRPC-free: gallery search, decisions, heatmaps, the served model and its hot swap."""
