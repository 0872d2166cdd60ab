#!/usr/bin/env python3
"""Measure the embedded model against the classic codecs and refresh what shows it.

Runs ``onedc-media eval`` on held-out photos (default ``data/corpus/test``, built by
``scripts/build_corpus.py``; never used for training), then

* copies the RD plots and the visual sheet to ``docs/images/``,
* rewrites the RD section of the model card (between ``<!-- rd:begin -->`` and
  ``<!-- rd:end -->``): OneDC's points, each classic codec's quality at the same bpp
  (interpolated in log-rate on its measured curve) and the BD-rates.

Classic-codec rows are reused from earlier runs; OneDC rows are re-measured whenever the
embedded weights change (their SHA-256 is recorded next to the results).

    python scripts/refresh_model_report.py [--images DIR] [--out reports/onedc-tiny]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSIC = ("jpeg", "webp", "avif", "hevc-intra")


def model_sha(model: str) -> str:
    from onedc_media.digest import sha256_file
    from onedc_media.model.loading import embedded_model_dir

    d = Path(model) if Path(model).is_dir() else embedded_model_dir(model)
    return sha256_file(d / "model.safetensors") + sha256_file(d / "parsing.safetensors")


def fine_sha(model: str) -> str:
    """The fine decoder's SHA-256 ("none" without one): only layered pictures depend on it."""
    from onedc_media.digest import sha256_file
    from onedc_media.model.fine_decoder import FINE_DECODER_FILE
    from onedc_media.model.loading import embedded_model_dir

    d = Path(model) if Path(model).is_dir() else embedded_model_dir(model)
    return sha256_file(d / FINE_DECODER_FILE) if (d / FINE_DECODER_FILE).exists() else "none"


