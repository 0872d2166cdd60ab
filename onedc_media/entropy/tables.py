"""Gaussian probability tables for ``y`` and the integer rule that picks one.

``y`` symbols are coded with one of ``levels`` discretised zero-mean Gaussians whose
scales are log-spaced between ``scale_min`` and ``scale_max`` (as in CompressAI's
``GaussianConditional``). The parsing network predicts a log-scale as an integer with
``frac`` fractional bits; the table index is ``searchsorted(thresholds, log_scale)``
against integer thresholds, so choosing a table involves no float at all.

The probabilities are quantised here, once, to integers summing to ``2**precision``
(each at least 1, so every symbol in ``[-support, support]`` stays codable) and stored
with the model. The runtime coder receives exactly representable probabilities, so the
tables it builds do not depend on how any machine evaluates ``erf``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

__all__ = ["ScaleTableSpec", "build_tables"]


@dataclass(frozen=True)
class ScaleTableSpec:
    """Parameters of the table family (part of the model config)."""

    scale_min: float = 0.11
    scale_max: float = 64.0
    levels: int = 64
    support: int = 255  #: symbols are clamped to [-support, support]
    frac: int = 8  #: fractional bits of the integer log-scale
    precision: int = 24  #: probabilities are integers summing to 2**precision

    def scales(self) -> np.ndarray:
        return np.exp(np.linspace(np.log(self.scale_min), np.log(self.scale_max), self.levels))

    def log_bounds(self) -> tuple[float, float]:
        return float(np.log(self.scale_min)), float(np.log(self.scale_max))


def build_tables(spec: ScaleTableSpec) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(thresholds int64 [levels-1], freqs int64 [levels, 2*support+1])``.

    Index ``i`` is chosen for integer log-scales in ``[thresholds[i-1], thresholds[i])``:
    the thresholds are the log-midpoints between neighbouring scales.
    """
    scales = spec.scales()
    logs = np.log(scales)
    mids = (logs[:-1] + logs[1:]) / 2
    thresholds = np.ceil(mids * 2.0**spec.frac).astype(np.int64)
    n = 2 * spec.support + 1
    k = np.arange(-spec.support, spec.support + 1, dtype=np.float64)
    total = 1 << spec.precision
    freqs = np.empty((spec.levels, n), dtype=np.int64)
    for i, s in enumerate(scales):
        upper = ndtr((k + 0.5) / s)
        lower = ndtr((k - 0.5) / s)
        # Symmetric evaluation avoids cancellation in the upper tail.
        upper_t = ndtr(-(k - 0.5) / s)
        lower_t = ndtr(-(k + 0.5) / s)
        pmf = np.where(k > 0, upper_t - lower_t, upper - lower)
        pmf = np.maximum(pmf, 0.0)
        pmf /= pmf.sum()
        f = np.floor(pmf * (total - n)).astype(np.int64) + 1
        f[spec.support] += total - f.sum()  # remainder to the mode (k = 0)
        freqs[i] = f
    return thresholds, freqs
