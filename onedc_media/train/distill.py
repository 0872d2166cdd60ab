"""Stage II of OneDC: distribution-matching distillation into the one-step U-Net.

Two stages live here:

* ``teacher`` trains a multi-step latent diffusion model (diffusers
  ``UNet2DConditionModel`` + ``DDPMScheduler``, epsilon prediction) on VAE latents of the
  corpus -- the "real" score for the tiny scale, where no pretrained SD teacher exists.
  With ``teacher_pretrained`` in the loss config any local diffusers U-Net folder is used
  instead (e.g. SD-1.5 for the paper scale) and this stage is skipped.
* ``stage2`` fine-tunes only the codec's U-Net (the generator) with::

      loss = dmd + beta * reconstruction + gamma * adversarial

  ``dmd`` is the DMD gradient at a random timestep: with ``x0`` the one-step latent,
  ``x_t`` its noised version, and x0-predictions of a frozen real teacher and of an online
  "fake" score network (initialised from the teacher, trained on generator outputs),
  ``grad = (x0_fake - x0_real) / mean|x0 - x0_real|`` -- equivalently proportional to
  ``eps_real - eps_fake`` -- applied as ``0.5 * ||x0 - sg(x0 - grad)||^2``. The
  adversarial term uses a small latent PatchGAN discriminator (hinge loss).
  The fake score network and the discriminator are updated after every generator step.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from onedc_media.errors import ModelError
from onedc_media.evaluate.metrics import psnr_batch
from onedc_media.train.config import TrainConfig
from onedc_media.train.losses import distortion
from onedc_media.train.trainer import StageStep, select_params

__all__ = ["TeacherBundle", "LatentDiscriminator", "build"]

DEFAULT_TEACHER = {
    "block_out_channels": [64, 128, 128],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "attention_head_dim": 32,
    "norm_num_groups": 16,
}


class TeacherBundle(nn.Module):
    """The codec (frozen; its VAE makes the latents) and a latent diffusion teacher."""

    def __init__(self, codec: nn.Module, teacher_kwargs: dict[str, Any] | None = None,
                 pretrained: str | None = None) -> None:
        super().__init__()
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

        self.codec = codec
        lat = codec.config.latent_channels
        if pretrained:
            self.teacher = UNet2DConditionModel.from_pretrained(pretrained)
        else:
            kw = {**DEFAULT_TEACHER, **(teacher_kwargs or {})}
            kw.update(in_channels=lat, out_channels=lat, cross_attention_dim=codec.config.token_dim)
            self.teacher = UNet2DConditionModel(**kw)
        if self.teacher.config.in_channels != lat:
            raise ModelError(f"teacher has {self.teacher.config.in_channels} input channels, the "
                             f"VAE latent has {lat}")

    def null_tokens(self, batch: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Unconditional context: one zero token (the teacher models the latent prior)."""
        return torch.zeros(batch, 1, self.teacher.config.cross_attention_dim, device=device, dtype=dtype)


