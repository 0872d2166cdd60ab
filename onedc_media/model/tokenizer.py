"""VQ tokenizers: the targets of OneDC's semantic-distillation head.

The paper distils the hyper-latent towards the indices of a pretrained VQ tokenizer.
Two sources are supported:

* :class:`KMeansTokenizer` -- built offline by the project: k-means over 2x2 patches of
  the frozen VAE latent (so tokens sit at 1/16, like ``y``). Used for onedc-tiny, where
  no pretrained tokenizer can be downloaded.
* :class:`VQModelTokenizer` -- a diffusers ``VQModel`` from a local folder (paper scale).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from onedc_media.errors import ModelError

__all__ = ["KMeansTokenizer", "VQModelTokenizer"]


class KMeansTokenizer(nn.Module):
    """Nearest-centroid indices of 2x2 latent patches -> [B, H/16, W/16] (long)."""

    def __init__(self, codebook: Tensor) -> None:
        super().__init__()
        self.register_buffer("codebook", codebook.float())

    @property
    def num_codes(self) -> int:
        return int(self.codebook.shape[0])

    @staticmethod
    def patches(latent: Tensor) -> Tensor:
        """[B, C, h, w] latent -> [B*h/2*w/2, 4C] normalised 2x2 patch vectors."""
        p = F.pixel_unshuffle(latent, 2)  # [B, 4C, h/2, w/2]
        p = p.permute(0, 2, 3, 1).reshape(-1, p.shape[1])
        return F.normalize(p, dim=1)

    @torch.no_grad()
    def forward(self, latent: Tensor) -> Tensor:
        B, _, h, w = latent.shape
        p = self.patches(latent.float())
        d = torch.cdist(p, self.codebook)
        return d.argmin(1).view(B, h // 2, w // 2)

    @classmethod
    @torch.no_grad()
    def fit(cls, samples: Tensor, num_codes: int, *, iters: int = 30, seed: int = 0) -> KMeansTokenizer:
        """k-means (cosine, k-means++ style init) over patch vectors [N, D]."""
        g = torch.Generator().manual_seed(seed)
        x = samples.float()
        if x.shape[0] < num_codes:
            raise ModelError(f"need at least {num_codes} patches to fit {num_codes} codes")
        centres = x[torch.randint(0, x.shape[0], (1,), generator=g)]
        for _ in range(1, num_codes):  # k-means++ seeding on a subsample for speed
            sub = x[torch.randint(0, x.shape[0], (min(8192, x.shape[0]),), generator=g)]
            d = torch.cdist(sub, centres).min(1).values.pow(2)
            pick = torch.multinomial(d / d.sum(), 1, generator=g)
            centres = torch.cat([centres, sub[pick]])
        for _ in range(iters):
            assign = torch.cdist(x, centres).argmin(1)
            sums = torch.zeros_like(centres).index_add_(0, assign, x)
            counts = torch.bincount(assign, minlength=num_codes).clamp_min(1).unsqueeze(1)
            centres = F.normalize(sums / counts, dim=1)
        return cls(centres)

    def save(self, path: str | os.PathLike) -> None:
        save_file({"codebook": self.codebook.contiguous()}, str(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> KMeansTokenizer:
        try:
            return cls(load_file(str(path))["codebook"])
        except (OSError, KeyError) as exc:
            raise ModelError(f"cannot load tokenizer {path}: {exc}") from None


class VQModelTokenizer(nn.Module):
    """Indices of a local diffusers ``VQModel``, resized (nearest) to 1/16 of the image."""

    def __init__(self, path: str) -> None:
        super().__init__()
        from diffusers import VQModel

        self.vq = VQModel.from_pretrained(path).eval().requires_grad_(False)

    @property
    def num_codes(self) -> int:
        return int(self.vq.config.num_vq_embeddings)

    @torch.no_grad()
    def forward_pixels(self, x: Tensor) -> Tensor:
        h = self.vq.encode(x).latents
        _, _, info = self.vq.quantize(h)
        idx = info[2].view(x.shape[0], h.shape[-2], h.shape[-1])
        size = (x.shape[-2] // 16, x.shape[-1] // 16)
        return F.interpolate(idx[:, None].float(), size=size, mode="nearest")[:, 0].long()
