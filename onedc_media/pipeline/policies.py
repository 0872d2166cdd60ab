"""The built-in keyframe policies: ``source``, ``gop`` and ``scene``.

They are declared by the bundled ``policies`` plugin (``onedc_media_plugins.policies``)
through the same ``register_keyframe_policies`` hook a third-party plugin uses; this
module holds the implementations, imported only when a policy is used.

=========  ==============================================================================
policy     a frame starts a new GOP when ...
=========  ==============================================================================
source     the input flagged it as a keyframe (its own GOP structure is kept);
           ``max_gop`` > 0 also forces one every ``max_gop`` frames
gop        ``size`` frames have passed since the last keyframe (fixed GOP; 1 = all intra)
scene      its scene-change score is above ``threshold`` and at least ``min_gop`` frames
           have passed; ``max_gop`` > 0 forces one every ``max_gop`` frames
=========  ==============================================================================

The ``scene`` score is FFmpeg's ``scdet`` filter score, computed on a small luma
thumbnail (64 pixels wide) so that noise and resolution matter little: with ``mafd``
the mean absolute difference to the previous frame in percent of full scale,
``score = min(mafd, |mafd - previous mafd|)``, 0..100. Taking the change of ``mafd``
keeps steady fast motion (high but constant difference) from counting as a cut.
``threshold`` defaults to 10, ``scdet``'s default.

The first frame is always a keyframe: the caller enforces it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onedc_media.pipeline.policy import KeyframePolicy

__all__ = ["GopPolicy", "SceneCutPolicy", "SourcePolicy", "scene_score"]

_THUMB_WIDTH = 64


class SourcePolicy(KeyframePolicy):
    """Keep the input's keyframes (its GOP structure)."""

    def __init__(self, max_gop: int = 0, **options: Any) -> None:
        super().__init__(max_gop=max_gop, **options)
        self.max_gop = max_gop
        self._since = 0

    def is_keyframe(self, index: int, frame: np.ndarray, *, source_keyframe: bool) -> bool:
        key = index == 0 or source_keyframe or (0 < self.max_gop <= self._since)
        self._since = 1 if key else self._since + 1
        return key


class GopPolicy(KeyframePolicy):
    """A keyframe every ``size`` frames."""

    def __init__(self, size: int = 250, **options: Any) -> None:
        super().__init__(size=size, **options)
        self.size = size

    def is_keyframe(self, index: int, frame: np.ndarray, *, source_keyframe: bool) -> bool:
        return index % self.size == 0


def _thumbnail(frame: np.ndarray) -> np.ndarray:
    """Luma (BT.601 weights) of *frame* area-averaged to about 64 pixels wide, float32."""
    import cv2

    height, width = frame.shape[:2]
    gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    if width > _THUMB_WIDTH:
        new_w = _THUMB_WIDTH
        new_h = max(1, round(height * _THUMB_WIDTH / width))
        gray = cv2.resize(gray, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return gray.astype(np.float32)


def scene_score(
    previous: np.ndarray, current: np.ndarray, previous_mafd: float
) -> tuple[float, float]:
    """``(score, mafd)`` between two thumbnails (see the module docstring)."""
    mafd = float(np.mean(np.abs(current - previous))) * 100.0 / 255.0
    return min(mafd, abs(mafd - previous_mafd)), mafd


class SceneCutPolicy(KeyframePolicy):
    """A keyframe at each scene cut (FFmpeg ``scdet`` score above ``threshold``)."""

    def __init__(
        self, threshold: float = 10.0, min_gop: int = 8, max_gop: int = 250, **options: Any
    ) -> None:
        super().__init__(threshold=threshold, min_gop=min_gop, max_gop=max_gop, **options)
        self.threshold = threshold
        self.min_gop = min_gop
        self.max_gop = max_gop
        self._previous: np.ndarray | None = None
        self._mafd = 0.0
        self._since = 0
        #: score of the last frame seen (for inspection and tests)
        self.last_score = 0.0

    def is_keyframe(self, index: int, frame: np.ndarray, *, source_keyframe: bool) -> bool:
        thumb = _thumbnail(frame)
        score = 0.0
        if self._previous is not None and self._previous.shape == thumb.shape:
            score, self._mafd = scene_score(self._previous, thumb, self._mafd)
        elif self._previous is not None:  # the picture size changed: a cut
            score, self._mafd = 100.0, 0.0
        self._previous = thumb
        self.last_score = score
        key = (
            index == 0
            or (score > self.threshold and self._since >= self.min_gop)
            or (0 < self.max_gop <= self._since)
        )
        self._since = 1 if key else self._since + 1
        return key
