"""``VideoSource``: demux and decode any input PyAV opens, for the transcoder.

Yields, in the input's demux order, :class:`SourceFrame` (a decoded video frame as RGB,
with its timestamp in the input stream's time base and whether the input flagged it as
a keyframe) and :class:`SourcePacket` (an audio packet, untouched, for passthrough).

- Decoding is threaded (FFmpeg frame / slice threads, ``threads=0``: one per core).
- ``start`` / ``duration`` (seconds) select a time range: the input is seeked to the
  keyframe before ``start`` and frames before it are decoded and dropped; with
  ``start``, every stream's timestamps are shifted by the same ``start`` so that the
  output begins at 0 with audio and video still in sync. ``max_frames`` stops after that
  many frames. Audio is kept up to the end of the last frame.
- Timestamps are the input's (variable frame rate is preserved). A frame without a
  timestamp gets the previous one plus a frame duration; one that does not increase is
  moved just after the previous (both logged).
- A frame whose size differs from the first frame's is scaled to it (logged once).
- Decoding errors in the middle of a file skip the damaged packets (logged), as
  FFmpeg does; an input with no decodable frame is an :class:`InvalidVideoError`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

from onedc_media.container import ColorInfo
from onedc_media.errors import InvalidVideoError
from onedc_media.pipeline.media import color_from_frame, fraction, frame_to_rgb, rotate_tag

__all__ = ["AudioInfo", "SourceFrame", "SourcePacket", "VideoSource"]

log = logging.getLogger(__name__)

#: Decode errors in a row after which the input is considered unreadable.
MAX_DECODE_ERRORS = 100


@dataclass(frozen=True)
class SourceFrame:
    rgb: np.ndarray
    pts: int
    duration: int
    keyframe: bool  #: the input flagged it as a keyframe
    index: int


@dataclass(frozen=True)
class SourcePacket:
    audio_index: int  #: position in :attr:`VideoSource.audio`
    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    keyframe: bool


@dataclass(frozen=True)
class AudioInfo:
    """What a passthrough stream needs to be remuxed later."""

    codec: str
    time_base: Fraction
    extradata: bytes
    sample_rate: int
    channels: int
    channel_layout: str
    sample_format: str
    metadata: dict[str, str] = field(default_factory=dict)


class VideoSource:
    """An input video opened with PyAV (see the module docstring).

    :raises FileNotFoundError: *path* does not exist.
    :raises InvalidVideoError: it cannot be read, has no video stream or no frames.
    """

    def __init__(
        self,
        path: str,
        *,
        start: float | None = None,
        duration: float | None = None,
        max_frames: int | None = None,
        audio: bool = True,
        threads: int = 0,
    ) -> None:
        if start is not None and (not math.isfinite(start) or start < 0):
            raise InvalidVideoError(f"start must be >= 0 seconds, got {start}")
        if duration is not None and (not math.isfinite(duration) or duration <= 0):
            raise InvalidVideoError(f"duration must be > 0 seconds, got {duration}")
        if max_frames is not None and max_frames < 1:
            raise InvalidVideoError(f"max_frames must be >= 1, got {max_frames}")
        self.path = path
        try:
            self._container = av.open(path, "r")
        except FileNotFoundError:
            raise
        except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
            raise InvalidVideoError(f"cannot read the input: {exc}", filename=path) from None
        try:
            self._setup(start, duration, max_frames, audio, threads)
        except BaseException:
            self._container.close()
            raise

    def _setup(
        self,
        start: float | None,
        duration: float | None,
        max_frames: int | None,
        audio: bool,
        threads: int,
    ) -> None:
        c = self._container
        if not c.streams.video:
            raise InvalidVideoError("the input has no video stream", filename=self.path)
        video = c.streams.video[0]
        video.thread_type = "AUTO"
        video.thread_count = max(0, int(threads))
        self._video = video
        self.time_base: Fraction = video.time_base or Fraction(1, 90000)
        self.frame_rate = fraction(video.average_rate) or fraction(video.guessed_rate)
        self._audio_streams = list(c.streams.audio) if audio else []
        self.audio = [_audio_info(s) for s in self._audio_streams]
        self._audio_pos = {s.index: i for i, s in enumerate(self._audio_streams)}
        self.max_frames = max_frames
        self.start = start
        # Timestamps are shifted by `start` (in each stream's time base) when it is given.
        origin = (
            Fraction(video.start_time or 0) * self.time_base if video.start_time else Fraction(0)
        )
        self._origin = origin
        self._start_s = _seconds(start or 0)
        self._shift_s = origin + self._start_s if start is not None else Fraction(0)
        self._end_s = None if duration is None else origin + self._start_s + _seconds(duration)
        if start:
            target = int((origin + self._start_s) / self.time_base)
            try:
                c.seek(target, stream=video, backward=True)
            except av.FFmpegError as exc:
                raise InvalidVideoError(
                    f"cannot seek to {start} s: {exc}", filename=self.path
                ) from None
        nominal = 1 / (self.frame_rate * self.time_base) if self.frame_rate else 0
        self._nominal = max(0, round(nominal))
        self._items = self._generate()
        self._peeked: list[SourceFrame | SourcePacket] = []
        for item in self._items:
            self._peeked.append(item)
            if isinstance(item, SourceFrame):
                break
        else:
            raise InvalidVideoError("the input has no decodable video frames", filename=self.path)
        first = self._first
        self.width, self.height = first.width, first.height
        self.color: ColorInfo = color_from_frame(first)
        self.rotation = rotate_tag(getattr(first, "rotation", 0))

    @property
    def estimated_frames(self) -> int | None:
        """How many frames the input (or the selected range) probably has."""
        video = self._video
        total: float | None = None
        if video.frames:
            total = video.frames
        elif video.duration and self.frame_rate:
            total = float(video.duration * self.time_base * self.frame_rate)
        elif self._container.duration and self.frame_rate:
            total = self._container.duration / av.time_base * float(self.frame_rate)
        if total is not None and self.frame_rate:
            rate = float(self.frame_rate)
            if self.start:
                total = max(0.0, total - self.start * rate)
            if self._end_s is not None:
                total = min(total, float(self._end_s - self._origin - self._start_s) * rate)
        if self.max_frames is not None:
            total = self.max_frames if total is None else min(total, self.max_frames)
        return None if total is None else max(1, round(total))

    @property
    def metadata(self) -> dict[str, str]:
        """Stream metadata worth keeping in the ``.odc`` video stream header."""
        out = {}
        if self.rotation:
            out["rotate"] = str(self.rotation)
        language = self._video.metadata.get("language")
        if language and language != "und":
            out["language"] = language
        return out

    def __iter__(self) -> Iterator[SourceFrame | SourcePacket]:
        while self._peeked:
            yield self._peeked.pop(0)
        yield from self._items

    # -- the demux / decode loop ---------------------------------------------------------

    def _shift(self, time_base: Fraction) -> int:
        return round(self._shift_s / time_base) if self._shift_s else 0

    def _generate(self) -> Iterator[SourceFrame | SourcePacket]:
        video = self._video
        tb = self.time_base
        start_pts = (self._origin + self._start_s) / tb if self.start else None
        end_pts = None if self._end_s is None else self._end_s / tb
        shift_v = self._shift(tb)
        index = 0
        last_pts: int | None = None
        errors = 0
        video_done = False
        audio_end: Fraction | None = None  # seconds, once video is done
        audio_done: set[int] = set()
        streams = [video, *self._audio_streams]
        try:
            packets = self._container.demux(streams)
            for packet in packets:
                if packet.stream.index in self._audio_pos:
                    item = self._audio_packet(packet, audio_end, audio_done)
                    if item is not None:
                        yield item
                    if video_done and len(audio_done) == len(self._audio_streams):
                        return
                    continue
                if video_done:
                    continue
                try:
                    frames = packet.decode()
                    errors = 0
                except av.FFmpegError as exc:
                    errors += 1
                    log.warning("%s: skipping a damaged video packet (%s)", self.path, exc)
                    if errors >= MAX_DECODE_ERRORS:
                        raise InvalidVideoError(
                            f"{errors} video packets in a row failed to decode", filename=self.path
                        ) from None
                    continue
                for frame in frames:
                    pts = frame.pts
                    if start_pts is not None and pts is not None and pts < start_pts:
                        continue
                    if end_pts is not None and pts is not None and pts >= end_pts:
                        video_done = True
                        break
                    if index == 0:
                        self._first = frame
                    pts, fixed = self._fix_pts(pts, last_pts)
                    if fixed:
                        log.warning("%s: frame %d: %s", self.path, index, fixed)
                    duration = int(frame.duration or 0) or self._nominal
                    rgb = self._rgb(frame)
                    yield SourceFrame(rgb, pts - shift_v, duration, bool(frame.key_frame), index)
                    last_pts = pts
                    index += 1
                    if self.max_frames is not None and index >= self.max_frames:
                        video_done = True
                        break
                if video_done:
                    last_end = (last_pts or 0) + self._nominal
                    audio_end = Fraction(last_end) * tb
                    if not self._audio_streams:
                        return
        except av.FFmpegError as exc:
            if index == 0:
                raise InvalidVideoError(
                    f"cannot read the input: {exc}", filename=self.path
                ) from None
            log.warning("%s: stopped reading at a damaged part (%s)", self.path, exc)

    def _audio_packet(
        self, packet: av.Packet, end: Fraction | None, done: set[int]
    ) -> SourcePacket | None:
        if packet.size == 0:
            return None
        stream = packet.stream
        tb = stream.time_base or Fraction(1, stream.sample_rate or 1)
        pts = packet.pts
        if pts is not None:
            t = Fraction(pts) * tb
            if self.start is not None and t < self._shift_s:
                return None
            if self._end_s is not None and t >= self._end_s:
                done.add(stream.index)
                return None
            if end is not None and t >= end:
                done.add(stream.index)
                return None
        elif end is not None:
            return None
        shift = self._shift(tb)
        return SourcePacket(
            audio_index=self._audio_pos[stream.index],
            data=bytes(packet),
            pts=None if pts is None else pts - shift,
            dts=None if packet.dts is None else packet.dts - shift,
            duration=int(packet.duration or 0),
            keyframe=bool(packet.is_keyframe),
        )

    def _fix_pts(self, pts: int | None, last: int | None) -> tuple[int, str]:
        if pts is None:
            if last is None:
                return 0, ""
            return last + max(1, self._nominal), "no timestamp; using the previous one + one frame"
        if last is not None and pts <= last:
            return last + 1, f"timestamp {pts} does not increase; moved after {last}"
        return pts, ""

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        first = self._first
        if (frame.width, frame.height) != (first.width, first.height):
            if not getattr(self, "_warned_size", False):
                log.warning(
                    "%s: the picture size changes from %dx%d to %dx%d; scaling to the first",
                    self.path, first.width, first.height, frame.width, frame.height,
                )  # fmt: skip
                self._warned_size = True
            frame = frame.reformat(width=first.width, height=first.height)
        return frame_to_rgb(frame)

    def close(self) -> None:
        self._items.close()
        self._container.close()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _seconds(value: float) -> Fraction:
    """A time given in (float) seconds as an exact fraction, to the microsecond."""
    return Fraction(value).limit_denominator(1_000_000)


def _audio_info(stream: av.audio.stream.AudioStream) -> AudioInfo:
    ctx = stream.codec_context
    layout = getattr(ctx, "layout", None)
    fmt = getattr(ctx, "format", None)
    metadata = {}
    language = stream.metadata.get("language")
    if language and language != "und":
        metadata["language"] = language
    return AudioInfo(
        codec=ctx.name,
        time_base=stream.time_base or Fraction(1, ctx.sample_rate or 1),
        extradata=bytes(ctx.extradata or b""),
        sample_rate=int(ctx.sample_rate or 0),
        channels=int(ctx.channels or 0),
        channel_layout=getattr(layout, "name", "") or "",
        sample_format=getattr(fmt, "name", "") or "",
        metadata=metadata,
    )
