"""Distortion metrics for evaluation: PSNR (RGB and luma), MS-SSIM, and LPIPS / DISTS
when their weights are already on this machine.

All functions take two HxWx3 uint8 RGB arrays (reference first) and return a float.

Definitions
-----------
``psnr_rgb``
    ``10 log10(255^2 / MSE)`` with the MSE over all pixels and the three channels
    (the CompressAI convention). Identical images give ``inf``.
``psnr_y``
    The same on luma: ``Y = Kr R + Kg G + Kb B`` in full range (0..255), computed in
    float from both images without rounding. The default coefficients are BT.601's
    (0.299, 0.587, 0.114: the JFIF / JPEG luma that image-codec papers mean by
    "PSNR-Y"); ``matrix="bt709"`` uses (0.2126, 0.7152, 0.0722).
``ms_ssim``
    Multi-scale SSIM of Wang et al. (2003) through ``pytorch-msssim``: 5 scales, an 11-tap
    Gaussian window (sigma 1.5), weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
    ``data_range=255``, on the RGB channels (averaged). It needs both sides above 160
    pixels; smaller images give ``nan`` (see :func:`ms_ssim_supported`).
    ``ms_ssim_db`` is ``-10 log10(1 - MS-SSIM)``.
``lpips`` / ``dists``
    Only where the ``lpips`` / ``DISTS_pytorch`` package *and* its torchvision backbone
    weights (AlexNet / VGG-16) are already in the local torch hub cache: nothing is
    ever downloaded. :func:`perceptual_status` says which are usable and why not.

``ciede2000`` / ``colour_error``
    Colour difference in CIE Lab (D65) through scikit-image (``skimage.color.rgb2lab``,
    ``deltaE_ciede2000``), the images read as sRGB. ``mean`` is the mean CIEDE2000 over
    all pixels. ``worst_block`` compares each 16x16 block's *mean* Lab colour between the
    two images and takes the largest CIEDE2000: blur and lost texture (which PSNR and
    MS-SSIM already see) average out, a shifted colour does not, so it says whether
    some object changed colour. Edge blocks smaller than 16x16 count like the others.

PSNR is numpy only; MS-SSIM, LPIPS and DISTS import torch on first use; the colour
metrics import scikit-image on first use.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from onedc_media.errors import InvalidImageError

__all__ = [
    "COLOUR_BLOCK",
    "ColourError",
    "LUMA_COEFFICIENTS",
    "MS_SSIM_MIN_SIDE",
    "PerceptualStatus",
    "ciede2000",
    "colour_error",
    "load_perceptual",
    "ms_ssim",
    "ms_ssim_db",
    "ms_ssim_supported",
    "mse",
    "perceptual_status",
    "psnr",
    "psnr_rgb",
    "psnr_y",
    "to_luma",
]

LumaMatrix = Literal["bt601", "bt709"]

#: (Kr, Kg, Kb) of the luma equations.
LUMA_COEFFICIENTS: dict[str, tuple[float, float, float]] = {
    "bt601": (0.299, 0.587, 0.114),
    "bt709": (0.2126, 0.7152, 0.0722),
}

#: pytorch-msssim's 5-scale MS-SSIM needs min(H, W) > (11 - 1) * 2**4.
MS_SSIM_MIN_SIDE = 161

PEAK = 255.0


def _check_pair(ref: np.ndarray, test: np.ndarray) -> None:
    for name, arr in (("reference", ref), ("test", test)):
        if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[2] != 3:
            raise InvalidImageError(f"{name} image must be an HxWx3 array")
        if arr.dtype != np.uint8:
            raise InvalidImageError(f"{name} image must be uint8, got {arr.dtype}")
    if ref.shape != test.shape:
        raise InvalidImageError(f"image sizes differ: {ref.shape} vs {test.shape}")


def mse(ref: np.ndarray, test: np.ndarray) -> float:
    """Mean squared error over every pixel and channel, in 8-bit code values."""
    _check_pair(ref, test)
    diff = ref.astype(np.float64) - test.astype(np.float64)
    return float(np.mean(diff * diff))


def psnr(mse_value: float, peak: float = PEAK) -> float:
    """PSNR in dB for a mean squared error; ``inf`` when it is 0."""
    if mse_value <= 0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse_value)


def psnr_batch(a, b, peak: float = 1.0):  # (Tensor, Tensor) -> Tensor
    """PSNR in dB of each sample of two torch batches ``[B, ...]`` on a *peak* scale (what
    training logs; the MSE is floored at 1e-10 so identical samples stay finite)."""
    mse_value = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * (peak * peak / mse_value).log10()


def psnr_rgb(ref: np.ndarray, test: np.ndarray) -> float:
    """PSNR over the R, G and B channels together, in dB."""
    return psnr(mse(ref, test))


def to_luma(rgb: np.ndarray, matrix: LumaMatrix = "bt601") -> np.ndarray:
    """Full-range luma (float64, 0..255) of an HxWx3 RGB array."""
    try:
        kr, kg, kb = LUMA_COEFFICIENTS[matrix]
    except KeyError:
        raise ValueError(f"matrix must be one of {sorted(LUMA_COEFFICIENTS)}") from None
    x = rgb.astype(np.float64)
    return kr * x[..., 0] + kg * x[..., 1] + kb * x[..., 2]


def psnr_y(ref: np.ndarray, test: np.ndarray, matrix: LumaMatrix = "bt601") -> float:
    """PSNR of the luma plane (BT.601 coefficients unless *matrix* says otherwise)."""
    _check_pair(ref, test)
    diff = to_luma(ref, matrix) - to_luma(test, matrix)
    return psnr(float(np.mean(diff * diff)))


def ms_ssim_supported(height: int, width: int) -> bool:
    """Whether 5-scale MS-SSIM is defined for a picture of this size."""
    return min(height, width) >= MS_SSIM_MIN_SIDE


def _to_tensor(arr: np.ndarray):  # -> torch.Tensor
    import torch

    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].float()


def ms_ssim(ref: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM (pytorch-msssim, standard parameters) in [0, 1]; ``nan`` below 161 px."""
    _check_pair(ref, test)
    if not ms_ssim_supported(*ref.shape[:2]):
        return math.nan
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    with torch.no_grad():
        value = _ms_ssim(_to_tensor(ref), _to_tensor(test), data_range=PEAK, size_average=True)
    return float(value)


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on a dB scale, ``-10 log10(1 - value)``: spreads the values near 1."""
    if math.isnan(value):
        return math.nan
    if value >= 1.0:
        return math.inf
    return -10.0 * math.log10(1.0 - value)


# -- LPIPS / DISTS: only with local weights --------------------------------------------


@dataclass(frozen=True)
class PerceptualStatus:
    """Whether an optional perceptual metric can run here, and if not, why."""

    name: str
    available: bool
    reason: str  #: what is missing, or where the weights were found


#: metric -> (import name, PyPI name, torchvision backbone checkpoint file)
_PERCEPTUAL = {
    "lpips": ("lpips", "lpips", "alexnet-owt-7be5be79.pth"),
    "dists": ("DISTS_pytorch", "dists-pytorch", "vgg16-397923af.pth"),
}


def _torch_hub_dir() -> Path:
    """``torch.hub.get_dir()`` without importing torch."""
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"], "hub")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache, "torch", "hub")


def perceptual_status() -> list[PerceptualStatus]:
    """Check, without importing or downloading anything, which of LPIPS / DISTS can run."""
    out = []
    for name, (module, pypi, backbone) in _PERCEPTUAL.items():
        weights = _torch_hub_dir() / "checkpoints" / backbone
        if importlib.util.find_spec(module) is None:
            out.append(PerceptualStatus(name, False, f"package {pypi!r} is not installed"))
        elif not weights.is_file():
            out.append(
                PerceptualStatus(
                    name,
                    False,
                    f"backbone weights {weights} are not on this machine (nothing is downloaded)",
                )
            )
        else:
            out.append(PerceptualStatus(name, True, f"weights from {weights}"))
    return out


_LOCK = threading.Lock()
_MODELS: dict[str, object] = {}


def load_perceptual(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """Return ``metric(ref, test) -> float`` (lower is better) for ``"lpips"`` or
    ``"dists"``. Call only where :func:`perceptual_status` says it is available: the
    backbone is then read from the local torch hub cache, never downloaded."""
    import torch

    with _LOCK:
        model = _MODELS.get(name)
        if model is None:
            if name == "lpips":
                import lpips

                model = lpips.LPIPS(net="alex", verbose=False).eval()
            elif name == "dists":
                from DISTS_pytorch import DISTS

                model = DISTS().eval()
            else:
                raise ValueError(f"unknown perceptual metric {name!r}")
            _MODELS[name] = model

    def metric(ref: np.ndarray, test: np.ndarray) -> float:
        _check_pair(ref, test)
        a, b = _to_tensor(ref) / PEAK, _to_tensor(test) / PEAK
        with torch.no_grad():
            if name == "lpips":  # LPIPS expects [-1, 1]
                return float(model(a * 2 - 1, b * 2 - 1).mean())
            return float(model(a, b).mean())

    return metric


# -- colour: CIEDE2000 through scikit-image ---------------------------------------------

#: Side of the blocks whose mean colours ``colour_error`` compares.
COLOUR_BLOCK = 16


@dataclass(frozen=True)
class ColourError:
    """Colour error of a decoded picture against its original (CIEDE2000 units).

    ``blocks`` holds the CIEDE2000 of every block's mean colour (rows x columns of
    :data:`COLOUR_BLOCK`-pixel blocks); ``worst`` is the (row, column) of the largest.
    """

    mean: float
    worst_block: float
    blocks: np.ndarray
    worst: tuple[int, int]


def _lab(rgb: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(rgb.astype(np.float64) / PEAK)


def ciede2000(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 (HxW float64) between two sRGB uint8 pictures."""
    from skimage.color import deltaE_ciede2000

    _check_pair(ref, test)
    return deltaE_ciede2000(_lab(ref), _lab(test))


def _block_means(lab: np.ndarray, block: int) -> np.ndarray:
    """Mean of every ``block`` x ``block`` window (edge windows may be smaller)."""
    h, w = lab.shape[:2]
    rows, cols = np.arange(0, h, block), np.arange(0, w, block)
    sums = np.add.reduceat(np.add.reduceat(lab, rows, axis=0), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w)))
    return sums / counts[..., None]


def colour_error(ref: np.ndarray, test: np.ndarray, block: int = COLOUR_BLOCK) -> ColourError:
    """Mean CIEDE2000 over pixels and the worst block's CIEDE2000 of mean colours."""
    from skimage.color import deltaE_ciede2000

    _check_pair(ref, test)
    if block < 1:
        raise ValueError("block must be at least 1 pixel")
    lab_ref, lab_test = _lab(ref), _lab(test)
    mean = float(np.mean(deltaE_ciede2000(lab_ref, lab_test)))
    blocks = deltaE_ciede2000(_block_means(lab_ref, block), _block_means(lab_test, block))
    r, c = np.unravel_index(int(np.argmax(blocks)), blocks.shape)
    return ColourError(mean, float(blocks[r, c]), blocks, (int(r), int(c)))
