"""``VideoDecoder``: one picture stream of an ``.odc`` file back to RGB frames.

Works for every picture stream: video (hybrid, all-intra or keyframes only) and image
streams (every packet a keyframe). Keyframe packets go through
:func:`~onedc_media.pipeline.keyframes.decode_keyframes`; inter packets through
:class:`~onedc_media.pipeline.hybrid.InterDecoder`.

On a file opened from a path, the keyframe packets are read through the container's
index by a second reader of that path, so that ``decode_keyframes`` sees them as one
lazy sequence it may read ahead in (a batched decoder runtime can then decode keyframes
while the inter frames in between are decoded here). On a pipe or a file object (even a
seekable one: its ``name`` need not be a path, e.g. ``'<stdin>'``) they are fed one at
a time as the demuxer reaches them.

Timestamps come from the container, never from the codecs: each output frame has its
packet's ``pts`` and ``duration``, so a decoded video has exactly the source's frames
and times.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from onedc_media import container
from onedc_media.codec import CodecRegistry
from onedc_media.container import IndexEntry, InputContainer, Packet, StreamHeader
from onedc_media.errors import BitstreamError, InvalidVideoError, OdcFormatError
from onedc_media.pipeline.hybrid import InterDecoder, InterSettings
from onedc_media.pipeline.keyframes import INTER_PARAMS_KEY, PacketFeed, decode_keyframes

__all__ = ["DecodedFrame", "VideoDecoder", "picture_stream"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded picture: HxWx3 uint8 RGB, with its packet's timing."""

    rgb: np.ndarray
    pts: int | None
    duration: int
    keyframe: bool


def picture_stream(inp: InputContainer, index: int | None = None) -> StreamHeader:
    """The stream *index*, or the first video or image stream of *inp*."""
    streams = inp.streams
    if index is not None:
        if not 0 <= index < len(streams):
            raise InvalidVideoError(
                f"no stream {index}: the file has {len(streams)}", filename=inp.name
            )
        stream = streams[index]
        if stream.media_type not in ("video", "image") or stream.passthrough:
            raise InvalidVideoError(
                f"stream {index} is {stream.media_type} ({stream.codec}), not pictures",
                filename=inp.name,
            )
        return stream
    for stream in streams:
        if stream.media_type in ("video", "image") and not stream.passthrough:
            return stream
    kinds = ", ".join(f"{s.media_type}:{s.codec}" for s in streams) or "none"
    raise InvalidVideoError(f"no video or image stream (streams: {kinds})", filename=inp.name)


