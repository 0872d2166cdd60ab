"""The fine decoder: a second VAE decoder that draws pictures carrying the residual layer.

Why a second decoder: the model's VAE decoder is trained with the rest of the codec (Stage
I) to make the best of the U-Net's predicted latents, which are never exact. A picture
with the latent residual layer (:mod:`~onedc_media.model.residual`) hands the decoder a
latent the encoder fitted to the picture through that decoder, so what limits it is how
much the decoder can draw from a good latent. A decoder fine-tuned on the VAE encoder's
clean latents draws more (``configs/train/vae-dec-fine-tiny.yaml``), but decodes the
U-Net's plain predictions worse; so it does not replace the model's decoder, it sits
beside it (``fine-decoder.safetensors`` in the model folder) and draws only the pictures
whose header says so (:data:`~onedc_media.model.bitstream.FLAG_FINE_DECODER`).

The model's identity (``model.safetensors``' SHA-256 in every stream header) is unchanged
by it, so files written before it existed decode as before. A picture drawn by a fine
decoder names it itself: the first 8 bytes of the SHA-256 of its file, at the start of
the residual chunk; a decoder without that file refuses the picture.

The file holds the decoder's tensors under the names they have in the model's state dict
(``vae.model.decoder.*``), float16 like the model, and its metadata names the model it
belongs to (``model_sha256``).

A fine decoder can be retrained without touching the model, so a model folder keeps the
ones it shipped before as ``fine-decoder.<id>.safetensors`` (:data:`EARLIER_FINE_DECODERS`):
the encoder uses ``fine-decoder.safetensors`` only, a decoder finds any of them by the id
a picture names (:func:`find_fine_decoder_file`), so files written with an earlier one
still decode.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from onedc_media.errors import ModelError
from onedc_media.model.bitstream import FINE_ID_BYTES

__all__ = [
    "EARLIER_FINE_DECODERS",
    "FINE_DECODER_FILE",
    "FINE_DECODER_FORMAT",
    "FineDecoder",
    "earlier_fine_decoder_name",
    "find_fine_decoder_file",
    "fine_decoder_state",
    "load_fine_decoder",
]

log = logging.getLogger(__name__)

FINE_DECODER_FILE = "fine-decoder.safetensors"
FINE_DECODER_FORMAT = "onedc-fine-decoder/1"
#: Fine decoders a model shipped before its current one (glob in the model folder).
EARLIER_FINE_DECODERS = "fine-decoder.*.safetensors"


@dataclass
class FineDecoder:
    """A loaded fine decoder: its VAE (the model's encoder side is not used) and identity."""

    vae: nn.Module  #: a :class:`~onedc_media.model.vae.LatentVAE` with the fine decoder's weights
    sha256: str  #: of the weights file

    @property
    def id(self) -> bytes:
        """What a picture drawn by this decoder stores (the start of its residual chunk)."""
        return bytes.fromhex(self.sha256)[:FINE_ID_BYTES]


def _decoder_keys(model: nn.Module) -> list[str]:
    return [k for k in model.state_dict() if k.startswith(("vae.model.decoder.", "vae.model.post_quant_conv."))]


def fine_decoder_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a fine-decoder file holds, taken from *model* (a trained OneDC model)."""
    sd = model.state_dict()
    return {k: sd[k].detach().to("cpu", torch.float16).contiguous() for k in _decoder_keys(model)}


def earlier_fine_decoder_name(sha256: str) -> str:
    """The file name an earlier fine decoder keeps in its model folder."""
    return f"fine-decoder.{sha256[: 2 * FINE_ID_BYTES]}.safetensors"


def find_fine_decoder_file(folder: str | os.PathLike, fine_id: bytes) -> Path | None:
    """The file in model *folder* whose SHA-256 starts with *fine_id* (the current fine
    decoder or an earlier one), or ``None``. Names are a hint: the bytes decide."""
    d = Path(folder)
    candidates = [d / FINE_DECODER_FILE, d / earlier_fine_decoder_name(fine_id.hex())]
    candidates += sorted(p for p in d.glob(EARLIER_FINE_DECODERS) if p not in candidates)
    for path in candidates:
        if path.is_file() and hashlib.sha256(path.read_bytes()).digest()[:FINE_ID_BYTES] == fine_id:
            return path
    return None


def load_fine_decoder(folder: str | os.PathLike, model: nn.Module, model_sha256: str,
                      path: str | os.PathLike | None = None) -> FineDecoder | None:
    """The fine decoder in model *folder* (or the file *path*), or ``None`` when it has
    none (or has another model's, which is logged and not used).

    Refuses (``ModelError``) a damaged file, or one that is not a fine decoder of this
    kind of model (other format, other tensor names).
    """
    from safetensors import safe_open
    from safetensors.torch import load

    path = Path(folder) / FINE_DECODER_FILE if path is None else Path(path)
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        tensors = load(data)
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for damaged files
        raise ModelError(f"cannot read {path}: {exc}") from None
    if meta.get("format") != FINE_DECODER_FORMAT:
        raise ModelError(f"{path} is not a OneDC fine decoder (format {meta.get('format')!r})")
    if meta.get("model_sha256") != model_sha256:
        # another version's (a folder whose model.safetensors was swapped): the model works
        # without it, and pictures that name a fine decoder are refused by their id
        log.warning("%s belongs to the model with weights sha256 %s..., not %s...: not used",
                    path, str(meta.get("model_sha256"))[:16], model_sha256[:16])
        return None
    want = set(_decoder_keys(model))
    if set(tensors) != want:
        raise ModelError(f"{path} does not match the model's VAE decoder: missing "
                         f"{sorted(want - set(tensors))[:3]}, unexpected {sorted(set(tensors) - want)[:3]}")
    vae = copy.deepcopy(model.vae)
    vae.model.encoder = nn.Identity()  # draws only; the model's encoder stays the model's
    prefix = "vae."
    missing, unexpected = vae.load_state_dict({k[len(prefix):]: v.float() for k, v in tensors.items()},
                                              strict=False)
    if unexpected or any(k.startswith("model.decoder.") for k in missing):
        raise ModelError(f"{path} does not load into the model's VAE decoder")
    return FineDecoder(vae=vae.eval().requires_grad_(False), sha256=hashlib.sha256(data).hexdigest())
