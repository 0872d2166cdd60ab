"""``onedc-media archive --status DEST``: what an archive holds, from its manifest alone."""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from onedc_media.archive.layout import Layout
from onedc_media.archive.manifest import STATUSES, Manifest
from onedc_media.archive.paths import path_problem

__all__ = ["ArchiveStatus", "archive_status", "format_status"]

#: Upper edges of the bpp histogram buckets (the last bucket is open).
BPP_EDGES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


@dataclass
class ArchiveStatus:
    dest: str
    source: str | None
    counts: dict[str, int]
    items: int
    bytes_in: int  #: source bytes of the done + verified items
    bytes_out: int  #: their output bytes
    pixels: int
    bpp: dict[str, float] = field(default_factory=dict)  #: min, p10, median, p90, max, mean
    bpp_histogram: list[tuple[str, int]] = field(default_factory=list)
    psnr: dict[str, float] = field(default_factory=dict)  #: mean, min (verified lossy images)
    ms_ssim_mean: float | None = None
    codecs: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, int]] = field(default_factory=list)  #: (reason, count), most first
    pending_reasons: list[tuple[str, int]] = field(default_factory=list)
    runs: int = 0
    last_run: dict[str, Any] | None = None
    #: manifest rows whose source or output path is unsafe (absolute, ``..``, empty or
    #: NUL components): damage; restore and verify never open them. ``(path, problem)``
    unsafe_paths: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        return self.bytes_in / self.bytes_out if self.bytes_out else None

    @property
    def mean_bpp(self) -> float | None:
        return self.bytes_out * 8 / self.pixels if self.pixels else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["mean_bpp"] = self.mean_bpp
        return d


def archive_status(dest: str | os.PathLike[str]) -> ArchiveStatus:
    """Summarise the archive *dest* (read-only; safe while a job runs)."""
    layout = Layout.at(dest)
    with Manifest(layout.manifest, readonly=True) as m:
        db = m.db
        done = "status IN ('done', 'verified')"
        bytes_in, bytes_out, pixels = db.execute(
            f"SELECT COALESCE(SUM(src_size), 0), COALESCE(SUM(out_size), 0), "
            f"COALESCE(SUM(width * height * frames), 0) FROM items WHERE {done}"
        ).fetchone()
        bpps = [
            r[0]
            for r in db.execute(
                f"SELECT bpp FROM items WHERE {done} AND bpp IS NOT NULL ORDER BY bpp"
            )
        ]
        psnrs = [
            r[0]
            for r in db.execute(
                "SELECT psnr FROM items WHERE status = 'verified' AND psnr IS NOT NULL"
            )
        ]
        ms = [
            r[0]
            for r in db.execute(
                "SELECT ms_ssim FROM items WHERE status = 'verified' AND ms_ssim IS NOT NULL"
            )
        ]
        st = ArchiveStatus(
            dest=layout.dest,
            source=m.get_meta("source"),
            counts=m.counts(),
            items=sum(m.counts().values()),
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            pixels=pixels,
        )
        if bpps:
            st.bpp = {
                "min": bpps[0],
                "p10": _quantile(bpps, 0.1),
                "median": _quantile(bpps, 0.5),
                "p90": _quantile(bpps, 0.9),
                "max": bpps[-1],
                "mean": sum(bpps) / len(bpps),
            }
            st.bpp_histogram = _histogram(bpps)
        if psnrs:
            finite = [p for p in psnrs if math.isfinite(p)]
            if finite:
                st.psnr = {"mean": sum(finite) / len(finite), "min": min(finite)}
        if ms:
            st.ms_ssim_mean = sum(ms) / len(ms)
        st.codecs = dict(
            db.execute(
                f"SELECT codec, COUNT(*) FROM items WHERE {done} GROUP BY codec ORDER BY codec"
            ).fetchall()
        )
        st.failures = _reasons(db, "failed")
        st.pending_reasons = _reasons(db, "pending")
        st.unsafe_paths = [
            (repr(path), problem)
            for row in db.execute("SELECT source, output FROM items ORDER BY id")
            for path in row
            if (problem := path_problem(path)) is not None
        ]
        st.runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        last = db.execute("SELECT * FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        st.last_run = dict(last) if last is not None else None
    return st


def _reasons(db: Any, status: str) -> list[tuple[str, int]]:
    c: Counter[str] = Counter()
    for (error,) in db.execute("SELECT error FROM items WHERE status = ?", (status,)):
        c[_general(error or "(none)")] += 1
    return c.most_common()


def _general(error: str) -> str:
    """Group reasons that differ only in sizes: 'file is larger than ...'."""
    return error.split(":", 1)[0] if error.startswith(("verify", "encode failed")) else error


def _quantile(sorted_values: list[float], q: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _histogram(values: list[float]) -> list[tuple[str, int]]:
    out = []
    lo = 0.0
    for edge in BPP_EDGES:
        out.append((f"{lo:g}-{edge:g}", sum(1 for v in values if lo <= v < edge)))
        lo = edge
    out.append((f">={lo:g}", sum(1 for v in values if v >= lo)))
    return out


def format_status(st: ArchiveStatus) -> str:
    """A human summary, a few lines."""
    c = st.counts
    lines = [
        f"archive {st.dest}" + (f" (source {st.source})" if st.source else ""),
        f"  items: {st.items}: " + ", ".join(f"{c[s]} {s}" for s in STATUSES if c.get(s)),
        f"  bytes: {_mb(st.bytes_in)} before, {_mb(st.bytes_out)} after"
        + (f" ({st.ratio:.1f}x smaller)" if st.ratio else ""),
    ]
    if st.mean_bpp is not None:
        b = st.bpp
        lines.append(
            f"  bpp: {st.mean_bpp:.4f} overall; per item min {b['min']:.4f}, "
            f"p10 {b['p10']:.4f}, median {b['median']:.4f}, p90 {b['p90']:.4f}, "
            f"max {b['max']:.4f}"
        )
        lines.append("  bpp histogram: " + ", ".join(f"{k}: {n}" for k, n in st.bpp_histogram))
    if st.psnr:
        lines.append(
            f"  PSNR (verified lossy images): mean {st.psnr['mean']:.2f} dB, "
            f"min {st.psnr['min']:.2f} dB"
            + (f"; MS-SSIM mean {st.ms_ssim_mean:.4f}" if st.ms_ssim_mean else "")
        )
    if st.codecs:
        lines.append("  codecs: " + ", ".join(f"{k} ({n})" for k, n in st.codecs.items()))
    for title, reasons in (("failed", st.failures), ("pending", st.pending_reasons)):
        if reasons:
            lines.append(f"  {title}:")
            lines.extend(f"    {n:6d}  {reason}" for reason, n in reasons[:10])
            if len(reasons) > 10:
                lines.append(f"    ... and {len(reasons) - 10} other reasons")
    if st.unsafe_paths:
        shown = "; ".join(f"{p} ({why})" for p, why in st.unsafe_paths[:3])
        more = f" and {len(st.unsafe_paths) - 3} more" if len(st.unsafe_paths) > 3 else ""
        lines.append(
            f"  damaged: {len(st.unsafe_paths)} unsafe manifest path(s), never opened: "
            f"{shown}{more}"
        )
    if st.last_run:
        state = "finished" if st.last_run.get("finished_at") else "interrupted or running"
        lines.append(f"  runs: {st.runs}; the last ({st.last_run.get('engine')}) {state}")
    return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n} B"
