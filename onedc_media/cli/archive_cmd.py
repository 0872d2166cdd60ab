"""``onedc-media archive``: a folder of images and videos -> a resumable, verified archive."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from onedc_media.cli.argtypes import positive_int
from onedc_media.errors import CodecOptionError

#: Exit status of a job that finished but could not archive every source.
EXIT_SOME_FAILED = 3

EPILOG = """\
how it works:
  Every file under SRC becomes DEST/<path>.odc (images: one picture; videos: transcoded,
  or keyframes only). DEST/.onedc-archive/manifest.sqlite records each source (size,
  mtime, SHA-256), its output (size, SHA-256), codec, model hashes, quality, bpp, metrics
  and status. Outputs are written to a temporary file, fsynced and renamed before the
  manifest commits, so a killed job rerun with the same command redoes nothing that
  finished and loses nothing. A changed source (size, mtime; content with --checksum)
  is encoded again. Unreadable, empty, too large or unsupported files are recorded as
  failed with a reason and the job goes on (exit status 3 when some failed).

examples:
  onedc-media archive photos/ archive/                        # OneDC, default quality
  onedc-media archive photos/ archive/ -q 1 --verify          # lowest rate, then verify
  onedc-media archive media/ archive/ --videos keyframes -c jpeg -q 80
  onedc-media archive photos/ archive/ --engine ray --jobs 8  # on a Ray cluster
  onedc-media archive --status archive/
  onedc-media archive --verify archive/                       # verify what is done
  onedc-media archive --restore archive/ restored/            # back to PNG / MP4
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "archive",
        help="archive a folder of images and videos into .odc files (resumable, verified)",
        description="Compress every image and video under SRC into DEST (one .odc per "
        "file, the tree mirrored), with a durable manifest; resumable after a kill.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="onedc-media archive SRC DEST [options]\n"
        "       onedc-media archive --status DEST\n"
        "       onedc-media archive --verify DEST\n"
        "       onedc-media archive --restore DEST OUT",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="SRC DEST (or DEST, or DEST OUT)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--status", action="store_true", help="summarise the archive DEST")
    mode.add_argument("--restore", action="store_true", help="decode DEST back into OUT")
    g = p.add_argument_group("encoding")
    g.add_argument("-c", "--codec", default="onedc", help="codec name (default: onedc)")
    g.add_argument("-q", "--quality", help="the codec's quality / rate point (onedc: 1..6, 1 = "
                   "fewest bits; default: the rate point the model names)")
    g.add_argument(
        "--opt", action="append", default=[], metavar="KEY=VALUE", help="codec option (repeatable)"
    )
    g.add_argument(
        "--videos",
        choices=("transcode", "keyframes", "skip"),
        default="transcode",
        help="videos: keyframe codec + inter codec (default), keyframes only "
        "(--inter-codec none), or not archived",
    )
    g.add_argument("--device", help="device for learned codecs (cpu, cuda, cuda:N)")
    g.add_argument(
        "--max-pixels",
        type=positive_int,
        metavar="N",
        help="images with more pixels fail (default: 2^28)",
    )
    g.add_argument(
        "--max-bytes",
        type=positive_int,
        metavar="N",
        help="image files larger than N bytes fail (default: 1 GiB)",
    )
    g = p.add_argument_group("running")
    g.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (this process, default) or ray (Ray Data actor pool)",
    )
    g.add_argument(
        "-j",
        "--jobs",
        type=positive_int,
        metavar="N",
        help="local: reader threads; ray: actors (default: from the CPUs / GPUs)",
    )
    g.add_argument(
        "--batch-size",
        type=positive_int,
        default=4,
        metavar="N",
        help="equal-sized pictures per encoder call (default: 4)",
    )
    g.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="intra-op threads of the codec (torch / OpenCV); equal thread "
        "counts give equal bytes on either engine",
    )
    g.add_argument(
        "--ray-address", metavar="ADDR", help="Ray cluster to join (default: a local one)"
    )
    g.add_argument(
        "--checksum",
        action="store_true",
        help="re-hash sources of finished items to find changed content",
    )
    g.add_argument("--retry-failed", action="store_true", help="try failed items again")
    g.add_argument(
        "--verify",
        action="store_true",
        help="decode every output and check it against the manifest",
    )
    g.add_argument(
        "--metrics",
        default="psnr,ms_ssim",
        metavar="LIST",
        help="what --verify measures for lossy images (default: psnr,ms_ssim)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _paths(args: argparse.Namespace) -> tuple[str, ...]:
    want, usage = 2, "SRC DEST"
    if args.status:
        want, usage = 1, "--status DEST"
    elif args.restore:
        want, usage = 2, "--restore DEST OUT"
    elif args.verify and len(args.paths) == 1:
        want, usage = 1, "--verify DEST"
    if len(args.paths) != want:
        raise CodecOptionError(f"archive expects {usage}, got {len(args.paths)} path(s)")
    return tuple(args.paths)


def run(args: argparse.Namespace) -> int:
    paths = _paths(args)
    if args.status:
        return _status(paths[0], args.json)
    if args.restore:
        return _restore(*paths, args)
    if len(paths) == 1:
        return _verify_only(paths[0], args)
    return _archive(*paths, args)


def _settings(args: argparse.Namespace) -> Any:
    import onedc_media
    from onedc_media.archive import EncodeSettings
    from onedc_media.cli.transcode_cmd import parse_options

    info = onedc_media.default_plugins().codecs.get(args.codec)
    options: dict[str, Any] = parse_options(args.opt)
    if args.quality is not None:
        if info.quality_option is None:
            raise CodecOptionError(f"codec {info.name!r} has no quality option")
        options[info.quality_option] = args.quality
    kw: dict[str, Any] = {}
    if args.max_pixels:
        kw["max_pixels"] = args.max_pixels
    if args.max_bytes:
        kw["max_image_bytes"] = args.max_bytes
    return EncodeSettings(
        codec=info.name,
        options=options,
        videos=args.videos,
        device=args.device,
        threads=args.threads,
        **kw,
    )


def _metrics(text: str) -> tuple[str, ...]:
    names = tuple(m.strip() for m in text.replace("-", "_").split(",") if m.strip())
    bad = [m for m in names if m not in ("psnr", "ms_ssim")]
    if bad:
        raise CodecOptionError(f"--metrics: unknown {', '.join(bad)} (choose psnr, ms_ssim)")
    return names


def _archive(src: str, dest: str, args: argparse.Namespace) -> int:
    from onedc_media.archive import archive

    settings = _settings(args)
    bar = _Bar(disabled=args.no_progress or args.json)
    ray_options = {"address": args.ray_address} if args.ray_address else None
    try:
        result = archive(
            src,
            dest,
            settings,
            engine=args.engine,
            jobs=args.jobs,
            batch_size=args.batch_size,
            checksum=args.checksum,
            retry_failed=args.retry_failed,
            verify=args.verify,
            metrics=_metrics(args.metrics),
            progress=bar.update,
            ray_options=ray_options,
        )
    finally:
        bar.close()
    failed = result.counts.get("failed", 0)
    verify_failed = result.verify.failed if result.verify is not None else 0
    if args.json:
        print(json.dumps(_result_dict(result), indent=2, default=_json_default))
    else:
        print(_summary(result))
    return EXIT_SOME_FAILED if failed or verify_failed else 0


def _summary(r: Any) -> str:
    p, s = r.progress, r.scan
    lines = [
        f"{r.dest}: {s.sources} sources ({s.new} new, {s.changed} changed, "
        f"{s.pending} to encode)"
        + (f"; {r.cleaned} temporary files of a killed job removed" if r.cleaned else ""),
    ]
    if p.total:
        lines.append(
            f"  encoded {p.done}, failed {p.failed} in {p.elapsed:.1f} s "
            f"({p.items_per_s:.2f} items/s, {p.mb_in_per_s:.2f} MB/s in, "
            f"{p.mb_out_per_s:.3f} MB/s out) on the {r.engine} engine"
        )
    if r.verify is not None:
        v = r.verify
        lines.append(
            f"  verified {v.verified} of {v.checked}"
            + (f"; {v.failed} failed verification (queued for re-encoding)" if v.failed else "")
        )
        lines.extend(f"    {src}: {why}" for src, why in v.failures[:10])
    c = r.counts
    lines.append("  manifest: " + ", ".join(f"{n} {k}" for k, n in c.items() if n))
    if c.get("failed"):
        lines.append("  see `onedc-media archive --status DEST` for the reasons")
    lines.extend(f"  warning: {w}" for w in s.warnings[:10])
    return "\n".join(lines)


def _result_dict(r: Any) -> dict[str, Any]:
    import dataclasses

    p = r.progress
    d = {
        "dest": r.dest, "engine": r.engine, "seconds": r.seconds, "cleaned": r.cleaned,
        "scan": dataclasses.asdict(r.scan), "counts": r.counts,
        "progress": {**dataclasses.asdict(p), "items_per_s": p.items_per_s,
                     "mb_in_per_s": p.mb_in_per_s, "mb_out_per_s": p.mb_out_per_s},
    }  # fmt: skip
    if r.verify is not None:
        d["verify"] = dataclasses.asdict(r.verify)
    return d


def _json_default(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _status(dest: str, as_json: bool) -> int:
    from onedc_media.archive import archive_status, format_status

    st = archive_status(dest)
    print(json.dumps(st.to_dict(), indent=2) if as_json else format_status(st))
    return 0


def _verify_only(dest: str, args: argparse.Namespace) -> int:
    from onedc_media.archive import verify_archive

    bar = _Bar(disabled=args.no_progress or args.json, unit="file")
    try:
        v = verify_archive(
            dest,
            metrics=_metrics(args.metrics),
            device=args.device,
            jobs=args.jobs,
            progress=bar.count,
        )
    finally:
        bar.close()
    if args.json:
        print(
            json.dumps(
                {
                    "checked": v.checked,
                    "verified": v.verified,
                    "failures": v.failures,
                    "seconds": v.seconds,
                },
                indent=2,
            )
        )
    else:
        print(f"{dest}: verified {v.verified} of {v.checked} in {v.seconds:.1f} s")
        for src, why in v.failures[:20]:
            print(f"  {src}: {why}")
    return EXIT_SOME_FAILED if v.failed else 0


def _restore(dest: str, out: str, args: argparse.Namespace) -> int:
    from onedc_media.archive import restore_archive

    bar = _Bar(disabled=args.no_progress or args.json, unit="file")
    try:
        r = restore_archive(dest, out, device=args.device, progress=bar.count)
    finally:
        bar.close()
    if args.json:
        print(
            json.dumps(
                {
                    "restored": r.restored,
                    "kept": r.kept,
                    "failures": r.failures,
                    "seconds": r.seconds,
                },
                indent=2,
            )
        )
    else:
        print(
            f"{out}: restored {r.restored}, kept {r.kept} already there, failed {r.failed} "
            f"({r.seconds:.1f} s)"
        )
        for src, why in r.failures[:20]:
            print(f"  {src}: {why}")
    return EXIT_SOME_FAILED if r.failed else 0


class _Bar:
    """tqdm on stderr: items, items/s, MB/s in and out, ETA (hidden when not a tty)."""

    def __init__(self, disabled: bool, unit: str = "item") -> None:
        self.bar = None
        if not disabled:
            from tqdm import tqdm

            self.bar = tqdm(unit=unit, dynamic_ncols=True, leave=False, disable=None)

    def update(self, p: Any) -> None:
        if self.bar is None:
            return
        if self.bar.total != p.total:
            self.bar.total = p.total
        self.bar.set_postfix_str(
            f"in {p.mb_in_per_s:.2f} MB/s, out {p.mb_out_per_s:.3f} MB/s, {p.failed} failed",
            refresh=False,
        )
        self.bar.update(p.finished - self.bar.n)

    def count(self, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
