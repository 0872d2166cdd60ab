"""Finite scalar quantisation of the hyper-latent ``z`` and its fixed-length bits.

``z`` is bounded per channel with ``tanh`` and rounded to ``levels[c]`` values (FSQ,
Mentzer et al. 2023). The decoder sees only integers, and the bits are written without
any probability model: the hyper-latent is immune to float drift by construction.
A token (one spatial position, all channels) is a mixed-radix number below
``prod(levels)`` written in ``ceil(log2(prod(levels)))`` bits (14 for ``[4] * 7``).

The integer value handed to the parsing network for level ``i`` of ``L`` is
``2*i - (L-1)`` (odd, symmetric: ``-3, -1, 1, 3`` for ``L = 4``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from onedc_media.errors import BitstreamError

__all__ = ["FSQ", "pack_tokens", "unpack_tokens", "bits_per_token"]


def bits_per_token(levels: Sequence[int]) -> int:
    return max(1, math.ceil(math.log2(math.prod(levels))))


class FSQ(nn.Module):
    """FSQ with straight-through rounding; returns level indices and symmetric integers."""

    def __init__(self, levels: Sequence[int]) -> None:
        super().__init__()
        if not levels or any(int(lv) < 2 for lv in levels):
            raise ValueError("FSQ levels must all be >= 2")
        self.levels = tuple(int(lv) for lv in levels)
        lv = torch.tensor(self.levels, dtype=torch.float32)
        self.register_buffer("_levels", lv, persistent=False)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(indices, z_int)``: long level indices and float symmetric integers.

        ``z_int`` carries straight-through gradients to ``z``.
        """
        lv = self._levels.view(1, -1, 1, 1).to(z.dtype)
        # Map to (0, L-1) then round: bounded, L values, symmetric around (L-1)/2.
        half = (lv - 1) / 2
        bounded = (torch.tanh(z) * (1 - 1e-3) + 1) * half  # in (0, L-1)
        rounded = bounded + (torch.round(bounded) - bounded).detach()
        indices = torch.round(bounded.detach()).long()
        z_int = 2 * rounded - (lv - 1)
        return indices, z_int

    def indices_to_int(self, indices: Tensor) -> Tensor:
        lv = self._levels.view(1, -1, 1, 1).to(device=indices.device, dtype=torch.int64)
        return 2 * indices.long() - (lv - 1)


def pack_tokens(indices: np.ndarray, levels: Sequence[int]) -> bytes:
    """Pack level indices [C, h, w] into fixed-length tokens (raster order)."""
    indices = np.asarray(indices, dtype=np.int64)
    c = len(levels)
    if indices.ndim != 3 or indices.shape[0] != c:
        raise ValueError(f"expected [{c}, h, w] indices")
    tokens = np.zeros(indices.shape[1:], dtype=np.int64)
    for ch, lv in enumerate(levels):
        tokens = tokens * lv + indices[ch]
    nbits = bits_per_token(levels)
    flat = tokens.ravel().astype(">u8")
    bits = np.unpackbits(flat.view(np.uint8).reshape(-1, 8), axis=1)[:, 64 - nbits :]
    return np.packbits(bits.ravel()).tobytes()


def unpack_tokens(data: bytes, levels: Sequence[int], h: int, w: int) -> np.ndarray:
    """Inverse of :func:`pack_tokens`; raises ``BitstreamError`` on a size mismatch."""
    nbits = bits_per_token(levels)
    n = h * w
    need = (n * nbits + 7) // 8
    if len(data) != need:
        raise BitstreamError(f"z chunk has {len(data)} bytes, expected {need}")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: n * nbits].reshape(n, nbits)
    padded = np.zeros((n, 64), dtype=np.uint8)
    padded[:, 64 - nbits :] = bits
    tokens = np.packbits(padded, axis=1).view(">u8").astype(np.int64).ravel()
    if np.any(tokens >= math.prod(levels)):
        raise BitstreamError("z token out of range")
    out = np.empty((len(levels), n), dtype=np.int64)
    for ch in range(len(levels) - 1, -1, -1):
        out[ch] = tokens % levels[ch]
        tokens //= levels[ch]
    return out.reshape(len(levels), h, w)
