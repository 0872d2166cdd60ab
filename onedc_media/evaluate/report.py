"""Turn ``results.csv`` rows into a report: numbers, RD plots, BD-rate table, picture sheet.

Files written to the output folder::

    summary.json         settings, RD curves (averaged), BD-rate table, speed, notes
    rd.png               the four RD plots in one figure (for the README)
    rd_psnr_rgb.png      bpp vs PSNR (RGB)
    rd_psnr_y.png        bpp vs PSNR-Y (BT.601 luma)
    rd_ms_ssim.png       bpp vs MS-SSIM
    rd_ms_ssim_db.png    bpp vs MS-SSIM in dB, -10 log10(1 - MS-SSIM)
    rd_colour.png        bpp vs colour error: mean CIEDE2000 and the worst 16x16 block's
    sheet.png            the same crops of a few images, one column per codec, at
                         similar bpp, labelled with bpp and PSNR, and under each a map
                         of the whole picture's block CIEDE2000 (the colour shift) with
                         the worst block outlined
    report.md            ties these together

Averaging: a curve point is the mean over images of bpp and of each metric (per-image
PSNR is averaged, as CompressAI does; MS-SSIM in dB is taken of the mean MS-SSIM), over
the images that have every point of every curve, so all curves see the same pictures.
Times are medians over images. Plots use matplotlib's Agg canvas directly (no pyplot,
no global backend change).
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from onedc_media.evaluate.bdrate import BjontegaardError, bd_quality, bd_rate, monotone_envelope
from onedc_media.evaluate.metrics import PerceptualStatus

__all__ = [
    "BD_METRICS",
    "METRICS",
    "Report",
    "bd_table",
    "choose_crop",
    "summarize",
    "write_report",
]

#: metric key -> axis label. LPIPS and DISTS are lower-is-better.
METRICS: dict[str, str] = {
    "psnr_rgb": "PSNR, RGB (dB)",
    "psnr_y": "PSNR-Y, BT.601 luma (dB)",
    "ms_ssim": "MS-SSIM (RGB)",
    "ms_ssim_db": "MS-SSIM (dB)",
    "lpips": "LPIPS (lower is better)",
    "dists": "DISTS (lower is better)",
    "ciede2000": "mean CIEDE2000 (lower is better)",
    "ciede2000_worst_block": "worst 16x16 block CIEDE2000 (lower is better)",
}
#: Colour metrics: plotted in ``rd_colour.png``, reported per point, not in BD tables.
COLOUR_METRICS: tuple[str, ...] = ("ciede2000", "ciede2000_worst_block")
#: The heat maps' colour scale tops out here (CIEDE2000): about where a colour reads as
#: another colour.
_HEAT_MAX = 30.0
#: Metrics the BD-rate table uses (higher is better on each).
BD_METRICS: tuple[str, ...] = ("psnr_rgb", "psnr_y", "ms_ssim_db")
_PLOTS = ("psnr_rgb", "psnr_y", "ms_ssim", "ms_ssim_db")


# -- numbers --------------------------------------------------------------------------


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return math.inf if any(v == math.inf for v in values if v is not None) else math.nan
    return float(np.mean(vals))


def _median(values: Sequence[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(vals)) if vals else math.nan


@dataclass
class Summary:
    """Averaged RD curves: label -> points sorted by bpp, and what they average over."""

    curves: dict[str, list[dict[str, Any]]]
    images: list[str]  #: the images every curve is averaged over
    incomplete: list[str]  #: images left out because some point is missing for them
    codec_of: dict[str, str]  #: label -> codec name


def summarize(rows: Sequence[Mapping[str, Any]], anchor: str | None = None) -> Summary:
    """Average rows into one RD curve per label over the images all labels share."""
    labels = list(dict.fromkeys(str(r["label"]) for r in rows))
    if anchor in labels:
        labels.remove(anchor)
        labels.insert(0, anchor)
    ladders = {lab: {str(r["quality"]) for r in rows if r["label"] == lab} for lab in labels}
    have: dict[str, set[tuple[str, str]]] = {}
    for r in rows:
        have.setdefault(str(r["image"]), set()).add((str(r["label"]), str(r["quality"])))
    wanted = {(lab, q) for lab, qs in ladders.items() for q in qs}
    images = sorted(img for img, pts in have.items() if wanted <= pts)
    incomplete = sorted(set(have) - set(images))
    keep = set(images)
    curves: dict[str, list[dict[str, Any]]] = {}
    codec_of: dict[str, str] = {}
    for lab in labels:
        points = []
        for q in ladders[lab]:
            sel = [
                r
                for r in rows
                if r["label"] == lab and str(r["quality"]) == q and r["image"] in keep
            ]
            if not sel:
                continue
            codec_of[lab] = str(sel[0]["codec"])
            point: dict[str, Any] = {"quality": q, "images": len(sel)}
            for key in ("bpp", "odc_bpp", "psnr_rgb", "psnr_y", "ms_ssim", "lpips", "dists",
                        *COLOUR_METRICS):
                point[key] = _mean([r.get(key, math.nan) for r in sel])
            # the photo whose worst block is worst: one shifted object is what a user sees
            point["ciede2000_worst_block_max"] = max(
                (v for r in sel if math.isfinite(v := r.get("ciede2000_worst_block", math.nan))),
                default=math.nan,
            )
            point["ms_ssim_db"] = (
                -10 * math.log10(1 - point["ms_ssim"])
                if math.isfinite(point["ms_ssim"]) and point["ms_ssim"] < 1
                else math.nan
            )
            for key in ("encode_ms_per_mp", "decode_ms_per_mp"):
                point[key] = _median([r[key] for r in sel])
            point["odc_overhead_bytes"] = _median(
                [r["odc_bytes"] - r["bytes"] for r in sel if r["odc_bytes"] is not None]
            )
            points.append(point)
        if points:
            curves[lab] = sorted(points, key=lambda p: p["bpp"])
    return Summary(curves, images, incomplete, codec_of)


def bd_table(summary: Summary, anchor: str) -> dict[str, dict[str, Any]]:
    """BD-rate (%) of every curve against *anchor* for each of :data:`BD_METRICS`, plus
    BD-PSNR (dB, RGB). A cell is a number or ``{"error": reason}``."""
    if anchor not in summary.curves:
        raise BjontegaardError(
            f"anchor {anchor!r} has no results (curves: {', '.join(summary.curves) or 'none'})"
        )

    def curve(label: str, metric: str) -> tuple[list[float], list[float], int]:
        pts = summary.curves[label]
        return monotone_envelope([p["bpp"] for p in pts], [p[metric] for p in pts])

    table: dict[str, dict[str, Any]] = {}
    for label in summary.curves:
        row: dict[str, Any] = {}
        for metric in (*BD_METRICS, "bd_psnr_rgb"):
            key = "psnr_rgb" if metric == "bd_psnr_rgb" else metric
            ra, qa, _ = curve(anchor, key)
            rt, qt, dropped = curve(label, key)
            fn = bd_quality if metric == "bd_psnr_rgb" else bd_rate
            try:
                row[metric] = fn(ra, qa, rt, qt)
            except BjontegaardError as exc:
                row[metric] = {"error": str(exc)}
            if dropped and metric in BD_METRICS:
                row.setdefault("dropped_points", {})[metric] = dropped
        table[label] = row
    return table


def _speed(summary: Summary, anchor: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    keep = set(summary.images)
    out: dict[str, Any] = {}
    for label in summary.curves:
        sel = [r for r in rows if r["label"] == label and r["image"] in keep]
        out[label] = {
            "encode_ms_per_mp": _median([r["encode_ms_per_mp"] for r in sel]),
            "decode_ms_per_mp": _median([r["decode_ms_per_mp"] for r in sel]),
        }
    ref = out.get(anchor)
    for label, s in out.items():
        for key in ("encode_ms_per_mp", "decode_ms_per_mp"):
            s[key.replace("_ms_per_mp", "_vs_anchor")] = (
                s[key] / ref[key] if ref and ref[key] and math.isfinite(ref[key]) else math.nan
            )
    return out


# -- plots ----------------------------------------------------------------------------

_STYLES = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _figure(width: float, height: float):  # -> matplotlib.figure.Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _rd_axes(ax, summary: Summary, metric: str, anchor: str, title: str) -> None:
    from matplotlib.ticker import FuncFormatter

    for i, (label, pts) in enumerate(summary.curves.items()):
        xs = [p["bpp"] for p in pts if math.isfinite(p[metric]) and p["bpp"] > 0]
        ys = [p[metric] for p in pts if math.isfinite(p[metric]) and p["bpp"] > 0]
        if not xs:
            continue
        ax.plot(
            xs,
            ys,
            marker=_STYLES[i % len(_STYLES)],
            markersize=4,
            linewidth=1.6,
            linestyle="--" if label == anchor else "-",
            label=f"{label} (anchor)" if label == anchor else label,
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("bits per pixel (packet bytes x 8 / pixels, log scale)")
    ax.set_ylabel(METRICS[metric])
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def plot_rd(summary: Summary, out_dir: Path, anchor: str, caption: str) -> list[Path]:
    """One PNG per metric of :data:`_PLOTS` plus ``rd.png`` with all four."""
    paths = []
    for metric in _PLOTS:
        fig = _figure(6.4, 4.6)
        _rd_axes(fig.add_subplot(), summary, metric, anchor, caption)
        path = out_dir / f"rd_{metric}.png"
        fig.savefig(path)
        paths.append(path)
    fig = _figure(12, 8.6)
    for i, metric in enumerate(_PLOTS):
        _rd_axes(fig.add_subplot(2, 2, i + 1), summary, metric, anchor, caption)
    fig.savefig(out_dir / "rd.png")
    paths.insert(0, out_dir / "rd.png")
    if any(math.isfinite(p.get("ciede2000", math.nan)) for c in summary.curves.values() for p in c):
        fig = _figure(12, 4.6)
        for i, metric in enumerate(COLOUR_METRICS):
            _rd_axes(fig.add_subplot(1, 2, i + 1), summary, metric, anchor, caption)
        fig.savefig(out_dir / "rd_colour.png")
        paths.append(out_dir / "rd_colour.png")
    return paths


# -- visual sheet ---------------------------------------------------------------------


def choose_crop(rgb: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """The ``size`` x ``size`` window (y, x, h, w) with the most detail (luma gradient
    energy), where codecs differ most; the whole picture when it is smaller."""
    h, w = rgb.shape[:2]
    ch, cw = min(size, h), min(size, w)
    y = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    energy = np.zeros((h, w))
    energy[:, 1:] += np.abs(np.diff(y, axis=1))
    energy[1:, :] += np.abs(np.diff(y, axis=0))
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = max(1, size // 4)
    best, where = -1.0, (0, 0)
    for top in range(0, h - ch + 1, step):
        for left in range(0, w - cw + 1, step):
            s = (
                integral[top + ch, left + cw]
                - integral[top, left + cw]
                - integral[top + ch, left]
                + integral[top, left]
            )
            if s > best:
                best, where = s, (top, left)
    return where[0], where[1], ch, cw


def _pick_points(
    rows: Sequence[Mapping[str, Any]], image: str, labels: Sequence[str], target: float | None
) -> tuple[float, dict[str, Mapping[str, Any]]]:
    """For one image: the bpp to match and, per label, the row closest to it (log bpp).

    Without a *target*, the lowest rate every codec with a quality ladder reaches: where
    they differ most (a one-point curve, e.g. lossless PNG, does not move the target).
    """
    per = {lab: [r for r in rows if r["image"] == image and r["label"] == lab] for lab in labels}
    per = {lab: rs for lab, rs in per.items() if rs}
    if target is None:
        lows = [min(r["bpp"] for r in rs) for rs in per.values() if len(rs) > 1]
        target = max(lows or [min(r["bpp"] for rs in per.values() for r in rs)])
    chosen = {
        lab: min(rs, key=lambda r: abs(math.log(r["bpp"] / target))) for lab, rs in per.items()
    }
    return target, chosen


def make_sheet(
    rows: Sequence[Mapping[str, Any]],
    summary: Summary,
    images: Mapping[str, Path],
    registry: Any,
    path: Path,
    *,
    count: int = 3,
    target_bpp: float | None = None,
    crop: int = 192,
) -> list[dict[str, Any]]:
    """Draw the comparison sheet; returns what each tile shows (for summary.json).

    Each picture takes two rows: the crop per codec, and under it a map of the whole
    picture's colour error (CIEDE2000 of every 16x16 block's mean colour, 0 .. 30) with
    the worst block outlined, so a shifted colour shows even where the crop misses it.
    The chosen points are encoded and decoded again (codecs are deterministic) rather
    than stored by the runner, which cannot know in advance which points will be shown.
    """
    from matplotlib.patches import Rectangle

    from onedc_media.evaluate.metrics import COLOUR_BLOCK, colour_error
    from onedc_media.evaluate.runner import resampled
    from onedc_media.imageio import read_image

    names = [n for n in summary.images if n in images]
    if not names:
        return []
    picks = [names[round(i * (len(names) - 1) / max(1, count - 1))] for i in range(count)]
    picks = list(dict.fromkeys(picks))
    labels = list(summary.curves)
    scale = 2 if crop <= 256 else 1
    tile = crop * scale / 100
    fig = _figure(tile * (len(labels) + 1), (tile + 0.55) * 2 * len(picks))
    grid = fig.subplots(2 * len(picks), len(labels) + 1, squeeze=False)
    tiles: list[dict[str, Any]] = []
    heat = None
    for r, name in enumerate(picks):
        rgb = read_image(images[name])
        y, x, h, w = choose_crop(rgb, crop)
        target, chosen = _pick_points(rows, name, labels, target_bpp)
        panels = [("original", rgb, f"{Path(name).stem[:28]}\n{rgb.shape[1]}x{rgb.shape[0]}", None)]
        for lab in labels:
            row = chosen.get(lab)
            if row is None:
                continue
            info = registry.get(str(row["codec"]))
            codec = info.create()
            options = json.loads(row["options"])
            factor = float(row.get("scale") or 1.0)
            if not math.isfinite(factor):
                factor = 1.0

            def code(picture: np.ndarray) -> tuple[bytes, np.ndarray]:
                with codec.encoder(info.resolve_options(options)) as enc:
                    packets = enc.encode([picture])
                    params = dict(getattr(enc, "params", {}) or {})
                    # the options name where the weights are (model=DIR), for the decoder too
                    with codec.decoder(params, model=enc.model, options=options) as dec:
                        return bytes(packets[0]), dec.decode(packets)[0]

            packet, out = resampled(rgb, factor, code)
            colour = colour_error(rgb, out)
            bpp = len(packet) * 8 / (rgb.shape[0] * rgb.shape[1])
            q = f" q={row['quality']}" if row["quality"] != "" else ""
            panels.append(
                (lab, out, f"{lab}{q}\n{bpp:.3f} bpp, {row['psnr_rgb']:.1f} dB", colour)
            )
            tiles.append(
                {
                    "image": name,
                    "label": lab,
                    "quality": row["quality"],
                    "bpp": bpp,
                    "target_bpp": target,
                    "psnr_rgb": row["psnr_rgb"],
                    "ciede2000": colour.mean,
                    "ciede2000_worst_block": colour.worst_block,
                    "worst_block": [colour.worst[1] * COLOUR_BLOCK, colour.worst[0] * COLOUR_BLOCK],
                    "crop": [x, y, w, h],
                }
            )
        for c in range(len(labels) + 1):
            ax, hax = grid[2 * r][c], grid[2 * r + 1][c]
            ax.set_axis_off()
            hax.set_axis_off()
            if c >= len(panels):
                continue
            _, img, text, colour = panels[c]
            ax.imshow(img[y : y + h, x : x + w], interpolation="nearest")
            ax.set_title(text, fontsize=8)
            if colour is None:
                hax.imshow(rgb, interpolation="antialiased")
                hax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="white", lw=1))
                hax.set_title("whole picture (crop outlined)\nbelow: block CIEDE2000", fontsize=8)
                continue
            heat = hax.imshow(
                colour.blocks, cmap="magma", vmin=0, vmax=_HEAT_MAX, interpolation="nearest"
            )
            wr, wc = colour.worst
            hax.add_patch(Rectangle((wc - 0.5, wr - 0.5), 1, 1, fill=False, edgecolor="cyan", lw=1.5))
            hax.set_title(
                f"colour: mean {colour.mean:.1f}, worst block {colour.worst_block:.1f}",
                fontsize=8,
            )
    if heat is not None:
        fig.colorbar(heat, ax=grid[:, -1].tolist(), shrink=0.5, label="block CIEDE2000")
    fig.suptitle(
        f"Same crop ({crop}x{crop} px, shown {scale}x) per codec at the point nearest the "
        "lowest bpp all codecs reach on that image; under each, the colour shift of 16x16 "
        "blocks (CIEDE2000 of their mean colours, worst outlined)"
        if target_bpp is None
        else f"Same crop per codec at the point nearest {target_bpp:g} bpp; under each, the "
        "colour shift of 16x16 blocks (worst outlined)",
        fontsize=9,
    )
    fig.savefig(path)
    return tiles


# -- report ---------------------------------------------------------------------------


@dataclass
class Report:
    """What :func:`write_report` wrote."""

    summary: Summary
    bd: dict[str, dict[str, Any]]
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _fmt(value: Any, spec: str = ".2f") -> str:
    if isinstance(value, Mapping):
        return "n/a"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def write_report(
    out_dir: str | Path,
    rows: Sequence[Mapping[str, Any]],
    *,
    anchor: str,
    settings: Mapping[str, Any] | None = None,
    images: Mapping[str, Path] | None = None,
    registry: Any = None,
    perceptual: Sequence[PerceptualStatus] = (),
    errors: Sequence[str] = (),
    sheet_images: int = 3,
    sheet_bpp: float | None = None,
    crop: int = 192,
) -> Report:
    """Write summary.json, the RD plots, the sheet and report.md into *out_dir*.

    :param images: image name -> file, needed for the sheet (re-encoded from the
        originals); the sheet is skipped when it is ``None`` or when *registry* is.
    :param perceptual: LPIPS / DISTS availability, reported as is.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows, anchor)
    if not summary.curves:
        raise BjontegaardError("no results to report (results.csv is empty)")
    if anchor not in summary.curves:
        raise BjontegaardError(
            f"anchor codec {anchor!r} has no results; choose one of {', '.join(summary.curves)}"
        )
    report = Report(summary, bd_table(summary, anchor))
    settings = dict(settings or {})
    caption = f"{len(summary.images)} images" + (
        f" from {Path(str(settings['images'])).name}/" if settings.get("images") else ""
    )
    report.files += plot_rd(summary, out, anchor, caption)
    tiles: list[dict[str, Any]] = []
    if images is not None and registry is not None and sheet_images > 0:
        tiles = make_sheet(
            rows,
            summary,
            images,
            registry,
            out / "sheet.png",
            count=sheet_images,
            target_bpp=sheet_bpp,
            crop=crop,
        )
        if tiles:
            report.files.append(out / "sheet.png")
    else:
        report.notes.append("no visual sheet: the original images were not given")
    if summary.incomplete:
        report.notes.append(
            f"{len(summary.incomplete)} image(s) left out of the averages because some "
            f"point is missing for them: {', '.join(summary.incomplete[:5])}"
            + (" ..." if len(summary.incomplete) > 5 else "")
        )
    speed = _speed(summary, anchor, rows)
    perceptual_json = [vars(p) for p in perceptual]
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")  # noqa: UP017 (3.10)
    data = {
        "created": created,
        "settings": settings,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
        },
        "anchor": anchor,
        "images": summary.images,
        "images_left_out": summary.incomplete,
        "definitions": {
            "bpp": "packet bytes * 8 / pixels (the self-contained packet the codec returns, "
            "with its own headers)",
            "odc_bpp": "bytes of a whole .odc file holding the one picture * 8 / pixels",
            "psnr_rgb": "10 log10(255^2 / MSE over R, G, B), mean over images",
            "psnr_y": "PSNR of full-range BT.601 luma (0.299 R + 0.587 G + 0.114 B)",
            "ms_ssim": "pytorch-msssim, 5 scales, RGB, data_range 255, mean over images",
            "ms_ssim_db": "-10 log10(1 - mean MS-SSIM)",
            "bd_rate": "Bjontegaard delta rate vs the anchor, PCHIP in log-rate over the "
            "overlapping quality range; negative = fewer bits than the anchor",
            "bd_psnr_rgb": "Bjontegaard delta PSNR (RGB) over the overlapping log-rate range",
            "ciede2000": "mean CIEDE2000 over pixels (scikit-image, sRGB -> Lab D65), mean "
            "over images",
            "ciede2000_worst_block": "largest CIEDE2000 between 16x16 block mean colours, "
            "mean over images (ciede2000_worst_block_max: largest over images)",
            "scale": "curves labelled scale=F: downscaled by F (area), coded, upscaled "
            "(Lanczos); bpp over the original pixels",
            "times": "median over images of one encode / decode call, ms per megapixel",
        },
        "perceptual_metrics": perceptual_json,
        "curves": summary.curves,
        "bd": report.bd,
        "speed": speed,
        "sheet": tiles,
        "errors": list(errors),
        "notes": report.notes,
    }
    (out / "summary.json").write_text(json.dumps(_jsonable(data), indent=2) + "\n")
    report.files.append(out / "summary.json")
    md = _markdown(data, summary, report, speed, perceptual, anchor, bool(tiles))
    (out / "report.md").write_text(md)
    report.files.append(out / "report.md")
    return report


