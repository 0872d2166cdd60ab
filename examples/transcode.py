"""Transcode a video to .odc and back with the library API (what the CLI does).

    python examples/transcode.py bikes.mp4 --keyframe-codec jpeg -q 90

Equivalent to ``onedc-media transcode bikes.mp4 -o bikes.odc -c jpeg -q 90`` followed
by ``onedc-media decode bikes.odc -o bikes.decoded.mp4``.
"""

from __future__ import annotations

import argparse
import os
import sys

from onedc_media.pipeline.export import export_video
from onedc_media.pipeline.hybrid import InterSettings
from onedc_media.pipeline.transcode import transcode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("video")
    p.add_argument("--keyframe-codec", "-c", default="onedc")
    p.add_argument("-q", "--quality", help="the keyframe codec's quality option")
    p.add_argument("--gop", type=int, help="a keyframe every N frames (default: the input's)")
    p.add_argument("--crf", type=float, default=23, help="x264 CRF between keyframes")
    args = p.parse_args(argv)

    stem = os.path.splitext(args.video)[0]
    result = transcode(
        args.video,
        stem + ".odc",
        keyframe_codec=args.keyframe_codec,
        codec_options={"quality": args.quality} if args.quality else None,
        policy="gop" if args.gop else "source",
        policy_options={"size": args.gop} if args.gop else None,
        inter=InterSettings("libx264", crf=args.crf),
        progress=lambda done, total: print(
            f"\r{done}/{total or '?'} frames", end="", file=sys.stderr
        ),
    )
    print(file=sys.stderr)
    v = result.video
    print(
        f"{result.output}: {result.frames} frames, {result.file_bytes:,} bytes "
        f"({v.keyframes} keyframes: {v.keyframe_bytes:,} bytes; inter: {v.inter_bytes:,} bytes; "
        f"{v.intra_bytes_not_stored:,} bytes of x264 intra pictures not stored)"
    )
    decoded = export_video(result.output, stem + ".decoded.mp4")
    print(f"{decoded.paths[0]}: {decoded.frames} frames, {decoded.audio_packets} audio packets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
