"""Verification: every ``done`` output is decoded and checked against the manifest.

For each output, in this order:

1. its manifest paths are plain relative paths (no ``..``, not absolute) and the file,
   opened without following symbolic links below DEST, exists; its size and SHA-256
   are the manifest's;
2. it parses as ``.odc``; its picture stream is the recorded codec, size and model;
3. it decodes to the recorded number of pictures of the recorded size. Image outputs
   that share a codec, parameters and model are decoded as one sequence through the
   batched decoder runtime (:func:`decode_pictures`, the one decode seam), so equal
   sized pictures of different files share synthesis batches; videos decode frame by
   frame through :class:`~onedc_media.pipeline.decoder.VideoDecoder`;
4. images whose source is still the one encoded (same SHA-256): a lossless codec must
   give the source's pixels exactly; a lossy one gets its PSNR (and MS-SSIM) stored.

A passing item becomes ``verified``. A failing one goes back to ``pending`` with
``error = "verify: <reason>"``, so the next archive run encodes it again.

Reading, hashing and comparing with the sources run on a thread pool; decoding runs in
the runtime's own threads. Memory is bounded: a chunk of outputs at a time, and each
decoded picture is compared and dropped as it comes out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onedc_media import container
from onedc_media.archive.layout import Layout, job_lock
from onedc_media.archive.manifest import Manifest
from onedc_media.archive.paths import open_inside, split_relative
from onedc_media.errors import CodecOptionError, OdcError
from onedc_media.imageio import decode_image

__all__ = ["METRICS", "VerifyResult", "decode_output", "decode_pictures", "verify_archive"]

METRICS = ("psnr", "ms_ssim")

#: Outputs read and decoded together (bounds memory: packets, not pictures, are held).
CHUNK = 256


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


# -- decoding ------------------------------------------------------------------------------


def decode_pictures(
    header: container.StreamHeader,
    packets: Iterable[bytes],
    *,
    plugins: Any = None,
    device: str | None = None,
) -> Iterator[np.ndarray]:
    """THE DECODE SEAM of archive jobs: intra packets of streams described by *header*
    (codec, parameters, model; sizes may differ per packet) -> RGB pictures, in order.

    Through the batched decoder runtime (``onedc_media.runtime.decode_frames``) when it
    is installed; otherwise through ``decode_keyframes``, one packet at a time. Errors
    carry ``frame_index`` with the runtime (:class:`~onedc_media.runtime.FrameDecodeError`).
    """
    import onedc_media
    from onedc_media.pipeline.keyframes import decode_keyframes, keyframe_params

    codecs = (plugins or onedc_media.default_plugins()).codecs
    try:
        from onedc_media.runtime import decode_frames
    except ImportError:  # the runtime is optional for this module
        anysize = dataclasses.replace(header, width=0, height=0)
        yield from decode_keyframes(anysize, packets, codecs=codecs, device=device)
        return
    decoder = codecs.create(header.codec).decoder(
        keyframe_params(header), model=header.model, device=device
    )
    with decoder:
        yield from decode_frames(decoder, packets)


def decode_output(
    data: bytes, *, plugins: Any = None, device: str | None = None
) -> tuple[container.StreamHeader, list[np.ndarray] | int]:
    """Decode one archive output held in memory.

    Returns its picture stream's header and, for an image stream, its pictures; for a
    video stream, the number of frames decoded (frames are not kept).
    """
    header, packets = _parse(data)
    if header.media_type == "image":
        return header, list(decode_pictures(header, packets, plugins=plugins, device=device))
    return header, _count_video_frames(data, plugins, device)


def _parse(data: bytes) -> tuple[container.StreamHeader, list[bytes]]:
    from onedc_media.pipeline.decoder import picture_stream

    with container.open(io.BytesIO(data)) as inp:
        header = picture_stream(inp)
        packets = [p.data for p in inp.demux(header.index)] if header.media_type == "image" else []
    return header, packets


def _count_video_frames(data: bytes, plugins: Any, device: str | None) -> int:
    from onedc_media.pipeline.decoder import VideoDecoder

    codecs = plugins.codecs if plugins is not None else None
    with container.open(io.BytesIO(data)) as inp:
        decoder = VideoDecoder(inp, codecs=codecs, device=device)
        try:
            n = sum(1 for _ in decoder.frames())
        finally:
            decoder.close()
    if decoder.mismatches:
        raise _Failed(f"{decoder.mismatches} GOP(s) did not regenerate their intra picture")
    return n


# -- the job -------------------------------------------------------------------------------


@dataclass
class _Output:
    """An output that passed the file checks, waiting for its pictures."""

    row: Any
    header: container.StreamHeader
    packets: list[bytes]


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
    :param device: where learned codecs decode (default: theirs).
    :param recheck: also re-verify items that are already ``verified``.
    :param jobs: threads reading outputs and comparing with sources (default: CPUs).
    :param progress: called as ``progress(checked, total)``.
    """
    import onedc_media

    unknown = set(metrics) - set(METRICS)
    if unknown:
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
        run = _Verification(manifest, layout, plugins, metrics, src, device, len(rows), progress)
        pool = stack.enter_context(ThreadPoolExecutor(jobs or os.cpu_count() or 1))
        for start in range(0, len(rows), CHUNK):
            run.chunk(pool, rows[start : start + CHUNK])
        run.flush()
    run.result.seconds = time.perf_counter() - t0
    return run.result


