"""Fixed-point convolutions whose integer twin is exact on every machine.

Everything that decides a probability table or a symbol must give the same integers on
any CPU, thread count, batch size and device. Float convolutions do not: a different
kernel (oneDNN on/off, TF32, another BLAS blocking) moves a scale by one ulp, flips a
table index and desynchronises the rANS decoder for the rest of the picture.

So the parsing networks are *integer networks by construction*:

* weights are integers ``w_int`` with a per-output-channel power-of-two scale ``2**-k``;
* activations are integers with ``frac`` fractional bits (scale ``2**-frac``);
* a layer computes ``acc = sum(w_int * x_int) + b_int`` exactly, then re-quantises with
  an arithmetic shift (``floor(acc / 2**s)``), ReLU and a clamp to ``act_bits``.

The integers are held in float64 and the sums are evaluated as float64 GEMMs
(``unfold`` + ``matmul``): every product and partial sum is an integer below ``2**53``,
so any summation order, blocking or FMA gives the exact result, and a shift is a
multiplication by a power of two followed by ``floor`` -- also exact. :func:`IntConv2d.check_bounds` proves the bound
from the exported weights. Training uses :class:`QConv2d`, which simulates the same
arithmetic in float with straight-through rounding (quantisation-aware training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from onedc_media.errors import ModelError

__all__ = ["QConv2d", "IntConv2d", "round_ste", "floor_ste", "EXACT_LIMIT"]

#: Largest magnitude a float64 represents with every integer below it exact.
EXACT_LIMIT = 2**53


def round_ste(x: Tensor) -> Tensor:
    """Round half away from zero in the forward pass, identity gradient."""
    r = torch.sign(x) * torch.floor(torch.abs(x) + 0.5)
    return x + (r - x).detach()


def floor_ste(x: Tensor) -> Tensor:
    return x + (torch.floor(x) - x).detach()


def _round_half_away(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


class QConv2d(nn.Conv2d):
    """A convolution trained to be exported as an exact :class:`IntConv2d`.

    Args:
        in_frac: fractional bits of the (integer) input activations.
        out_frac: fractional bits of the output activations.
        weight_bits: signed bits of the integer weights (per-output-channel power-of-two scale).
        act_bits: signed bits the output is clamped to.
        relu: apply ReLU after re-quantisation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        in_frac: int,
        out_frac: int,
        weight_bits: int = 8,
        act_bits: int = 20,
        relu: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.in_frac = in_frac
        self.out_frac = out_frac
        self.weight_bits = weight_bits
        self.act_bits = act_bits
        self.relu = relu

    def weight_exponents(self) -> Tensor:
        """Per-output-channel ``k`` with ``max|w| * 2**k <= 2**(bits-1) - 1``."""
        qmax = 2 ** (self.weight_bits - 1) - 1
        maxabs = self.weight.detach().abs().amax(dim=(1, 2, 3)).clamp_min(2.0**-24)
        return torch.floor(torch.log2(qmax / maxabs)).clamp(-8, 30)

    def forward(self, x: Tensor) -> Tensor:
        k = self.weight_exponents()
        wscale = torch.pow(2.0, k).view(-1, 1, 1, 1)
        w_q = round_ste(self.weight * wscale) / wscale
        bscale = torch.pow(2.0, k + self.in_frac)
        b_q = round_ste(self.bias * bscale) / bscale
        acc = F.conv2d(x, w_q, b_q, padding=self.padding)
        out = floor_ste(acc * 2.0**self.out_frac) / 2.0**self.out_frac
        if self.relu:
            out = F.relu(out)
        lim = (2 ** (self.act_bits - 1) - 1) / 2.0**self.out_frac
        return out.clamp(-lim, lim)

    def export(self) -> IntConv2d:
        """The exact integer twin of this layer."""
        k = self.weight_exponents().to(torch.float64)
        w = self.weight.detach().to(torch.float64)
        w_int = _round_half_away(w * torch.pow(2.0, k).view(-1, 1, 1, 1)).to(torch.int64)
        b_int = _round_half_away(
            self.bias.detach().to(torch.float64) * torch.pow(2.0, k + self.in_frac)
        ).to(torch.int64)
        shift = (k + self.in_frac - self.out_frac).to(torch.int64)
        layer = IntConv2d(
            weight=w_int,
            bias=b_int,
            shift=shift,
            relu=self.relu,
            act_bits=self.act_bits,
            in_bits=self.act_bits,
        )
        layer.check_bounds()
        return layer


