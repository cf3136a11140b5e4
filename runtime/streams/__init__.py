"""What a stream shows over time (no torch, no grpc).

:class:`StreamSmoother` turns each frame's top-k scores and decision into a steady answer
(:class:`SmoothedDecision`): an EMA of every candidate's score plus hysteresis on showing,
switching and dropping an artwork, tuned by :class:`SmootherConfig`.
:class:`~muselens.runtime.streams.outline_tracking.OutlineTracker` carries verified artworks'
outlines from frame to frame by the camera's motion (OpenCV optical flow).
"""

from __future__ import annotations

from muselens.runtime.streams.smoother_config import SmootherConfig, ema_alpha
from muselens.runtime.streams.decision import Decision, SmoothedDecision
from muselens.runtime.streams.smoother import StreamSmoother

__all__ = ["Decision", "SmoothedDecision", "SmootherConfig", "StreamSmoother", "ema_alpha"]
