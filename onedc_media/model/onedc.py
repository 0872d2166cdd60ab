"""OneDC: one-step diffusion image compression (Xue et al., arXiv 2505.16687).

One model class for every scale and stage; configs choose sizes (``configs/models``)
and the trainer chooses what trains. Data flow::

    x -> VAE enc -> latent ----------+
    x -> patch embed (8x8) ----------+-> Analysis -> y, sem (1/16)
    (y, sem) -> HyperEncoder -> z -> FSQ -> z_int (fixed-length bits)
    z_int -> ParsingNet/IntParsing -> (mu, scale) per quad stage -> y_hat   [bit-exact]
    z_int -> SemanticAdaptor -> tokens (B, H/64*W/64, D), sem_up (1/16)
    (y_hat, sem_up) -> Synthesis -> control (1/8) -> U-Net(t=999, x0) -> VAE dec -> x_hat

The rate point ``q`` scales ``y`` by per-channel gains before quantisation, so one set of
weights serves every quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor

from onedc_media.entropy.fsq import FSQ
from onedc_media.entropy.parsing import ParsingConfig, ParsingNet
from onedc_media.errors import ModelError
from onedc_media.model.networks import (
    Analysis,
    AuxHead,
    HyperEncoder,
    LatentSkip,
    PatchEmbed,
    SemanticAdaptor,
    Synthesis,
)
from onedc_media.model.vae import LatentVAE, load_unet

__all__ = ["PAD_MULTIPLE", "OneDCModel", "OneDCOutput", "zero_mean_bits"]

#: Pictures are padded to a multiple of this (z is at 1/64).
PAD_MULTIPLE = 64


@dataclass
class OneDCOutput:
    """What a training forward pass returns."""

    x_hat: Tensor  #: reconstruction in [-1, 1] (unclamped)
    latent: Tensor  #: VAE latent of the input (the U-Net's target space)
    latent_hat: Tensor  #: U-Net output (x0 prediction)
    y_bits: Tensor  #: [B] estimated bits of y (-log2 likelihood; training only)
    z_bits: Tensor  #: [B] exact bits of z (fixed length)
    aux_logits: Tensor | None  #: VQ-index logits at 1/16 (training only)
    control: Tensor  #: control features fed to the U-Net


class OneDCModel(ModelMixin, ConfigMixin):
    """The OneDC codec network. Arguments are the config (diffusers ``ConfigMixin``).

    Args:
        latent_channels: channels of the VAE latent (4 for SD VAEs).
        patch_channels: channels of the 8x8 pixel patch embedding.
        analysis_channels: width of the analysis network.
        y_channels: ``M``, channels of ``y`` at 1/16.
        sem_channels: channels of the encoder's semantic map.
        z_levels: FSQ levels per channel of ``z`` (``[4] * 7`` = 14 bits per token).
        hyper_channels: width of the hyper-encoder.
        adaptor_channels: width of the semantic adaptor.
        token_dim: ``D``, width of the cross-attention tokens (U-Net ``cross_attention_dim``).
        sem_up_channels: channels of the upsampled semantics fed to synthesis.
        synthesis_channels: width of the synthesis network.
        control_channels: channels of the control features (U-Net ``in_channels``).
        num_vq_codes: codebook size of the semantic-distillation target.
        timestep: the fixed diffusion timestep of the one-step U-Net.
        residual_latent: the U-Net predicts a correction to a coarse latent that synthesis
            puts in the first ``latent_channels`` control channels (its ``conv_out`` starts
            at zero). For models trained from scratch (no pretrained one-step U-Net to
            start from), where it makes Stage I converge far faster; ``False`` is the
            paper's layout.
        latent_skip: a sub-pixel convolution from ``y_hat`` straight into the latent (added
            after the U-Net), starting at zero: a linear path from ``y`` to every latent,
            for models whose synthesis and U-Net map ``y`` onto too few latents
            (``docs/training.md`` discusses the ablation; no shipped model uses it).
        vae_config: ``{"type", "kwargs", "pixel_shuffle", "scaling_factor", "pretrained"}``.
        unet_config: ``{"kwargs", "pretrained", "lora_rank"}`` for ``UNet2DConditionModel``.
        parsing_config: fields of :class:`~onedc_media.entropy.parsing.ParsingConfig`.
        rate_points: one ``{"name", "lmbda"}`` per quality, lowest rate first; one of them
            may carry ``"default": true`` (what a command uses when no quality is given).
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        name: str = "onedc-tiny",
        latent_channels: int = 4,
        patch_channels: int = 32,
        analysis_channels: int = 128,
        y_channels: int = 96,
        sem_channels: int = 64,
        z_levels: tuple[int, ...] = (4, 4, 4, 4, 4, 4, 4),
        hyper_channels: int = 128,
        adaptor_channels: int = 128,
        token_dim: int = 128,
        sem_up_channels: int = 32,
        synthesis_channels: int = 128,
        control_channels: int = 64,
        num_vq_codes: int = 256,
        timestep: int = 999,
        residual_latent: bool = False,
        latent_skip: bool = False,
        vae_config: dict[str, Any] | None = None,
        unet_config: dict[str, Any] | None = None,
        parsing_config: dict[str, Any] | None = None,
        rate_points: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        vae = dict(vae_config or {"type": "AutoencoderTiny", "kwargs": {}})
        unet = dict(unet_config or {"kwargs": {}})
        parsing = parsing_config
        rate_points = list(rate_points or [{"name": "q1", "lmbda": 1.0}])
        ucfg = dict(unet.get("kwargs", {}))
        self._check(ucfg, control_channels, latent_channels, token_dim, y_channels, parsing)
        if sum(bool(r.get("default")) for r in rate_points) > 1:
            raise ModelError("rate_points: at most one may be marked default")
        pcfg = ParsingConfig.from_dict(
            {**(parsing or {}), "z_levels": tuple(z_levels), "y_channels": y_channels,
             "num_rates": len(rate_points)}
        )
        self.vae = LatentVAE(
            vae["type"], dict(vae.get("kwargs", {})),
            pixel_shuffle=int(vae.get("pixel_shuffle", 1)),
            scaling_factor=float(vae.get("scaling_factor", 1.0)),
            pretrained=vae.get("pretrained"),
        )
        self.patch_embed = PatchEmbed(patch_channels, 8)
        self.analysis = Analysis(latent_channels, patch_channels, analysis_channels, y_channels, sem_channels)
        self.hyper_encoder = HyperEncoder(y_channels, sem_channels, hyper_channels, len(z_levels))
        self.fsq = FSQ(z_levels)
        self.parsing = ParsingNet(pcfg)
        self.adaptor = SemanticAdaptor(len(z_levels), adaptor_channels, token_dim, sem_up_channels)
        self.synthesis = Synthesis(y_channels, sem_up_channels, synthesis_channels, control_channels)
        self.unet = load_unet(ucfg, unet.get("pretrained"))
        if residual_latent:
            if control_channels < latent_channels:
                raise ModelError(
                    f"residual_latent needs control_channels ({control_channels}) >= "
                    f"latent_channels ({latent_channels})"
                )
            torch.nn.init.zeros_(self.unet.conv_out.weight)
            torch.nn.init.zeros_(self.unet.conv_out.bias)
        self.skip = LatentSkip(y_channels, latent_channels) if latent_skip else None
        self.aux_head = AuxHead(sem_up_channels, num_vq_codes)

    @staticmethod
    def _check(ucfg: dict, control: int, latent: int, token_dim: int, y_channels: int,
               parsing: dict | None) -> None:
        """Validate the config up front, naming both fields (as diffusers does)."""
        if ucfg.get("in_channels", control) != control:
            raise ModelError(
                f"unet_config.kwargs.in_channels ({ucfg['in_channels']}) must equal control_channels ({control})"
            )
        if ucfg.get("out_channels", latent) != latent:
            raise ModelError(
                f"unet_config.kwargs.out_channels ({ucfg['out_channels']}) must equal latent_channels ({latent})"
            )
        if ucfg.get("cross_attention_dim", token_dim) != token_dim:
            raise ModelError(
                f"unet_config.kwargs.cross_attention_dim ({ucfg['cross_attention_dim']}) must equal "
                f"token_dim ({token_dim})"
            )
        ucfg.setdefault("in_channels", control)
        ucfg.setdefault("out_channels", latent)
        ucfg.setdefault("cross_attention_dim", token_dim)
        if parsing and parsing.get("y_channels", y_channels) != y_channels:
            raise ModelError("parsing_config.y_channels must equal y_channels (or be left out)")

    # -- pieces --------------------------------------------------------------------
    @property
    def num_rates(self) -> int:
        return self.parsing.config.num_rates

    def z_float(self, z_int: Tensor) -> Tensor:
        """Symmetric FSQ integers -> [-1, 1] inputs for the float semantic branch."""
        # The levels live on the device with the weights (FSQ's buffer): a tensor made
        # from a Python list here would be a pageable host->device copy, which CUDA graph
        # capture refuses.
        return z_int / (self.fsq._levels.view(1, -1, 1, 1) - 1).to(z_int.dtype)

    def analyse(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``x`` in [-1, 1], padded -> ``(latent, y, z_indices, z_int)``."""
        latent = self.vae.encode(x)
        y, sem = self.analysis(latent, self.patch_embed(x))
        z_idx, z_int = self.fsq(self.hyper_encoder(y, sem))
        return latent, y, z_idx, z_int

    def gain(self, q: Tensor) -> Tensor:
        """Fake-quantised gain rows [B, M, 1, 1] (what the encoder multiplies ``y`` by)."""
        return self.parsing._gains(q)[0]

    def synthesize_latent(self, y_hat: Tensor, z_int: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Decoded ``y_hat`` (un-gained) and ``z_int`` -> ``(latent_hat, control, sem_up)``."""
        tokens, sem_up = self.adaptor(self.z_float(z_int))
        control = self.synthesis(y_hat, sem_up)
        t = torch.full((control.shape[0],), self.config.timestep, device=control.device, dtype=torch.long)
        latent_hat = self.unet(control, t, encoder_hidden_states=tokens.to(control.dtype)).sample
        if self.config.residual_latent:
            latent_hat = latent_hat + control[:, : self.config.latent_channels]
        if self.skip is not None:
            latent_hat = latent_hat + self.skip(y_hat)
        return latent_hat, control, sem_up

    def synthesize(self, y_hat: Tensor, z_int: Tensor, *, vae_batch: int | None = None) -> Tensor:
        """-> reconstruction in [-1, 1] (unclamped).

        ``vae_batch`` decodes the latents through the VAE that many pictures at a time
        (default: all at once). The latent networks work at 1/8 resolution and gain from
        batches; the VAE decoder's full-resolution feature maps do not fit a CPU's caches
        in batches of large pictures, where it is fastest one picture at a time.
        """
        latent = self.synthesize_latent(y_hat, z_int)[0]
        n = latent.shape[0]
        if vae_batch is None or vae_batch >= n:
            return self.vae.decode(latent)
        step = max(1, int(vae_batch))
        return torch.cat([self.vae.decode(latent[i : i + step]) for i in range(0, n, step)])

    # -- training ------------------------------------------------------------------
    def forward(self, x: Tensor, q: Tensor, *, with_aux: bool = True,
                decode_pixels: bool = True) -> OneDCOutput:
        """Simulated coding of ``x`` in [-1, 1] (H, W multiples of 64) at rate points ``q``.

        ``decode_pixels=False`` skips the VAE decoder (latent-space training); ``x_hat``
        is then empty.
        """
        if x.shape[-1] % PAD_MULTIPLE or x.shape[-2] % PAD_MULTIPLE:
            raise ValueError(f"training crops must be multiples of {PAD_MULTIPLE}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._vae_encoder_trains()):
            latent = self.vae.encode(x)
        y, sem = self.analysis(latent, self.patch_embed(x))
        _, z_int = self.fsq(self.hyper_encoder(y, sem))
        y_g = y * self.gain(q)
        y_hat, mu_g, ls_g = self.parsing(z_int, y_g, q)
        y_bits = gaussian_bits(y_g, mu_g, ls_g, self.parsing.config.table.log_bounds())
        latent_hat, control, sem_up = self.synthesize_latent(y_hat, z_int)
        x_hat = self.vae.decode(latent_hat) if decode_pixels else x.new_zeros(0)
        tokens = z_int.shape[-1] * z_int.shape[-2]
        from onedc_media.entropy.fsq import bits_per_token

        z_bits = torch.full((x.shape[0],), float(tokens * bits_per_token(self.config.z_levels)), device=x.device)
        aux = self.aux_head(sem_up) if with_aux else None
        return OneDCOutput(x_hat, latent, latent_hat, y_bits, z_bits, aux, control)

    def _vae_encoder_trains(self) -> bool:
        return any(p.requires_grad for m in self.vae.encoder_modules for p in m.parameters())

    def inference_state_dict(self) -> dict[str, Tensor]:
        """Float weights an encoder/decoder needs: no aux head, no parsing twin."""
        return {
            k: v for k, v in self.state_dict().items()
            if not k.startswith("aux_head.") and not k.startswith("parsing.")
        }


def gaussian_bits(y: Tensor, mu: Tensor, log_scale: Tensor, bounds: tuple[float, float]) -> Tensor:
    """Per-sample bits of ``y`` under N(mu, exp(log_scale)) with uniform-noise relaxation.

    Written here rather than taken from CompressAI: it is five lines, and the scale
    parameterisation (integer log-scale, clamped to the table range) is our own.
    """
    noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
    lo, hi = bounds
    ls = log_scale + (log_scale.clamp(lo, hi) - log_scale).detach()
    scale = torch.exp(ls)
    v = (noisy - mu).abs()
    upper = _std_cdf((0.5 - v) / scale)
    lower = _std_cdf((-0.5 - v) / scale)
    like = (upper - lower).clamp_min(1e-9)
    return -torch.log2(like).flatten(1).sum(1)


def _std_cdf(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-x * (2**-0.5))


def zero_mean_bits(a: Tensor, scale: Tensor) -> Tensor:
    """-log2 of a zero-mean discretised Gaussian of *scale* at ``|value|`` *a* (floored like
    :func:`gaussian_bits`): the encoders' rate terms (refinement, the residual layer)."""
    like = _std_cdf((0.5 - a) / scale) - _std_cdf((-0.5 - a) / scale)
    return -torch.log2(like.clamp_min(1e-9))


def pad_to_multiple(x: Tensor, multiple: int = PAD_MULTIPLE) -> Tensor:
    """Replicate-pad the bottom/right edges of [B, C, H, W] to a multiple."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x
