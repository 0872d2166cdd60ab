"""The training stages: what trains and what it minimises.

* ``vae``: the tiny VAE on the corpus: ``l1 |x - D(E(x))| + mse + msssim + latent_reg``.
* ``stage1``: the codec (Stage I of the paper)::

      loss = lambda_q * bpp + l1 + mse + msssim * (1 - MS-SSIM) + latent_l1 |l_hat - l|
             + alpha * CE(aux head, VQ tokens)

  ``bpp`` is the y estimate (-log2 likelihood) plus the exact z bits; rate points ``q``
  are sampled per example and ``lambda_q`` comes from the model config; ``rate_warmup``
  ramps the rate term in linearly over that many steps. With all pixel weights at 0 the
  VAE decoder is skipped (cheap latent-space training).
* ``teacher`` and ``stage2`` live in :mod:`onedc_media.train.distill`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from onedc_media.errors import ModelError
from onedc_media.evaluate.metrics import psnr_batch
from onedc_media.train.config import TrainConfig
from onedc_media.train.losses import distortion, latent_l1
from onedc_media.train.trainer import StageStep, select_params

__all__ = ["build_stage", "DEFAULT_TRAIN_MODULES"]

log = logging.getLogger(__name__)

DEFAULT_TRAIN_MODULES = {
    "vae": ["vae."],
    "stage1": ["patch_embed.", "analysis.", "hyper_encoder.", "parsing.", "adaptor.",
               "synthesis.", "skip.", "unet.", "aux_head.", "vae.model.decoder."],
    "teacher": ["teacher."],
    "stage2": ["unet."],
}


def _val_images(cfg: TrainConfig, device: torch.device) -> list[Tensor]:
    if not cfg.val_data:
        return []
    from onedc_media.train.data import ImageFolderDataset

    ds = ImageFolderDataset(cfg.val_data, cfg.val_crop, train=False, skip_invalid=True)
    n = min(cfg.val_images, len(ds))
    return [ds[i].to(device) for i in range(n)]


def build_stage(cfg: TrainConfig, model: torch.nn.Module) -> StageStep:
    device = torch.device(cfg.device)
    model.to(device)
    if cfg.stage == "vae":
        return _vae_stage(cfg, model, device)
    if cfg.stage == "stage1":
        return _stage1(cfg, model, device)
    from onedc_media.train import distill

    return distill.build(cfg, model, device)


def _vae_stage(cfg: TrainConfig, model: torch.nn.Module, device: torch.device) -> StageStep:
    w = {"l1": 1.0, "mse": 0.0, "msssim": 0.0, "latent_reg": 1e-4, **cfg.loss}
    params = select_params(model, cfg.train_modules or DEFAULT_TRAIN_MODULES["vae"])
    vae = model.vae
    val = _val_images(cfg, device)

    def loss(x01: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        x = x01 * 2 - 1
        lat = vae.encode(x)
        x_hat = vae.decode(lat)
        d, parts = distortion(x_hat, x, l1=w["l1"], mse=w["mse"], msssim=w["msssim"])
        reg = lat.pow(2).mean()
        total = d.mean() + w["latent_reg"] * reg
        out = {k: float(v.detach().mean()) for k, v in parts.items()}
        out.update(loss=float(total.detach()), latent_rms=float(reg.detach().sqrt()),
                   psnr=float(psnr_batch((x_hat.detach().clamp(-1, 1) + 1) / 2, x01).mean()))
        return total, out

    def validate(step: int) -> dict[str, float]:
        if not val:
            return {}
        ps, rms = [], []
        for x01 in val:
            x = x01[None] * 2 - 1
            lat = vae.encode(x)
            rms.append(float(lat.pow(2).mean().sqrt()))
            ps.append(float(psnr_batch((vae.decode(lat).clamp(-1, 1) + 1) / 2, x01[None])))
        return {"val_psnr": sum(ps) / len(ps), "latent_rms": sum(rms) / len(rms)}

    return StageStep(model=model, params={"main": params}, loss=loss, validate=validate)


def _load_or_fit_tokenizer(cfg: TrainConfig, model: torch.nn.Module, device: torch.device):
    from onedc_media.model.tokenizer import KMeansTokenizer, VQModelTokenizer

    path = Path(cfg.tokenizer) if cfg.tokenizer else Path(cfg.run_dir) / "tokenizer.safetensors"
    if path.is_dir():
        return VQModelTokenizer(str(path)).to(device), "pixels"
    if path.exists():
        return KMeansTokenizer.load(path).to(device), "latent"
    from onedc_media.train.data import ImageFolderDataset

    log.info("fitting a %d-code k-means tokenizer on VAE latents", model.config.num_vq_codes)
    ds = ImageFolderDataset(cfg.train_data, cfg.crop, train=True, skip_invalid=True)
    g = torch.Generator().manual_seed(cfg.seed)
    feats = []
    with torch.no_grad():
        for i in torch.randint(0, len(ds), (min(512, 8 * len(ds)),), generator=g).tolist():
            lat = model.vae.encode(ds[i][None].to(device) * 2 - 1)
            feats.append(KMeansTokenizer.patches(lat).cpu())
    tok = KMeansTokenizer.fit(torch.cat(feats), model.config.num_vq_codes, seed=cfg.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(path)
    return tok.to(device), "latent"


def _stage1(cfg: TrainConfig, model: torch.nn.Module, device: torch.device) -> StageStep:
    w = {"l1": 1.0, "mse": 0.0, "msssim": 0.0, "latent_l1": 0.0, "ce": 0.05, "rate_scale": 1.0,
         "rate_warmup": 0, **cfg.loss}
    pixels = any(w[k] for k in ("l1", "mse", "msssim"))
    prefixes = cfg.train_modules or DEFAULT_TRAIN_MODULES["stage1"]
    if not pixels:
        prefixes = [p for p in prefixes if not p.startswith("vae.")]
    params = select_params(model, prefixes)
    lambdas = torch.tensor([float(r["lmbda"]) for r in model.config.rate_points], device=device)
    rate_ids = torch.tensor(cfg.rate_points if cfg.rate_points is not None else range(len(lambdas)))
    if rate_ids.numel() == 0 or rate_ids.max() >= len(lambdas) or rate_ids.min() < 0:
        raise ModelError("rate_points must index the model's rate points")
    tokenizer, tok_input = _load_or_fit_tokenizer(cfg, model, device) if w["ce"] else (None, None)

    def loss(x01: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        x = x01 * 2 - 1
        q = rate_ids[torch.randint(0, rate_ids.numel(), (x.shape[0],))].to(device)
        out = model(x, q, with_aux=tokenizer is not None, decode_pixels=pixels)
        hw = x.shape[-1] * x.shape[-2]
        bpp = (out.y_bits + out.z_bits) / hw
        # The rate term ramps up over `rate_warmup` steps: reconstruction is learnt first,
        # instead of the rate collapsing while the decoder is still poor.
        ramp = min(1.0, (step + 1) / w["rate_warmup"]) if w["rate_warmup"] else 1.0
        total = lambdas[q] * (w["rate_scale"] * ramp) * bpp
        parts: dict[str, float] = {"bpp": float(bpp.detach().mean())}
        if pixels:
            d, dparts = distortion(out.x_hat, x, l1=w["l1"], mse=w["mse"], msssim=w["msssim"],
                                   colour=w.get("colour", 0.0))
            total = total + d
            parts.update({k: float(v.detach().mean()) for k, v in dparts.items()})
            parts["psnr"] = float(psnr_batch((out.x_hat.detach().clamp(-1, 1) + 1) / 2, x01).mean())
        if w["latent_l1"]:
            ll = latent_l1(out.latent_hat, out.latent.detach())
            total = total + w["latent_l1"] * ll
            parts["latent_l1"] = float(ll.detach().mean())
        total = total.mean()
        if tokenizer is not None and out.aux_logits is not None:
            with torch.no_grad():
                target = tokenizer(out.latent) if tok_input == "latent" else tokenizer.forward_pixels(x)
            ce = F.cross_entropy(out.aux_logits, target)
            total = total + w["ce"] * ce
            parts["ce"] = float(ce.detach())
        parts["loss"] = float(total.detach())
        return total, parts

    return StageStep(model=model, params={"main": params}, loss=loss,
                     validate=real_bits_validator(cfg, model, device, sorted(set(rate_ids.tolist()))))


def real_bits_validator(cfg: TrainConfig, model: torch.nn.Module, device: torch.device,
                        qualities: list[int] | None = None):
    """Validation with real bitstreams: bpp from bytes, PSNR and MS-SSIM per rate point."""
    val = _val_images(cfg, device)
    qualities = qualities if qualities is not None else list(range(model.num_rates))

    def validate(step: int) -> dict[str, float]:
        if not val:
            return {}
        from onedc_media.model.engine import OneDCEngine

        engine = OneDCEngine.from_training(model)
        return engine.evaluate([(v.permute(1, 2, 0) * 255).round().byte().cpu().numpy() for v in val],
                               qualities=qualities)

    return validate
