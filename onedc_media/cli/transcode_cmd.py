"""``onedc-media transcode``: a video -> ``.odc`` with keyframe-codec keyframes."""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any

from onedc_media.cli.argtypes import positive_int
from onedc_media.errors import CodecOptionError

EPILOG = """\
how a video is coded:
  Keyframes are coded by the keyframe codec (OneDC by default; any codec listed by
  `onedc-media codecs`). The frames between keyframes are coded by a conventional inter
  codec (x264 by default) that predicts from the keyframe codec's reconstruction; the
  inter codec's own intra picture is regenerated when decoding, never stored, so the
  keyframe's bits are paid once. Audio is copied untouched; timestamps (also variable
  frame rates), frame rate, rotation and colour tags are kept.

choosing keyframes (--keyframes):
  source   the input's own keyframes (default)
  gop      one every N frames (--gop N sets it; --gop 1 = all keyframes, no inter coding)
  scene    at scene cuts (--policy-opt threshold=10 --policy-opt min_gop=8)
  (plugins can add policies; `onedc-media codecs` lists them)

examples:
  onedc-media transcode clip.mp4 -o clip.odc                       # OneDC + x264
  onedc-media transcode clip.mp4 -o clip.odc --keyframe-codec jpeg -q 90 --gop 30
  onedc-media transcode clip.mp4 -o clip.odc --keyframes scene --crf 28
  onedc-media transcode clip.mp4 -o stills.odc --inter-codec none   # keyframes only
  onedc-media transcode clip.mp4 -o all-intra.odc --gop 1
  onedc-media transcode long.mkv -o part.odc --start 1:30 --duration 10
  onedc-media decode clip.odc -o clip.mp4                           # back to a video
"""

_TIME = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?|\.\d+)$")


def parse_time(text: str) -> float:
    """Seconds from ``12.5``, ``1:30`` or ``1:02:03.5``."""
    match = _TIME.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (use seconds or [HH:]MM:SS)")
    a, b, seconds = match.groups()
    hours, minutes = (a, b) if b is not None else (None, a)
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds)