class _Verification:
    def __init__(self, manifest: Manifest, layout: Layout, plugins: Any,
                 metrics: Sequence[str], src: str | None, device: str | None, total: int,
                 progress: Callable[[int, int], None] | None) -> None:  # fmt: skip
        self.manifest, self.layout, self.plugins = manifest, layout, plugins
        self.metrics, self.src, self.device = tuple(metrics), src, device
        self.total, self.progress = total, progress
        self.result = VerifyResult()
        self.good: list[tuple[int, float | None, float | None]] = []
        self.bad: list[tuple[int, str, str | None]] = []

    def chunk(self, pool: ThreadPoolExecutor, rows: Sequence[Any]) -> None:
        groups: dict[tuple[Any, ...], list[_Output]] = {}
        for row, out in zip(rows, pool.map(self._read, rows)):
            if isinstance(out, str):
                self._done(row, out)
            elif isinstance(out, _Output):
                key = (out.header.codec, json.dumps(dict(out.header.codec_params), sort_keys=True),
                       out.header.model)  # fmt: skip
                groups.setdefault(key, []).append(out)
            else:
                self._done(row, None)  # a video: checked completely by _read
        window: deque[tuple[Any, Future[Any]]] = deque()
        for outputs in groups.values():
            for item, frames in self._decode(outputs):
                if isinstance(frames, str):
                    self._done(item.row, frames)
                    continue
                window.append((item.row, pool.submit(self._compare, item, frames)))
                while len(window) > 2 * (pool._max_workers or 1):
                    self._finish(*window.popleft())
        while window:
            self._finish(*window.popleft())

    def _finish(self, row: Any, fut: Future[Any]) -> None:
        try:
            psnr, ms, unmeasured = fut.result()
        except Exception as exc:  # noqa: BLE001 - a failed comparison fails the item
            self._done(row, _message(exc))
            return
        self.result.unmeasured += unmeasured
        self._done(row, None, psnr, ms)

    def _done(self, row: Any, error: str | None, psnr: float | None = None,
              ms: float | None = None) -> None:  # fmt: skip
        self.result.checked += 1
        if error is None:
            self.good.append((row["id"], psnr, ms))
            self.result.verified += 1
        else:
            self.bad.append((row["id"], "pending", f"verify: {error}"))
            self.result.failures.append((row["source"], error))
        if len(self.good) + len(self.bad) >= 64:
            self.flush()
        if self.progress is not None:
            self.progress(self.result.checked, self.total)

    def flush(self) -> None:
        if self.good:
            self.manifest.set_verified(self.good)
        if self.bad:
            self.manifest.set_status(self.bad)
        self.good.clear()
        self.bad.clear()

    # -- steps (the pool runs _read and _compare) ---------------------------------------
    def _read(self, row: Any) -> _Output | str | None:
        """File checks; an error message, an image output to decode, or ``None`` for a
        video that decoded completely."""
        try:
            split_relative(row["source"], "source")  # damage: never opened (paths.py)
            data = _read_checked(self.layout, row)
            header, packets = _parse(data)
            _check_header(header, row)
            if header.media_type == "image":
                if len(packets) != row["frames"]:
                    raise _Failed(f"{len(packets)} pictures, the manifest says {row['frames']}")
                return _Output(row, header, packets)
            n = _count_video_frames(data, self.plugins, self.device)
            if n != row["frames"]:
                raise _Failed(f"decoded {n} pictures, the manifest says {row['frames']}")
            return None
        except Exception as exc:  # noqa: BLE001 - any failure fails the item
            return _message(exc)

    def _decode(self, outputs: list[_Output]) -> Iterator[tuple[_Output, list[np.ndarray] | str]]:
        """Decode the outputs of one group as one packet sequence. A decode error fails
        the output(s) it names (its ``frame_index`` .. ``last_index``; without them,
        the output being decoded) and decoding resumes after them."""
        owner = [k for k, o in enumerate(outputs) for _ in o.packets]  # packet -> output
        first = {k: i for i, k in reversed(list(enumerate(owner)))}  # output -> 1st packet
        k = 0  # the first output not yielded yet
        while k < len(outputs):
            base = first[k]
            packets = [p for o in outputs[k:] for p in o.packets]
            pictures: list[np.ndarray] = []
            try:
                frames = decode_pictures(
                    outputs[0].header, packets, plugins=self.plugins, device=self.device
                )
                for i, frame in enumerate(frames, base + 1):
                    pictures.append(frame)
                    if i == len(owner) or owner[i] != owner[i - 1]:
                        yield outputs[owner[i - 1]], pictures
                        pictures = []
                        k = owner[i - 1] + 1
                return
            except Exception as exc:  # noqa: BLE001 - the frame's item fails, others go on
                last = k
                if getattr(exc, "frame_index", -1) >= 0:
                    at = base + getattr(exc, "last_index", exc.frame_index)
                    last = max(k, owner[min(at, len(owner) - 1)])
                for j in range(k, last + 1):
                    yield outputs[j], _message(exc)
                k = last + 1

    def _compare(self, item: _Output, pictures: list[np.ndarray]) -> tuple[Any, Any, bool]:
        row = item.row
        for rgb in pictures:
            if rgb.shape != (row["height"], row["width"], 3):
                raise _Failed(f"decoded a {rgb.shape[1]}x{rgb.shape[0]} picture")
        source = _source_pixels(row, self.src)
        if source is None:  # decodes as recorded; nothing left to compare with
            return None, None, True
        if not self.plugins.codecs.get(row["codec"]).lossy:
            if not np.array_equal(source, pictures[0]):
                raise _Failed("lossless output does not reproduce the source pixels")
            return None, None, False
        from onedc_media.evaluate import metrics as m

        psnr = m.psnr_rgb(source, pictures[0]) if "psnr" in self.metrics else None
        ms = None
        if "ms_ssim" in self.metrics and m.ms_ssim_supported(*source.shape[:2]):
            ms = m.ms_ssim(source, pictures[0])
        return psnr, ms, False


