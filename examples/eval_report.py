"""Rate-distortion report from Python: the library behind ``onedc-media eval``.

    python examples/eval_report.py photos/ report/ jpeg webp avif

Measures every image with each codec over its default quality ladder (resuming from
``report/results.csv`` if it exists), then writes the plots, BD-rate table (against the
first codec), visual sheet and ``report.md``.
"""

from __future__ import annotations

import sys

import onedc_media
from onedc_media.evaluate import resolve_specs, run_evaluation, write_report


def main(images: str, out: str, codecs: list[str]) -> int:
    registry = onedc_media.default_plugins().codecs
    specs, skipped = resolve_specs(codecs, registry)
    for name, reason in skipped:
        print(f"skipping {name}: {reason}", file=sys.stderr)
    if not specs:
        return 1
    run = run_evaluation(images, specs, out, registry=registry, progress=True)
    report = write_report(out, run.rows, anchor=specs[0].name, images=run.images, registry=registry)
    for label, row in report.bd.items():
        value = row["psnr_rgb"]
        text = f"{value:+.1f} %" if isinstance(value, float) else value["error"]
        print(f"{label:<12} BD-rate (PSNR) vs {specs[0].name}: {text}")
    print(f"see {out}/report.md")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
