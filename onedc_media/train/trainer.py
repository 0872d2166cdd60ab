"""The training loop shared by every stage: resumable, deterministic, logged.

Determinism: batch ``s`` is drawn after ``torch.manual_seed(seed, s)``, so a run resumed
from a checkpoint at step ``s`` computes exactly the step an uninterrupted run would.
Each stage contributes a :class:`StageStep` (its trainable parameters and its loss).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from onedc_media.errors import ModelError
from onedc_media.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from onedc_media.train.config import TrainConfig

__all__ = ["Trainer", "StageStep", "step_seed"]

log = logging.getLogger(__name__)


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7_919 + 17) % (2**63 - 1)


@dataclass
class StageStep:
    """What a stage plugs into the loop."""

    model: nn.Module  #: everything whose state is checkpointed
    params: dict[str, list[nn.Parameter]]  #: optimiser name -> parameters
    loss: Callable[[Tensor, int], tuple[Tensor, dict[str, float]]]  #: (batch, step) -> loss
    validate: Callable[[int], dict[str, float]] | None = None
    #: optional extra update after the main step (e.g. Stage II's fake-score network)
    extra: Callable[[Tensor, int], dict[str, float]] | None = None
    #: optimisers the stage steps itself (in ``extra``); checkpointed with the rest
    aux_optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)


class Trainer:
    """Runs a :class:`StageStep` for ``config.steps`` steps with checkpoints and logs."""

    def __init__(self, config: TrainConfig, stage: StageStep, dataset: torch.utils.data.Dataset,
                 *, progress: bool = True) -> None:
        self.config = config
        self.stage = stage
        self.dataset = dataset
        self.progress = progress
        self.run_dir = Path(config.run_dir)
        self.device = torch.device(config.device)
        self.optimizers = {
            name: torch.optim.AdamW(self._groups(ps), lr=config.lr, weight_decay=config.weight_decay)
            for name, ps in stage.params.items() if ps
        }
        if not self.optimizers:
            raise ModelError("nothing to train: no parameter matches train_modules")
        used = {g.get("prefix") for opt in self.optimizers.values() for g in opt.param_groups}
        unused = [pre for pre in config.lr_scale or {} if pre not in used]
        if unused:  # a typo, or another stage's names (stage2's are codec.*), must not be a no-op
            raise ModelError(f"lr_scale: {', '.join(map(repr, unused))} matches no parameter that trains")
        self.scaler = torch.amp.GradScaler(enabled=config.amp == "fp16")
        self.step = 0
        self.wall = 0.0

    def _groups(self, params: list[nn.Parameter]) -> list[dict]:
        """One parameter group per ``lr_scale`` prefix (first match wins), then the rest.

        Why: a few parameters need their own pace. The per-channel rate gains are a handful of
        numbers that must follow the analysis transform's scale as it moves; at the network's
        learning rate they lag, and the rates of the points they serve drift up.
        """
        scales = self.config.lr_scale or {}
        names = {id(p): n for n, p in self.stage.model.named_parameters()}
        groups = [{"params": [], "lr_scale": float(m), "prefix": pre} for pre, m in scales.items()]
        rest: list[nn.Parameter] = []
        for p in params:
            name = names.get(id(p), "")
            hit = next((i for i, pre in enumerate(scales) if name.startswith(pre)), None)
            (rest if hit is None else groups[hit]["params"]).append(p)
        return [g for g in groups if g["params"]] + ([{"params": rest, "lr_scale": 1.0}] if rest else [])

    # -- schedule ------------------------------------------------------------------
    def lr_at(self, step: int) -> float:
        c = self.config
        if step < c.warmup:
            return c.lr * (step + 1) / c.warmup
        t = min(1.0, (step - c.warmup) / max(1, c.steps - c.warmup))
        return c.lr * (c.lr_min_ratio + (1 - c.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))

    def batch(self, step: int) -> Tensor:
        torch.manual_seed(step_seed(self.config.seed, step))
        n = len(self.dataset)
        idx = torch.randint(0, n, (self.config.batch_size,)).tolist()
        return torch.stack([self.dataset[i] for i in idx]).to(self.device)

    # -- state ---------------------------------------------------------------------
    def resume(self) -> bool:
        """Continue from the newest checkpoint in ``run_dir``; False if there is none."""
        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None:
            return False
        try:
            state = load_checkpoint(ckpt, self.stage.model, {**self.optimizers, **self.stage.aux_optimizers})
        except ValueError as exc:  # torch: "loaded state dict has a different number of ..."
            raise ModelError(
                f"{ckpt}: its optimiser state does not fit this config (train_modules or lr_scale "
                f"changed since the run started?): {exc}"
            ) from None
        # The multipliers are the config's, not the checkpoint's (the group layout is the same).
        for opt in self.optimizers.values():
            params = [p for group in opt.param_groups for p in group["params"]]
            for group, fresh in zip(opt.param_groups, self._groups(params)):
                group["lr_scale"] = fresh["lr_scale"]
        self.step = int(state["step"])
        self.wall = float(state.get("wall_seconds", 0.0))
        log.info("resumed from %s at step %d", ckpt, self.step)
        return True

    def save(self) -> Path:
        return save_checkpoint(
            self.run_dir, self.step, self.stage.model, {**self.optimizers, **self.stage.aux_optimizers},
            {"wall_seconds": self.wall, "config": self.config.to_dict()},
            keep=self.config.keep_checkpoints, keep_every=self.config.keep_every,
        )

    def _log_row(self, name: str, row: dict[str, Any]) -> None:
        path = self.run_dir / name
        new = not path.exists()
        with open(path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    # -- loop ----------------------------------------------------------------------
    def run(self, max_steps: int | None = None, max_seconds: float | None = None) -> int:
        """Train until ``config.steps`` (or the given limits); returns the step reached."""
        c = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        end = c.steps if max_steps is None else min(c.steps, self.step + max_steps)
        start_time = time.monotonic()
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=end, initial=self.step, desc=f"train {c.stage}", unit="step", dynamic_ncols=True)
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16 if c.amp == "bf16" else torch.float16)
            if c.amp != "none" else contextlib.nullcontext()
        )
        self.stage.model.train()
        running: dict[str, float] = {}
        try:
            while self.step < end:
                t0 = time.monotonic()
                lr = self.lr_at(self.step)
                for opt in self.optimizers.values():
                    for g in opt.param_groups:
                        g["lr"] = lr * g.get("lr_scale", 1.0)
                    opt.zero_grad(set_to_none=True)
                parts_acc: dict[str, float] = {}
                for micro in range(c.grad_accum):
                    x = self.batch(self.step * c.grad_accum + micro)
                    with autocast:
                        loss, parts = self.stage.loss(x, self.step)
                    if not torch.isfinite(loss):
                        raise ModelError(f"loss is not finite at step {self.step}: {parts}")
                    self.scaler.scale(loss / c.grad_accum).backward()
                    for k, v in parts.items():
                        parts_acc[k] = parts_acc.get(k, 0.0) + v / c.grad_accum
                for opt in self.optimizers.values():
                    self.scaler.unscale_(opt)
                    ps = [p for g in opt.param_groups for p in g["params"]]
                    if c.grad_clip:
                        torch.nn.utils.clip_grad_norm_(ps, c.grad_clip)
                    self.scaler.step(opt)
                self.scaler.update()
                if self.stage.extra is not None:
                    parts_acc.update(self.stage.extra(x, self.step))
                self.step += 1
                dt = time.monotonic() - t0
                self.wall += dt
                for k, v in parts_acc.items():
                    running[k] = 0.9 * running.get(k, v) + 0.1 * v
                if self.step % c.log_every == 0 or self.step == end:
                    self._log_row("metrics.csv", {"step": self.step, "lr": f"{lr:.3g}",
                                                  "seconds": f"{dt:.3f}",
                                                  **{k: f"{v:.6g}" for k, v in parts_acc.items()}})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in list(running.items())[:4]})
                if self.step % c.ckpt_every == 0 or self.step == end:
                    self.save()
                if self.stage.validate and (self.step % c.val_every == 0 or self.step == end):
                    self.stage.model.eval()
                    with torch.no_grad():
                        vals = self.stage.validate(self.step)
                    self.stage.model.train()
                    if vals:
                        self._log_row("val.csv", {"step": self.step, **{k: f"{v:.6g}" for k, v in vals.items()}})
                if max_seconds is not None and time.monotonic() - start_time > max_seconds:
                    self.save()
                    break
        finally:
            if bar is not None:
                bar.close()
        return self.step


def select_params(model: nn.Module, prefixes: list[str]) -> list[nn.Parameter]:
    """Parameters whose name starts with one of ``prefixes``; freezes all the others."""
    out = []
    for name, p in model.named_parameters():
        on = any(name.startswith(pre) for pre in prefixes)
        p.requires_grad_(on)
        if on:
            out.append(p)
    return out

