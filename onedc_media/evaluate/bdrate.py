"""Bjontegaard deltas: the average rate (or quality) difference between two RD curves.

G. Bjontegaard, "Calculation of average PSNR differences between RD-curves", VCEG-M33
(2001), with the piecewise cubic (PCHIP) interpolation of VCEG-AL22 / JVET CTC in place of
the original cubic polynomial fit::

    BD-rate:  log-rate as a PCHIP function of quality, per curve
              -> integrate both over the quality range the two curves share
              -> mean difference d  -> (exp(d) - 1) * 100 %   (negative = test saves bits)
    BD-PSNR:  quality as a PCHIP function of log-rate
              -> integrate over the shared log-rate range -> mean difference (dB)

The integrals are exact (scipy's ``PchipInterpolator.integrate``). The base of the
logarithm does not matter: PCHIP commutes with scaling the values. The standard uses 4
points per curve; 2 or more are accepted here. Points are sorted by rate, and quality must
rise strictly with rate (see :func:`monotone_envelope` to get there from noisy data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from onedc_media.errors import OdcError

__all__ = ["BjontegaardError", "bd_quality", "bd_rate", "monotone_envelope"]


class BjontegaardError(OdcError, ValueError):
    """Two RD curves cannot be compared: too few points, bad values, or no overlap."""


def _curve(rate: Sequence[float], quality: Sequence[float], what: str):
    r = np.asarray(rate, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if r.shape != q.shape:
        raise BjontegaardError(f"{what}: {r.size} rates but {q.size} quality values")
    if r.size < 2:
        raise BjontegaardError(f"{what}: need at least 2 RD points, got {r.size}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise BjontegaardError(f"{what}: rates and quality values must be finite")
    if np.any(r <= 0):
        raise BjontegaardError(f"{what}: rates must be positive")
    order = np.argsort(r, kind="stable")
    r, q = r[order], q[order]
    if np.any(np.diff(r) <= 0):
        raise BjontegaardError(f"{what}: two points have the same rate")
    if np.any(np.diff(q) <= 0):
        raise BjontegaardError(f"{what}: quality must increase strictly with rate")
    return np.log(r), q


def _overlap(a: np.ndarray, b: np.ndarray, axis: str, unit: str) -> tuple[float, float]:
    lo, hi = max(a[0], b[0]), min(a[-1], b[-1])
    if hi <= lo:
        if unit == "bpp":
            a, b = np.exp(a), np.exp(b)
        unit = f" {unit}" if unit else ""
        raise BjontegaardError(
            f"the {axis} ranges do not overlap: anchor {a[0]:.4g}..{a[-1]:.4g}{unit}, "
            f"test {b[0]:.4g}..{b[-1]:.4g}{unit}; no Bjontegaard delta exists "
            "(choose qualities that give overlapping curves)"
        )
    return float(lo), float(hi)


def _mean_gap(
    xa: np.ndarray, ya: np.ndarray, xt: np.ndarray, yt: np.ndarray, lo: float, hi: float
) -> float:
    from scipy.interpolate import PchipInterpolator

    ia = PchipInterpolator(xa, ya).integrate(lo, hi)
    it = PchipInterpolator(xt, yt).integrate(lo, hi)
    return float((it - ia) / (hi - lo))


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
) -> float:
    """Bjontegaard delta rate of *test* against *anchor*, in percent.

    ``-25.0`` means the test codec needs 25 % fewer bits than the anchor for the same
    quality, on average over the quality range both curves cover.

    :raises BjontegaardError: fewer than 2 points, non-monotonic curves, or quality
        ranges that do not overlap.
    """
    la, qa = _curve(anchor_rate, anchor_quality, "anchor")
    lt, qt = _curve(test_rate, test_quality, "test")
    lo, hi = _overlap(qa, qt, "quality", "")
    return (math.exp(_mean_gap(qa, la, qt, lt, lo, hi)) - 1.0) * 100.0


def bd_quality(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
) -> float:
    """Bjontegaard delta quality (BD-PSNR when the quality is PSNR) of *test* against
    *anchor*, in the quality's unit, averaged over the log-rate range both cover.

    :raises BjontegaardError: as :func:`bd_rate`, when the rate ranges do not overlap.
    """
    la, qa = _curve(anchor_rate, anchor_quality, "anchor")
    lt, qt = _curve(test_rate, test_quality, "test")
    lo, hi = _overlap(la, lt, "rate", "bpp")
    return _mean_gap(la, qa, lt, qt, lo, hi)


def monotone_envelope(
    rate: Sequence[float], quality: Sequence[float]
) -> tuple[list[float], list[float], int]:
    """Drop the points of a measured curve that Bjontegaard's method cannot use.

    Sorts by rate and keeps a point only if its quality is above every cheaper point's
    (a codec's top qualities often saturate, and averages can wobble). Non-finite points
    are dropped too. Returns ``(rates, qualities, dropped)``.
    """
    pts = sorted(
        (float(r), float(q))
        for r, q in zip(rate, quality, strict=True)
        if math.isfinite(r) and math.isfinite(q) and r > 0
    )
    out_r: list[float] = []
    out_q: list[float] = []
    for r, q in pts:
        if out_r and (r <= out_r[-1] or q <= out_q[-1]):
            continue
        out_r.append(r)
        out_q.append(q)
    return out_r, out_q, len(rate) - len(out_r)