@dataclass
class IntConv2d:
    """An integer convolution evaluated exactly (see the module docstring).

    ``shift[c] >= 0`` divides by ``2**shift`` with floor; a negative shift multiplies.
    """

    weight: Tensor  # int64 [O, I, k, k]
    bias: Tensor  # int64 [O]
    shift: Tensor  # int64 [O]
    relu: bool
    act_bits: int
    in_bits: int

    @property
    def kernel_size(self) -> int:
        return int(self.weight.shape[-1])

    def check_bounds(self) -> None:
        """Raise ``ModelError`` unless every accumulator provably stays below 2**53."""
        x_max = 2 ** (self.in_bits - 1)
        worst = self.weight.abs().sum(dim=(1, 2, 3)).max().item() * x_max
        worst += self.bias.abs().max().item() if self.bias.numel() else 0
        if worst >= EXACT_LIMIT:
            raise ModelError(
                f"integer conv {tuple(self.weight.shape)} may overflow exact float64 "
                f"range (worst case {worst:.3g})"
            )

    def __post_init__(self) -> None:
        # float64 copies: every value is an integer (or a power of two) far below 2**53.
        self._w = self.weight.reshape(self.weight.shape[0], -1).to(torch.float64)
        self._b = self.bias.to(torch.float64).view(1, -1, 1)
        self._scale = torch.pow(2.0, -self.shift.to(torch.float64)).view(1, -1, 1)
        lim = float(2 ** (self.act_bits - 1) - 1)
        self._lo, self._hi = (0.0 if self.relu else -lim), lim

    def __call__(self, x: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
        """Apply to ``x`` [B, I, H, W]: float64 holding integers (CPU).

        :param grid: ``(r, c)``: compute only the outputs at rows ``r::2`` and columns
            ``c::2`` (one quad-context stage); the result is then [B, O, n] in raster order.
        :returns: float64 integers, [B, O, H, W] (or [B, O, n]).
        """
        if x.dtype != torch.float64:
            raise TypeError("IntConv2d expects float64 (integer-valued) input")
        B, C, H, W = x.shape
        k = self.kernel_size
        if grid is None:
            cols = x.reshape(B, C, H * W) if k == 1 else F.unfold(x, k, padding=k // 2)
        else:
            r, c = grid
            hg, wg = len(range(r, H, 2)), len(range(c, W, 2))
            if k == 1:
                cols = x[:, :, r::2, c::2].reshape(B, C, hg * wg)
            else:
                p = k // 2
                xp = F.pad(x, (p, p, p, p))
                taps = [xp[:, :, r + dy : r + dy + 2 * hg : 2, c + dx : c + dx + 2 * wg : 2]
                        for dy in range(k) for dx in range(k)]
                cols = torch.stack(taps, 2).reshape(B, C * k * k, hg * wg)  # unfold's order
        acc = torch.matmul(self._w, cols) + self._b  # exact: integer operands, |sums| < 2**53
        out = torch.floor(acc * self._scale).clamp_(self._lo, self._hi)  # exact shift
        return out.view(B, -1, H, W) if grid is None else out

    def state(self, prefix: str) -> dict[str, Tensor]:
        meta = torch.tensor([int(self.relu), self.act_bits, self.in_bits], dtype=torch.int64)
        wmax = int(self.weight.abs().max()) if self.weight.numel() else 0
        wdtype = torch.int8 if wmax < 2**7 else torch.int16 if wmax < 2**15 else torch.int32
        return {
            f"{prefix}.weight": self.weight.to(wdtype).contiguous(),
            f"{prefix}.bias": self.bias.contiguous(),
            f"{prefix}.shift": self.shift.contiguous(),
            f"{prefix}.meta": meta,
        }

    @classmethod
    def from_state(cls, tensors: dict[str, Tensor], prefix: str) -> IntConv2d:
        try:
            meta = tensors[f"{prefix}.meta"].tolist()
            layer = cls(
                weight=tensors[f"{prefix}.weight"].to(torch.int64),
                bias=tensors[f"{prefix}.bias"].to(torch.int64),
                shift=tensors[f"{prefix}.shift"].to(torch.int64),
                relu=bool(meta[0]),
                act_bits=int(meta[1]),
                in_bits=int(meta[2]),
            )
        except (KeyError, IndexError) as exc:
            raise ModelError(f"parsing weights lack {prefix}: {exc}") from None
        if layer.weight.ndim != 4 or layer.weight.shape[-1] != layer.weight.shape[-2]:
            raise ModelError(f"parsing weights: {prefix}.weight has shape {tuple(layer.weight.shape)}")
        if layer.bias.shape[0] != layer.weight.shape[0] or layer.shift.shape[0] != layer.weight.shape[0]:
            raise ModelError(f"parsing weights: {prefix} bias/shift do not match the weight")
        layer.check_bounds()
        return layer

