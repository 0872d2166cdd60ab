"""An archive job over a folder of photos, from Python: the library behind
``onedc-media archive``.

    python examples/archive_batch.py                      # data/corpus/test or tests/data
                                                          # -> $TMPDIR/onedc-archive
    python examples/archive_batch.py photos/ archive/ --codec onedc -q 5
    python examples/archive_batch.py photos/ archive/ --engine ray --jobs 2

Archives every image (and video) under SRC into DEST with a durable manifest, verifies
every output (PSNR / MS-SSIM into the manifest), prints the throughput and the
archive's status, and restores it into DEST-restored/. Kill it at any point and run it
again: it finishes the job without redoing what was done.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from onedc_media.archive import (
    EncodeSettings,
    Progress,
    archive,
    archive_status,
    format_status,
    restore_archive,
)

REPO = Path(__file__).resolve().parents[1]


def default_source() -> Path:
    corpus = REPO / "data" / "corpus" / "test"  # the test photos (not in git)
    return corpus if corpus.is_dir() else REPO / "tests" / "data"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", nargs="?", default=str(default_source()))
    p.add_argument("dest", nargs="?", default=os.path.join(tempfile.gettempdir(), "onedc-archive"))
    p.add_argument("--codec", default="onedc")
    p.add_argument("-q", "--quality", type=int, default=None)
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=4)
    args = p.parse_args(argv)

    options = {} if args.quality is None else {"quality": args.quality}
    settings = EncodeSettings(codec=args.codec, options=options, threads=args.threads)
    last = [0.0]

    def progress(p: Progress) -> None:  # the library prints nothing; we do
        if time.monotonic() - last[0] > 2 or p.finished == p.total:
            last[0] = time.monotonic()
            eta = f", ETA {p.eta:.0f} s" if p.eta is not None else ""
            print(
                f"  {p.finished}/{p.total} items, {p.items_per_s:.2f} items/s, "
                f"{p.mb_in_per_s:.2f} MB/s in, {p.mb_out_per_s:.3f} MB/s out{eta}",
                file=sys.stderr,
            )

    print(f"archiving {args.src} -> {args.dest} ({args.codec}, {args.engine} engine)")
    result = archive(
        args.src, args.dest, settings, engine=args.engine, jobs=args.jobs,
        batch_size=args.batch_size, verify=True, progress=progress,
    )  # fmt: skip
    pr = result.progress
    print(
        f"encoded {pr.done}, failed {pr.failed} in {pr.elapsed:.1f} s: {pr.items_per_s:.2f} "
        f"items/s, {pr.mb_in_per_s:.2f} MB/s in, {pr.mb_out_per_s:.3f} MB/s out"
    )
    if result.verify is not None:
        print(f"verified {result.verify.verified} of {result.verify.checked} "
              f"in {result.verify.seconds:.1f} s")  # fmt: skip
    print(format_status(archive_status(args.dest)))
    restored = restore_archive(args.dest, os.fspath(args.dest).rstrip("/") + "-restored")
    print(f"restored {restored.restored} (kept {restored.kept}) into {args.dest}-restored/")
    return 0 if not result.counts.get("failed") else 3


if __name__ == "__main__":
    sys.exit(main())
