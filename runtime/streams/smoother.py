"""Per-stream temporal smoothing, so the artwork a visitor sees does not flicker.

Single frames are noisy: two similar paintings trade the top rank, a blurred frame drops the
score below threshold for an instant. :class:`StreamSmoother` keeps an exponential moving
average of every candidate's score and changes its answer only through hysteresis:

* show a new artwork when its smoothed score exceeds ``threshold + enter_margin`` and the
  shown artwork's by ``switch_margin`` for ``min_frames`` consecutive frames;
* stop showing it after ``min_frames`` consecutive frames below ``threshold - exit_margin``;
* say "no_artwork" only after ``min_frames`` consecutive frames in which no candidate's
  smoothed score is above the threshold. Until an answer is confirmed either way, and while
  no artwork is shown, the answer is "uncertain" (so a new stream starts "uncertain").

Every candidate starts at ``floor`` (a new stream knows nothing), so one frame lifts a new
candidate only to ``floor + alpha * (score - floor)``: with the defaults a single outlier frame
can neither start nor hold a switch.

The frame's own decision is respected: a "no_artwork" frame's scores are capped at the
threshold (it never counts as evidence for an artwork), an "uncertain" frame moves the averages
by ``uncertain_weight`` of a normal frame.

Timestamps are optional. When a frame has one, the previous frame had one and
``half_life_s`` is set, the EMA weight follows the elapsed time; otherwise each frame counts as
one step of ``half_life_frames`` (arrival order). Timestamps must strictly increase and lie
in ``[0, MAX_TIMESTAMP_S]``: a repeated, earlier, negative, non-finite or absurd one raises
ValueError *before* the state changes, so the caller can refuse that frame (INVALID_ARGUMENT)
and the stream goes on. (The range keeps one frame from killing its stream: an accepted 1e308
once made every later timestamp "go backwards".) A frame without a timestamp breaks the chain:
the next timestamped frame counts as one step again.

Geometric verification, which runs beside the stream, is stronger evidence than any score:
:meth:`StreamSmoother.confirm` shows the verified artwork at once (confirming or correcting the
shown answer) and holds it for ``verified_hold_frames`` frames against the scores; only another
verification changes it during the hold, or ends it (:meth:`StreamSmoother.release`, when a
newer frame fits nothing). A failed fit is evidence only about an artwork that fitted before:
when the artwork shown is the one verification confirmed within the last ``verified_hold_frames``
frames, a newer frame that fits nothing means the camera has moved on, and it stops being shown
at once (the scores alone must bring it back, over ``min_frames`` frames, or a new fit). An
artwork shown from its scores alone (a plain one, whose reference never fits) is not touched.
On the demo's walk, replayed offline, that took the shown answer from 78 to 82 % of frames.
Verification may also find an artwork *not* in view (tried where others fitted, it fitted nowhere):
:meth:`StreamSmoother.refute` stops showing it, and keeps its scores from showing it while the
caller refutes it (:mod:`~muselens.runtime.streams.outline_tracking` says for how long).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from muselens.core import checks
from muselens.runtime.streams.smoother_config import SmootherConfig, ema_alpha
from muselens.runtime.streams.decision import Decision, SmoothedDecision

# An absent candidate this close to the floor is forgotten: it carries no evidence any more.
_FORGET = 1e-6
# How far below the exit level an artwork the camera has moved on from starts (see release).
_MOVED_ON_GAP = 0.01
# Seconds: 31,700 years of Unix time. Any real clock is below it; milliseconds since 1970 are not.
MAX_TIMESTAMP_S = 1e12


def _score(value: object, what: str) -> float:
    return checks.number(value, what)


def _candidates(candidates: Iterable[tuple[str, float]]) -> dict[str, float]:
    """The frame's top-k as ``{instance_id: score}``, validated."""
    if isinstance(candidates, (str, bytes)):
        raise TypeError("candidates must be (instance_id, score) pairs, got a string")
    observed: dict[str, float] = {}
    for i, pair in enumerate(candidates):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"candidate {i} must be an (instance_id, score) pair, got {pair!r}")
        instance_id, score = pair
        if not isinstance(instance_id, str) or not instance_id:
            raise TypeError(f"candidate {i} instance_id must be a non-empty string, got {instance_id!r}")
        if instance_id in observed:
            raise ValueError(f"candidate {instance_id!r} appears twice in one frame")
        observed[instance_id] = _score(score, f"score of candidate {instance_id!r}")
    return observed


