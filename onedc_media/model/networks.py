"""The float networks of OneDC around the entropy layer.

Data flow (see DESIGN.md)::

    x -> VAE encoder (latent, 1/8) --+
    x -> 8x8 patch embedding (1/8) --+-> Analysis -> y (1/16), sem (1/16)
    (y, sem) -> HyperEncoder -> z (1/64) -> FSQ
    z_hat -> SemanticAdaptor -> tokens (B, h*w, D) for cross-attention, sem_up (1/16)
    (y_hat, sem_up) -> Synthesis -> control features (1/8) -> U-Net conv_in
    sem_up -> AuxHead -> VQ-token logits (training only)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from onedc_media.model.layers import Down, ResBlock, UpShuffle, conv3x3

__all__ = ["PatchEmbed", "Analysis", "HyperEncoder", "SemanticAdaptor", "Synthesis", "LatentSkip", "AuxHead"]


class PatchEmbed(nn.Module):
    """Non-overlapping ``p x p`` pixel patches to ``channels`` features (a strided conv)."""

    def __init__(self, channels: int, patch_size: int = 8) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, channels, patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Analysis(nn.Module):
    """(VAE latent, patch features) at 1/8 -> ``y`` and a semantic map at 1/16."""

    def __init__(self, latent_channels: int, patch_channels: int, channels: int,
                 y_channels: int, sem_channels: int, blocks: int = 2) -> None:
        super().__init__()
        self.stem = conv3x3(latent_channels + patch_channels, channels)
        self.pre = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
        self.down = Down(channels, channels)
        self.post = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
        self.to_y = conv3x3(channels, y_channels)
        self.to_sem = conv3x3(channels, sem_channels)

    def forward(self, latent: Tensor, patches: Tensor) -> tuple[Tensor, Tensor]:
        h = self.post(self.down(self.pre(self.stem(torch.cat([latent, patches], 1)))))
        return self.to_y(h), self.to_sem(h)


class HyperEncoder(nn.Module):
    """(y, sem) at 1/16 -> z at 1/64 (pre-FSQ, unbounded)."""

    def __init__(self, y_channels: int, sem_channels: int, channels: int, z_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            conv3x3(y_channels + sem_channels, channels), nn.GELU(),
            Down(channels, channels), Down(channels, channels),
            conv3x3(channels, z_channels),
        )

    def forward(self, y: Tensor, sem: Tensor) -> Tensor:
        return self.net(torch.cat([y, sem], 1))


class SemanticAdaptor(nn.Module):
    """z_hat -> cross-attention tokens (B, h*w, D) and an upsampled semantic map (1/16)."""

    def __init__(self, z_channels: int, channels: int, token_dim: int, sem_up_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv3x3(z_channels, channels), nn.GELU(), ResBlock(channels))
        self.to_tokens = nn.Linear(channels, token_dim)
        self.norm = nn.LayerNorm(token_dim)
        self.up = nn.Sequential(
            UpShuffle(channels, channels), nn.GELU(), ResBlock(channels),
            UpShuffle(channels, sem_up_channels), nn.GELU(),
        )

    def forward(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        h = self.stem(z_hat)
        tokens = self.norm(self.to_tokens(h.flatten(2).transpose(1, 2)))
        return tokens, self.up(h)


class Synthesis(nn.Module):
    """(y_hat, sem_up) at 1/16 -> control features at 1/8 for the U-Net's ``conv_in``."""

    def __init__(self, y_channels: int, sem_up_channels: int, channels: int,
                 control_channels: int, blocks: int = 2) -> None:
        super().__init__()
        self.stem = conv3x3(y_channels + sem_up_channels, channels)
        self.pre = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
        self.up = UpShuffle(channels, channels)
        self.post = nn.Sequential(*[ResBlock(channels) for _ in range(blocks)])
        self.out = conv3x3(channels, control_channels)

    def forward(self, y_hat: Tensor, sem_up: Tensor) -> Tensor:
        h = self.pre(self.stem(torch.cat([y_hat, sem_up], 1)))
        return self.out(self.post(F.gelu(self.up(h))))


class LatentSkip(nn.Module):
    """``y_hat`` at 1/16 -> a latent correction at 1/8: 3x3 conv to 4L channels, pixel-shuffle.

    Starts at zero, so a model grown from one trained without it begins exactly where
    that one stopped.
    """

    def __init__(self, y_channels: int, latent_channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(y_channels, 4 * latent_channels)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, y_hat: Tensor) -> Tensor:
        return F.pixel_shuffle(self.conv(y_hat), 2)


class AuxHead(nn.Module):
    """Semantic distillation: predict VQ-tokenizer indices from the semantic map.

    Training only; excluded from inference weights.
    """

    def __init__(self, channels: int, num_codes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(conv3x3(channels, channels), nn.GELU(), nn.Conv2d(channels, num_codes, 1))

    def forward(self, sem_up: Tensor) -> Tensor:
        return self.net(sem_up)
