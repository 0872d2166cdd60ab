"""Rate-distortion and speed evaluation of codecs (``onedc-media eval`` / ``bench``).

Modules, one concern each::

    metrics   PSNR (RGB, BT.601 luma), MS-SSIM, LPIPS / DISTS with local weights only
    bdrate    Bjontegaard delta rate / quality (PCHIP, overlapping range)
    runner    image x codec x quality loop -> results.csv (resumable, parallel)
    report    summary.json, RD plots, BD-rate table, visual sheet, report.md
    bench     encode / decode timings with medians and ratios, and the registry of
              sub-benchmarks behind ``onedc-media bench``

Library use::

    from onedc_media import default_plugins
    from onedc_media.evaluate import resolve_specs, run_evaluation, write_report

    registry = default_plugins().codecs
    specs, skipped = resolve_specs(["jpeg", "avif"], registry)
    run = run_evaluation("photos/", specs, "report/", registry=registry)
    write_report("report/", run.rows, anchor="jpeg", images=run.images, registry=registry)

Importing this package loads neither torch nor matplotlib; MS-SSIM imports torch when
it first runs.
"""

from onedc_media.evaluate.bdrate import BjontegaardError, bd_quality, bd_rate, monotone_envelope
from onedc_media.evaluate.metrics import (
    PerceptualStatus,
    ms_ssim,
    ms_ssim_db,
    perceptual_status,
    psnr_rgb,
    psnr_y,
)
from onedc_media.evaluate.report import Report, summarize, write_report
from onedc_media.evaluate.runner import (
    CodecSpec,
    EvalRun,
    find_images,
    parse_qualities,
    read_results,
    resolve_specs,
    run_evaluation,
)

__all__ = [
    "BjontegaardError",
    "CodecSpec",
    "EvalRun",
    "PerceptualStatus",
    "Report",
    "bd_quality",
    "bd_rate",
    "find_images",
    "monotone_envelope",
    "ms_ssim",
    "ms_ssim_db",
    "parse_qualities",
    "perceptual_status",
    "psnr_rgb",
    "psnr_y",
    "read_results",
    "resolve_specs",
    "run_evaluation",
    "summarize",
    "write_report",
]
