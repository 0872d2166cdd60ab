"""``onedc-media encode``: still pictures -> ``.odc`` files."""

from __future__ import annotations

import argparse
from pathlib import Path

from onedc_media.errors import CodecOptionError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "encode",
        help="compress images into .odc files (OneDC by default, or any codec)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compress pictures with a registered codec (see `onedc-media codecs`).\n"
        "One input -> one .odc file. Several inputs -> one .odc per input in the -o folder.\n"
        "A file of one picture is written in the compact still form (a few dozen bytes of\n"
        "framing); --stream-form writes the stream form instead (what --sequence writes).\n"
        "With --sequence, several pictures of one size go into one file (one packet each).",
        epilog="examples:\n"
        "  onedc-media encode photo.png                    # -> photo.odc, OneDC, default quality\n"
        "  onedc-media encode photo.png -o out.odc -q 1    # OneDC's lowest rate point\n"
        "  onedc-media encode *.png -o odc/ -c jpeg -q 40  # classic JPEG baseline\n"
        "  onedc-media encode a.png --opt model=my-model/   # a model folder you exported\n"
        "  onedc-media encode a.png --opt refine=30         # OneDC, slower encoder: better pictures\n"
        "                                                   # at about the same bits, same decoder\n"
        "  onedc-media encode a.png -q 5 --opt refine=30 --opt enhance=1\n"
        "                                                   # OneDC above its top rate point: a latent\n"
        "                                                   # residual layer adds bits and quality\n",
    )
    p.add_argument("inputs", nargs="+", help="image files (PNG, JPEG, WebP, TIFF, ...)")
    p.add_argument("-o", "--output", help="output .odc file (one input) or folder (several)")
    p.add_argument("-c", "--codec", default="onedc", help="codec name (default: onedc)")
    p.add_argument("-q", "--quality", help="the codec's quality / rate point (onedc: 1..6, 1 = "
                   "fewest bits; default: the rate point the model names)")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="codec option (repeatable), e.g. --opt device=cuda --opt dtype=bfloat16")
    p.add_argument("--device", help="device for learned codecs (cpu, cuda, cuda:N)")
    p.add_argument("--sequence", action="store_true", help="put all inputs (same size) in one file")
    p.add_argument("--stream-form", action="store_true",
                   help="write the stream form even for one picture (JSON stream header with the "
                   "codec's parameters and the model's full hashes, index, footer) instead of the "
                   "still form")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (shown on a terminal for slow encoders: OneDC with "
                   "refine or enhance)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import onedc_media
    from onedc_media.cli.progress import progress_bar
    from onedc_media.cli.transcode_cmd import parse_options
    from onedc_media.imageio import read_image
    from onedc_media.stills import encode_pictures

    info = onedc_media.default_plugins().codecs.get(args.codec)
    options = parse_options(args.opt)
    if args.quality is not None:
        if info.quality_option is None:
            raise CodecOptionError(f"codec {info.name!r} has no quality option")
        options[info.quality_option] = args.quality
    info.resolve_options(options)  # fail fast, before reading pictures
    inputs = [Path(i) for i in args.inputs]
    if args.sequence or len(inputs) == 1:
        out = Path(args.output) if args.output else inputs[0].with_suffix(".odc")
        if out.is_dir():
            out = out / inputs[0].with_suffix(".odc").name
        jobs = [(inputs, out)]
    else:
        if not args.output:
            raise CodecOptionError("several inputs need -o FOLDER (or --sequence -o FILE)")
        folder = Path(args.output)
        folder.mkdir(parents=True, exist_ok=True)
        jobs = [([i], folder / i.with_suffix(".odc").name) for i in inputs]
    for paths, out in jobs:
        pictures = [read_image(p) for p in paths]
        bar = progress_bar(args.no_progress, unit="step", desc=out.name)
        try:
            res = encode_pictures(pictures, out, codec=info.name, options=options, device=args.device,
                                  progress=bar.update if bar else None,
                                  form="stream" if args.stream_form else "auto")
        finally:
            if bar:
                bar.close()
        print(f"{out}: {res.codec}, {res.form} form, {res.pictures} picture(s), {res.file_bytes} bytes, "
              f"{res.bpp:.4f} bpp, {res.seconds:.2f} s")
    return 0
