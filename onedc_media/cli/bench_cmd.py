"""``onedc-media bench``: speed benchmarks, one sub-command each.

Extension point
---------------
A sub-benchmark is a :class:`BenchCommand` registered with :func:`register_bench`.
``codecs`` is defined here; others (``bench decode`` for the batched runtime, ``bench
model`` for OneDC's stages) go in their own CLI modules, which register themselves when
imported: the modules named in :data:`BENCH_MODULES` (a listed module that does not
exist yet is skipped). The timing code belongs in the library (next to what it
measures); the CLI module only parses options and calls it. It must be cheap to import
(the parser is built on every ``onedc-media`` call): import torch inside ``run``.
Example::

    # onedc_media/cli/bench_decode.py
    from onedc_media.cli.bench_cmd import BenchCommand, register_bench
    from onedc_media.evaluate.bench import BenchResult, BenchRow, interleaved

    def _args(p):
        p.add_argument("--batch", type=int, default=8)

    def _run(args) -> BenchResult:
        ...  # call the library's timing code (built on interleaved()); return its
             # BenchResult, one row per stage: "entropy", "synthesis", ...

    register_bench(BenchCommand("decode", "batched decoder frames/s", _args, _run))

Every sub-benchmark gets ``--repeats``, ``--warmup`` and ``--json`` and prints the same
table: median ms, ms per megapixel, frames/s and the ratio to the reference subject,
all measured in one run. Benchmarks report; they never fail on a timing.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from onedc_media.errors import CodecOptionError, PluginError

if TYPE_CHECKING:
    from onedc_media.evaluate.bench import BenchResult

__all__ = ["BENCHES", "BENCH_MODULES", "BenchCommand", "add_parser", "register_bench", "run"]


@dataclass(frozen=True)
class BenchCommand:
    """One ``onedc-media bench NAME`` sub-benchmark.

    :param add_arguments: adds its own options to the sub-command's parser.
    :param run: measures and returns a :class:`~onedc_media.evaluate.bench.BenchResult`;
        raise an ``OdcError`` for user errors.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], BenchResult]
    description: str = ""


#: name -> sub-benchmark, in ``--help`` order.
BENCHES: dict[str, BenchCommand] = {}

#: Modules that register sub-benchmarks when imported (skipped while they do not exist).
BENCH_MODULES: tuple[str, ...] = (
    "onedc_media.cli.bench_decode",  # bench decode: batched runtime (frames/s, per stage)
    "onedc_media.cli.bench_model",  # bench model: OneDC network stages
)


def register_bench(command: BenchCommand) -> None:
    """Add a sub-benchmark; names are unique."""
    old = BENCHES.get(command.name)
    if old is not None and old is not command:
        raise PluginError(f"bench sub-command {command.name!r} is registered twice")
    BENCHES[command.name] = command


def _load_modules() -> None:
    for name in BENCH_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


# -- bench codecs ---------------------------------------------------------------------


def _codecs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--codecs",
        "-c",
        default="jpeg,webp,avif,hevc-intra,onedc",
        help="comma-separated codecs (default: jpeg,webp,avif,hevc-intra,onedc; "
        "those not installed are skipped)",
    )
    p.add_argument(
        "--image",
        "-i",
        action="append",
        default=[],
        metavar="FILE",
        help="image to encode (repeatable); default: a synthetic 1024x768 photo-like picture",
    )
    p.add_argument(
        "--quality",
        "-q",
        metavar="SPEC",
        help='quality per codec, "jpeg=50;avif=30", or one value for all '
        "(default: each codec's default)",
    )
    p.add_argument(
        "--reference", default="jpeg", help="codec the ratios are taken to (default jpeg)"
    )
    p.add_argument("--device", help="device for codecs that have a choice")


def _codecs_run(args: argparse.Namespace) -> BenchResult:
    import onedc_media
    from onedc_media.evaluate.bench import bench_codecs, synthetic_image
    from onedc_media.evaluate.runner import parse_qualities
    from onedc_media.imageio import read_image

    registry = onedc_media.default_plugins().codecs
    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    if not names:
        raise CodecOptionError("--codecs is empty")
    images = [read_image(f) for f in args.image] or [synthetic_image()]
    options = {}
    missing = [n for n in names if n not in registry]
    names = [n for n in names if n in registry]
    for name, values in parse_qualities(args.quality, names).items():
        info = registry.get(name)
        if info.quality_option is None or len(values) != 1:
            raise CodecOptionError(f"--quality: give one value for {name!r}")
        options[name] = {info.quality_option: values[0]}
    result = bench_codecs(
        registry,
        names,
        images,
        options=options,
        reference=args.reference,
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
    )
    result.notes[:0] = [f"{n}: skipped: not installed" for n in missing]
    return result


register_bench(
    BenchCommand(
        "codecs",
        "encode / decode ms per megapixel of each codec, with ratios to a reference",
        _codecs_args,
        _codecs_run,
        description="Encode and decode the same pictures with each codec, interleaved "
        "(round robin, so drift hits all alike), and print medians over the repeats: ms, "
        "ms per megapixel, frames/s, and the ratio to the reference codec from the same "
        "run. Encoders and decoders are created before timing (model loading is not "
        "counted).",
    )
)


# -- the command group ----------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction) -> None:
    _load_modules()
    p = sub.add_parser(
        "bench",
        help="speed benchmarks (medians and ratios from one run)",
        description="Speed benchmarks. Each sub-command measures something different and "
        "prints medians over repeats with ratios to a reference measured side by side "
        "in the same run. Benchmarks report; they never fail on a timing.",
        epilog="examples:\n"
        "  onedc-media bench codecs\n"
        "  onedc-media bench codecs --codecs jpeg,avif --image photo.png --repeats 10\n"
        "  onedc-media bench codecs -q 'jpeg=50;avif=30' --reference avif --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    benches = p.add_subparsers(dest="bench", metavar="BENCHMARK")
    for cmd in BENCHES.values():
        bp = benches.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help)
        cmd.add_arguments(bp)
        bp.add_argument(
            "--repeats",
            "-r",
            type=int,
            default=5,
            help="timed repeats; the median is reported (default 5)",
        )
        bp.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
        bp.add_argument("--json", action="store_true", help="machine-readable output")
        bp.set_defaults(func=run, bench_command=cmd)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _fmt(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "-"


def run(args: argparse.Namespace) -> int:
    if args.repeats < 1 or args.warmup < 0:
        raise CodecOptionError("--repeats must be at least 1 and --warmup at least 0")
    result = args.bench_command.run(args)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0 if result.rows else 1
    print(result.title)
    ref = result.reference or "-"
    print(
        f"  {'subject':<14} {'stage':<10} {'median ms':>10} {'ms/MP':>9} "
        f"{'frames/s':>9} {'vs ' + ref:>10}  extra"
    )
    for r in result.rows:
        extra = " ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.extra.items()
        )
        print(
            f"  {r.subject:<14} {r.stage:<10} {_fmt(r.median_s * 1e3, '.2f'):>10} "
            f"{_fmt(r.ms_per_mp, '.1f'):>9} {_fmt(r.frames_per_s, '.1f'):>9} "
            f"{_fmt(result.ratio(r), '.2f') + 'x':>10}  {extra}"
        )
    for note in result.notes:
        print(f"onedc-media: warning: {note}", file=sys.stderr)
    return 0 if result.rows else 1
