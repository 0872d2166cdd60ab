"""Build everything a training run needs from its config and run it."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from onedc_media.errors import ModelError
from onedc_media.train.checkpoint import latest_checkpoint, load_checkpoint
from onedc_media.train.config import TrainConfig, load_train_config
from onedc_media.train.trainer import Trainer

__all__ = ["prepare", "train"]

log = logging.getLogger(__name__)


def prepare(cfg: TrainConfig, *, progress: bool = True) -> Trainer:
    """Model + stage + data + trainer, resumed from ``run_dir`` or initialised from ``init``."""
    from onedc_media.model.loading import build_model
    from onedc_media.train.data import ImageFolderDataset
    from onedc_media.train.stages import build_stage

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model)
    resumable = latest_checkpoint(cfg.run_dir) is not None
    if cfg.init and not resumable:
        ckpt = latest_checkpoint(cfg.init) or _exported_model(cfg.init)
        if ckpt is None:
            raise ModelError(f"init: no checkpoint or exported model in {cfg.init}")
        load_checkpoint(ckpt, model, None, strict=cfg.init_strict)
        log.info("initialised from %s", ckpt)
        if cfg.init_gain_shift:
            parsing = getattr(model, "parsing", None)
            if parsing is None:
                raise ModelError(f"init_gain_shift: a {cfg.stage} model has no rate ladder")
            try:
                parsing.shift_gain_ladder(cfg.init_gain_shift)
            except ValueError as exc:
                raise ModelError(f"init_gain_shift: {exc}") from None
            log.info("rate ladder moved %d point(s) down", cfg.init_gain_shift)
    stage = build_stage(cfg, model)
    dataset = ImageFolderDataset(cfg.train_data, cfg.crop, train=True, skip_invalid=True,
                                   cache=cfg.cache_images)
    trainer = Trainer(cfg, stage, dataset, progress=progress)
    trainer.resume()
    return trainer


def train(config: str | os.PathLike, *, max_steps: int | None = None,
          max_seconds: float | None = None, progress: bool = True, **overrides: Any) -> Trainer:
    cfg = load_train_config(config, **overrides)
    trainer = prepare(cfg, progress=progress)
    trainer.run(max_steps=max_steps, max_seconds=max_seconds)
    return trainer


def _exported_model(spec: str):  # -> Path | None
    """An exported model folder (or an embedded model's name) as an ``init``: its float16
    inference weights start the run (training-only heads stay at their initialisation, so
    ``init_strict: false``); e.g. the fine decoder starts from the shipped ``onedc-tiny``."""
    from pathlib import Path

    from onedc_media.model.loading import embedded_model_dir

    for d in (Path(spec), embedded_model_dir(str(spec))):
        if (d / "model.safetensors").is_file() and (d / "config.json").is_file():
            return d
    return None
