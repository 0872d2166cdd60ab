"""``onedc-media bench model``: OneDC encode/decode time per stage (and vs AVIF)."""

from __future__ import annotations

import argparse

from onedc_media.cli.bench_cmd import BenchCommand, register_bench


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="onedc-tiny", help="embedded model name or exported folder")
    p.add_argument("--image", help="picture to code (default: a 512x512 crop of a bundled photo)")
    p.add_argument("--size", default="512x512", help="WxH crop/resize of the picture (default 512x512)")
    p.add_argument("-q", "--quality", type=int, default=None,
                   help="rate point, 1-based (default: the model's default rate point)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--reference", default="avif", help="codec whose decode time is the reference")


def _run(args: argparse.Namespace):
    from pathlib import Path

    import cv2
    import torch

    from onedc_media.errors import CodecOptionError
    from onedc_media.imageio import read_image
    from onedc_media.model.engine import OneDCEngine
    from onedc_media.model.profile import bench_model_stages

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise CodecOptionError(f"--size expects WxH, got {args.size!r}") from None
    src = Path(args.image) if args.image else Path(__file__).resolve().parents[2] / "tests" / "data" / "coffee.jpg"
    img = read_image(src)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_CUBIC)
    engine = OneDCEngine.from_pretrained(args.model, device=args.device, dtype=getattr(torch, args.dtype))
    q = engine.default_quality if args.quality is None else args.quality
    if not 1 <= q <= engine.num_rates:
        raise CodecOptionError(f"--quality must be 1..{engine.num_rates} for {engine.ref.name}")
    return bench_model_stages(engine, img, q=q - 1, repeats=args.repeats, warmup=args.warmup,
                              reference_codec=args.reference)


register_bench(BenchCommand("model", "OneDC encode/decode time per stage, and the ratio to AVIF", _args, _run))
