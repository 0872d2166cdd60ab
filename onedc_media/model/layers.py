"""Small building blocks shared by the OneDC networks (float, synthesis side)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ResBlock", "conv3x3", "UpShuffle", "Down"]


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """conv-GELU-conv with an identity skip (no normalisation: batch-size independent)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.gelu(self.conv1(x)))


class UpShuffle(nn.Module):
    """x2 upsampling by a 3x3 conv to 4C channels and pixel-shuffle (no checkerboard)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = conv3x3(cin, 4 * cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


class Down(nn.Module):
    """x2 downsampling: strided 3x3 conv then GELU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = conv3x3(cin, cout, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.conv(x))