def parse_options(items: list[str], what: str = "--opt") -> dict[str, str]:
    """``["quality=80", "preset=slow"]`` -> ``{"quality": "80", "preset": "slow"}``."""
    out: dict[str, str] = {}
    for pair in items:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CodecOptionError(f"{what} expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value
    return out


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transcode",
        help="transcode a video into .odc: keyframe-codec keyframes + hybrid inter coding",
        description="Read any video PyAV/FFmpeg opens, code its keyframes with a keyframe "
        "codec (OneDC by default) and the frames between them with a conventional inter "
        "codec that predicts from the keyframe codec's reconstruction, copy the audio, and "
        "write an .odc file. Decode it back with `onedc-media decode`.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="the video to read (mp4, mkv, mov, ...)")
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT.odc",
        help="the .odc file to write (default: INPUT.odc, if no such file exists)",
    )
    g = p.add_argument_group("keyframes")
    g.add_argument(
        "--keyframe-codec", "-c", metavar="NAME", default=None,
        help="codec for keyframes (default: onedc); see `onedc-media codecs`",
    )  # fmt: skip
    g.add_argument(
        "-q", "--quality", metavar="Q",
        help="the keyframe codec's quality option (e.g. 1..100 for the classic codecs)",
    )  # fmt: skip
    g.add_argument(
        "--opt", action="append", default=[], metavar="KEY=VALUE",
        help="a keyframe codec option (repeatable), e.g. --opt device=cuda",
    )  # fmt: skip
    g.add_argument(
        "--keyframes", "-k", metavar="POLICY", default=None,
        help="keyframe policy: source (default), gop, scene, or a plugin's",
    )  # fmt: skip
    g.add_argument("--gop", type=positive_int, metavar="N", help="a keyframe every N frames")
    g.add_argument(
        "--policy-opt", action="append", default=[], metavar="KEY=VALUE",
        help="a keyframe policy option (repeatable), e.g. --policy-opt threshold=15",
    )  # fmt: skip
    g = p.add_argument_group("inter frames")
    g.add_argument(
        "--inter-codec", default="libx264", metavar="NAME",
        help="libx264 (default), libx265, libsvtav1, or none (store keyframes only)",
    )  # fmt: skip
    g.add_argument(
        "--crf", type=float, metavar="X",
        help="the inter codec's constant rate factor (defaults: x264 23, x265 28, SVT-AV1 35)",
    )  # fmt: skip
    g.add_argument(
        "--preset", metavar="P",
        help="the inter codec's preset (x264/x265: ultrafast..placebo, medium by default; "
        "SVT-AV1: 0..13, 8 by default)",
    )  # fmt: skip
    g = p.add_argument_group("input range and misc")
    g.add_argument(
        "--start",
        "-ss",
        type=parse_time,
        metavar="TIME",
        help="start at TIME (seconds or [HH:]MM:SS)",
    )
    g.add_argument("--duration", "-t", type=parse_time, metavar="TIME", help="stop after TIME")
    g.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N frames")
    g.add_argument("--no-audio", action="store_true", help="do not copy the audio")
    g.add_argument(
        "--threads", type=int, default=0, metavar="N", help="decoding threads (0: automatic)"
    )
    g.add_argument("--device", metavar="DEV", help="device for the keyframe codec (cpu, cuda)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace, codecs: Any) -> dict[str, Any]:
    from onedc_media.pipeline.hybrid import InterSettings
    from onedc_media.pipeline.transcode import DEFAULT_KEYFRAME_CODEC

    codec_name = args.keyframe_codec or DEFAULT_KEYFRAME_CODEC
    info = codecs.get(codec_name)
    options: dict[str, Any] = parse_options(args.opt, "--opt")
    if args.quality is not None:
        if info.quality_option is None:
            raise CodecOptionError(f"codec {info.name!r} has no quality option (-q)")
        options[info.quality_option] = args.quality
    info.resolve_options(options)  # fail before opening the input
    policy = args.keyframes or ("gop" if args.gop else "source")
    policy_options: dict[str, Any] = parse_options(args.policy_opt, "--policy-opt")
    if args.gop:
        if policy != "gop":
            raise CodecOptionError(
                f"--gop sets the gop policy; it conflicts with --keyframes {policy}"
            )
        policy_options["size"] = args.gop
    inter = None
    if args.inter_codec != "none":
        inter = InterSettings(args.inter_codec, args.crf, args.preset)
    elif args.crf is not None or args.preset is not None:
        raise CodecOptionError("--crf / --preset need an inter codec (not --inter-codec none)")
    return {
        "keyframe_codec": info.name,
        "codec_options": options,
        "policy": policy,
        "policy_options": policy_options,
        "inter": inter,
    }


def run(args: argparse.Namespace) -> int:
    import onedc_media
    from onedc_media.cli.progress import progress_bar
    from onedc_media.pipeline.transcode import transcode

    plugins = onedc_media.default_plugins()
    settings = _settings(args, plugins.codecs)
    output = args.output or os.path.splitext(args.input)[0] + ".odc"
    if os.path.abspath(output) == os.path.abspath(args.input):
        raise CodecOptionError("the output would overwrite the input")
    if args.output is None and os.path.exists(output):
        raise CodecOptionError(f"{output} exists; name the output with -o to replace it")
    bar = progress_bar(disabled=args.no_progress or args.json)
    try:
        result = transcode(
            args.input,
            output,
            start=args.start,
            duration=args.duration,
            max_frames=args.max_frames,
            audio=not args.no_audio,
            threads=args.threads,
            plugins=plugins,
            device=args.device,
            progress=bar.update if bar else None,
            **settings,
        )
    finally:
        if bar:
            bar.close()
    if args.json:
        v = result.video
        print(
            json.dumps(
                {
                    "output": result.output,
                    "width": result.width,
                    "height": result.height,
                    "frames": result.frames,
                    "keyframes": v.keyframes,
                    "inter_frames": v.inter_frames,
                    "dropped_frames": v.dropped_frames,
                    "duration_s": result.duration_s,
                    "file_bytes": result.file_bytes,
                    "keyframe_bytes": v.keyframe_bytes,
                    "inter_bytes": v.inter_bytes,
                    "intra_bytes_not_stored": v.intra_bytes_not_stored,
                    "audio_streams": result.audio_streams,
                    "audio_bytes": result.audio_bytes,
                    "keyframe_codec": settings["keyframe_codec"],
                    "inter": None if settings["inter"] is None else settings["inter"].to_params(),
                    "elapsed_s": result.elapsed_s,
                },
                indent=2,
            )
        )
    else:
        print(_summary(result, settings))
    return 0


def _summary(r: Any, settings: dict[str, Any]) -> str:
    v = r.video
    inter = settings["inter"]
    bits = r.file_bytes * 8 / r.duration_s / 1000 if r.duration_s > 0 else 0.0
    lines = [
        (
            f"{r.output}: {r.frames} frames {r.width}x{r.height}, {r.duration_s:.2f} s, "
            f"{r.file_bytes:,} bytes ({bits:,.0f} kbit/s)"
        ),
        f"  keyframes: {v.keyframes} x {settings['keyframe_codec']}, {v.keyframe_bytes:,} bytes",
    ]
    if inter is not None:
        lines.append(
            f"  inter:     {v.inter_frames} x {inter.codec} crf {inter.crf:g}, "
            f"{v.inter_bytes:,} bytes (+{v.intra_bytes_not_stored:,} bytes of intra pictures "
            "regenerated at decode time, not stored)"
        )
    elif v.dropped_frames:
        lines.append(
            f"  {v.dropped_frames} frames between keyframes not stored (--inter-codec none)"
        )
    if r.audio_streams:
        lines.append(f"  audio:     {r.audio_streams} stream(s) copied, {r.audio_bytes:,} bytes")
    lines.append(f"  {r.elapsed_s:.1f} s, {r.fps:.1f} frames/s")
    return "\n".join(lines)
