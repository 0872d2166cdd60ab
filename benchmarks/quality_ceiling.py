"""Where a OneDC model's quality stops: the VAE round trip against the codec's top rate point.

Not a test. The decoder ends in the VAE's decoder. Its round trip (``decode(encode(x))``,
no bits involved) is what the VAE encoder's latent gives; how far the top rate point stays
below it is what the latent path loses. Two optional columns say where the ceiling is:

* ``--latent-steps N``: the VAE decoder from a latent optimised for the picture (N Adam
  steps on the MSE), the decoder's own ceiling. On onedc-tiny it is far above the round trip
  (three 256x256 held-out crops: 45.3 / 24.6 / 39.5 dB against 36.2 / 21.1 / 28.1).
* ``--refine N``: the rate point with the refining encoder, the best ``y`` the latent path
  is given. When it stays near the round trip while the optimised latent is far above, it
  is synthesis and U-Net, not the VAE or the bits, that cap the top.

::

    python benchmarks/quality_ceiling.py data/corpus/test            # onedc-tiny, 512x512 crops
    python benchmarks/quality_ceiling.py photos/ --model my-model/ --crop 256 -q 4
    python benchmarks/quality_ceiling.py data/corpus/test --crop 256 --latent-steps 150 --refine 30

Prints one row per picture (PSNR in dB, RGB, 8-bit) and the means.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from onedc_media.evaluate.metrics import psnr_rgb


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size`` x ``size`` (or less), cut to a multiple of 64 as the codec needs."""
    h, w = (min(size, d) // 64 * 64 for d in img.shape[:2])
    if h == 0 or w == 0:
        raise ValueError(f"picture {img.shape[1]}x{img.shape[0]} is smaller than 64x64")
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return np.ascontiguousarray(img[top : top + h, left : left + w])


def vae_round_trip(model, img: np.ndarray) -> np.ndarray:
    import torch

    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = model.vae.decode(model.vae.encode(x))
    return ((y.clamp(-1, 1) + 1) * 127.5).round().byte()[0].permute(1, 2, 0).numpy()


def optimised_latent(model, img: np.ndarray, steps: int, lr: float = 0.02) -> np.ndarray:
    """The VAE decoder's output from a latent fitted to *img* (Adam from the encoder's)."""
    import torch

    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
    model.requires_grad_(False)
    with torch.no_grad():
        lat = model.vae.encode(x)
    lat.requires_grad_(True)
    opt = torch.optim.Adam([lat], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = (model.vae.decode(lat) - x).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        y = model.vae.decode(lat)
    return ((y.clamp(-1, 1) + 1) * 127.5).round().byte()[0].permute(1, 2, 0).numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", type=Path, help="folder of pictures")
    ap.add_argument("--model", default="onedc-tiny", help="embedded model name or exported folder")
    ap.add_argument("--crop", type=int, default=512, help="centre crop size (default 512)")
    ap.add_argument("-q", "--quality", type=int, default=None,
                    help="rate point to compare (default: the model's highest)")
    ap.add_argument("--limit", type=int, default=0, help="at most this many pictures (0: all)")
    ap.add_argument("--latent-steps", type=int, default=0,
                    help="also the VAE decoder from a latent optimised this many steps (slow)")
    ap.add_argument("--refine", type=int, default=0,
                    help="also the rate point with the refining encoder, this many steps (slow)")
    args = ap.parse_args(argv)

    from onedc_media.errors import OdcError
    from onedc_media.imageio import read_image
    from onedc_media.model.engine import OneDCEngine

    if not args.images.is_dir():
        print(f"quality_ceiling: {args.images} is not a folder", file=sys.stderr)
        return 1
    if args.crop < 64:
        print("quality_ceiling: --crop must be at least 64", file=sys.stderr)
        return 1
    if args.latent_steps < 0 or args.refine < 0:
        print("quality_ceiling: --latent-steps and --refine must be >= 0", file=sys.stderr)
        return 1
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if args.limit:
        files = files[: args.limit]
    if not files:
        print(f"quality_ceiling: no pictures in {args.images}", file=sys.stderr)
        return 1
    engine = OneDCEngine.from_pretrained(args.model)
    q = engine.num_rates if args.quality is None else args.quality
    if not 1 <= q <= engine.num_rates:
        print(f"quality_ceiling: -q must be 1..{engine.num_rates}", file=sys.stderr)
        return 1
    from onedc_media.model.refine import RefineConfig

    cols = {"VAE": [], "latent*": [], f"q{q}": [], f"q{q}+ref": []}
    shown = [c for c in cols if (c != "latent*" or args.latent_steps) and (c != f"q{q}+ref" or args.refine)]
    vae, codec = cols["VAE"], cols[f"q{q}"]
    print(f"{'picture':44s} " + " ".join(f"{c:>8s}" for c in shown) + f"  (PSNR dB, {args.crop}px centre crops)")
    for f in files:
        try:
            img = centre_crop(read_image(f), args.crop)
        except (OdcError, ValueError) as exc:
            print(f"{f.name[:44]:44s} skipped: {exc}")
            continue
        vae.append(psnr_rgb(img, vae_round_trip(engine.model.eval(), img)))
        if args.latent_steps:
            cols["latent*"].append(psnr_rgb(img, optimised_latent(engine.model.eval(), img, args.latent_steps)))
        codec.append(psnr_rgb(img, engine.decompress(engine.compress([img], q - 1))[0]))
        if args.refine:
            packets = engine.compress([img], q - 1, refine=RefineConfig(steps=args.refine))
            cols[f"q{q}+ref"].append(psnr_rgb(img, engine.decompress(packets)[0]))
        print(f"{f.name[:44]:44s} " + " ".join(f"{cols[c][-1]:8.2f}" for c in shown), flush=True)
    if not vae:
        print(f"quality_ceiling: no usable picture in {args.images}", file=sys.stderr)
        return 1
    print(f"{'mean':44s} " + " ".join(f"{np.mean(cols[c]):8.2f}" for c in shown)
          + f"  (the latent path loses {np.mean(vae) - np.mean(codec):.2f} dB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
