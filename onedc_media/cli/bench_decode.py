"""``onedc-media bench decode``: the batched, pipelined decoder runtime against per-frame
and plain batched decoding, on the same packets in one run (see
:mod:`onedc_media.runtime.bench`)."""

from __future__ import annotations

import argparse
import re

from onedc_media.cli.bench_cmd import BenchCommand, register_bench
from onedc_media.errors import CodecOptionError

__all__: list[str] = []


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text.strip().lower())
    if not m or not all(int(v) > 0 for v in m.groups()):
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 512x512, not {text!r}")
    return int(m.group(1)), int(m.group(2))


def _auto_or_positive(what: str):
    def parse(text: str) -> int | str:
        if text == "auto":
            return text
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"{what} must be 'auto' or a positive integer, not {text!r}"
            )
        return value

    return parse


_batch = _auto_or_positive("batch")
_workers = _auto_or_positive("cpu workers")


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--frames", "-n", type=int, default=32, help="keyframes in the sequence (default 32)"
    )
    p.add_argument(
        "--size", type=_size, default=(512, 512), metavar="WxH", help="frame size (default 512x512)"
    )
    p.add_argument(
        "--model",
        "-m",
        default="onedc-tiny",
        help="embedded model name or exported model folder (default onedc-tiny)",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument(
        "--batch",
        type=_batch,
        default="auto",
        metavar="N|auto",
        help="synthesis batch size for batched and pipelined (default auto: from free memory)",
    )
    p.add_argument(
        "--entropy-threads",
        type=int,
        default=None,
        metavar="N",
        help="entropy-decoding threads of the pipelined decoder (default: from the cores)",
    )
    p.add_argument(
        "--cpu-workers",
        type=_workers,
        default="auto",
        metavar="N|auto",
        help="CPU synthesis workers of the pipelined decoder, torch threads divided among "
        "them (default auto: one per torch thread, at most 4)",
    )
    p.add_argument(
        "--queue-depth",
        type=int,
        default=None,
        metavar="N",
        help="frames in flight in the pipelined decoder (default: from the batch size)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="synthesis precision (default fp32; the engine runs in fp32 either way)",
    )
    p.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_const",
        const=False,
        default=None,
        help="run the pipelined decoder on the engine's NCHW networks "
        "(default on CPU: an NHWC replica, faster with oneDNN)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="pipelined: fixed-shape compilation (CPU: frozen TorchScript traces; CUDA: "
        "torch.compile); its one-time cost is reported, not timed",
    )
    p.add_argument(
        "--quality", "-q", type=int, default=None,
        help="rate point 1..N of the packets (default: the model's default rate point)"
    )
    p.add_argument(
        "--image",
        "-i",
        action="append",
        default=[],
        metavar="FILE",
        help="photo to pan over (repeatable); default: the test photos, else synthetic",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        metavar="N",
        help="torch.set_num_threads(N) for the whole run, all subjects alike "
        "(default: torch's; on a busy machine 1 avoids OpenMP barrier stalls)",
    )
    p.add_argument(
        "--subjects",
        default="sequential,batched,pipelined",
        help="comma-separated subset of sequential,batched,pipelined",
    )


def _run(args: argparse.Namespace) -> object:
    import torch

    from onedc_media.model.engine import OneDCEngine
    from onedc_media.runtime.bench import bench_decode, encode_sequence, make_clip

    if args.frames < 1:
        raise CodecOptionError("--frames must be at least 1")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CodecOptionError(f"--device {device}: CUDA is not available")
    if args.torch_threads is not None:
        if args.torch_threads < 1:
            raise CodecOptionError("--torch-threads must be at least 1")
        torch.set_num_threads(args.torch_threads)
    engine = OneDCEngine.from_pretrained(args.model, device=device)
    if args.quality is None:
        args.quality = engine.default_quality
    if not 1 <= args.quality <= engine.num_rates:
        raise CodecOptionError(f"--quality must be 1..{engine.num_rates} for {engine.ref.name}")
    photos = None
    if args.image:
        from onedc_media.imageio import read_image

        photos = [read_image(f) for f in args.image]
    w, h = args.size
    frames = make_clip(args.frames, h, w, photos=photos)
    packets = encode_sequence(engine, frames, args.quality - 1)
    del frames
    subjects = [s.strip() for s in args.subjects.split(",") if s.strip()]
    return bench_decode(
        engine,
        packets,
        batch_size=args.batch,
        entropy_threads=args.entropy_threads,
        queue_depth=args.queue_depth,
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        cpu_workers=args.cpu_workers,
        subjects=subjects,
        repeats=args.repeats,
        warmup=args.warmup,
        title=f"decode: {len(packets)} frames {w}x{h} {engine.ref.name} q{args.quality}",
    )


register_bench(
    BenchCommand(
        "decode",
        "decoder runtime frames/s: sequential vs batched vs batched+pipelined, per stage",
        _args,
        _run,
        description="Encode a keyframe sequence (pans over photos) once, then decode the "
        "same packets three ways, interleaved: one frame at a time (entropy decode + "
        "synthesis per frame, as engine.decompress), batched (all entropy, then batched "
        "synthesis), and pipelined (onedc_media.runtime: entropy threads ahead of batched "
        "synthesis). Prints medians, frames/s, per-stage times, speedup over sequential, "
        "peak RSS and, on CUDA, max allocated memory. A 32-frame 512x512 run takes "
        "minutes on 2 CPU cores; try --repeats 3 --warmup 0. On a machine shared with "
        "other CPU-heavy processes, set GOMP_SPINCOUNT=1000 (or OMP_WAIT_POLICY=passive): "
        "otherwise libgomp spin-waits while only one OpenMP team exists, which slows the "
        "single-threaded subjects several-fold and flatters the pipelined one.",
    )
)
