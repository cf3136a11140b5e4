"""A small Python client for the muselens service, and the ``recognize`` / ``stream`` commands."""

from __future__ import annotations

from muselens.runtime.client.client import Backoff, MuselensClient, frame_message, image_message

__all__ = ["Backoff", "MuselensClient", "frame_message", "image_message"]
