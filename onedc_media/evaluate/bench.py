"""Speed benchmarks: medians over repeats, and ratios to a reference measured in the same run.

Timings are interleaved: each repeat runs every subject once, round robin, so a machine
that slows down (thermal limits, another job) slows all subjects alike and the ratios
stay meaningful. Nothing here asserts anything about speed: a benchmark reports, it
never fails on a timing. Subjects that cannot run are reported with the reason.

The records (:class:`BenchRow`, :class:`BenchResult`) and :func:`interleaved` are shared
by every ``onedc-media bench`` sub-benchmark (codecs here; decoder runtime and model
stages elsewhere), so all print the same table.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onedc_media.errors import OdcError

__all__ = [
    "BenchResult",
    "BenchRow",
    "bench_codecs",
    "interleaved",
    "synthetic_image",
]


@dataclass(frozen=True)
class BenchRow:
    """The timings of one subject (a codec, a runtime configuration, a model stage) at
    one stage (encode, decode, synthesis, ...).

    :param samples: seconds per repeat; each repeat processes ``frames`` frames of
        ``pixels`` pixels in total.
    """

    subject: str
    stage: str
    samples: tuple[float, ...]
    pixels: int
    frames: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)  #: e.g. bytes, bpp, device

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def ms_per_mp(self) -> float:
        return self.median_s * 1e3 / (self.pixels / 1e6) if self.pixels else math.nan

    @property
    def frames_per_s(self) -> float:
        m = self.median_s
        return self.frames / m if m and m > 0 else math.nan


@dataclass
class BenchResult:
    """Rows of one benchmark run; ratios are to :attr:`reference` at the same stage."""

    title: str
    rows: list[BenchRow] = field(default_factory=list)
    reference: str | None = None
    notes: list[str] = field(default_factory=list)  #: e.g. subjects skipped, and why
    settings: dict[str, Any] = field(default_factory=dict)

    def ratio(self, row: BenchRow) -> float:
        """``row``'s median over the reference's median at the same stage (2.0 = twice
        as slow); ``nan`` when there is no reference row."""
        for ref in self.rows:
            same = ref.subject == self.reference and ref.stage == row.stage
            if same and ref.median_s > 0 and ref.pixels:
                return row.ms_per_mp / ref.ms_per_mp
        return math.nan

    def to_json(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "title": self.title,
            "reference": self.reference,
            "settings": self.settings,
            "notes": self.notes,
            "rows": [
                {
                    "subject": r.subject,
                    "stage": r.stage,
                    "median_ms": num(r.median_s * 1e3),
                    "ms_per_mp": num(r.ms_per_mp),
                    "frames_per_s": num(r.frames_per_s),
                    "ratio_to_reference": num(self.ratio(r)),
                    "samples_ms": [s * 1e3 for s in r.samples],
                    "pixels": r.pixels,
                    "frames": r.frames,
                    **dict(r.extra),
                }
                for r in self.rows
            ],
        }


def interleaved(
    tasks: Mapping[Any, Callable[[], object]], *, repeats: int = 5, warmup: int = 1
) -> dict[Any, list[float]]:
    """Time each task *repeats* times, round robin after *warmup* untimed rounds.

    Returns key -> seconds per repeat. A task that raises ``OdcError`` is dropped from
    later rounds and its key maps to the exception instead.
    """
    times: dict[Any, Any] = {k: [] for k in tasks}
    live = dict(tasks)
    for round_ in range(warmup + repeats):
        for key, fn in list(live.items()):
            t0 = time.perf_counter()
            try:
                fn()
            except OdcError as exc:
                times[key] = exc
                del live[key]
                continue
            if round_ >= warmup:
                times[key].append(time.perf_counter() - t0)
    return times


def synthetic_image(height: int = 768, width: int = 1024, seed: int = 0) -> np.ndarray:
    """A deterministic photo-like RGB picture: noise octaves from coarse to fine (a rough
    1/f spectrum, like natural images), so codecs do realistic work on it."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    for octave in range(1, 8):
        cells = 2**octave
        gh, gw = (
            max(2, height * cells // max(height, width)),
            max(2, width * cells // max(height, width)),
        )
        layer = rng.standard_normal((gh, gw, 3)).astype(np.float32)
        img += cv2.resize(layer, (width, height), interpolation=cv2.INTER_CUBIC) * (60 / octave)
    luma_detail = rng.standard_normal((height, width, 1)).astype(np.float32) * 4
    return np.clip(img + luma_detail + 128, 0, 255).astype(np.uint8)


def bench_codecs(
    registry: Any,
    names: Sequence[str],
    images: Sequence[np.ndarray],
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    reference: str | None = None,
    repeats: int = 5,
    warmup: int = 1,
    device: str | None = None,
) -> BenchResult:
    """Encode and decode *images* (one call per image) with each codec.

    :param options: per-codec options (e.g. ``{"jpeg": {"quality": 50}}``); defaults
        otherwise. Encoders and decoders are created once, outside the timings.
    :param reference: the codec ratios are taken to (default: the first that runs).
    """
    options = options or {}
    pixels = sum(im.shape[0] * im.shape[1] for im in images)
    result = BenchResult(
        f"codecs: {len(images)} image(s), {pixels / 1e6:.2f} MP, median of {repeats}",
        settings={
            "repeats": repeats,
            "warmup": warmup,
            "images": len(images),
            "pixels": pixels,
            "device": device or "auto",
        },
    )
    tasks: dict[tuple[str, str], Callable[[], object]] = {}
    sizes: dict[str, int] = {}
    closers = []
    for name in dict.fromkeys(names):
        try:
            info = registry.get(name)
            codec = info.create()
            enc = codec.encoder(info.resolve_options(options.get(name)), device=device)
            closers.append(enc)
            packets = [enc.encode([im])[0] for im in images]
            dec = codec.decoder(
                dict(getattr(enc, "params", None) or {}), model=enc.model, device=device
            )
            closers.append(dec)
        except OdcError as exc:
            result.notes.append(f"{name}: skipped: {exc}")
            continue
        sizes[name] = sum(len(p) for p in packets)
        tasks[(name, "encode")] = lambda enc=enc: [enc.encode([im]) for im in images]
        tasks[(name, "decode")] = lambda dec=dec, packets=packets: [
            dec.decode([p]) for p in packets
        ]
    try:
        times = interleaved(tasks, repeats=repeats, warmup=warmup)
    finally:
        for obj in closers:
            obj.close()
    for (name, stage), samples in times.items():
        if isinstance(samples, Exception):
            result.notes.append(f"{name} {stage}: failed: {samples}")
            continue
        extra = {"bytes": sizes[name], "bpp": sizes[name] * 8 / pixels}
        result.rows.append(BenchRow(name, stage, tuple(samples), pixels, len(images), extra))
    ran = [r.subject for r in result.rows]
    result.reference = reference if reference in ran else (ran[0] if ran else None)
    if reference and reference not in ran:
        result.notes.append(
            f"reference {reference!r} did not run; ratios are to {result.reference!r}"
        )
    return result
