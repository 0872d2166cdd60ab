"""``VideoEncoder``: RGB frames in, one ``.odc`` video stream out.

Used by :func:`~onedc_media.pipeline.transcode.transcode` and by
:class:`onedc_media.cv.VideoWriter`. Frames arrive one at a time with their
timestamps; a :class:`~onedc_media.pipeline.policy.KeyframePolicy` decides keyframes;
keyframes are coded by the keyframe codec (any registered codec), the other frames by
the inter codec (:mod:`onedc_media.pipeline.hybrid`), or dropped when there is none
(keyframes only: archival stills). Nothing is buffered beyond what the inter encoder
holds back, so memory does not grow with the GOP length.

The video stream (``docs/odc-format.md``, ``STRM``)::

    media_type "video", codec = the keyframe codec, pixel_format "rgb24",
    width / height / time_base / frame_rate / color of the source,
    codec_params = the keyframe encoder's params + {"inter": InterSettings} (hybrid only),
    model = the keyframe encoder's model, metadata {"rotate": "90"} when rotated

Packets: keyframe packets (``keyframe=True``) are the keyframe codec's packets as it
made them; the others are inter packets (:func:`~onedc_media.pipeline.hybrid.pack_inter`).
``pts`` are the source's, in its time base; each packet's duration is the frame's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from onedc_media.codec import CodecRegistry, check_frame
from onedc_media.container import ColorInfo, OutputContainer, Packet, StreamHeader
from onedc_media.errors import InvalidImageError, InvalidVideoError, PluginError
from onedc_media.pipeline.hybrid import InterEncoder, InterSettings
from onedc_media.pipeline.keyframes import INTER_PARAMS_KEY, PacketFeed, decode_keyframes
from onedc_media.pipeline.policy import KeyframePolicy

__all__ = ["EncodeStats", "VideoEncoder", "make_policy"]


def make_policy(
    name: str, options: Mapping[str, Any] | None = None, *, plugins: Any = None
) -> KeyframePolicy:
    """A fresh keyframe policy called *name* from the installed (or given) plugins."""
    if plugins is None:
        import onedc_media

        plugins = onedc_media.default_plugins()
    return plugins.policies.get(name).create(options)


@dataclass
class EncodeStats:
    """What a :class:`VideoEncoder` wrote so far (payload bytes, no framing)."""

    frames: int = 0  #: frames given to :meth:`VideoEncoder.write`
    keyframes: int = 0
    inter_frames: int = 0  #: frames stored as inter packets
    dropped_frames: int = 0  #: frames not stored (keyframes-only mode)
    keyframe_bytes: int = 0
    inter_bytes: int = 0
    #: bytes of the inter codec's intra pictures, regenerated at decode time, not stored
    intra_bytes_not_stored: int = 0


class VideoEncoder:
    """Writes one video stream into an open ``.odc`` :class:`OutputContainer`.

    The stream is added to *out* here, so add any other streams (audio) before the
    first :meth:`write`: the container writes its headers with the first packet.

    :param out: the container to write into.
    :param width, height: the size of every frame.
    :param time_base: unit of the timestamps given to :meth:`write`.
    :param frame_rate: nominal frame rate (recorded; ``None`` if unknown).
    :param keyframe_codec: a registered codec name (``onedc``, ``jpeg``, ...).
    :param codec_options: options of the keyframe codec (validated by the codec).
    :param policy: decides keyframes (default: a keyframe every 250 frames).
    :param inter: the inter layer; ``None`` stores keyframes only.
    :param codecs: the codec registry (default: the installed plugins').
    """

    def __init__(
        self,
        out: OutputContainer,
        *,
        width: int,
        height: int,
        time_base: Fraction,
        keyframe_codec: str,
        frame_rate: Fraction | None = None,
        color: ColorInfo | None = None,
        metadata: Mapping[str, str] | None = None,
        codec_options: Mapping[str, Any] | None = None,
        policy: KeyframePolicy | None = None,
        inter: InterSettings | None = None,
        codecs: CodecRegistry | None = None,
        device: str | None = None,
    ) -> None:
        if codecs is None:
            import onedc_media

            codecs = onedc_media.default_plugins().codecs
        if policy is None:
            from onedc_media.pipeline.policies import GopPolicy

            policy = GopPolicy(250)
        info = codecs.get(keyframe_codec)
        self._encoder = info.create().encoder(info.resolve_options(codec_options), device=device)
        self._feed: PacketFeed | None = None
        self._recons: Any = None
        try:
            params = dict(self._encoder.params)
            if INTER_PARAMS_KEY in params:
                raise PluginError(
                    f"codec {info.name!r} uses the parameter name {INTER_PARAMS_KEY!r}, which "
                    "video streams reserve for the inter layer"
                )
            if inter is not None:
                params[INTER_PARAMS_KEY] = inter.to_params()
            self.stream = out.add_stream(
                StreamHeader(
                    media_type="video",
                    codec=info.name,
                    width=width,
                    height=height,
                    color=color or ColorInfo(),
                    time_base=time_base,
                    frame_rate=frame_rate,
                    codec_params=params,
                    model=self._encoder.model,
                    metadata=dict(metadata or {}),
                )
            )
            self._out = out
            self._policy = policy
            self._inter = None if inter is None else InterEncoder(inter, width, height)
            if self._inter is not None:
                self._feed = PacketFeed()
                # with the encoder's own options: its weights (model=DIR), not the
                # embedded ones the stream's model name would resolve to
                self._recons = decode_keyframes(
                    self.stream, self._feed, codecs=codecs, device=device,
                    options=codec_options,
                )
        except BaseException:
            self._release()  # the keyframe encoder (a model, threads) must not leak
            raise
        self._pending: deque[tuple[int, int]] = deque()  # (pts, duration) of inter frames
        self._held: Packet | None = None  # keyframes-only: the last keyframe, until the next
        self._key_payload: bytes | None = None  # the GOP's keyframe, until its recon is needed
        self._last_pts: int | None = None
        self._last_end: int | None = None
        self._closed = False
        self.stats = EncodeStats()

    @property
    def frames_written(self) -> int:
        return self.stats.frames

    def write(
        self, rgb: np.ndarray, pts: int, *, duration: int = 0, source_keyframe: bool = False
    ) -> bool:
        """Add one HxWx3 uint8 RGB frame shown at *pts*; return whether it became a keyframe.

        :raises InvalidImageError: the frame is not HxWx3 uint8 of the stream's size.
        :raises InvalidVideoError: *pts* is not after the previous frame's.
        """
        if self._closed:
            raise ValueError("VideoEncoder is closed")
        rgb = check_frame(rgb, index=self.stats.frames)
        if rgb.shape[:2] != (self.stream.height, self.stream.width):
            raise InvalidImageError(
                f"frame {self.stats.frames}: {rgb.shape[1]}x{rgb.shape[0]}, the stream is "
                f"{self.stream.width}x{self.stream.height}"
            )
        if self._last_pts is not None and pts <= self._last_pts:
            raise InvalidVideoError(
                f"frame {self.stats.frames}: timestamp {pts} is not after the previous {self._last_pts}"
            )
        index = self.stats.frames
        key = index == 0 or bool(
            self._policy.is_keyframe(index, rgb, source_keyframe=source_keyframe)
        )
        if key:
            self._finish_gop(pts)
            (payload,) = self._encoder.encode([rgb])
            packet = Packet(self.stream.index, payload, pts=pts, duration=duration, keyframe=True)
            self.stats.keyframes += 1
            self.stats.keyframe_bytes += len(payload)
            if self._inter is None:
                self._held = packet
            else:
                self._out.mux(packet)
                self._key_payload = payload  # decoded when the GOP's first inter frame comes
        elif self._inter is None:
            self.stats.dropped_frames += 1
        else:
            if self._key_payload is not None:
                # The reconstruction, exactly as a decoder will see it (same seam); a GOP
                # without inter frames (all intra) never needs it.
                assert self._feed is not None
                self._feed.put(self._key_payload)
                self._inter.start_gop(next(self._recons))
                self._key_payload = None
            self._pending.append((pts, duration))
            self._mux_inter(self._inter.encode(rgb))
        self.stats.frames += 1
        self._last_pts = pts
        self._last_end = pts + duration
        return key

    def _mux_inter(self, payloads: list[bytes]) -> None:
        for payload in payloads:
            pts, duration = self._pending.popleft()
            self._out.mux(Packet(self.stream.index, payload, pts=pts, duration=duration))
            self.stats.inter_frames += 1
            self.stats.inter_bytes += len(payload)

    def _finish_gop(self, next_pts: int | None) -> None:
        if self._held is not None:  # keyframes only: it lasts until the next keyframe
            held = self._held
            end = next_pts if next_pts is not None else self._last_end
            if end is not None and end > (held.pts or 0):
                held = Packet(held.stream_index, held.data, held.pts, None, end - held.pts, True)
            self._out.mux(held)
            self._held = None
        if self._inter is not None:
            self._mux_inter(self._inter.finish_gop())
            if self._pending:
                raise InvalidVideoError(
                    f"{self._inter.settings.codec} returned fewer packets than frames"
                )
            self.stats.intra_bytes_not_stored = self._inter.intra_bytes_not_stored

    def close(self) -> None:
        """Flush the last GOP (the container itself is closed by its owner)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._finish_gop(None)
        finally:
            self._release()

    def _release(self) -> None:
        if self._feed is not None:
            self._feed.close()
            close = getattr(self._recons, "close", None)
            if close is not None:
                close()
        self._encoder.close()

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True
            self._release()