def _markdown(
    data: Mapping[str, Any],
    summary: Summary,
    report: Report,
    speed: Mapping[str, Any],
    perceptual: Sequence[PerceptualStatus],
    anchor: str,
    sheet: bool,
) -> str:
    s = data["settings"]
    lines = [
        "# Rate-distortion report",
        "",
        f"{len(summary.images)} images"
        + (f" from `{s['images']}`" if s.get("images") else "")
        + f", {len(summary.curves)} codecs, anchor **{anchor}**. "
        f"Created {data['created']} by `onedc-media eval`"
        + (f" (onedc-media {s['version']})" if s.get("version") else "")
        + f" on {data['machine']['platform']}.",
        "",
        "![RD curves](rd.png)",
        "",
        "## BD-rate against " + anchor,
        "",
        (
            "Bjontegaard delta rate (PCHIP interpolation of log-rate over the quality range both "
            "curves cover): the bits a codec needs relative to the anchor at equal quality. "
            "**Negative is better.** BD-PSNR is the quality gain at equal rate."
        ),
        "",
        "| codec | BD-rate PSNR-RGB | BD-rate PSNR-Y | BD-rate MS-SSIM (dB) | BD-PSNR RGB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    problems = []
    for label, row in report.bd.items():
        cells = [
            _fmt(row[m], "+.1f") + (" %" if not isinstance(row[m], Mapping) else "")
            for m in BD_METRICS
        ]
        bdp = row["bd_psnr_rgb"]
        cells.append(_fmt(bdp, "+.2f") + (" dB" if not isinstance(bdp, Mapping) else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        for m in (*BD_METRICS, "bd_psnr_rgb"):
            if isinstance(row[m], Mapping):
                problems.append(f"- {label}, {m}: {row[m]['error']}")
        for m, n in row.get("dropped_points", {}).items():
            problems.append(
                f"- {label}, {m}: {n} point(s) where quality did not rise "
                "with rate were left out of the BD computation"
            )
    if problems:
        lines += ["", *problems]
    lines += [
        "",
        "## Speed",
        "",
        (
            f"Median over images of one encode / decode call, in ms per megapixel, measured "
            f"during the evaluation with {s.get('jobs', 1)} job(s) (see `onedc-media bench "
            "codecs` for dedicated timings). Ratios are to the anchor."
        ),
        "",
        "| codec | encode ms/MP | decode ms/MP | encode vs anchor | decode vs anchor |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, sp in speed.items():
        lines.append(
            f"| {label} | {_fmt(sp['encode_ms_per_mp'], '.1f')} | "
            f"{_fmt(sp['decode_ms_per_mp'], '.1f')} | {_fmt(sp['encode_vs_anchor'], '.2f')}x | "
            f"{_fmt(sp['decode_vs_anchor'], '.2f')}x |"
        )
    if sheet:
        lines += [
            "",
            "## Visual comparison",
            "",
            (
                "The same crop (the most detailed window) of a few images per codec, at the "
                "quality whose bpp on that image is closest to the lowest rate every codec "
                "reaches. Titles give the whole picture's bpp and PSNR. Under each crop, the "
                "whole picture's colour shift: CIEDE2000 of every 16x16 block's mean colour "
                "(black 0, bright 30 and more), the worst block outlined."
            ),
            "",
            "![visual comparison](sheet.png)",
        ]
    lines += ["", "## RD points", ""]
    for label, pts in summary.curves.items():
        lines += [
            f"### {label}",
            "",
            (
                "| quality | bpp | .odc bpp | PSNR RGB | PSNR-Y | MS-SSIM | MS-SSIM dB "
                "| CIEDE2000 | worst block (max) | enc ms/MP | dec ms/MP |"
            ),
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for p in pts:
            lines.append(
                f"| {p['quality'] or '-'} | {_fmt(p['bpp'], '.4f')} | {_fmt(p['odc_bpp'], '.4f')} "
                f"| {_fmt(p['psnr_rgb'])} | {_fmt(p['psnr_y'])} | {_fmt(p['ms_ssim'], '.4f')} "
                f"| {_fmt(p['ms_ssim_db'])} | {_fmt(p.get('ciede2000'))} "
                f"| {_fmt(p.get('ciede2000_worst_block'))} "
                f"({_fmt(p.get('ciede2000_worst_block_max'), '.1f')}) "
                f"| {_fmt(p['encode_ms_per_mp'], '.1f')} | {_fmt(p['decode_ms_per_mp'], '.1f')} |"
            )
        lines.append("")
    overhead = [p["odc_overhead_bytes"] for pts in summary.curves.values() for p in pts]
    lines += [
        "## Definitions",
        "",
        (
            "- **bpp**: bytes of the packet the codec returns x 8 / pixels. Packets are "
            "self-contained and include each codec's own headers (a JPEG packet is a whole "
            "JFIF file). Real bytes, no entropy estimates."
        ),
        (
            f"- **.odc bpp**: a whole `.odc` file holding the one picture; the container adds "
            f"a median of {_fmt(_median(overhead), '.0f')} bytes per picture to the packet."
        ),
        (
            "- **PSNR RGB**: over the three channels, averaged over images. **PSNR-Y**: on "
            "full-range BT.601 luma (0.299 R + 0.587 G + 0.114 B) in float, no rounding."
        ),
        (
            "- **MS-SSIM**: pytorch-msssim, 5 scales, 11-tap Gaussian window, on RGB; in dB "
            "as -10 log10(1 - mean MS-SSIM). Images under 161 px on a side have none."
        ),
        (
            "- **CIEDE2000** (scikit-image, sRGB to CIE Lab D65): the mean over pixels, and "
            "the **worst block**: the largest CIEDE2000 between the mean colours of a 16x16 "
            "block in the original and the decoded picture, averaged over images (in "
            "brackets: the largest over images). Block means let blur and lost texture "
            "average out, so the worst block measures a colour shift: about 2 is barely "
            "visible, 10 and more reads as another colour. `rd_colour.png` plots both."
        ),
        (
            "- **Resampled curves** (`scale=F` in a label): the picture downscaled by F "
            "(area filter), coded, decoded and upscaled back (Lanczos): what a user does "
            "below a codec's lowest rate. bpp counts the small file's bytes over the "
            "original picture's pixels."
        ),
    ]
    for p in perceptual:
        state = "computed" if p.available else "**not computed**"
        lines.append(f"- **{p.name.upper()}**: {state}: {p.reason}.")
    if not perceptual:
        lines.append("- **LPIPS / DISTS**: not requested.")
    if data["errors"] or report.notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in report.notes]
        lines += [f"- failed: {e}" for e in data["errors"][:50]]
    lines += ["", "Raw rows: `results.csv`; everything above as JSON: `summary.json`.", ""]
    return "\n".join(lines)
