"""Measure the .odc container: framing bytes per packet, writer and reader throughput.

Not a test. Prints one table row per packet size::

    python benchmarks/container_bench.py                # 16 MiB of payload per size
    python benchmarks/container_bench.py --total-mib 64 --sizes 1024 65536

"framing/pkt" is (file bytes - payload bytes) / packets: chunk framing, the packet header,
sync points, the trailing index and the file's fixed headers, amortised. Throughput is
payload MiB per second through a real file in a temporary folder (writes include the
final fsync and rename); "pipe read" reads the same file through a non-seekable wrapper.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from fractions import Fraction

from onedc_media import container
from onedc_media.codec import ModelRef
from onedc_media.container import Packet, StreamHeader

MODEL = ModelRef("onedc-sd15-q3", "0" * 64, "1" * 64)


def header() -> StreamHeader:
    """A typical OneDC keyframe stream header (model hashes included)."""
    return StreamHeader(
        "video",
        "onedc",
        width=1920,
        height=1080,
        time_base=Fraction(1, 90000),
        frame_rate=Fraction(30000, 1001),
        codec_params={"quality": 3},
        model=MODEL,
    )


class _Pipe(io.RawIOBase):
    def __init__(self, fp):
        self._fp = fp

    def readable(self):
        return True

    def readinto(self, b):
        return self._fp.readinto(b)


def bench(size: int, total: int, folder: str) -> dict:
    count = max(1, total // size)
    payload = os.urandom(size)
    path = os.path.join(folder, f"bench-{size}.odc")
    t0 = time.perf_counter()
    with container.open(path, "w") as out:
        out.add_stream(header())
        for i in range(count):
            out.mux(Packet(0, payload, pts=i * 3003, dts=i * 3003, duration=3003, keyframe=True))
    t_write = time.perf_counter() - t0
    file_bytes = os.path.getsize(path)
    t0 = time.perf_counter()
    with container.open(path) as inp:
        got = sum(len(p.data) for p in inp.demux())
    t_read = time.perf_counter() - t0
    assert got == size * count
    t0 = time.perf_counter()
    with (
        open(path, "rb", buffering=0) as raw,
        container.open(io.BufferedReader(_Pipe(raw), 1 << 16)) as inp,
    ):
        got = sum(len(p.data) for p in inp.demux())
    t_pipe = time.perf_counter() - t0
    os.unlink(path)
    mib = size * count / (1 << 20)
    return {
        "size": size,
        "packets": count,
        "framing": (file_bytes - size * count) / count,
        "overhead": (file_bytes - size * count) / file_bytes * 100,
        "write": mib / t_write,
        "read": mib / t_read,
        "pipe": mib / t_pipe,
    }


def fixed_cost() -> tuple[int, int]:
    """Bytes around one packet in a single-image file; and per extra packet."""
    sizes = []
    for n in (1, 2):
        buf = io.BytesIO()
        with container.open(buf, "w") as out:
            out.add_stream(header())
            for i in range(n):
                out.mux(Packet(0, b"\0" * 1000, pts=i, keyframe=True))
        sizes.append(len(buf.getvalue()) - 1000 * n)
    return sizes[0], sizes[1] - sizes[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--total-mib", type=float, default=16, help="payload per size (MiB)")
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[256, 4096, 65536, 1 << 20],
        help="packet payload sizes in bytes",
    )
    ap.add_argument("--dir", default=None, help="folder for the temporary files")
    args = ap.parse_args(argv)
    one, extra = fixed_cost()
    print(
        f"single-image file: {one} bytes around the payload (headers with model "
        f"hashes, framing, index, end); each further packet adds {extra}"
    )
    print(
        f"{'payload':>9} {'packets':>8} {'framing/pkt':>12} {'overhead':>9} "
        f"{'write MiB/s':>12} {'read MiB/s':>11} {'pipe read':>10}"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for size in args.sizes:
            r = bench(size, int(args.total_mib * (1 << 20)), folder)
            print(
                f"{r['size']:>9} {r['packets']:>8} {r['framing']:>12.2f} "
                f"{r['overhead']:>8.3f}% {r['write']:>12.0f} {r['read']:>11.0f} "
                f"{r['pipe']:>10.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
