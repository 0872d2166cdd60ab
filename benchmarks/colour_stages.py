"""Where a OneDC model changes colours: the colour error of each stage of the decoder.

Not a test. The decoder is a chain (``docs/training.md``); a colour that comes out wrong
went wrong in one link of it. For every picture this prints the worst 16x16 block's
CIEDE2000 (between block mean colours: blur does not count, a shifted colour does;
``onedc_media.evaluate.metrics.colour_error``) after each link:

* ``vae``: the VAE round trip, ``decode(encode(x))``: no bits, no U-Net;
* ``true-y``: the analysis network's ``y`` and ``z`` straight into synthesis, U-Net and VAE
  decoder, unquantised (what the decoder makes of a perfect ``y``);
* ``q-y``: the same with ``y`` quantised at the rate point (the simulated decode);
* ``no-sem``: ``true-y`` with the semantic branch given the neutral hyper-latent (every
  FSQ level at its centre): what the semantic tokens contribute;
* ``qN``: the real bitstream through ``engine.compress`` / ``decompress``.

::

    python benchmarks/colour_stages.py data/corpus/test -q 6
    python benchmarks/colour_stages.py photos/ --model runs/x/export -q 3 --crop 512

Prints one row per picture, the means and the worst picture per column.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _to_x(img: np.ndarray):
    import torch

    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1


def _to_img(x) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte()[0].permute(1, 2, 0).numpy()


def stage_outputs(model, img: np.ndarray, q: int) -> dict[str, np.ndarray]:
    """The picture after each simulated link of the decoder (``q`` is 0-based)."""
    import torch

    from onedc_media.model.onedc import pad_to_multiple

    h, w = img.shape[:2]
    x = pad_to_multiple(_to_x(img))
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        latent, y, _, z_int = model.analyse(x)
        out["vae"] = _to_img(model.vae.decode(latent)[..., :h, :w])
        out["true-y"] = _to_img(model.synthesize(y, z_int)[..., :h, :w])
        qq = torch.tensor([q])
        y_hat, _, _ = model.parsing(z_int, y * model.gain(qq), qq)
        out["q-y"] = _to_img(model.synthesize(y_hat, z_int)[..., :h, :w])
        out["no-sem"] = _to_img(model.synthesize(y, torch.zeros_like(z_int))[..., :h, :w])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", type=Path, help="folder of pictures")
    ap.add_argument("--model", default="onedc-tiny", help="embedded model name or exported folder")
    ap.add_argument("-q", "--quality", type=int, default=None,
                    help="rate point (default: the model's highest)")
    ap.add_argument("--crop", type=int, default=0, help="centre crop size (0: whole pictures)")
    ap.add_argument("--limit", type=int, default=0, help="at most this many pictures (0: all)")
    args = ap.parse_args(argv)

    from onedc_media.errors import OdcError
    from onedc_media.evaluate.metrics import colour_error
    from onedc_media.imageio import read_image
    from onedc_media.model.engine import OneDCEngine

    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")) \
        if args.images.is_dir() else []
    if args.limit:
        files = files[: args.limit]
    if not files:
        print(f"colour_stages: no pictures in {args.images}", file=sys.stderr)
        return 1
    engine = OneDCEngine.from_pretrained(args.model)
    model = engine.model.eval()
    q = engine.num_rates if args.quality is None else args.quality
    if not 1 <= q <= engine.num_rates:
        print(f"colour_stages: -q must be 1..{engine.num_rates}", file=sys.stderr)
        return 1
    cols = ["vae", "true-y", "q-y", "no-sem", f"q{q}"]
    table: dict[str, list[float]] = {c: [] for c in cols}
    names: list[str] = []
    print(f"{'picture':40s} " + " ".join(f"{c:>8s}" for c in cols)
          + "  (worst 16x16 block CIEDE2000 of mean colours)")
    for f in files:
        try:
            img = read_image(f)
        except OdcError as exc:
            print(f"{f.name[:40]:40s} skipped: {exc}")
            continue
        if args.crop:
            s = min(args.crop, *img.shape[:2]) // 64 * 64
            top, left = (img.shape[0] - s) // 2, (img.shape[1] - s) // 2
            img = np.ascontiguousarray(img[top : top + s, left : left + s])
        outs = stage_outputs(model, img, q - 1)
        outs[f"q{q}"] = engine.decompress(engine.compress([img], q - 1))[0]
        for c in cols:
            table[c].append(colour_error(img, outs[c]).worst_block)
        names.append(f.stem)
        print(f"{f.stem[:40]:40s} " + " ".join(f"{table[c][-1]:8.2f}" for c in cols), flush=True)
    print(f"{'mean':40s} " + " ".join(f"{np.mean(table[c]):8.2f}" for c in cols))
    print(f"{'worst picture':40s} " + " ".join(f"{np.max(table[c]):8.2f}" for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
