"""The refining encoder on a device against the CPU, on the same picture.

Refinement (``--opt refine=N``) is written device-aware but was measured on CPUs only;
this runs it on ``--device`` and on the CPU side by side and prints what matters for a
file: the quality the device's packets decode to on the CPU (the decoder every reader
has) against the CPU's own refinement and the plain encoder, and the bytes. It exits 1
when the device's refinement decodes no better than the plain encoder (refinement broken
there). Speed is printed as a ratio, never judged.

    python benchmarks/refine_device.py [IMAGE] --device cuda [--size 512] [--steps 30] [--q 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from onedc_media.evaluate.metrics import psnr_rgb

#: The repository's own test photo (skimage's astronaut, public domain), when no picture is named.
DEFAULT_PICTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "astronaut.png"


def _picture(path: str, size: int) -> np.ndarray:
    """A centre crop of *path* (the repository's test photo when *path* is empty)."""
    from onedc_media.imageio import read_image

    img = read_image(path or DEFAULT_PICTURE)
    h, w = img.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("image", nargs="?", default="", help="picture (default: tests/data/astronaut.png)")
    ap.add_argument("--size", type=int, default=512, help="side of the centre crop")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--q", type=int, default=5, help="0-based rate point")
    ap.add_argument("--skip-cpu", action="store_true", help="device only (no CPU reference)")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args(argv)

    import torch

    from onedc_media.errors import OdcError
    from onedc_media.model.engine import OneDCEngine
    from onedc_media.model.refine import RefineConfig

    try:
        img = _picture(args.image, args.size)
        cfg = RefineConfig(steps=args.steps)
    except (OdcError, ValueError) as exc:
        print(f"refine_device: {exc}", file=sys.stderr)
        return 1
    cpu = OneDCEngine.from_pretrained("onedc-tiny")
    out: dict[str, dict[str, float]] = {}
    devices = [args.device] if args.skip_cpu or args.device == "cpu" else [args.device, "cpu"]
    plain = cpu.compress([img], args.q)[0]
    plain_psnr = psnr_rgb(cpu.decompress([plain])[0], img)
    for dev in devices:
        eng = cpu if dev == "cpu" else OneDCEngine.from_pretrained("onedc-tiny", device=dev)
        eng.compress([img], args.q, refine=RefineConfig(steps=1))  # warm-up (kernels, caches)
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        packet = eng.compress([img], args.q, refine=cfg)[0]
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        rec = cpu.decompress([packet])[0]  # every reader decodes on a CPU
        out[dev] = {"seconds": secs, "bytes": len(packet), "bpp": len(packet) * 8 / img.shape[0] / img.shape[1],
                    "psnr": psnr_rgb(rec, img), "plain_bytes": len(plain), "plain_psnr": plain_psnr}
        r = out[dev]
        print(f"{dev:>6}: refine={args.steps} {r['seconds']:.2f} s, {r['bytes']} B ({r['bpp']:.4f} bpp), "
              f"{r['psnr']:.2f} dB decoded on the CPU (plain {r['plain_bytes']} B, {r['plain_psnr']:.2f} dB)")
    if "cpu" in out and args.device in out and args.device != "cpu":
        d, c = out[args.device], out["cpu"]
        print(f"{args.device} vs cpu: {c['seconds'] / d['seconds']:.1f}x faster, "
              f"{d['psnr'] - c['psnr']:+.2f} dB, bytes x{d['bytes'] / c['bytes']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0 if out[args.device]["psnr"] > plain_psnr else 1


if __name__ == "__main__":
    sys.exit(main())
