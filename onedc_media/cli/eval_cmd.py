"""``onedc-media eval``: rate-distortion report of codecs on a folder of images."""

from __future__ import annotations

import argparse
import sys

DEFAULT_CODECS = "onedc,jpeg,webp,avif,hevc-intra"

DESCRIPTION = """\
Encode and decode every image with every codec at every quality, through the real
codecs (bits are real bytes), and write a rate-distortion report:

  results.csv    one row per image x codec x quality: bpp, PSNR (RGB and BT.601 Y),
                 MS-SSIM, colour error (mean CIEDE2000 and the worst 16x16 block's),
                 LPIPS / DISTS when their weights are on this machine,
                 encode / decode ms per megapixel
  summary.json   the averaged curves, BD-rate table and speeds, as JSON
  rd*.png        bpp vs PSNR, PSNR-Y, MS-SSIM, MS-SSIM (dB) and colour error
  sheet.png      the same crops of a few images per codec at similar bpp, and a map
                 of each picture's colour shift (block CIEDE2000)
  report.md      all of the above, explained

Runs resume: points already in OUT/results.csv are skipped (use --fresh to start
over). Codecs that are not installed are skipped with a warning.
"""

EPILOG = """\
default quality ladders (about 0.02-1 bpp on photos):
  {ladders}

examples:
  onedc-media eval photos/ -o report/
  onedc-media eval photos/ --codecs jpeg,avif --max-images 4 -o quick/
  onedc-media eval photos/ -q "jpeg=5,10,20,40;onedc=1,2,3,4,5,6" --anchor jpeg -o r/
  onedc-media eval photos/ --codecs jpeg,webp -q 10,30,50 --jobs 4 -o r/
  onedc-media eval photos/ -c onedc,avif --opt avif:scale=1,2,3 -o r/  # AVIF resampled
  onedc-media eval photos/ -o report/ --report-only   # redraw from results.csv
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    ladders = (
        "jpeg=2,5,10,20,30,50,75; webp=1,5,10,25,50,75,85; avif=1,5,10,20,30,40,50,60;\n"
        "  hevc-intra=1,5,10,15,20,25,30,40; onedc=1,2,3,4,5,6; other codecs: 6 points "
        "over\n  the quality option's range"
    )
    p = sub.add_parser(
        "eval",
        help="rate-distortion report (CSV, plots, BD-rate, visual sheet) on a folder",
        description=DESCRIPTION,
        epilog=EPILOG.format(ladders=ladders),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "images", metavar="IMAGES_DIR", help="folder of images (searched recursively), or one image"
    )
    p.add_argument(
        "--codecs",
        "-c",
        default=DEFAULT_CODECS,
        help=f"comma-separated codec names (default: {DEFAULT_CODECS}); see `onedc-media codecs`",
    )
    p.add_argument(
        "--quality",
        "-q",
        metavar="SPEC",
        help='quality ladders: "CODEC=Q1,Q2,...;CODEC=..." per codec, or "Q1,Q2,..." '
        "for every codec; codecs not named keep their default ladder",
    )
    p.add_argument(
        "--anchor",
        help="codec the BD-rates are measured against "
        "(default: jpeg if evaluated, else the first codec)",
    )
    p.add_argument(
        "--max-images",
        "-n",
        type=int,
        metavar="N",
        help="use only the first N images (sorted by path)",
    )
    p.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=1,
        metavar="N",
        help="images measured in parallel for CPU codecs (default 1; more jobs "
        "make timings noisier)",
    )
    p.add_argument(
        "--output", "-o", default="report", metavar="DIR", help="output folder (default: report/)"
    )
    p.add_argument("--device", help="device for codecs that have a choice (cpu, cuda, auto)")
    p.add_argument(
        "--opt",
        action="append",
        default=[],
        metavar="CODEC:KEY=VALUE",
        help="a fixed codec option for every point of that codec's curve (repeatable), e.g. "
        "--opt onedc:model=my-model/ ; the curve's label then names the option. "
        "scale=F1,F2 (any codec) adds one curve per factor: the picture downscaled by F "
        "(area filter), coded, decoded and upscaled (Lanczos), bpp over the original pixels; "
        "--opt avif:scale=1,2,3 compares AVIF below its floor (1 = as it is)",
    )
    p.add_argument(
        "--sheet-images",
        type=int,
        default=3,
        metavar="N",
        help="images in the visual comparison sheet (0: no sheet; default 3)",
    )
    p.add_argument(
        "--sheet-bpp",
        type=float,
        metavar="BPP",
        help="bpp to match in the sheet (default: the lowest rate all codecs reach)",
    )
    p.add_argument(
        "--crop",
        type=int,
        default=192,
        metavar="PX",
        help="side of the sheet's crops in pixels (default 192)",
    )
    p.add_argument(
        "--no-perceptual",
        action="store_true",
        help="do not compute LPIPS / DISTS even where their weights are present",
    )
    p.add_argument(
        "--fresh", action="store_true", help="discard OUT/results.csv instead of resuming from it"
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing; rebuild the report from OUT/results.csv",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _warn(msg: str) -> None:
    print(f"onedc-media: warning: {msg}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import onedc_media
    from onedc_media.errors import CodecOptionError, InvalidImageError
    from onedc_media.evaluate import (
        find_images,
        metrics,
        parse_qualities,
        read_results,
        resolve_specs,
        run_evaluation,
        write_report,
    )

    registry = onedc_media.default_plugins().codecs
    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    if not names:
        raise CodecOptionError("--codecs is empty")
    for flag, value, low in (
        ("--jobs", args.jobs, 1),
        ("--crop", args.crop, 16),
        ("--sheet-images", args.sheet_images, 0),
    ):
        if value < low:
            raise CodecOptionError(f"{flag} must be at least {low}, got {value}")
    if args.max_images is not None and args.max_images < 1:
        raise CodecOptionError(f"--max-images must be at least 1, got {args.max_images}")
    anchor = args.anchor or ("jpeg" if "jpeg" in names else names[0])
    if anchor not in names:
        raise CodecOptionError(f"--anchor {anchor!r} is not one of --codecs ({', '.join(names)})")
    out = Path(args.output)
    settings = {
        "images": args.images,
        "codecs": names,
        "quality": args.quality,
        "max_images": args.max_images,
        "jobs": args.jobs,
        "device": args.device,
        "version": onedc_media.__version__,
    }
    perceptual = [] if args.no_perceptual else metrics.perceptual_status()
    if args.report_only:
        rows = read_results(out / "results.csv")
        root = Path(args.images)
        files = find_images(root, args.max_images)
        base = root if root.is_dir() else root.parent
        images = {p.relative_to(base).as_posix(): p for p in files}
        errors: list[str] = []
    else:
        if not find_images(args.images, args.max_images):
            raise InvalidImageError(f"no images in {args.images}")
        qualities = parse_qualities(args.quality, names)
        specs, skipped = resolve_specs(names, registry, qualities)
        specs = _apply_fixed_options(specs, registry, args.opt)
        for name, reason in skipped:
            _warn(f"skipping codec {name!r}: {reason}")
        if not specs:
            raise CodecOptionError("none of the requested codecs can run here")
        if anchor not in [s.name for s in specs]:
            _warn(f"anchor {anchor!r} is skipped; using {specs[0].name!r} as the anchor")
            anchor = specs[0].name
        for p in perceptual:
            if not p.available:
                _warn(f"{p.name.upper()} not computed: {p.reason}")
        if args.fresh and (out / "results.csv").exists():
            (out / "results.csv").unlink()
        result = run_evaluation(
            args.images,
            specs,
            out,
            registry=registry,
            max_images=args.max_images,
            jobs=args.jobs,
            device=args.device,
            perceptual=not args.no_perceptual,
            progress=not args.quiet,
        )
        for err in result.errors:
            _warn(err)
        print(
            f"measured {result.measured} point(s), reused {result.reused} from {result.results_csv}"
        )
        rows, images, errors = result.rows, result.images, result.errors
    # curves of the requested codecs, in --codecs order; a codec run with --opt has a
    # label naming the option ("onedc[model=DIR]")
    wanted = [
        lab for n in names for lab in dict.fromkeys(str(r["label"]) for r in rows if r["codec"] == n)
    ]
    rows = [r for r in rows if r["label"] in wanted and r["image"] in images]
    if anchor not in wanted:  # the anchor codec ran with --opt: its (first) curve
        anchor = next((lab for lab in wanted if lab.split("[", 1)[0] == anchor), anchor)
    report = write_report(
        out,
        rows,
        anchor=anchor,
        settings=settings,
        images=images,
        registry=registry,
        perceptual=perceptual,
        errors=errors,
        sheet_images=args.sheet_images,
        sheet_bpp=args.sheet_bpp,
        crop=args.crop,
    )
    print(f"BD-rate vs {anchor} (PSNR-RGB / PSNR-Y / MS-SSIM dB; negative = fewer bits):")
    for label, row in report.bd.items():
        cells = [
            "n/a" if isinstance(row[m], dict) else f"{row[m]:+.1f}%"
            for m in ("psnr_rgb", "psnr_y", "ms_ssim_db")
        ]
        print(f"  {label:<12} " + "  ".join(f"{c:>8}" for c in cells))
    print(f"wrote {out / 'report.md'} ({len(report.files)} files)")
    return 0


def _scales(pair: str, value: str) -> list[float]:
    """The factors of ``--opt CODEC:scale=F1,F2,...`` (1 is the codec as it is)."""
    from onedc_media.errors import CodecOptionError
    from onedc_media.evaluate.runner import MAX_SCALE

    try:
        factors = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        factors = []
    if not factors or any(not 1.0 <= f <= MAX_SCALE for f in factors):
        raise CodecOptionError(
            f"--opt {pair!r}: scale takes factors from 1 to {MAX_SCALE:g}, e.g. scale=1,2,3"
        )
    return list(dict.fromkeys(factors))


def _apply_fixed_options(specs, registry, pairs: list[str]):
    """``--opt CODEC:KEY=VALUE``: fixed options per curve (validated by the codec).

    ``scale`` is eval's own: ``--opt avif:scale=1,3`` measures the codec as it is and on
    pictures downscaled 3x (upscaled after decoding), one curve per factor.
    """
    import dataclasses

    from onedc_media.errors import CodecOptionError

    fixed: dict[str, dict[str, object]] = {}
    scales: dict[str, list[float]] = {}
    for pair in pairs:
        head, sep, value = pair.partition("=")
        codec, colon, key = head.partition(":")
        if not sep or not colon or not codec or not key:
            raise CodecOptionError(f"--opt expects CODEC:KEY=VALUE, got {pair!r}")
        info = registry.get(codec)
        if key == "scale":
            scales[codec] = _scales(pair, value)
            continue
        if key == info.quality_option:
            raise CodecOptionError(f"--opt {pair!r}: set the quality ladder with -q instead")
        fixed.setdefault(codec, {})[key] = info.option(key).validate(value)
    return [
        dataclasses.replace(s, options={**s.options, **fixed.get(s.name, {})}, scale=f)
        for s in specs
        for f in scales.get(s.name, [s.scale])
    ]
