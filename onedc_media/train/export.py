"""Export a trained model to an inference folder (what the package embeds).

The folder holds ``config.json`` (diffusers ConfigMixin), ``model.safetensors`` (float
weights the encoder and decoder need, stored as float16 to keep the wheel lean; no
semantic-distillation head), ``parsing.safetensors`` (the integer parsing model and its
tables, with its config in the metadata) and ``MODEL_CARD.md``. It is written to a
temporary folder and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save

from onedc_media.entropy.coder import CODER_ID
from onedc_media.errors import ModelError

__all__ = ["export_checkpoint", "export_fine_decoder", "export_model", "save_canonical"]


def save_canonical(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                   metadata: dict[str, str]) -> None:
    """``safetensors`` file whose bytes depend only on the tensors and the metadata.

    A model is named by the SHA-256 of its files, so exporting the same weights twice must
    give the same bytes. safetensors writes the metadata in hash-map order, which changes
    from one call to the next; the header is rewritten here as sorted, compact JSON (padded
    to 8 bytes as the format asks). The tensor data and offsets are untouched.
    """
    blob = save(tensors, metadata=metadata)
    n = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    Path(path).write_bytes(len(header).to_bytes(8, "little") + header + blob[8 + n:])


def export_model(model, out_dir: str | os.PathLike, *, dtype: torch.dtype = torch.float16,
                 card: str | None = None) -> Path:
    from onedc_media.model.engine import CONFIG_FILE, MODEL_FILE, PARSING_FILE

    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    cfg = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    for key in ("vae_config", "unet_config"):
        if isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], "pretrained": None}
    cfg["_class_name"] = type(model).__name__
    (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    sd = {}
    for k, v in model.inference_state_dict().items():
        v = v.detach().cpu()
        sd[k] = (v.to(dtype) if v.is_floating_point() else v).contiguous()
    save_canonical(sd, tmp / MODEL_FILE, {"format": "onedc-float/1"})
    ptensors = {k: v.contiguous() for k, v in model.parsing.export().items()}
    save_canonical(ptensors, tmp / PARSING_FILE, {
        "format": "onedc-parsing/1",
        "parsing_config": json.dumps(model.parsing.config.to_dict(), sort_keys=True),
        "coder": CODER_ID,
    })
    if card:
        (tmp / "MODEL_CARD.md").write_text(card)
    elif (out / "MODEL_CARD.md").exists():
        shutil.copy(out / "MODEL_CARD.md", tmp / "MODEL_CARD.md")
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)
    return out


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *,
                      model_spec: str | None = None, card: str | None = None) -> Path:
    """Export the newest checkpoint of a run (or a checkpoint folder)."""
    from onedc_media.model.loading import build_model
    from onedc_media.train.checkpoint import latest_checkpoint, load_checkpoint

    ckpt = latest_checkpoint(checkpoint)
    if ckpt is None:
        raise ModelError(f"no checkpoint in {checkpoint}")
    state = json.loads((ckpt / "trainer.json").read_text())
    spec = model_spec or state.get("config", {}).get("model")
    if not spec:
        raise ModelError("cannot tell which model config the checkpoint uses; pass --model")
    stage = state.get("config", {}).get("stage")
    if stage in ("vae", "teacher"):
        raise ModelError(f"{ckpt} is a {stage!r} run, not a codec: export a stage1 or stage2 run")
    model = build_model(spec)
    if stage in BUNDLED_STAGES:
        _load_codec_from_bundle(ckpt, model)
    else:
        load_checkpoint(ckpt, model, None, strict=True)
    return export_model(model.eval(), out_dir, card=card)


#: Stages whose checkpoints hold a bundle (the codec under ``codec.``, beside the teacher,
#: fake score network or discriminator that inference never needs).
BUNDLED_STAGES = ("stage2",)


def _load_codec_from_bundle(ckpt: Path, model: torch.nn.Module) -> None:
    from safetensors.torch import load_file

    sd = load_file(str(ckpt / "model.safetensors"))
    codec = {k.removeprefix("codec."): v for k, v in sd.items() if k.startswith("codec.")}
    missing, unexpected = model.load_state_dict(codec, strict=False)
    if missing or unexpected or not codec:
        raise ModelError(f"checkpoint {ckpt} has no complete codec under 'codec.': missing "
                         f"{list(missing)[:5]}, unexpected {list(unexpected)[:5]}")


def export_fine_decoder(checkpoint: str | os.PathLike, model_dir: str | os.PathLike
                        ) -> tuple[Path, str]:
    """Write the VAE decoder of a ``vae`` run (``train_modules: [vae.model.decoder.]``) into
    the exported model folder *model_dir* as its fine decoder
    (:mod:`~onedc_media.model.fine_decoder`); returns the file's path.

    Refused when the run's VAE encoder differs from the model's: the fine decoder draws
    the model's latents, so it must have been trained on that latent space. A fine decoder
    of this model already there is kept beside it as ``fine-decoder.<id>.safetensors``:
    pictures written with it go on decoding.
    """
    from safetensors.torch import load_file

    from onedc_media.model.engine import OneDCEngine
    from onedc_media.model.fine_decoder import (
        FINE_DECODER_FILE,
        FINE_DECODER_FORMAT,
        earlier_fine_decoder_name,
        fine_decoder_state,
        load_fine_decoder,
    )
    from onedc_media.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(checkpoint)
    if ckpt is None:
        raise ModelError(f"no checkpoint in {checkpoint}")
    engine = OneDCEngine.from_pretrained(model_dir, fine_decoder=None)
    model = engine.model
    sd = load_file(str(ckpt / "model.safetensors"))
    own = model.state_dict()
    for k, v in own.items():
        if k.startswith("vae.model.encoder.") and v.is_floating_point() and (
                k not in sd or not torch.equal(sd[k].to(torch.float16), v.to(torch.float16))):
            raise ModelError(f"{ckpt} was trained on another VAE encoder than {model_dir}'s ({k} differs): "
                             "a fine decoder must draw the model's own latent space")
    wanted = fine_decoder_state(model)
    missing = [k for k in wanted if k not in sd]
    if missing:
        raise ModelError(f"{ckpt} holds no VAE decoder (missing {missing[:3]})")
    tensors = {k: sd[k].to(torch.float16).contiguous() for k in wanted}
    path = Path(model_dir) / FINE_DECODER_FILE
    previous = load_fine_decoder(model_dir, model, engine.ref.sha256) if path.is_file() else None
    tmp = path.with_name(f".{path.name}.tmp")
    save_canonical(tensors, tmp, {"format": FINE_DECODER_FORMAT, "model_sha256": engine.ref.sha256})
    if previous is not None and previous.sha256 != hashlib.sha256(tmp.read_bytes()).hexdigest():
        os.replace(path, path.with_name(earlier_fine_decoder_name(previous.sha256)))
    os.replace(tmp, path)
    fine = load_fine_decoder(model_dir, model, engine.ref.sha256)  # what a decoder will do
    return path, fine.sha256
