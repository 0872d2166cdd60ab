"""The latent residual layer: integer corrections to the latent the VAE decoder receives.

Why it exists: the top of a small model's curve is capped by synthesis and the one-step
U-Net, not by the VAE or the bits: the VAE decoder draws far better pictures from a latent
fitted to the picture than the top rate point reaches, and finer quantisation of ``y``
buys little (``benchmarks/quality_ceiling.py`` measures both; the model card has the
numbers). The residual layer skips the bottleneck: the encoder codes ``e`` (integers, one
per latent sample at 1/8 of the picture) and the decoder adds ``step * e`` to the U-Net's
latent before the VAE decoder::

    latent = U-Net(synthesis(y_hat, z)) + step * e          # then VAE decoder -> pixels

``e`` is found by gradient descent through the VAE decoder (the same trade-off as
refinement: ``4 * MSE + L1 + lmbda * bpp``) with a per-channel Gaussian rate proxy, then
rounded. Each latent channel is coded with one of the model's own Gaussian tables (the
cheapest for that channel's symbols), so the layer needs no new weights, its bits come
from the same exact rANS path, and files without it are unchanged.

Chunk layout (the last chunk of a picture whose header flag says it has one)::

    offset  size  field
    0       2     step code s (u16 LE, >= 1): step = s / 4096
    2       C     table index per latent channel (u8; 255 = the channel is all zero)
    2+C     ...   rANS words (u32 LE) of the coded channels' symbols: grouped by table index,
                  lowest first; within a table, channel by channel, each in raster order
                  (the coder's order for ``y``). No coded channel: no words.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from onedc_media.entropy.coder import TableCoder
from onedc_media.errors import BitstreamError

__all__ = [
    "DECODERS",
    "ENHANCE_LEVELS",
    "ENHANCE_MAX",
    "ENHANCE_STEP",
    "STEP_DENOMINATOR",
    "ResidualConfig",
    "enhance_config",
    "enhance_weight",
    "fit_residual",
    "pack_residual",
    "residual_steps",
    "unpack_residual",
]

#: The step is stored as an integer multiple of ``1 / STEP_DENOMINATOR``.
STEP_DENOMINATOR = 4096
_ZERO_CHANNEL = 255
_STEP = struct.Struct("<H")
_CELL = 8  # pixels per latent sample


#: ``--opt enhance=N``: the layer's rate weight as a fraction of the rate point's own
#: (``RATE_SCALE * lmbda_q``, what refinement and training use), so ``-q`` still orders
#: the layered pictures. Chosen on held-out photos (model card): 0.4 with the step below
#: gave the most dB per added bit of the settings tried; lower spends more. Each whole
#: level halves the weight; a fractional level (``enhance=1.5``) lies between its
#: neighbours on that geometric scale, so the layer's bits can be set finer than the levels.
ENHANCE_LEVELS: dict[int, float] = {1: 0.4, 2: 0.2, 3: 0.1}
ENHANCE_MAX = float(max(ENHANCE_LEVELS))
#: The residual step of the ``enhance`` levels (0.1 and 0.2 measured about as efficient).
ENHANCE_STEP = 0.15
#: ``ResidualConfig.decoder``'s choices.
DECODERS = ("best", "fine", "model")


@dataclass(frozen=True)
class ResidualConfig:
    """How the encoder fits the residual layer.

    :param step: quantisation step of the residual, in latent units (onedc-tiny's latent
        samples have standard deviations of about 0.15-0.45).
    :param lmbda: weight of the bits (per pixel) against the distortion; lower spends more.
    :param steps: gradient steps per window.
    :param lr: Adam's step, in quantisation bins.
    :param window: side of the region fitted at once, pixels (multiple of 64).
    :param halo: decoded context around a window, pixels (multiple of 64).
    :param autocast: bfloat16 autocast for the search (``None``: where the device has
        bfloat16 in hardware; see :func:`~onedc_media.model.refine.bf16_native`).
    :param decoder: which VAE decoder draws the layer when the model has a fine decoder
        (:mod:`~onedc_media.model.fine_decoder`): ``"best"`` fits the layer through both
        and keeps, per picture, the one with the lower ``distortion + lmbda * bpp`` (the
        fine decoder draws detail the model's cannot, and smooth pictures worse); ``"fine"``
        or ``"model"`` fit through that one only. Pictures drawn by the model's decoder
        keep the fine-decoder flag clear (as written before the fine decoder existed).
    :param start: where the search starts: ``"clean"``, the VAE encoder's latent of the
        picture (the encoder has the picture; measured 2-5 % fewer bits at the same
        quality), or ``"base"``, the U-Net's latent (no correction).
    """

    step: float = ENHANCE_STEP
    lmbda: float = 0.1  #: ``enhance=1`` at a rate point of ``lmbda`` 1 (onedc-tiny's q6)
    steps: int = 60
    lr: float = 0.05
    window: int = 512
    halo: int = 64
    autocast: bool | None = None
    decoder: str = "best"
    start: str = "clean"

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"residual decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.start not in ("clean", "base"):
            raise ValueError(f"residual start must be 'clean' or 'base', got {self.start!r}")
        if not 1 <= round(self.step * STEP_DENOMINATOR) <= 0xFFFF:
            raise ValueError(f"residual step must be in [{1 / STEP_DENOMINATOR}, {0xFFFF / STEP_DENOMINATOR}]")
        if self.lmbda < 0 or self.steps < 1 or self.lr <= 0:
            raise ValueError("residual lmbda must be >= 0, steps >= 1 and lr > 0")
        if self.window % 64 or self.window < 64 or self.halo % 64 or self.halo < 0:
            raise ValueError("residual window and halo must be multiples of 64 (window >= 64)")

    @property
    def step_code(self) -> int:
        """What the bitstream stores; the encoder fits with ``step_code / STEP_DENOMINATOR``."""
        return round(self.step * STEP_DENOMINATOR)


def enhance_weight(level: float) -> float:
    """The rate weight of ``--opt enhance=level`` (1 .. ``ENHANCE_MAX``, fractions too), as
    a fraction of the rate point's own: ``ENHANCE_LEVELS`` at whole levels, geometric between."""
    if not 1.0 <= level <= ENHANCE_MAX:
        raise ValueError(f"enhance level {level:g} does not exist (1..{ENHANCE_MAX:g})")
    return ENHANCE_LEVELS[1] * 2.0 ** (1.0 - level)


def enhance_config(level: float, point_lmbda: float) -> ResidualConfig:
    """The residual layer of ``--opt enhance=level`` at a rate point whose config ``lmbda``
    is *point_lmbda*."""
    from onedc_media.model.refine import RATE_SCALE

    return ResidualConfig(step=ENHANCE_STEP, lmbda=enhance_weight(level) * RATE_SCALE * point_lmbda)


def _spans(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def residual_steps(height: int, width: int, config: ResidualConfig) -> int:
    """Gradient steps one :func:`fit_residual` takes on a *height* x *width* picture."""
    win = config.window // _CELL
    return config.steps * len(_spans(-(-height // _CELL), win)) * len(_spans(-(-width // _CELL), win))


def fit_residual(decode: Callable[[Tensor], Tensor], image: Tensor, base: Tensor, height: int, width: int,
                 config: ResidualConfig, progress: Callable[[int], None] | None = None,
                 start: Tensor | None = None) -> Tensor:
    """The residual symbols for one picture: int64 [C, h, w] (:func:`pack_residual` clamps
    them to the tables' support).

    :param decode: the VAE decoder that will draw the picture (latent -> pixels in
        [-1, 1]); its weights must not require gradients.
    :param image: the padded picture in [-1, 1], [1, 3, H, W] on the model's device.
    :param base: the latent the decoder computes without the layer, [1, C, H/8, W/8].
    :param height: rows of picture pixels (the rest is padding, which does not count).
    :param width: columns of picture pixels.
    :param start: where the search starts, latent units like *base* (``None``: at *base*).
    """
    from onedc_media.model.onedc import zero_mean_bits
    from onedc_media.model.refine import bf16_native

    step = config.step_code / STEP_DENOMINATOR
    dev = image.device
    autocast = bf16_native(dev) if config.autocast is None else bool(config.autocast)
    autocast = autocast and image.dtype == torch.float32 and dev.type in ("cpu", "cuda")
    wdtype = image.dtype  # the decoder's; the search itself runs in float32 (Adam's eps
    # underflows in float16, and masked entries would become 0/0)
    base = base.detach().float()
    image = image.float()
    _, C, Hl, Wl = base.shape
    r = torch.zeros_like(base)  # the working copy, in bins
    if start is not None:
        r = ((start.detach().float() - base) / step).clamp(-64, 64)
    # the rate proxy's noise: the same file every run on a CPU (CUDA backward passes may
    # round differently from run to run)
    gen = torch.Generator(device=dev).manual_seed(0)
    halo, win = config.halo // _CELL, config.window // _CELL
    ih, iw = -(-height // _CELL), -(-width // _CELL)
    done = 0
    with torch.enable_grad():
        for r0, r1 in _spans(ih, win):
            for c0, c1 in _spans(iw, win):
                R0, C0 = max(0, r0 - halo), max(0, c0 - halo)
                R1, C1 = min(Hl, r1 + halo), min(Wl, c1 + halo)
                keep = torch.zeros(1, 1, R1 - R0, C1 - C0, device=dev, dtype=base.dtype)
                keep[..., r0 - R0 : r1 - R0, c0 - C0 : c1 - C0] = 1
                pix = torch.zeros(1, 1, (R1 - R0) * _CELL, (C1 - C0) * _CELL, device=dev, dtype=base.dtype)
                pix[..., (r0 - R0) * _CELL : min(r1 * _CELL, height) - R0 * _CELL,
                    (c0 - C0) * _CELL : min(c1 * _CELL, width) - C0 * _CELL] = 1
                n_pix = float(pix.sum())
                x = image[..., R0 * _CELL : R1 * _CELL, C0 * _CELL : C1 * _CELL]
                b = base[..., R0:R1, C0:C1]
                w = r[..., R0:R1, C0:C1].clone().requires_grad_(True)
                log_scale = torch.zeros(C, device=dev, requires_grad=True)
                opt = torch.optim.Adam([w, log_scale], lr=config.lr)
                for _ in range(config.steps):
                    wq = w + (w.round() - w).detach()
                    noise = torch.rand(w.shape, generator=gen, device=dev, dtype=w.dtype) - 0.5
                    bits = (zero_mean_bits((w + noise).abs(), log_scale.exp().view(1, -1, 1, 1)) * keep).sum()
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                        x_hat = decode((b + step * wq).to(wdtype))
                    d = (x_hat.to(x.dtype).clamp(-1, 1) - x) * pix
                    loss = (4 * d.square().sum() + d.abs().sum()) / (n_pix * x.shape[1]) \
                        + config.lmbda * bits / n_pix
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    w.grad.mul_(keep)  # the halo is context, not ours to change
                    opt.step()
                    done += 1
                    if progress is not None:
                        progress(done)
                k = keep.bool().expand_as(w)
                r[..., R0:R1, C0:C1] = torch.where(k, w.detach(), r[..., R0:R1, C0:C1])
    e = torch.round(r)  # as the search rounded
    return e[0].to(torch.int64).cpu()


def pack_residual(symbols: Tensor | np.ndarray, step_code: int, coder: TableCoder,
                  freqs: np.ndarray) -> bytes:
    """The chunk body for int symbols [C, h, w]: each channel with its cheapest table."""
    sym = np.asarray(symbols, dtype=np.int64)
    sym = np.clip(sym, -coder.support, coder.support)
    if not 1 <= step_code <= 0xFFFF:
        raise ValueError("step code out of range")
    logp = np.log2(np.asarray(freqs, dtype=np.float64))  # costs up to a constant per symbol
    tables = np.full(sym.shape[0], _ZERO_CHANNEL, dtype=np.uint8)
    coded, idx = [], []
    for c in range(sym.shape[0]):
        if not sym[c].any():
            continue
        hist = np.bincount((sym[c].ravel() + coder.support), minlength=2 * coder.support + 1)
        best = int(np.argmin(-(logp @ hist)))
        tables[c] = best
        coded.append(sym[c].ravel())
        idx.append(np.full(sym[c].size, best, dtype=np.int64))
    words = coder.encode(np.concatenate(coded), np.concatenate(idx)) if coded else b""
    return _STEP.pack(step_code) + tables.tobytes() + words


def unpack_residual(body: bytes, coder: TableCoder, channels: int, height: int, width: int) -> Tensor:
    """Chunk body -> ``step * e`` as float32 [channels, height, width] (latent samples)."""
    if len(body) < _STEP.size + channels:
        raise BitstreamError(f"residual chunk too short ({len(body)} bytes)")
    (code,) = _STEP.unpack_from(body, 0)
    if code == 0:
        raise BitstreamError("residual step is zero")
    tables = np.frombuffer(body, dtype=np.uint8, count=channels, offset=_STEP.size).astype(np.int64)
    live = tables != _ZERO_CHANNEL
    if np.any(tables[live] >= coder.levels):
        raise BitstreamError(f"residual table index out of range (this model has {coder.levels} tables)")
    words = body[_STEP.size + channels :]
    n = height * width
    sym = np.zeros((channels, n), dtype=np.int64)
    if live.any():
        idx = np.repeat(tables[live], n)
        sym[live] = coder.decode(words, idx).reshape(-1, n)
    elif words:
        raise BitstreamError("residual chunk has symbols but no coded channel")
    e = torch.from_numpy(sym).view(channels, height, width)
    return e.to(torch.float32) * (code / STEP_DENOMINATOR)
