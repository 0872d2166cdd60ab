"""Resumable training checkpoints: safetensors for tensors, JSON for the rest.

No pickle anywhere: model weights and optimizer tensors go to safetensors; optimizer
scalars, param groups and trainer state go to JSON. A checkpoint directory is complete
or absent: it is written under a temporary name and renamed (invariant 6).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from onedc_media.errors import ModelError

__all__ = ["latest_checkpoint", "load_checkpoint", "save_checkpoint"]


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, entry in state["state"].items():
        for name, value in entry.items():
            key = f"{pid}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value.detach().cpu().contiguous()
            else:
                scalars[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        pid, _, name = key.partition(".")
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(run_dir: str | os.PathLike, step: int, model: torch.nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer], trainer_state: dict[str, Any],
                    *, keep: int = 3, keep_every: int = 0) -> Path:
    """Write ``run_dir/checkpoints/step_<step>`` atomically and prune old ones.

    Steps that are multiples of ``keep_every`` are milestones and never pruned: a run that
    diverges can be rolled back to the last good one instead of only the newest three.
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(tmp / "model.safetensors"))
    for name, opt in optimizers.items():
        tensors, meta = _flatten_optimizer(opt.state_dict())
        save_file(tensors, str(tmp / f"optimizer-{name}.safetensors"))
        (tmp / f"optimizer-{name}.json").write_text(json.dumps(meta))
    (tmp / "trainer.json").write_text(json.dumps({"step": step, **trainer_state}, indent=2))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    old = sorted(p for p in root.iterdir() if p.name.startswith("step_"))
    for p in old[:-keep]:
        if keep_every and int(p.name.removeprefix("step_")) % keep_every == 0:
            continue
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(path: str | os.PathLike) -> Path | None:
    """The newest ``step_*`` under ``path/checkpoints`` (or ``path`` itself if it is one)."""
    p = Path(path)
    if (p / "model.safetensors").exists() and (p / "trainer.json").exists():
        return p
    root = p / "checkpoints"
    if not root.is_dir():
        return None
    steps = sorted(q for q in root.iterdir() if q.name.startswith("step_") and (q / "trainer.json").exists())
    return steps[-1] if steps else None


def load_checkpoint(ckpt: str | os.PathLike, model: torch.nn.Module,
                    optimizers: dict[str, torch.optim.Optimizer] | None = None,
                    *, strict: bool = True) -> dict[str, Any]:
    """Load weights (and optimizer state) from a checkpoint dir; returns trainer state."""
    ckpt = Path(ckpt)
    if not (ckpt / "model.safetensors").exists():
        raise ModelError(f"{ckpt} is not a checkpoint (no model.safetensors)")
    sd = load_file(str(ckpt / "model.safetensors"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if strict and (missing or unexpected):
        raise ModelError(
            f"checkpoint {ckpt} does not match the model: missing {list(missing)[:5]}, "
            f"unexpected {list(unexpected)[:5]}"
        )
    for name, opt in (optimizers or {}).items():
        tf = ckpt / f"optimizer-{name}.safetensors"
        if tf.exists():
            meta = json.loads((ckpt / f"optimizer-{name}.json").read_text())
            opt.load_state_dict(_unflatten_optimizer(load_file(str(tf)), meta))
    state = ckpt / "trainer.json"  # an exported model folder (an init) has none
    return json.loads(state.read_text()) if state.exists() else {}
