"""A diffusers VAE seen as ``pixels <-> latent`` (AutoencoderTiny or AutoencoderKL).

``pixel_shuffle = p`` wraps the VAE in a space-to-depth step: the VAE works on
``3 p^2``-channel pictures at ``1/p`` resolution and its output is shuffled back. The
CPU-scale config uses it because full-resolution convolutions dominate decode time on
a CPU (measured: a 48-channel decoder at 1/2 resolution decodes 512x512 in ~0.12 s, a
32-channel one at full resolution in ~0.5 s).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from onedc_media.errors import ModelError

__all__ = ["LatentVAE", "VAE_TYPES"]

VAE_TYPES = ("AutoencoderTiny", "AutoencoderKL")


class LatentVAE(nn.Module):
    """Pixels in [-1, 1] <-> latents scaled by ``scaling_factor`` (diffusers convention)."""

    def __init__(self, type: str, kwargs: dict[str, Any], *, pixel_shuffle: int = 1,
                 scaling_factor: float = 1.0, pretrained: str | None = None) -> None:
        super().__init__()
        if type not in VAE_TYPES:
            raise ModelError(f"vae_config.type must be one of {', '.join(VAE_TYPES)}, got {type!r}")
        if type == "AutoencoderTiny":  # direct imports: `import diffusers` costs seconds more
            from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny as cls
        else:
            from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL as cls
        if pretrained:
            self.model = cls.from_pretrained(pretrained, subfolder=_subfolder(pretrained, "vae"))
        else:
            self.model = cls(**kwargs)
        self.kind = type
        self.pixel_shuffle = int(pixel_shuffle)
        self.scaling_factor = float(scaling_factor)

    def encode(self, x: Tensor) -> Tensor:
        if self.pixel_shuffle > 1:
            x = F.pixel_unshuffle(x, self.pixel_shuffle)
        if self.kind == "AutoencoderKL":
            raw = self.model.encode(x).latent_dist.mode()
        else:
            raw = self.model.encode(x).latents
        return raw * self.scaling_factor

    def decode(self, latent: Tensor) -> Tensor:
        x = self.model.decode(latent / self.scaling_factor).sample
        if self.pixel_shuffle > 1:
            x = F.pixel_shuffle(x, self.pixel_shuffle)
        return x

    @property
    def encoder_modules(self) -> list[nn.Module]:
        mods = [self.model.encoder]
        if hasattr(self.model, "quant_conv") and self.model.quant_conv is not None:
            mods.append(self.model.quant_conv)
        return mods

    @property
    def decoder_modules(self) -> list[nn.Module]:
        mods = [self.model.decoder]
        if hasattr(self.model, "post_quant_conv") and self.model.post_quant_conv is not None:
            mods.append(self.model.post_quant_conv)
        return mods


def _subfolder(path: str, name: str) -> str | None:
    """``path/name`` if that is a diffusers sub-folder (a full pipeline), else None."""
    import os

    return name if os.path.isdir(os.path.join(path, name)) else None


def load_unet(kwargs: dict[str, Any], pretrained: str | None = None) -> nn.Module:
    """A diffusers UNet2DConditionModel, optionally from a local folder.

    With ``pretrained``, the U-Net's ``conv_in`` is replaced by a fresh convolution taking
    ``kwargs["in_channels"]`` control-feature channels (the OneDC layout), keeping the
    rest of the pretrained weights.
    """
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    if not pretrained:
        return UNet2DConditionModel(**kwargs)
    unet = UNet2DConditionModel.from_pretrained(pretrained, subfolder=_subfolder(pretrained, "unet"))
    want = int(kwargs.get("in_channels", unet.config.in_channels))
    if want != unet.config.in_channels:
        old = unet.conv_in
        unet.conv_in = nn.Conv2d(want, old.out_channels, old.kernel_size, padding=old.padding)
        unet.register_to_config(in_channels=want)
    return unet
