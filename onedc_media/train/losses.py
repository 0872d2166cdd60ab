"""Training losses of OneDC (Stage I) and of the tiny VAE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["block_colour", "distortion", "ms_ssim_per_sample"]


def ms_ssim_per_sample(a01: Tensor, b01: Tensor) -> Tensor:
    """MS-SSIM per sample (pytorch-msssim).

    pytorch-msssim needs a side above 160 px for its 5 scales; smaller pictures (training
    crops, tests) fall back to single-scale SSIM.
    """
    from pytorch_msssim import ms_ssim, ssim

    if min(a01.shape[-2:]) <= 160:
        return ssim(a01, b01, data_range=1.0, size_average=False)
    return ms_ssim(a01, b01, data_range=1.0, size_average=False)


def block_colour(x_hat: Tensor, x: Tensor, block: int = 16) -> Tensor:
    """Per-sample L1 between the mean colours of ``block`` x ``block`` windows, [0, 1] scale.

    Pixel losses weigh a whole object's shifted colour like the same energy of lost
    texture; this term sees only the block means, where blur averages out and a colour
    shift does not (the eval's worst-block CIEDE2000 measures the same thing).
    """
    a = F.avg_pool2d(x_hat.clamp(-1, 1), block, ceil_mode=True)
    b = F.avg_pool2d(x, block, ceil_mode=True)
    return (a - b).abs().flatten(1).mean(1) / 2


def distortion(x_hat: Tensor, x: Tensor, *, l1: float = 1.0, mse: float = 0.0,
               msssim: float = 0.0, colour: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-sample distortion of images in [-1, 1]; returns (loss [B], parts).

    ``colour`` weighs :func:`block_colour`.
    """
    a = (x_hat.clamp(-1, 1) + 1) / 2 if msssim else None
    b = (x + 1) / 2
    parts: dict[str, Tensor] = {}
    loss = torch.zeros(x.shape[0], device=x.device)
    if l1:
        parts["l1"] = (x_hat - x).abs().flatten(1).mean(1) / 2  # on the [0, 1] scale
        loss = loss + l1 * parts["l1"]
    if mse:
        parts["mse"] = (x_hat - x).pow(2).flatten(1).mean(1) / 4
        loss = loss + mse * parts["mse"]
    if msssim:
        parts["msssim"] = ms_ssim_per_sample(a, b)
        loss = loss + msssim * (1 - parts["msssim"])
    if colour:
        parts["colour"] = block_colour(x_hat, x)
        loss = loss + colour * parts["colour"]
    return loss, parts


def latent_l1(a: Tensor, b: Tensor) -> Tensor:
    return F.l1_loss(a, b, reduction="none").flatten(1).mean(1)
