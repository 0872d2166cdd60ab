"""``onedc-media train``: run (or resume) a training stage from a YAML config."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a stage (vae, stage1, teacher, stage2) from configs/train/*.yaml",
        description="Train or resume a OneDC training stage. Runs resume automatically from the "
        "newest checkpoint in the run directory, and the result is bit-for-bit the same as an "
        "uninterrupted run. Metrics go to RUN_DIR/metrics.csv and RUN_DIR/val.csv.",
        epilog="example: onedc-media train --config configs/train/stage1-tiny.yaml --max-minutes 60",
    )
    p.add_argument("--config", required=True, help="training config YAML")
    p.add_argument("--run-dir", help="override the run directory")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--steps", type=int, help="override the total number of steps")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in this invocation")
    p.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this long")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from onedc_media.train.run import train

    trainer = train(
        args.config, max_steps=args.max_steps,
        max_seconds=None if args.max_minutes is None else args.max_minutes * 60,
        progress=not args.no_progress, run_dir=args.run_dir, device=args.device,
        steps=args.steps, threads=args.threads,
    )
    print(f"stopped at step {trainer.step} of {trainer.config.steps}; run dir {trainer.run_dir}")
    return 0
