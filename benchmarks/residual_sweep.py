"""Which settings of the latent residual layer buy the most quality per bit (real bits).

Not a test. For each picture: the refined base at each rate point (``refine=30``, computed
once and reused), then the residual layer at each (step, lmbda) asked for, coded and decoded
through the engine. One JSON line per point (``--out``), one summary line per picture.
How the ``enhance`` levels were chosen (model card, "The latent residual layer")::

    python benchmarks/residual_sweep.py data/corpus/test/skimage__chelsea.png \\
        data/corpus/test/opencv__data_home.png --points "4:0.15/0.4;5:0.15/0.2;6:0.1/0.1"

``--points`` is ``Q:STEP/LMBDA,STEP/LMBDA;Q:...`` with 1-based rate points.
``--decoders best,fine,model`` and ``--starts clean,base`` measure each setting with the
per-picture choice, the fine decoder and the model's own, from the clean latent and from
the U-Net's, side by side
(model card, "The fine decoder")::

    python benchmarks/residual_sweep.py data/corpus/test/opencv__text_scenetext02.png \
        --points "5:0.15/0.2" --decoders best,fine,model
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def parse_points(spec: str) -> list[tuple[int, list[tuple[float, float]]]]:
    out = []
    for part in filter(None, spec.split(";")):
        q, _, grid = part.partition(":")
        pairs = [tuple(map(float, g.split("/"))) for g in filter(None, grid.split(","))]
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f"bad --points entry {part!r}: expected Q:STEP/LMBDA,...")
        out.append((int(q) - 1, pairs))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--points", default="4:0.15/0.4;5:0.15/0.2;6:0.15/0.1",
                    help="Q:STEP/LMBDA,...;Q:... (default: the enhance=1 level at q4, q5, q6)")
    ap.add_argument("--refine", type=int, default=30, help="refinement steps of the base (default 30)")
    ap.add_argument("--steps", type=int, default=60, help="gradient steps of the residual fit")
    ap.add_argument("--decoders", default="best",
                    help="comma list of best (the cheaper of the two, per picture), fine (the model's "
                    "fine decoder) and model (its VAE decoder)")
    ap.add_argument("--starts", default="clean", help="comma list of clean and base: where the fit starts")
    ap.add_argument("--model", default="onedc-tiny", help="model name or folder (default onedc-tiny)")
    ap.add_argument("--out", type=Path, help="append one JSON line per point here")
    args = ap.parse_args(argv)
    try:
        points = parse_points(args.points)
    except ValueError as exc:
        ap.error(str(exc))
    decoders = args.decoders.split(",")
    starts = args.starts.split(",")
    if not set(decoders) <= {"best", "fine", "model"} or not set(starts) <= {"clean", "base"}:
        ap.error("--decoders takes best, fine and model, --starts clean and base")

    from onedc_media.evaluate.metrics import ms_ssim, psnr_rgb
    from onedc_media.imageio import read_image
    from onedc_media.model.engine import OneDCEngine
    from onedc_media.model.refine import RefineConfig, refine_latents
    from onedc_media.model.residual import ResidualConfig

    engine = OneDCEngine.from_pretrained(args.model)
    if {"best", "fine"} & set(decoders) and engine.fine_decoder is None:
        ap.error(f"{args.model} has no fine decoder (--decoders model)")
    variants = [(d, st) for d in decoders for st in starts]
    sink = open(args.out, "a") if args.out else None  # noqa: SIM115 - closed below
    try:
        for path in args.images:
            image = read_image(path)
            pixels = image.shape[0] * image.shape[1]
            cells = []
            for q, grid in points:
                enc = engine.analyse([image])[0]
                if args.refine:
                    enc = refine_latents(engine, image, enc, q, RefineConfig(steps=args.refine))
                for label, cfg in [("base", None)] + [
                    (f"{s}/{lam}" + (f" {d}/{st}" if len(variants) > 1 else ""),
                     ResidualConfig(step=s, lmbda=lam, steps=args.steps, decoder=d, start=st))
                    for s, lam in grid for d, st in variants
                ]:
                    t0 = time.perf_counter()
                    packet = engine.encode_picture(image, enc, q, residual=cfg)
                    seconds = time.perf_counter() - t0
                    rec = engine.decompress([packet])[0]
                    row = {"image": path.name, "q": q + 1, "setting": label, "bytes": len(packet),
                           "bpp": len(packet) * 8 / pixels, "psnr": psnr_rgb(image, rec),
                           "ms_ssim": ms_ssim(image, rec), "layer_s": seconds,
                           "decoder": None if cfg is None else cfg.decoder,
                           "start": None if cfg is None else cfg.start}
                    if sink:
                        sink.write(json.dumps(row) + "\n")
                        sink.flush()
                    cells.append(f"q{q + 1} {label} {row['bpp']:.3f}/{row['psnr']:.2f}/{row['ms_ssim']:.3f}")
            print(f"{path.name[:28]:28} " + " | ".join(cells), flush=True)
    finally:
        if sink:
            sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