class _IndexedPackets:
    """The keyframe packets an index lists, read lazily. Sized: the decoder runtime
    sizes its run by it (a still is one picture: one synthesis worker, all threads)."""

    def __init__(self, reader: Any, entries: list[IndexEntry]) -> None:
        self.reader, self.entries = reader, list(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[bytes]:
        for entry in self.entries:
            yield self.reader.read_packet_at(entry).data


class _Keyframes:
    """Reconstructed keyframes, in file order, matched to the keyframe packets."""

    def __init__(
        self,
        inp: InputContainer,
        stream: StreamHeader,
        start: int | None,
        codecs: CodecRegistry | None,
        device: str | None,
    ) -> None:
        self._reader: InputContainer | None = None
        self._feed: PacketFeed | None = None
        self._expect: deque[IndexEntry] = deque()
        packets: Any
        if inp.path is not None and inp.file_size is not None:
            entries = [
                e for e in inp.index
                if e.stream_index == stream.index and (start is None or e.offset >= start)
            ]  # fmt: skip
            self._expect.extend(entries)
            self._reader = container.open(inp.path, limits=inp.limits)
            packets = _IndexedPackets(self._reader, entries)
        else:
            self._feed = PacketFeed()
            packets = self._feed
        self._frames = decode_keyframes(stream, packets, codecs=codecs, device=device)

    def frame_for(self, packet: Packet) -> np.ndarray:
        if self._feed is not None:
            self._feed.put(packet.data)
        else:
            if not self._expect or self._expect[0].pts != packet.pts:
                raise OdcFormatError("keyframe packet not in the index: the index is inconsistent")
            self._expect.popleft()
        try:
            return next(self._frames)
        except StopIteration:
            raise OdcFormatError("fewer keyframes in the index than in the file") from None

    def close(self) -> None:
        if self._feed is not None:
            self._feed.close()
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()
        if self._reader is not None:
            self._reader.close()


class VideoDecoder:
    """Decodes the packets of one picture stream of an open ``.odc`` file.

    Either iterate :meth:`frames`, or (to interleave with other streams) give each of
    the stream's packets to :meth:`decode`, in file order, then call :meth:`flush`.

    :param inp: the open file.
    :param stream: the stream to decode (default: the first video or image stream).
    :param codecs: the codec registry (default: the installed plugins').
    :param device: passed on to the keyframe codec.
    """

    def __init__(
        self,
        inp: InputContainer,
        stream: StreamHeader | int | None = None,
        *,
        codecs: CodecRegistry | None = None,
        device: str | None = None,
    ) -> None:
        self.inp = inp
        self.stream = stream if isinstance(stream, StreamHeader) else picture_stream(inp, stream)
        self._codecs = codecs
        self._device = device
        inter = self.stream.codec_params.get(INTER_PARAMS_KEY)
        self.inter_settings = None if inter is None else InterSettings.from_params(inter)
        self._inter: InterDecoder | None = None
        self._keyframes: _Keyframes | None = None
        self._pending: deque[tuple[int | None, int]] = deque()
        self._in_gop = False

    @property
    def mismatches(self) -> int:
        """GOPs whose regenerated intra picture did not match its stored checksum."""
        return 0 if self._inter is None else self._inter.mismatches

    def _start(self, offset: int | None) -> None:
        self._close_keyframes()
        self._keyframes = _Keyframes(self.inp, self.stream, offset, self._codecs, self._device)
        if self.inter_settings is not None and self._inter is None:
            self._inter = InterDecoder(self.inter_settings, self.stream.width, self.stream.height)
        self._pending.clear()
        self._in_gop = False

    def decode(self, packet: Packet) -> list[DecodedFrame]:
        """Decode one packet of the stream; returns the frames that came out (in order)."""
        if self._keyframes is None:
            self._start(None)
        assert self._keyframes is not None
        if packet.keyframe:
            out = self._finish_gop()
            rgb = self._keyframes.frame_for(packet)
            out.append(DecodedFrame(rgb, packet.pts, packet.duration, True))
            if self._inter is not None:
                self._inter.start_gop(rgb)
            self._in_gop = True
            return out
        if self._inter is None:
            raise BitstreamError(
                f"stream {self.stream.index}: a non-key packet in a stream without an inter layer"
            )
        if not self._in_gop:
            raise BitstreamError(f"stream {self.stream.index}: inter packet before any keyframe")
        self._pending.append((packet.pts, packet.duration))
        return self._assign(self._inter.decode(packet.data))

    def flush(self) -> list[DecodedFrame]:
        """The frames still held at the end of the stream."""
        out = self._finish_gop()
        self._close_keyframes()
        return out

    def _assign(self, frames: list[np.ndarray]) -> list[DecodedFrame]:
        out = []
        for rgb in frames:
            if not self._pending:
                raise BitstreamError("the inter decoder returned more pictures than packets")
            pts, duration = self._pending.popleft()
            out.append(DecodedFrame(rgb, pts, duration, False))
        return out

    def _finish_gop(self) -> list[DecodedFrame]:
        if self._inter is None or not self._in_gop:
            return []
        out = self._assign(self._inter.finish_gop())
        if self._pending:
            missing = len(self._pending)
            self._pending.clear()
            raise BitstreamError(f"the inter decoder lost {missing} pictures of a GOP")
        self._in_gop = False
        return out

    def frames(self, start: IndexEntry | None = None) -> Iterator[DecodedFrame]:
        """Decode the stream from the beginning, or from the keyframe *start* (an entry
        of ``inp.index``) on, yielding frames in order."""
        if start is not None:
            if start.stream_index != self.stream.index or start.pts is None:
                raise ValueError("start must be an index entry of this stream, with a pts")
            self.inp.seek(self.stream.index, start.pts)
            self._start(start.offset)
        else:
            self._start(None)
        try:
            for packet in self.inp.demux(self.stream.index):
                yield from self.decode(packet)
            yield from self.flush()
        finally:
            self._close_keyframes()

    def _close_keyframes(self) -> None:
        if self._keyframes is not None:
            self._keyframes.close()
            self._keyframes = None

    def close(self) -> None:
        self._close_keyframes()
