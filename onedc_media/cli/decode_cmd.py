"""``onedc-media decode``: ``.odc`` -> PNG / JPEG pictures, or an mp4 / mkv video."""

from __future__ import annotations

import argparse
import json
import os

from onedc_media.errors import CodecOptionError

EPILOG = """\
what you get:
  An image .odc file (from `onedc-media encode`) gives one picture file per picture:
    -o photo.png          exactly one picture (.png, .jpg or .webp, by the extension)
    -o out/               one file per picture: out/<name>_000000.png, ...
    -o out_%04d.jpg       one file per picture, numbered by its index
  A video .odc file (from `onedc-media transcode`) gives a video that any player opens,
  with the source's frames, timestamps, frame rate, rotation, colour tags and audio:
    -o clip.mp4           (or .mkv, .mov) re-encoded with --video-codec (libx264, crf 18)
    -o frames/ | -o f_%05d.png    every frame as a picture
    --keyframes-only -o stills/   only the keyframes (the keyframe codec's pictures)
  Without -o: NAME.png (one picture), NAME_%06d.png (several), NAME.mp4 (video),
  beside FILE.odc, and never over an existing file.

  Hybrid videos regenerate the inter codec's intra pictures while decoding; when this
  machine's encoder gives a different picture than the one the file was made with (the
  stored checksum says so), a warning is printed and decoding goes on.

examples:
  onedc-media decode photo.odc -o photo.png
  onedc-media decode clip.odc -o clip.mp4
  onedc-media decode clip.odc -o clip.mkv --crf 12 --preset slow
  onedc-media decode clip.odc --keyframes-only -o stills/
  onedc-media decode old.odc --model models/    # weights other than the embedded ones
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "decode",
        help="decode an .odc file to PNG/JPEG pictures or to an mp4/mkv video",
        description="Decode an .odc file: image streams to picture files, video streams to "
        "a video file (with its audio) or to picture files.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="FILE.odc", help="the file to decode")
    p.add_argument(
        "-o", "--output", metavar="OUT",
        help="a picture (.png/.jpg/.webp), a directory (out/), a pattern (out_%%04d.png) "
        "or a video (.mp4/.mkv/.mov)",
    )  # fmt: skip
    p.add_argument(
        "--keyframes-only", action="store_true",
        help="write only the keyframes of a video, as pictures",
    )  # fmt: skip
    p.add_argument(
        "--stream",
        type=int,
        metavar="N",
        help="decode stream N (default: the first picture stream)",
    )
    g = p.add_argument_group("video output")
    g.add_argument(
        "--video-codec", default="libx264", metavar="NAME", help="FFmpeg encoder (default: libx264)"
    )
    g.add_argument("--crf", type=float, default=18, metavar="X", help="its quality (default 18)")
    g.add_argument("--preset", default="medium", metavar="P", help="its preset (default medium)")
    g.add_argument("--no-audio", action="store_true", help="leave the audio out")
    g = p.add_argument_group("misc")
    g.add_argument(
        "--jpeg-quality", type=int, default=95, metavar="Q",
        help="quality of .jpg pictures written (default 95)",
    )  # fmt: skip
    g.add_argument("--device", metavar="DEV", help="device for the keyframe codec (cpu, cuda)")
    g.add_argument(
        "--model", action="append", metavar="DIR", default=[],
        help="a model folder (or a folder of them) to find the weights the file names in, "
        "when they are not the embedded ones; repeatable; ONEDC_MEDIA_MODEL_PATH is "
        "searched too",
    )  # fmt: skip
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=run)


def _default_output(path: str, media_type: str, pictures: int, keyframes_only: bool) -> str:
    stem = os.path.splitext(path)[0]
    if media_type == "video" and not keyframes_only:
        return stem + ".mp4"
    return stem + ".png" if pictures == 1 else stem + "_%06d.png"


def _is_pictures(output: str) -> bool:
    from onedc_media.imageio import WRITE_SUFFIXES
    from onedc_media.pipeline.export import names_many_pictures

    if names_many_pictures(output):  # the check export_pictures makes
        return True
    return os.path.splitext(output)[1].lower() in WRITE_SUFFIXES


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.jpeg_quality <= 100:
        raise CodecOptionError(f"--jpeg-quality must be 1..100, got {args.jpeg_quality}")
    for folder in args.model:
        if not os.path.isdir(folder):
            raise CodecOptionError(f"--model {folder}: no such folder")
    if not args.model:
        return _decode(args)
    # the keyframe codec's decoder searches these, for this decode only
    from onedc_media.model.loading import MODEL_PATH_ENV

    saved = os.environ.get(MODEL_PATH_ENV)
    os.environ[MODEL_PATH_ENV] = os.pathsep.join([*args.model, *filter(None, [saved])])
    try:
        return _decode(args)
    finally:
        if saved is None:
            os.environ.pop(MODEL_PATH_ENV, None)
        else:
            os.environ[MODEL_PATH_ENV] = saved


def _decode(args: argparse.Namespace) -> int:
    import onedc_media
    from onedc_media import container
    from onedc_media.cli.progress import progress_bar
    from onedc_media.imageio import WRITE_SUFFIXES
    from onedc_media.pipeline.decoder import picture_stream
    from onedc_media.pipeline.export import VIDEO_EXTENSIONS, export_pictures, export_video

    codecs = onedc_media.default_plugins().codecs
    with container.open(args.input) as inp:
        stream = picture_stream(inp, args.stream)
        pictures = sum(1 for e in inp.index if e.stream_index == stream.index)
    output = args.output
    if output is None:
        output = _default_output(args.input, stream.media_type, pictures, args.keyframes_only)
        first = output.replace("%06d", "000000")
        if os.path.exists(first):  # never overwrite a file the user did not name
            raise CodecOptionError(f"{first} exists; name the output with -o to replace it")
    ext = os.path.splitext(output)[1].lower()
    bar = progress_bar(disabled=args.no_progress or args.json)
    try:
        if _is_pictures(output):
            result = export_pictures(
                args.input,
                output,
                keyframes_only=args.keyframes_only,
                stream=stream.index,
                jpeg_quality=args.jpeg_quality,
                codecs=codecs,
                device=args.device,
                progress=bar.update if bar else None,
            )
        elif ext in VIDEO_EXTENSIONS:
            if stream.media_type != "video":
                raise CodecOptionError(
                    f"{args.input} holds still images; decode them to .png/.jpg (-o out/)"
                )
            if args.keyframes_only:
                raise CodecOptionError(
                    "--keyframes-only writes pictures: give a directory or a pattern (-o stills/)"
                )
            # missing parent folders are created, as for pictures
            os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
            result = export_video(
                args.input,
                output,
                video_codec=args.video_codec,
                crf=args.crf,
                preset=args.preset,
                audio=not args.no_audio,
                stream=stream.index,
                codecs=codecs,
                device=args.device,
                progress=bar.update if bar else None,
            )
        else:
            raise CodecOptionError(
                f"cannot tell what to write from {output!r}: use a picture "
                f"({', '.join(WRITE_SUFFIXES)}), a directory, a pattern like out_%04d.png, "
                f"or a video ({', '.join(VIDEO_EXTENSIONS)})"
            )
    finally:
        if bar:
            bar.close()
    if args.json:
        print(json.dumps({"paths": result.paths, "frames": result.frames,
                          "audio_packets": result.audio_packets,
                          "intra_mismatches": result.mismatches}, indent=2))  # fmt: skip
    elif len(result.paths) == 1:
        audio = f", audio copied ({result.audio_packets} packets)" if result.audio_packets else ""
        what = "frames" if result.frames != 1 else "picture"
        print(f"wrote {result.paths[0]}: {result.frames} {what}{audio}")
    else:
        print(f"wrote {len(result.paths)} pictures: {result.paths[0]} ... {result.paths[-1]}")
    return 0