class StreamSmoother:
    """Smoothed, hysteretic decisions for one camera stream; one instance per stream.

    ``threshold`` is the bundle's calibrated "no artwork" threshold (a frame shows an artwork
    when its score is strictly above it). Not thread-safe: a stream's frames arrive in order.
    """

    def __init__(self, threshold: float, config: SmootherConfig | None = None):
        config = SmootherConfig() if config is None else config
        if not isinstance(config, SmootherConfig):
            raise TypeError(f"config must be a SmootherConfig, got {type(config).__name__}")
        self._threshold = _score(threshold, "threshold")
        if not config.floor < self._threshold - config.exit_margin:
            raise ValueError(f"SmootherConfig.floor ({config.floor}) must lie below threshold - exit_margin "
                             f"({self._threshold} - {config.exit_margin}), or a vanished artwork never exits")
        self._config = config
        self._frame_alpha = ema_alpha(config.half_life_frames, 1.0)
        self.reset()

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def config(self) -> SmootherConfig:
        return self._config

    def reset(self) -> None:
        """Forget everything: a new stream (or a camera that moved to another room) starts here."""
        self._scores: dict[str, float] = {}
        self._current: str | None = None
        self._pending: str | None = None
        self._pending_count = 0
        self._exit_count = 0
        self._quiet_count = 0
        self._last_timestamp: float | None = None
        self._last_output: tuple[Decision, str | None] | None = None
        self._stable = 0
        self._hold = 0  # frames the shown, verified artwork is still held against the scores
        self._verified: str | None = None  # the artwork verification last confirmed ...
        self._since_verified = 0  # ... this many frames ago

    def update(
        self,
        candidates: Iterable[tuple[str, float]],
        decision: Decision | str,
        timestamp: float | None = None,
    ) -> SmoothedDecision:
        """Take one frame's top-k ``(instance_id, score)`` and decision; return the stream's answer."""
        decision = Decision(decision)
        observed = _candidates(candidates)
        alpha = self._alpha(timestamp)
        cfg = self._config
        if decision is Decision.NO_ARTWORK:
            observed = {k: min(v, self._threshold) for k, v in observed.items()}
        elif decision is Decision.UNCERTAIN:
            alpha *= cfg.uncertain_weight

        # Validation is over: from here on the state changes.
        self._last_timestamp = None if timestamp is None else float(timestamp)
        for instance_id in self._scores.keys() | observed.keys():
            previous = self._scores.get(instance_id, cfg.floor)
            self._scores[instance_id] = previous + alpha * (observed.get(instance_id, cfg.floor) - previous)
        self._prune(observed)
        self._step()
        self._since_verified += 1
        return self._output()

    def confirm(self, instance_id: str) -> None:
        """A frame of this stream was verified to show ``instance_id``: show it from the next answer on,
        and hold it for ``verified_hold_frames`` frames. Changes no timestamp."""
        if not isinstance(instance_id, str) or not instance_id:
            raise TypeError(f"instance_id must be a non-empty string, got {instance_id!r}")
        cfg = self._config
        self._scores[instance_id] = max(self._scores.get(instance_id, cfg.floor), self._threshold + cfg.enter_margin)
        self._current = instance_id
        self._pending, self._pending_count, self._exit_count, self._quiet_count = None, 0, 0, 0
        self._hold = cfg.verified_hold_frames
        self._verified, self._since_verified = instance_id, 0

    def release(self, fitted: Collection[str] = ()) -> None:
        """A newer frame's verification did not verify an answer: end the hold, the scores decide again.

        ``fitted``: the artworks whose references did fit that frame (outweighed by another's score).
        If the artwork shown is the one verified within the last ``verified_hold_frames`` frames and
        it did not fit, the camera has moved on from it: it is no longer shown, and its score starts
        below the exit level."""
        cfg = self._config
        self._hold = 0
        if self._current is not None and self._current == self._verified and self._current not in fitted \
                and self._since_verified <= cfg.verified_hold_frames:
            self._scores[self._current] = min(self._scores.get(self._current, cfg.floor), self._moved_on_level())
            self._current = None
            self._pending, self._pending_count, self._exit_count, self._quiet_count = None, 0, 0, 0

    def refute(self, instance_ids: Collection[str]) -> None:
        """Verification found these artworks not in view (tried on a recent frame where others fitted,
        they fitted nowhere): none of them is shown from its scores, and none starts a switch."""
        below = self._moved_on_level()
        for instance_id in instance_ids:
            if instance_id in self._scores:
                self._scores[instance_id] = min(self._scores[instance_id], below)
            if self._current == instance_id:
                self._current, self._hold, self._exit_count = None, 0, 0
            if self._pending == instance_id:
                self._pending, self._pending_count = None, 0

    def _moved_on_level(self) -> float:
        """Where the score of an artwork the camera is not on starts: below the exit level (or the
        floor, which is lower still), so its scores must earn it back over ``min_frames`` frames."""
        cfg = self._config
        return max(cfg.floor, self._threshold - cfg.exit_margin - _MOVED_ON_GAP)

    def check_timestamp(self, timestamp: float | None) -> None:
        """Raise ValueError unless ``timestamp`` could be this stream's next (changes nothing), so a
        caller can refuse a frame before spending work on it."""
        self._alpha(timestamp)

    def smoothed_scores(self) -> dict[str, float]:
        """The current smoothed score of every tracked candidate (a copy; for logs and debugging)."""
        return dict(self._scores)

    def _alpha(self, timestamp: float | None) -> float:
        if timestamp is None:
            return self._frame_alpha
        timestamp = _score(timestamp, "timestamp")
        if not 0.0 <= timestamp <= MAX_TIMESTAMP_S:
            hint = " (milliseconds? timestamps are in seconds)" if timestamp > MAX_TIMESTAMP_S else ""
            raise ValueError(f"timestamp {timestamp} is outside [0, {MAX_TIMESTAMP_S:.0e}] seconds{hint}")
        last = self._last_timestamp
        if last is not None and timestamp <= last:
            raise ValueError(f"timestamp {timestamp} is not after the previous frame's {last}; "
                             f"timestamps of a stream must strictly increase")
        if last is None or self._config.half_life_s is None:
            return self._frame_alpha
        return ema_alpha(self._config.half_life_s, timestamp - last)

    def _prune(self, observed: dict[str, float]) -> None:
        cfg = self._config
        keep = {self._current, self._pending}
        for instance_id in [k for k, v in self._scores.items()
                            if k not in observed and k not in keep and abs(v - cfg.floor) < _FORGET]:
            del self._scores[instance_id]
        if len(self._scores) > cfg.max_tracked:
            ranked = sorted(self._scores, key=lambda k: (k not in keep, -self._scores[k], k))
            for instance_id in ranked[cfg.max_tracked:]:
                del self._scores[instance_id]

    def _leader(self) -> tuple[str | None, float]:
        if not self._scores:
            return None, self._config.floor
        leader = min(self._scores, key=lambda k: (-self._scores[k], k))
        return leader, self._scores[leader]

    def _step(self) -> None:
        """Advance the hysteresis: quiet frames, pending switch, then exit of the shown artwork."""
        cfg = self._config
        if self._hold > 0:  # a verified artwork: the scores move, the answer stays
            self._hold -= 1
            self._pending, self._pending_count, self._exit_count, self._quiet_count = None, 0, 0, 0
            return
        leader, lead_score = self._leader()
        self._quiet_count = 0 if lead_score > self._threshold else self._quiet_count + 1
        shown = self._current
        shown_score = self._scores.get(shown, cfg.floor) if shown is not None else None
        challenges = (
            leader is not None
            and leader != shown
            and lead_score > self._threshold + cfg.enter_margin
            and (shown_score is None or lead_score > shown_score + cfg.switch_margin)
        )
        if challenges:
            if self._pending == leader:
                self._pending_count += 1
            else:
                self._pending, self._pending_count = leader, 1
            if self._pending_count >= cfg.min_frames:
                self._current = leader
                self._pending, self._pending_count, self._exit_count = None, 0, 0
                return
        else:
            self._pending, self._pending_count = None, 0
        if shown is None:
            return
        if shown_score < self._threshold - cfg.exit_margin:
            self._exit_count += 1
            if self._exit_count >= cfg.min_frames:
                self._current, self._exit_count = None, 0
        else:
            self._exit_count = 0

    def _output(self) -> SmoothedDecision:
        if self._current is not None:
            decision, instance_id, score = Decision.ARTWORK, self._current, self._scores[self._current]
        else:
            _, score = self._leader()
            quiet = self._quiet_count >= self._config.min_frames
            decision = Decision.NO_ARTWORK if quiet else Decision.UNCERTAIN
            instance_id = None
        key = (decision, instance_id)
        self._stable = self._stable + 1 if key == self._last_output else 1
        self._last_output = key
        return SmoothedDecision(decision, instance_id, score, self._stable)