def _message(exc: BaseException) -> str:
    if isinstance(exc, (_Failed, OdcError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _read_checked(layout: Layout, row: Any) -> bytes:
    try:
        data = layout.read_output(row["output"])
    except OSError as exc:
        raise _Failed(f"cannot read the output: {exc.strerror}") from None
    if len(data) != row["out_size"]:
        raise _Failed(f"output is {len(data)} bytes, the manifest says {row['out_size']}")
    if hashlib.sha256(data).hexdigest() != row["out_sha256"]:
        raise _Failed("output SHA-256 differs from the manifest")
    return data


def _check_header(header: container.StreamHeader, row: Any) -> None:
    if header.codec != row["codec"]:
        raise _Failed(f"stream codec {header.codec!r}, the manifest says {row['codec']!r}")
    if (header.width, header.height) != (row["width"], row["height"]):
        raise _Failed(
            f"stream is {header.width}x{header.height}, the manifest says "
            f"{row['width']}x{row['height']}"
        )
    if (header.model.sha256 if header.model else None) != row["model_sha256"]:
        raise _Failed("stream model differs from the manifest")


def _source_pixels(row: Any, src: str | None) -> np.ndarray | None:
    """The source picture, if it is still the one that was encoded."""
    if not src:
        return None
    try:  # O_NONBLOCK: a FIFO put in a source's place must not block
        fd = open_inside(src, row["source"], os.O_RDONLY | os.O_NONBLOCK, what="source",
                         follow_last=True)  # fmt: skip
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        data = fh.read()
    if hashlib.sha256(data).hexdigest() != row["src_sha256"]:
        return None
    return decode_image(data, 1 << 62)
