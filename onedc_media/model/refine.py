"""Encoder-side refinement: optimise one picture's ``y`` against the fixed decoder.

The analysis network is an amortised guess: one forward pass that must serve every
picture, and at the tiny scale it is far from the best ``y`` the decoder could use (the
"amortisation gap", Campos et al. 2019; Yang et al. 2020 close it the same way). Given
the picture, a few dozen gradient steps on ``y`` through the float decoder find latents
that decode better at about the same bits. Only the encoder changes: the bitstream
format, the decoder and the model hash are untouched, so a refined file decodes with any
decoder of the same weights, and its bits still come from the exact integer path.

The objective is the model's own Stage I trade-off at the rate point
(``RATE_SCALE * lmbda_q * bpp + 4 * MSE + L1``, pictures in [-1, 1]). The rate term is
the discretised Gaussian of the integer parsing model's means and tables, recomputed
from the current symbols at every step (no gradient through the parsing model): its
value is the bits of the rounded symbols, its gradient the smooth one of the unrounded
``y`` (rounded values alone give no pull towards zero; unrounded values alone undercount
symbols just past a rounding boundary, where refinement then spends bits it does not
see). The decoder sees the rounded symbols through a straight-through estimator.

Large pictures are refined in windows of ``window`` pixels with a ``halo`` of context
that is decoded but not changed, so memory stays bounded at any size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from onedc_media.entropy.fixedpoint import round_ste
from onedc_media.model.onedc import zero_mean_bits

__all__ = ["RATE_SCALE", "RefineConfig", "bf16_native", "refine_latents", "refine_steps"]

#: Weight of the rate term relative to the model config's ``lmbda`` (Stage I's ``rate_scale``).
RATE_SCALE = 0.25
_CELL = 16  # pixels per y cell
_TOKEN = 4  # y cells per z token (side)


@dataclass(frozen=True)
class RefineConfig:
    """How hard the encoder works on one picture.

    :param steps: gradient steps per window (0: no refinement).
    :param lr: Adam's step in gained-``y`` units (one quantisation bin is 1.0).
    :param window: side of the region refined at once, pixels (multiple of 64).
    :param halo: decoded context around a window, pixels (multiple of 64).
    :param autocast: run the decoder in bfloat16 autocast while searching (``None``: where
        the device computes bfloat16 natively, :func:`bf16_native`; only for float32
        engines, an engine already in a lower precision searches in it). The search only
        needs directions, so it is faster at the same result (the model card measures
        it); what is coded is still exact, and the decoder is unchanged.
    """

    steps: int = 30
    lr: float = 0.02
    window: int = 512
    halo: int = 64
    autocast: bool | None = None

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError("refine steps must be >= 0")
        if self.window % 64 or self.window < 64 or self.halo % 64 or self.halo < 0:
            raise ValueError("refine window and halo must be multiples of 64 (window >= 64)")


def _spans(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def bf16_native(device: torch.device) -> bool:
    """Whether *device* has bfloat16 arithmetic in hardware: CUDA compute capability 8.0
    (Ampere) or newer; a CPU whose flags (Linux ``/proc/cpuinfo``) list ``avx512_bf16`` or
    ``amx_bf16``. Not torch's own checks: ``torch.cuda.is_bf16_supported()`` and oneDNN's
    also say yes where bfloat16 is emulated, and slower than float32."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    return False


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def refine_steps(height: int, width: int, config: RefineConfig) -> int:
    """Gradient steps :func:`refine_latents` takes on a *height* x *width* picture (the
    total a progress bar counts to): ``steps`` per window."""
    win = config.window // _CELL
    return config.steps * len(_spans(-(-height // _CELL), win)) * len(_spans(-(-width // _CELL), win))


def refine_latents(engine, image: np.ndarray, enc, q: int, config: RefineConfig = RefineConfig(),
                   progress: Callable[[int], None] | None = None):
    """Return ``enc`` (an :class:`~onedc_media.model.engine.EncodedLatents` of *image*)
    with ``y`` refined for rate point *q* (0-based); ``z`` is kept.

    :param engine: the :class:`~onedc_media.model.engine.OneDCEngine` that will code it.
    :param image: the picture the latents were analysed from, HxWx3 uint8 RGB.
    :param progress: called after each gradient step (of any window).
    """
    if config.steps == 0:
        return enc
    from onedc_media.model.engine import EncodedLatents
    from onedc_media.model.onedc import pad_to_multiple

    engine.model.requires_grad_(False)  # gradients for y only (inference never needs the others)
    x = pad_to_multiple(engine._to_tensor([image])).to(engine.device, engine.dtype)
    z_int = engine.z_int(enc.z_idx)
    gain = engine.gain(q)
    y_g = (enc.y.to(torch.float64) * gain).float()  # the working copy, gained
    _, Hy, Wy = y_g.shape
    refiner = _Refiner(engine, q, config, progress)
    halo, win = config.halo // _CELL, config.window // _CELL
    ih, iw = -(-enc.height // _CELL), -(-enc.width // _CELL)  # y cells that hold picture pixels
    with torch.enable_grad():
        for r0, r1 in _spans(ih, win):
            for c0, c1 in _spans(iw, win):
                # the window plus its halo, aligned to z tokens (the z grid crops with it)
                R0, C0 = max(0, r0 - halo) // _TOKEN * _TOKEN, max(0, c0 - halo) // _TOKEN * _TOKEN
                R1 = min(Hy, -(-(r1 + halo) // _TOKEN) * _TOKEN)
                C1 = min(Wy, -(-(c1 + halo) // _TOKEN) * _TOKEN)
                keep = torch.zeros(1, Hy, Wy, dtype=torch.bool)
                keep[:, r0:r1, c0:c1] = True
                # the window's picture pixels, in region coordinates: what distortion counts
                pix = torch.zeros(1, 1, (R1 - R0) * _CELL, (C1 - C0) * _CELL, device=x.device, dtype=x.dtype)
                pix[..., (r0 - R0) * _CELL : min(r1 * _CELL, enc.height) - R0 * _CELL,
                    (c0 - C0) * _CELL : min(c1 * _CELL, enc.width) - C0 * _CELL] = 1
                y_g[:, R0:R1, C0:C1] = refiner.window(
                    y_g[:, R0:R1, C0:C1].clone(),
                    z_int[..., R0 // _TOKEN : R1 // _TOKEN, C0 // _TOKEN : C1 // _TOKEN],
                    x[..., R0 * _CELL : R1 * _CELL, C0 * _CELL : C1 * _CELL], keep[:, R0:R1, C0:C1], pix,
                )
    # cells never refined (padding) keep their exact analysed values
    touched = torch.zeros(1, Hy, Wy, dtype=torch.bool)
    touched[:, :ih, :iw] = True
    y = torch.where(touched, (y_g.to(torch.float64) / gain).float(), enc.y)
    return EncodedLatents(y, enc.z_idx, enc.width, enc.height)


class _Refiner:
    """One rate point's objective and optimiser settings, applied window by window."""

    def __init__(self, engine, q: int, config: RefineConfig, progress: Callable[[int], None] | None) -> None:
        self.model, self.P, self.q, self.config, self.progress = engine.model, engine.parsing, q, config, progress
        self.frac = self.P.config.act_frac
        self.lam = RATE_SCALE * float(engine.model.config.rate_points[q]["lmbda"])
        self.scales = torch.tensor(self.P.config.table.scales(), dtype=torch.float32)
        # y_hat = (symbol + mu) / gain: what ungain computes, up to its fixed point
        self.inv_gain = (1.0 / engine.gain(q)).float()
        self.done = 0
        dev = engine.device
        self.autocast = bf16_native(dev) if config.autocast is None else bool(config.autocast)
        self.autocast = self.autocast and engine.dtype == torch.float32 and dev.type in ("cpu", "cuda")

    def _gaussians(self, h: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Means and scales the integer parsing model gives the current symbols of ``y``."""
        stages, _ = self.P.quantize(h, y, self.q)
        M, H, W = y.shape
        mu = torch.zeros(M, H * W, dtype=torch.float32)
        sc = torch.zeros(M, H * W, dtype=torch.float32)
        for st in stages:
            mu[:, st.pos] = (st.mu_g / 2**self.frac).float()
            sc[:, st.pos] = self.scales[st.index]
        return mu.view(M, H, W), sc.view(M, H, W)

    def window(self, y0: Tensor, z_int: Tensor, x: Tensor, keep: Tensor, pix: Tensor) -> Tensor:
        """Refine the ``keep`` cells of one region's gained ``y0`` [M, H, W]."""
        cfg = self.config
        h = self.P.hyper_features(z_int)
        z_in = z_int.to(x.device, x.dtype)
        n_pix = float(pix.sum())
        y = y0.clone().requires_grad_(True)
        opt = torch.optim.Adam([y], lr=cfg.lr)
        for step in range(cfg.steps):
            with torch.no_grad():
                mu, sc = self._gaussians(h, y.detach())
            v = y - mu
            vh = round_ste(v)
            smooth = zero_mean_bits(v.abs(), sc)
            bits = zero_mean_bits(vh.detach().abs(), sc) + smooth - smooth.detach()
            bpp = (bits * keep).sum() / n_pix
            y_hat = ((vh + mu) * self.inv_gain)[None].to(x.device, x.dtype)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                x_hat = self.model.synthesize(y_hat, z_in)
            d = (x_hat.to(x.dtype).clamp(-1, 1) - x) * pix
            loss = (4 * d.square().sum() + d.abs().sum()) / (n_pix * x.shape[1]) + self.lam * bpp.to(x.device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            y.grad.mul_(keep)  # the halo is context, not ours to change
            opt.step()
            for g in opt.param_groups:  # linear decay to a tenth
                g["lr"] = cfg.lr * (1 - 0.9 * (step + 1) / cfg.steps)
            self.done += 1
            if self.progress is not None:
                self.progress(self.done)
        return torch.where(keep, y.detach(), y0)
