"""Training configuration (``configs/train/*.yaml``): one dataclass, validated up front."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from onedc_media.errors import ModelError

__all__ = ["TrainConfig", "STAGES", "load_train_config"]

#: ``vae``: the tiny VAE (reconstruction); ``stage1``: the codec (rate + distortion +
#: semantic distillation); ``teacher``: a multi-step latent diffusion teacher for Stage II;
#: ``stage2``: distribution-matching distillation of the one-step U-Net.
STAGES = ("vae", "stage1", "teacher", "stage2")


@dataclass
class TrainConfig:
    stage: str
    model: str  #: model config YAML (configs/models/...) or an exported model folder
    run_dir: str
    train_data: str
    val_data: str | None = None
    init: str | None = None  #: checkpoint or run dir whose weights start this run
    init_strict: bool = True
    #: move the initial weights' rate ladder this many points down (see ParsingNet.shift_gain_ladder)
    init_gain_shift: int = 0
    teacher: str | None = None  #: stage2: run dir / checkpoint of the teacher (stage "teacher")
    tokenizer: str | None = None  #: stage1: k-means tokenizer file (fitted if missing)
    crop: int = 256
    cache_images: bool = False  #: keep decoded training pictures in memory (fast; 3 B/pixel)
    batch_size: int = 8
    grad_accum: int = 1
    steps: int = 10000
    lr: float = 1e-4
    lr_min_ratio: float = 0.1
    #: parameter-name prefix -> learning-rate multiplier (e.g. ``{parsing.log_gain: 100}``)
    lr_scale: dict[str, float] = field(default_factory=dict)
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    amp: str = "none"  #: "none" | "bf16" | "fp16" (autocast; fp16 adds a grad scaler)
    threads: int | None = None
    train_modules: list[str] | None = None  #: parameter-name prefixes that train
    loss: dict[str, float] = field(default_factory=dict)
    rate_points: list[int] | None = None  #: rate-point indices to sample (default: all)
    val_every: int = 500
    val_images: int = 8
    val_crop: int = 256
    ckpt_every: int = 100
    keep_checkpoints: int = 3
    keep_every: int = 0  #: also keep every checkpoint whose step is a multiple of this
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ModelError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.crop % 64:
            raise ModelError(f"crop ({self.crop}) must be a multiple of 64")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ModelError(f"amp must be none, bf16 or fp16, got {self.amp!r}")
        if self.keep_every < 0 or self.keep_checkpoints < 1:
            raise ModelError("keep_every must be >= 0 and keep_checkpoints >= 1")
        if self.batch_size < 1 or self.grad_accum < 1 or self.steps < 1:
            raise ModelError("batch_size, grad_accum and steps must be >= 1")
        if isinstance(self.init_gain_shift, bool) or not isinstance(self.init_gain_shift, int):
            raise ModelError(f"init_gain_shift must be an integer, got {self.init_gain_shift!r}")
        if self.init_gain_shift and (self.init_gain_shift < 0 or not self.init):
            raise ModelError("init_gain_shift must be >= 0 and needs init")
        if not isinstance(self.lr_scale, dict) or any(
            not isinstance(k, str) or isinstance(m, bool) or not isinstance(m, (int, float)) or m <= 0
            for k, m in self.lr_scale.items()
        ):
            raise ModelError("lr_scale must map parameter-name prefixes to positive numbers")
        if self.stage == "stage2" and not self.teacher:
            raise ModelError("stage2 needs a teacher (run dir of a 'teacher' stage)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_train_config(path: str | os.PathLike, **overrides: Any) -> TrainConfig:
    """Read a YAML training config; ``overrides`` (non-None) replace its keys.

    Relative paths in the file are resolved against the current directory (run from the
    repository root, as the README shows).
    """
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"cannot read training config {path}: {exc}") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelError(f"{path}: unknown training config keys: {', '.join(unknown)}")
    try:
        return TrainConfig(**data)
    except TypeError as exc:
        raise ModelError(f"{path}: {exc}") from None