def drop_stale_onedc_rows(out: Path, sha: str, name: str = "onedc-weights.sha256",
                          layered_only: bool = False) -> None:
    """Forget OneDC rows measured with other weights (*layered_only*: only the rows of
    pictures with the residual layer, the ones a fine decoder draws)."""
    stamp = out / name
    results = out / "results.csv"
    if stamp.exists() and stamp.read_text().strip() == sha:
        return
    if results.exists():
        with open(results, newline="") as fh:
            rows = list(csv.DictReader(fh))
            fields = list(rows[0]) if rows else []
        keep = [r for r in rows if r["codec"] != "onedc" or (layered_only and "enhance" not in r["options"])]
        with open(results, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(keep)
    out.mkdir(parents=True, exist_ok=True)
    stamp.write_text(sha + "\n")


def interp_at(curve: list[dict], bpp: float, key: str) -> float | None:
    """Quality of a codec at ``bpp`` by linear interpolation in log-rate (None outside)."""
    pts = sorted((p["bpp"], p[key]) for p in curve if p.get(key) is not None and p["bpp"] > 0)
    if not pts or bpp < pts[0][0] or bpp > pts[-1][0]:
        return None
    xs = np.log([p[0] for p in pts])
    ys = [p[1] for p in pts]
    return float(np.interp(math.log(bpp), xs, ys))


def rd_markdown(summary: dict, images: str, refine: int = 0, enhance: tuple[str, ...] = ()) -> str:
    curves = summary["curves"]
    lines = [(
        f"Measured with `onedc-media eval {images}` on {len(summary['images'])} held-out photos "
        "(never used in training). bpp = bytes of the codec's packet x 8 / pixels (its own headers "
        "included); `.odc bpp` counts a whole single-picture `.odc` file. Classic codecs "
        "are interpolated (log-rate) to OneDC's bpp on their measured curves; `-` = that codec "
        "cannot reach the rate."
    )]
    def onedc_label(refined: bool, level: str = "") -> str | None:
        def has(lab: str, opt: str) -> bool:  # a whole option of the label ("enhance=1" is not "enhance=1.4")
            return re.search(rf"[\[,]{re.escape(opt)}[,\]]", lab) is not None

        return next((lab for lab in curves if (lab == "onedc" or lab.startswith("onedc["))
                     and has(lab, f"refine={refine}") == refined
                     and (has(lab, f"enhance={level}") if level else "enhance=" not in lab)), None)

    plain, refined = onedc_label(False), onedc_label(True) if refine else None
    if plain:
        lines += onedc_table(curves, plain, "The plain encoder (the default: one analysis pass):")
    if refined:
        lines += onedc_table(
            curves, refined,
            f"With the refining encoder (`--opt refine={refine}`: {refine} gradient steps per picture "
            "fit the latents to the decoder; the same weights decode it):")
    for level in enhance:
        layered = onedc_label(bool(refine), level)
        if layered:
            lines += onedc_table(
                curves, layered,
                f"With the latent residual layer on top (`--opt refine={refine} --opt enhance={level}`: "
                "integer corrections to the VAE decoder's latent, coded after the rate point's own bits, "
                "drawn by the fine decoder or the model's, whichever costs less per picture):")
    return "\n".join(lines + classic_markdown(summary))


def onedc_table(curves: dict, label: str, title: str) -> list[str]:
    lines = [
        "",
        title,
        "",
        "| rate point | bpp | .odc bpp | PSNR | MS-SSIM | JPEG PSNR / MS-SSIM | WebP | AVIF |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in sorted(curves.get(label, []), key=lambda p: p["bpp"]):
        cells = []
        for codec in ("jpeg", "webp", "avif"):
            ps = interp_at(curves.get(codec, []), p["bpp"], "psnr_rgb")
            ms = interp_at(curves.get(codec, []), p["bpp"], "ms_ssim")
            cells.append("-" if ps is None else f"{ps:.2f} / {ms:.4f}")
        lines.append(
            f"| q{p['quality']} | {p['bpp']:.4f} | {p['odc_bpp']:.4f} | {p['psnr_rgb']:.2f} | "
            f"{p['ms_ssim']:.4f} | {' | '.join(cells)} |"
        )
    return lines


def classic_markdown(summary: dict) -> list[str]:
    curves = summary["curves"]
    lines = ["", "Classic codecs on the same photos:", "",
              "| codec | quality | bpp | PSNR | MS-SSIM |", "| --- | --- | --- | --- | --- |"]
    for codec in CLASSIC:
        for p in sorted(curves.get(codec, []), key=lambda p: p["bpp"]):
            if p["bpp"] <= 0.6:
                lines.append(f"| {codec} | {p['quality']} | {p['bpp']:.4f} | {p['psnr_rgb']:.2f} | "
                             f"{p['ms_ssim']:.4f} |")
    bd = summary.get("bd", {})
    if bd:
        lines += ["", (f"BD-rate against {summary.get('anchor')} (negative = fewer bits for the same "
                       "quality, over the overlapping range):"), "",
                  "| codec | PSNR | PSNR-Y | MS-SSIM (dB) |", "| --- | --- | --- | --- |"]
        for codec, row in bd.items():
            def f(v):
                if isinstance(v, dict):  # eval refused: the curves do not overlap
                    return "n/a (no overlap)" if "overlap" in str(v.get("error", "")) else "n/a"
                return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.1f} %"
            lines.append(f"| {codec} | {f(row.get('psnr_rgb'))} | {f(row.get('psnr_y'))} | "
                         f"{f(row.get('ms_ssim_db'))} |")
    lines += ["", "![RD curves](../../../docs/images/rd-onedc-tiny.png)"]
    return lines


def training_markdown(runs: list[str]) -> str:
    """One row per training run: stage, steps, wall time, the last metrics and validation."""
    from onedc_media.train.checkpoint import latest_checkpoint

    lines = ["| run | stage | steps | wall time | crop x batch | losses (config) | last validation |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        ckpt = latest_checkpoint(run)
        if ckpt is None:
            continue
        state = json.loads((ckpt / "trainer.json").read_text())
        cfg = state.get("config", {})
        val = ""
        vpath = Path(run) / "val.csv"
        if vpath.exists():
            with open(vpath, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows:
                last = rows[-1]
                keys = [k for k in last if k != "step"]
                val = f"step {last['step']}: " + ", ".join(f"{k} {float(last[k]):.4g}" for k in keys[:8])
                if len(keys) > 8:
                    val += ", ..."
        losses = ", ".join(f"{k}={v}" for k, v in (cfg.get("loss") or {}).items() if k != "teacher_kwargs")
        lines.append(f"| `{run}` | {cfg.get('stage')} | {state['step']} | "
                     f"{state.get('wall_seconds', 0) / 3600:.2f} h | {cfg.get('crop')} x {cfg.get('batch_size')} | "
                     f"{losses} | {val} |")
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str, heading: str) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body}\n{end}"
    if begin in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        return head + block + tail
    return text.rstrip() + f"\n\n## {heading}\n\n" + block + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default="data/corpus/test")
    ap.add_argument("--out", default="reports/onedc-tiny")
    ap.add_argument("--model", default="onedc-tiny")
    ap.add_argument("--card", default="onedc_media/weights/onedc-tiny/MODEL_CARD.md")
    ap.add_argument("--runs", default="runs/vae-tiny,runs/stage1-tiny,runs/stage1c-tiny,runs/teacher-tiny,runs/stage2-tiny,"
                    "runs/ablations/stage2-rec-only-tiny,runs/stage2-rec-tiny,runs/stage1g-tiny,"
                    "runs/stage1g-tiny-low,runs/stage1h-tiny,runs/stage2-rec-g-tiny,runs/stage1i-tiny,"
                    "runs/stage2-rec-i-tiny,runs/stage1j-tiny,runs/stage1n-tiny",
                    help="training run folders summarised in the card (missing ones are skipped)")
    ap.add_argument("--refine", type=int, default=30,
                    help="also measure the refining encoder with this many steps (0: do not)")
    ap.add_argument("--enhance", action="append", metavar="LEVEL:Q,...",
                    help="also measure this level of the latent residual layer, with the refining "
                    "encoder, at these rate points (repeatable; default 1:5, 1.25:5, 1.4:5 and 2:5: the card's; 0: none)")
    ap.add_argument("--no-sheet", action="store_true",
                    help="skip the visual sheet (its crops are encoded again by every curve's encoder, "
                    "minutes with the slow ones); docs/images keeps the last one")
    args = ap.parse_args(argv)
    levels: dict[str, str] = {}  # as written on the command line and in the eval's labels
    for spec in args.enhance or ["1:5", "1.25:5", "1.4:5", "2:5"]:
        level, _, qualities = spec.partition(":")
        if float(level):
            levels[level] = qualities or "5"
    out = Path(args.out)
    drop_stale_onedc_rows(out, model_sha(args.model))
    drop_stale_onedc_rows(out, fine_sha(args.model), "onedc-fine-decoder.sha256", layered_only=True)
    def run_eval(codecs: str, *opts: str) -> None:
        subprocess.run([sys.executable, "-m", "onedc_media.cli.main", "eval", args.images, "-o", str(out),
                        "--codecs", codecs, "--quiet", *opts], check=True)

    model_opts = [] if args.model == "onedc-tiny" else ["--opt", f"onedc:model={args.model}"]
    if args.refine:  # a second OneDC curve in the same results (eval keys curves by label);
        # first, because the last run's report covers every curve of the codecs it names
        run_eval("onedc", *model_opts, "--opt", f"onedc:refine={args.refine}", "--sheet-images", "0")
    for level, qualities in levels.items():
        refined = ["--opt", f"onedc:refine={args.refine}"] if args.refine else []
        # no sheet: its crops would be encoded with the slow encoders again; the last run draws it
        run_eval("onedc", *model_opts, *refined, "--opt", f"onedc:enhance={level}", "-q", f"onedc={qualities}",
                 "--sheet-images", "0")
    run_eval("onedc," + ",".join(CLASSIC), *model_opts, *(["--sheet-images", "0"] if args.no_sheet else []))
    summary = json.loads((out / "summary.json").read_text())
    images_dir = REPO / "docs" / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "rd.png", images_dir / "rd-onedc-tiny.png")
    if (out / "sheet.png").exists() and not args.no_sheet:
        shutil.copy(out / "sheet.png", images_dir / "sheet-onedc-tiny.png")
    card = Path(args.card)
    text = card.read_text() if card.exists() else ""
    text = replace_block(text, "rd", rd_markdown(summary, args.images, args.refine, tuple(levels)), "Rate-distortion")
    text = replace_block(text, "training", training_markdown([r for r in args.runs.split(",") if r]),
                         "Training")
    card.write_text(text)
    print(f"updated {card}, docs/images/rd-onedc-tiny.png; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
