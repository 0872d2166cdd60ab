"""Verification: every ``done`` output is decoded and checked against the manifest.

For each output, in this order:

1. the file exists, its size and SHA-256 are the manifest's;
2. it parses as ``.odc``; its picture stream is the recorded codec, size and model;
3. it decodes (images: :func:`onedc_media.pipeline.keyframes.decode_keyframes`, the
   seam the batched decoder runtime plugs into; videos: every frame through
   :class:`~onedc_media.pipeline.decoder.VideoDecoder`) to the recorded number of
   pictures of the recorded size;
4. images whose source is still the one encoded (same SHA-256): a lossless codec must
   give the source's pixels exactly; a lossy one gets its PSNR (and MS-SSIM) stored.

A passing item becomes ``verified``. A failing one goes back to ``pending`` with
``error = "verify: <reason>"``, so the next archive run encodes it again.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onedc_media import container
from onedc_media.archive.encode import decode_image_bytes
from onedc_media.archive.layout import Layout, job_lock
from onedc_media.archive.manifest import Manifest
from onedc_media.errors import OdcError

__all__ = ["VerifyResult", "decode_output", "verify_archive"]

METRICS = ("psnr", "ms_ssim")


@dataclass
class VerifyResult:
    """What :func:`verify_archive` found."""

    checked: int = 0
    verified: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  #: (source, reason)
    unmeasured: int = 0  #: images verified without a comparison (source gone or changed)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)


class _Failed(Exception):
    pass


def decode_output(
    data: bytes, *, plugins: Any = None, device: str | None = None
) -> tuple[container.StreamHeader, list[np.ndarray] | int]:
    """Decode an archive output held in memory.

    Returns its picture stream's header and, for an image stream, its pictures; for a
    video stream, the number of frames decoded (frames are not kept).
    """
    from onedc_media.pipeline.decoder import VideoDecoder, picture_stream

    codecs = plugins.codecs if plugins is not None else None
    with container.open(io.BytesIO(data)) as inp:
        header = picture_stream(inp)
        if header.media_type == "image":
            # THE DECODE SEAM: image outputs decode through decode_keyframes, which the
            # batched decoder runtime (onedc_media.runtime) replaces; nothing here changes.
            from onedc_media.pipeline.keyframes import decode_keyframes

            packets = [p.data for p in inp.demux(header.index)]
            return header, list(decode_keyframes(header, packets, codecs=codecs, device=device))
        decoder = VideoDecoder(inp, header, codecs=codecs, device=device)
        try:
            n = sum(1 for _ in decoder.frames())
        finally:
            decoder.close()
        if decoder.mismatches:
            raise _Failed(f"{decoder.mismatches} GOP(s) did not regenerate their intra picture")
        return header, n


def verify_archive(
    dest: str | os.PathLike[str],
    *,
    manifest: Manifest | None = None,
    plugins: Any = None,
    metrics: Sequence[str] = METRICS,
    src: str | None = None,
    device: str | None = None,
    recheck: bool = False,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyResult:
    """Verify the outputs of the archive *dest* (see the module docstring).

    :param manifest: an open manifest (the job's); otherwise it is opened here, under
        the archive's lock.
    :param metrics: ``psnr`` and/or ``ms_ssim`` (lossy images; stored in the manifest).
    :param src: the source folder (default: the one the manifest records).
    :param recheck: also re-verify items that are already ``verified``.
    :param jobs: threads (default: the CPU count for classic codecs, 1 for learned ones).
    :param progress: called as ``progress(checked, total)``.
    """
    import onedc_media

    unknown = set(metrics) - set(METRICS)
    if unknown:
        from onedc_media.errors import CodecOptionError

        raise CodecOptionError(
            f"unknown metric(s) {', '.join(sorted(unknown))} (choose from {', '.join(METRICS)})"
        )
    plugins = plugins or onedc_media.default_plugins()
    layout = Layout.at(dest)
    t0 = time.perf_counter()
    with ExitStack() as stack:
        if manifest is None:
            if not os.path.exists(layout.manifest):
                Manifest(layout.manifest)  # raises the "no manifest" error
            stack.enter_context(job_lock(layout))
            manifest = stack.enter_context(Manifest(layout.manifest))
        src = src or manifest.get_meta("source")
        statuses = ("done", "verified") if recheck else ("done",)
        rows = manifest.items(f"status IN ({', '.join('?' * len(statuses))})", statuses)
        result = VerifyResult()
        learned = any(_learned(plugins, r["codec"]) for r in rows)
        workers = jobs or (1 if learned else (os.cpu_count() or 1))

        def check(row: Any) -> tuple[Any, str | None, float | None, float | None, bool]:
            try:
                return (row, None, *_check(row, layout, src, plugins, metrics, device))
            except _Failed as exc:
                return row, str(exc), None, None, False
            except Exception as exc:  # noqa: BLE001 - any decode failure fails the item
                msg = str(exc) if isinstance(exc, OdcError) else f"{type(exc).__name__}: {exc}"
                return row, msg, None, None, False

        good: list[tuple[int, float | None, float | None]] = []
        bad: list[tuple[int, str, str | None]] = []
        with ThreadPoolExecutor(workers) as pool:
            for row, error, psnr, ms, unmeasured in _ordered(pool, check, rows, 2 * workers):
                result.checked += 1
                if error is None:
                    good.append((row["id"], psnr, ms))
                    result.verified += 1
                    result.unmeasured += unmeasured
                else:
                    bad.append((row["id"], "pending", f"verify: {error}"))
                    result.failures.append((row["source"], error))
                if len(good) + len(bad) >= 64:
                    _record(manifest, good, bad)
                if progress is not None:
                    progress(result.checked, len(rows))
        _record(manifest, good, bad)
    result.seconds = time.perf_counter() - t0
    return result


def _record(manifest: Manifest, good: list[Any], bad: list[Any]) -> None:
    if good:
        manifest.set_verified(good)
    if bad:
        manifest.set_status(bad)
    good.clear()
    bad.clear()


def _ordered(
    pool: ThreadPoolExecutor, fn: Callable[[Any], Any], items: Sequence[Any], window: int
) -> Iterator[Any]:
    """``pool.map`` with at most *window* items in flight (bounded memory)."""
    pending: list[Any] = []
    it = iter(items)
    while True:
        while len(pending) < window:
            nxt = next(it, None)
            if nxt is None:
                break
            pending.append(pool.submit(fn, nxt))
        if not pending:
            return
        yield pending.pop(0).result()


def _learned(plugins: Any, codec: str | None) -> bool:
    if not codec or codec not in plugins.codecs:
        return False
    caps = plugins.codecs.get(codec).capabilities
    return caps.batch or caps.cuda


def _check(
    row: Any,
    layout: Layout,
    src: str | None,
    plugins: Any,
    metrics: Sequence[str],
    device: str | None,
) -> tuple[float | None, float | None, bool]:
    """Check one output; returns ``(psnr, ms_ssim, unmeasured)`` or raises."""
    path = layout.output_path(row["output"])
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise _Failed(f"cannot read the output: {exc.strerror}") from None
    if len(data) != row["out_size"]:
        raise _Failed(f"output is {len(data)} bytes, the manifest says {row['out_size']}")
    if hashlib.sha256(data).hexdigest() != row["out_sha256"]:
        raise _Failed("output SHA-256 differs from the manifest")
    header, decoded = decode_output(data, plugins=plugins, device=device)
    if header.codec != row["codec"]:
        raise _Failed(f"stream codec {header.codec!r}, the manifest says {row['codec']!r}")
    if (header.width, header.height) != (row["width"], row["height"]):
        raise _Failed(
            f"stream is {header.width}x{header.height}, the manifest says "
            f"{row['width']}x{row['height']}"
        )
    model_sha = header.model.sha256 if header.model else None
    if model_sha != row["model_sha256"]:
        raise _Failed("stream model differs from the manifest")
    n = decoded if isinstance(decoded, int) else len(decoded)
    if n != row["frames"]:
        raise _Failed(f"decoded {n} pictures, the manifest says {row['frames']}")
    if isinstance(decoded, int):
        return None, None, False  # videos: decodability and frame count
    for rgb in decoded:
        if rgb.shape != (row["height"], row["width"], 3):
            raise _Failed(f"decoded a {rgb.shape[1]}x{rgb.shape[0]} picture")
    source = _source_pixels(row, src)
    info = plugins.codecs.get(row["codec"])
    if source is None:  # decodes as recorded; nothing left to compare with
        return None, None, True
    if not info.lossy:
        if not np.array_equal(source, decoded[0]):
            raise _Failed("lossless output does not reproduce the source pixels")
        return None, None, False
    from onedc_media.evaluate import metrics as m

    psnr = m.psnr_rgb(source, decoded[0]) if "psnr" in metrics else None
    ms = None
    if "ms_ssim" in metrics and m.ms_ssim_supported(*source.shape[:2]):
        ms = m.ms_ssim(source, decoded[0])
    return psnr, ms, False


def _source_pixels(row: Any, src: str | None) -> np.ndarray | None:
    """The source picture, if it is still the one that was encoded."""
    if not src:
        return None
    path = os.path.join(src, *row["source"].split("/"))
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != row["src_sha256"]:
        return None
    return decode_image_bytes(data, 1 << 62)