class LatentDiscriminator(nn.Module):
    """A small PatchGAN on latents (spectral-normalised convs)."""

    def __init__(self, channels: int, width: int = 64) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(channels, width, 3, padding=1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(width, width * 2, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(width * 2, width * 2, 3, padding=1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(width * 2, 1, 3, padding=1)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _scheduler(cfg: TrainConfig):
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule=str(cfg.loss.get("beta_schedule", "scaled_linear")),
                         beta_start=0.00085, beta_end=0.012, prediction_type="epsilon")


def _x0_from_eps(sched, x_t: Tensor, eps: Tensor, t: Tensor) -> Tensor:
    a = sched.alphas_cumprod.to(x_t.device)[t].view(-1, 1, 1, 1).to(x_t.dtype)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def build(cfg: TrainConfig, model: nn.Module, device: torch.device) -> StageStep:
    if cfg.stage == "teacher":
        return _teacher_stage(cfg, model, device)
    if cfg.stage == "stage2":
        return _stage2(cfg, model, device)
    raise ModelError(f"unknown distillation stage {cfg.stage!r}")


def _teacher_stage(cfg: TrainConfig, codec: nn.Module, device: torch.device) -> StageStep:
    bundle = TeacherBundle(codec, cfg.loss.get("teacher_kwargs")).to(device)  # type: ignore[arg-type]
    params = select_params(bundle, ["teacher."])
    sched = _scheduler(cfg)

    def loss(x01: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        with torch.no_grad():
            lat = codec.vae.encode(x01 * 2 - 1)
        noise = torch.randn_like(lat)
        t = torch.randint(0, sched.config.num_train_timesteps, (lat.shape[0],), device=device)
        x_t = sched.add_noise(lat, noise, t)
        eps = bundle.teacher(x_t, t, bundle.null_tokens(lat.shape[0], device, lat.dtype)).sample
        mse = F.mse_loss(eps, noise)
        return mse, {"loss": float(mse.detach())}

    return StageStep(model=bundle, params={"main": params}, loss=loss)


def load_teacher(cfg: TrainConfig, codec: nn.Module, device: torch.device) -> nn.Module:
    """The frozen real-score network: a local diffusers folder or a ``teacher`` run."""
    from onedc_media.train.checkpoint import latest_checkpoint, load_checkpoint

    pretrained = cfg.loss.get("teacher_pretrained")
    if pretrained:
        return TeacherBundle(codec, pretrained=str(pretrained)).teacher.to(device)
    ckpt = latest_checkpoint(str(cfg.teacher))
    if ckpt is None:
        raise ModelError(f"no teacher checkpoint in {cfg.teacher} (train the 'teacher' stage first)")
    bundle = TeacherBundle(copy.deepcopy(codec), cfg.loss.get("teacher_kwargs"))
    load_checkpoint(ckpt, bundle, None, strict=True)
    return bundle.teacher.to(device)


class Stage2Bundle(nn.Module):
    """Everything Stage II checkpoints: the codec, the fake score net, the discriminator."""

    def __init__(self, codec: nn.Module, fake: nn.Module, disc: nn.Module) -> None:
        super().__init__()
        self.codec = codec
        self.fake = fake
        self.disc = disc


def _stage2(cfg: TrainConfig, codec: nn.Module, device: torch.device) -> StageStep:
    w = {"beta": 1.0, "gamma": 0.05, "dmd": 1.0, "l1": 1.0, "mse": 0.0, "msssim": 0.0,
         "t_min": 20, "t_max": 980, "fake_lr": cfg.lr, "disc_lr": cfg.lr, **cfg.loss}
    real = load_teacher(cfg, codec, device).eval().requires_grad_(False)
    fake = copy.deepcopy(real).train().requires_grad_(True)
    disc = LatentDiscriminator(codec.config.latent_channels).to(device)
    bundle = Stage2Bundle(codec, fake, disc).to(device)
    params = select_params(bundle, cfg.train_modules or ["codec.unet."])
    for p in list(fake.parameters()) + list(disc.parameters()):
        p.requires_grad_(True)
    fake_opt = torch.optim.AdamW(fake.parameters(), lr=float(w["fake_lr"]))
    disc_opt = torch.optim.AdamW(disc.parameters(), lr=float(w["disc_lr"]), betas=(0.0, 0.99))
    sched = _scheduler(cfg)
    rates = torch.arange(codec.num_rates)
    state: dict[str, Tensor] = {}

    def null(b: int, ref: Tensor) -> Tensor:
        return torch.zeros(b, 1, real.config.cross_attention_dim, device=ref.device, dtype=ref.dtype)

    def loss(x01: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        x = x01 * 2 - 1
        q = rates[torch.randint(0, rates.numel(), (x.shape[0],))].to(device)
        out = codec(x, q, with_aux=False, decode_pixels=True)
        x0 = out.latent_hat
        B = x0.shape[0]
        t = torch.randint(int(w["t_min"]), int(w["t_max"]), (B,), device=device)
        noise = torch.randn_like(x0)
        with torch.no_grad():
            x_t = sched.add_noise(x0.detach(), noise, t)
            real_x0 = _x0_from_eps(sched, x_t, real(x_t, t, null(B, x_t)).sample, t)
            fake_x0 = _x0_from_eps(sched, x_t, fake(x_t, t, null(B, x_t)).sample, t)
            norm = (x0.detach() - real_x0).abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-5)
            grad = (fake_x0 - real_x0) / norm
        dmd = 0.5 * F.mse_loss(x0, (x0 - grad).detach())
        rec, parts = distortion(out.x_hat, x, l1=w["l1"], mse=w["mse"], msssim=w["msssim"])
        disc.requires_grad_(False)
        adv = -disc(x0).mean()
        disc.requires_grad_(True)
        total = w["dmd"] * dmd + w["beta"] * rec.mean() + w["gamma"] * adv
        state["x0"] = x0.detach()
        state["real"] = out.latent.detach()
        return total, {"loss": float(total.detach()), "dmd": float(dmd.detach()), "rec": float(rec.detach().mean()),
                       "adv": float(adv.detach()), "psnr": float(psnr_batch((out.x_hat.detach().clamp(-1, 1) + 1) / 2, x01).mean())}

    def extra(x01: Tensor, step: int) -> dict[str, float]:
        x0, lat = state.pop("x0"), state.pop("real")
        B = x0.shape[0]
        t = torch.randint(0, sched.config.num_train_timesteps, (B,), device=device)
        noise = torch.randn_like(x0)
        x_t = sched.add_noise(x0, noise, t)
        fake_opt.zero_grad(set_to_none=True)
        f_loss = F.mse_loss(fake(x_t, t, null(B, x_t)).sample, noise)
        f_loss.backward()
        fake_opt.step()
        disc_opt.zero_grad(set_to_none=True)
        d_loss = F.relu(1 - disc(lat)).mean() + F.relu(1 + disc(x0)).mean()
        d_loss.backward()
        disc_opt.step()
        return {"fake_loss": float(f_loss.detach()), "disc_loss": float(d_loss.detach())}

    from onedc_media.train.stages import real_bits_validator

    return StageStep(model=bundle, params={"main": params}, loss=loss, extra=extra,
                     validate=real_bits_validator(cfg, codec, device),
                     aux_optimizers={"fake": fake_opt, "disc": disc_opt})
