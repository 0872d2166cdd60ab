"""Pillow and imageio with .odc files: open, convert, save, iterate.

    python examples/pillow_imageio.py photo.jpg                 # JPEG and PNG .odc files
    python examples/pillow_imageio.py photo.jpg --onedc -q 2    # OneDC too (slower on a CPU)
    python examples/pillow_imageio.py photo.jpg --onedc --model my-model/

1. ``onedc_media.pillow.register()``: ``Image.save`` writes ``.odc`` (one picture: the
   still form) with any installed codec and its options, ``Image.open`` reads size and
   mode from the header and decodes on ``load()``;
2. ``onedc_media.imageio_plugin.register()``: ``imageio.v3`` reads, writes, iterates
   and describes ``.odc`` files;
3. a damaged copy: both libraries give their usual error with onedc-media's message.

Without a picture on the command line it uses the photograph matplotlib ships.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageSequence

import onedc_media.imageio_plugin
import onedc_media.pillow


def sample_photo() -> str:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("give a picture on the command line")
    return os.path.join(spec.submodule_search_locations[0], "mpl-data", "sample_data", "grace_hopper.jpg")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("picture", nargs="?", help="a picture file (default: a sample photograph)")
    p.add_argument("--onedc", action="store_true", help="also write and read a OneDC picture")
    p.add_argument("-q", "--quality", type=int, default=2, help="OneDC rate point (default 2)")
    p.add_argument("--model", help="a model folder OneDC pictures must decode with")
    args = p.parse_args(argv)
    onedc_media.pillow.register(model=args.model)
    onedc_media.imageio_plugin.register()
    source = Image.open(args.picture or sample_photo()).convert("RGB")
    source.thumbnail((256, 256))  # keeps OneDC quick on a CPU
    with tempfile.TemporaryDirectory(prefix="odc-pillow-") as out:
        show(source, out, args)
    return 0


def show(source: Image.Image, out: str, args: argparse.Namespace) -> None:
    """Write, read and damage .odc files in *out*."""
    rgb = np.asarray(source)

    jobs = [("jpeg", {"quality": 80}), ("png", {})]
    if args.onedc:
        jobs.append(("onedc", {"quality": args.quality}))
    for codec, options in jobs:  # Pillow writes, Pillow and imageio read
        path = os.path.join(out, f"picture.{codec}.odc")
        source.save(path, codec=codec, **options)
        with Image.open(path) as im:
            print(f"{path}: {im.format} {im.size} {im.mode}, {im.info['odc_form']} form, "
                  f"{os.path.getsize(path) * 8 / (im.size[0] * im.size[1]):.4f} bpp")
            back = np.asarray(im)
        via_imageio = iio.imread(path, model=args.model) if args.model else iio.imread(path)
        assert np.array_equal(back, via_imageio), "Pillow and imageio decode alike"
        print(f"  PSNR {psnr(back, rgb):.2f} dB, imageio: {iio.improps(path).shape}")

    many = os.path.join(out, "pictures.odc")  # several pictures of one size: the stream form
    iio.imwrite(many, np.stack([rgb, rgb[::-1], rgb[:, ::-1]]), codec="png")
    print(f"{many}: {sum(1 for _ in iio.imiter(many))} pictures through imageio, "
          f"{sum(1 for _ in ImageSequence.Iterator(Image.open(many)))} through Pillow")

    damaged = os.path.join(out, "damaged.odc")
    data = bytearray(open(os.path.join(out, "picture.png.odc"), "rb").read())
    data[len(data) // 2] ^= 0x20
    with open(damaged, "wb") as fh:
        fh.write(data)
    try:
        Image.open(damaged).load()
    except OSError as exc:
        print(f"Pillow:  {type(exc).__name__}: {exc}")
    try:
        iio.imread(damaged)
    except ValueError as exc:
        print(f"imageio: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    raise SystemExit(main())
