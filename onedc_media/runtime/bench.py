"""``onedc-media bench decode``: the decoder runtime against per-frame and batched decoding.

The same packets (a keyframe sequence encoded once, before timing) are decoded three
ways in one run, interleaved (every repeat runs every subject once, round robin):

``sequential``
    one frame at a time, as ``engine.decompress([p])`` does: ``entropy_decode`` then
    ``synthesize`` of one picture (the two calls are timed apart; nothing else differs);
``batched``
    entropy-decode every packet, then ``engine.synthesize(all, batch_size=B)``;
``pipelined``
    :class:`~onedc_media.runtime.SequenceDecoder` (entropy threads ahead of batched
    synthesis, bounded queues), with the same ``B``.

Rows per subject: ``decode`` (wall time; frames/s and ``speedup`` over sequential: the
median over rounds of sequential's time / this subject's time in the same round),
then the stages ``entropy``, ``synthesis`` and on CUDA ``copies``; on the decode rows of
``batched`` and ``pipelined``, the agreement of their frames with sequential decoding
(min PSNR, max |difference|, first 8 frames, untimed). For ``pipelined``
the stage rows are busy times summed over the stage's threads: they overlap, so they add
up to more than ``decode``. Peak memory per subject: RSS (the peak is reset before each
call where Linux allows, ``/proc/self/clear_refs``) and CUDA max allocated.
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onedc_media.evaluate.bench import BenchResult, BenchRow, interleaved
from onedc_media.evaluate.metrics import psnr_rgb

__all__ = ["PeakRSS", "bench_decode", "encode_sequence", "make_clip"]

SUBJECTS = ("sequential", "batched", "pipelined")
_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.jpg")


def _photo_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "tests" / "data"


def make_clip(
    frames: int,
    height: int,
    width: int,
    *,
    photos: Sequence[np.ndarray] | None = None,
    seed: int = 0,
) -> list[np.ndarray]:
    """*frames* RGB frames of ``height x width``: slow pans over real photos, one shot per
    photo (``tests/data`` of a source checkout; a synthetic photo-like picture
    otherwise), like the keyframes of a clip with scene cuts."""
    import cv2

    if photos is None:
        from onedc_media.imageio import read_image

        found = [_photo_dir() / n for n in _PHOTOS if (_photo_dir() / n).is_file()]
        photos = [read_image(p) for p in found]
        if not photos:
            from onedc_media.evaluate.bench import synthetic_image

            photos = [synthetic_image(768, 1024, seed + i) for i in range(3)]
    out = []
    per_shot = max(1, math.ceil(frames / len(photos)))
    for i in range(frames):
        photo = photos[min(i // per_shot, len(photos) - 1)]
        t = (i % per_shot) / max(1, per_shot - 1)  # 0 -> 1 across the shot
        # scale so the frame is 80 % of the photo's short side, then pan diagonally
        scale = max(height / (0.8 * photo.shape[0]), width / (0.8 * photo.shape[1]))
        big = cv2.resize(
            photo,
            (math.ceil(photo.shape[1] * scale), math.ceil(photo.shape[0] * scale)),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC,
        )
        y0 = round(t * (big.shape[0] - height))
        x0 = round(t * (big.shape[1] - width))
        out.append(np.ascontiguousarray(big[y0 : y0 + height, x0 : x0 + width]))
    return out


def encode_sequence(
    engine: Any, frames: Sequence[np.ndarray], q: int, *, chunk: int = 4
) -> list[bytes]:
    """OneDC packets of *frames* (analysis batched by *chunk*; not timed)."""
    packets: list[bytes] = []
    for s in range(0, len(frames), chunk):
        packets += engine.compress(list(frames[s : s + chunk]), q)
    return packets


class PeakRSS:
    """Peak resident memory of this process over a section, in MiB.

    Linux lets a process reset its high-water mark (``/proc/self/clear_refs``); where
    it cannot, :attr:`resettable` is false and the lifetime peak is reported instead.
    """

    def __init__(self) -> None:
        self.resettable = self._reset()

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            return True
        except OSError:
            return False

    def start(self) -> None:
        if self.resettable:
            self._reset()

    @staticmethod
    def peak_mb() -> float:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cuda_devices(engine: Any) -> list[Any]:
    dev = str(getattr(engine, "device", "cpu"))
    return [dev] if dev.startswith("cuda") else []


def _agreement(
    engine: Any, runtime: Any, packets: Sequence[bytes], b: int, split: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """Frames of the batched and pipelined subjects against sequential decoding (untimed):
    min PSNR (dB, ``inf`` when identical) and max |difference| over *packets*."""
    reference = [engine.decompress([p])[0] for p in packets]
    got = {
        "batched": engine.synthesize(
            [engine.entropy_decode(p) for p in packets], batch_size=b, **split
        ),
        "pipelined": list(runtime.decode(packets)),
    }
    out = {}
    for name, frames in got.items():
        ps = min(psnr_rgb(x, r) for x, r in zip(frames, reference))
        diff = max(
            int(np.abs(x.astype(int) - r.astype(int)).max()) for x, r in zip(frames, reference)
        )
        out[name] = {
            "psnr_vs_seq": "inf" if math.isinf(ps) else round(ps, 1),
            "maxdiff_vs_seq": diff,
        }
    return out


def bench_decode(
    engine: Any,
    packets: Sequence[bytes],
    *,
    batch_size: int | str = "auto",
    entropy_threads: int | None = None,
    queue_depth: int | None = None,
    precision: str = "fp32",
    channels_last: bool | None = None,
    compile: bool = False,
    cpu_workers: int | str = "auto",
    subjects: Sequence[str] = SUBJECTS,
    repeats: int = 5,
    warmup: int = 1,
    title: str = "",
) -> BenchResult:
    """Decode *packets* by each subject (see the module doc) and report medians."""
    import torch

    from onedc_media.runtime import SequenceDecoder
    from onedc_media.runtime.decoder import vae_batch_size

    unknown = [s for s in subjects if s not in SUBJECTS]
    if unknown:
        from onedc_media.errors import CodecOptionError

        raise CodecOptionError(f"unknown subject(s) {unknown}; choose from {', '.join(SUBJECTS)}")
    cuda = _cuda_devices(engine)
    runtime = SequenceDecoder(
        engine,
        batch_size=batch_size,
        entropy_threads=entropy_threads,
        queue_depth=queue_depth,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        cpu_workers=cpu_workers,
    )
    first = engine.entropy_decode(packets[0])
    # one untimed run through the runtime: CUDA measures the batch size of this shape on
    # its first batch, compile traces it; both are one-time costs, reported apart
    t0 = time.perf_counter()
    for _ in runtime.decode(packets[:1]):
        pass
    once_s = time.perf_counter() - t0
    compile_s = runtime.last_stats.compile_s if runtime.last_stats else 0.0
    b = runtime.synthesizers[0].max_batch(first) if batch_size == "auto" else int(batch_size)
    if b > 1:
        for _ in runtime.decode(packets[:b]):  # and the full batch shape
            pass
        compile_s += runtime.last_stats.compile_s if runtime.last_stats else 0.0
    pixels = first.height * first.width * len(packets)
    # plain batching splits batches for the VAE decoder on CPU as the runtime does
    split: dict[str, int] = {}
    if not cuda and vae_batch_size(first.height, first.width) < b:
        split["vae_batch_size"] = vae_batch_size(first.height, first.width)

    def sync() -> None:
        for d in cuda:
            torch.cuda.synchronize(d)

    stage_log: dict[str, list[dict[str, float]]] = {s: [] for s in subjects}

    def sequential() -> None:
        ent = syn = 0.0
        for p in packets:
            t0 = time.perf_counter()
            d = engine.entropy_decode(p)
            t1 = time.perf_counter()
            engine.synthesize([d])
            ent, syn = ent + t1 - t0, syn + time.perf_counter() - t1
        stage_log["sequential"].append({"entropy": ent, "synthesis": syn})

    def batched() -> None:
        t0 = time.perf_counter()
        ds = [engine.entropy_decode(p) for p in packets]
        t1 = time.perf_counter()
        engine.synthesize(ds, batch_size=b, **split)
        stage_log["batched"].append({"entropy": t1 - t0, "synthesis": time.perf_counter() - t1})

    def pipelined() -> None:
        for _ in runtime.decode(packets):
            pass
        st = runtime.last_stats
        assert st is not None
        stage_log["pipelined"].append(
            {
                "entropy": st.entropy_s,
                "synthesis": st.synthesis_s,
                "copies": st.copy_s,
                "wait": st.wait_s,
                "batches": float(st.batches),
            }
        )

    fns: dict[str, Callable[[], None]] = {
        "sequential": sequential,
        "batched": batched,
        "pipelined": pipelined,
    }
    peaks: dict[str, list[float]] = {s: [] for s in subjects}
    cuda_peaks: dict[str, list[float]] = {s: [] for s in subjects}
    rss = PeakRSS()

    def measured(name: str) -> Callable[[], None]:
        def run() -> None:
            sync()
            for d in cuda:
                torch.cuda.reset_peak_memory_stats(d)
            rss.start()
            fns[name]()
            sync()
            peaks[name].append(rss.peak_mb())
            if cuda:
                cuda_peaks[name].append(
                    sum(torch.cuda.max_memory_allocated(d) for d in cuda) / 2**20
                )

        return run

    # cheap warm-up of every shape/batch size (kernel selection, allocator), not timed
    engine.synthesize([first])
    engine.synthesize([first] * min(b, len(packets)), batch_size=b, **split)
    sync()
    times = interleaved({s: measured(s) for s in subjects}, repeats=repeats, warmup=warmup)
    agreement = _agreement(engine, runtime, packets[:8], b, split)

    settings = {
        "frames": len(packets),
        "pixels_per_frame": pixels // len(packets),
        "device": str(getattr(engine, "device", "cpu")),
        "batch_size": b,
        "batch_size_option": batch_size,
        "entropy_threads": runtime.entropy_threads,
        "queue_depth": runtime.queue_depth,
        "precision": precision,
        "channels_last": channels_last,
        "compile": compile,
        "cpu_workers": runtime.cpu_workers,
        "cpu_workers_option": cpu_workers,
        "runtime_first_call_s": round(once_s, 3),
        "compile_s_once": round(compile_s, 3),
        "omp_env": {k: v for k, v in os.environ.items() if k.startswith(("OMP_", "GOMP_", "KMP_"))},
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "bytes": sum(len(p) for p in packets),
        "repeats": repeats,
        "warmup": warmup,
    }
    title = title or f"decode: {len(packets)} frames"
    layout = (
        "nhwc"
        if getattr(runtime.synthesizers[0].engine, "model", None)
        is not getattr(engine, "model", None)
        else "engine's"
    )
    compiled = f", compiled (once: {compile_s:.1f} s, untimed)" if compile else ""
    title += (
        f" on {settings['device']}, batch {b}, {runtime.entropy_threads} entropy thread(s), "
        f"{runtime.cpu_workers} CPU synthesis worker(s), "
        f"runtime layout {layout}{compiled}, "
        f"median of {repeats} (pipelined stage rows: busy time summed over threads)"
    )
    result = BenchResult(title, settings=settings)
    seq_median = None
    for s in subjects:
        samples = times[s]
        if isinstance(samples, Exception):
            result.notes.append(f"{s}: failed: {samples}")
            continue
        med = statistics.median(samples)
        if s == "sequential":
            seq_median = med
        log = stage_log[s][warmup:]
        extra: dict[str, Any] = {"peak_rss_mb": round(max(peaks[s][warmup:] or peaks[s]), 1)}
        if s != "sequential":
            extra["batch"] = b
        if cuda:
            extra["cuda_max_alloc_mb"] = round(max(cuda_peaks[s][warmup:] or cuda_peaks[s]), 1)
        if s in agreement:
            extra.update(agreement[s])
        if s == "pipelined" and compile:
            extra["compile_s_once"] = round(compile_s, 2)
        if s == "pipelined" and log:
            extra["batches"] = statistics.median(e["batches"] for e in log)
            extra["caller_wait_s"] = round(statistics.median(e["wait"] for e in log), 3)
        if seq_median:
            # paired by round (interleaved: the same machine state), median over rounds
            seq = times["sequential"]
            extra["speedup"] = round(statistics.median(a / b for a, b in zip(seq, samples)), 3)
        result.rows.append(BenchRow(s, "decode", tuple(samples), pixels, len(packets), extra))
        for stage in ("entropy", "synthesis", "copies"):
            vals = tuple(e[stage] for e in log if stage in e)
            if vals and (stage != "copies" or any(vals)):
                result.rows.append(BenchRow(s, stage, vals, pixels, len(packets)))
    result.reference = (
        "sequential" if seq_median else (result.rows[0].subject if result.rows else None)
    )
    if not rss.resettable:
        result.notes.append(
            "peak RSS could not be reset between subjects: it is the process's peak"
        )
    return result
