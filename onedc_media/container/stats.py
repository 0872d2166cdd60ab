"""True byte counts of an ``.odc`` file: packets, payload, framing and bits per pixel.

Invariant 1: bpp is file bytes * 8 / pixels, headers included. That is exact for a file
holding one image stream. With several streams (or video) the file's bytes cannot be
split between streams without a convention, so per-stream bpp is then *payload* bytes
* 8 / pixels, and ``bpp_basis`` says which one a number is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from onedc_media.container.reader import InputContainer
from onedc_media.container.records import StreamHeader

__all__ = ["ContainerStats", "StreamStats", "measure"]


@dataclass
class StreamStats:
    header: StreamHeader
    packets: int = 0
    keyframes: int = 0
    payload_bytes: int = 0
    #: bits per pixel, ``None`` for streams without pictures
    bpp: float | None = None
    #: ``"file"`` (file bytes * 8 / pixels) or ``"payload"`` (payload bytes * 8 / pixels)
    bpp_basis: str | None = None


@dataclass
class ContainerStats:
    file_bytes: int
    streams: list[StreamStats] = field(default_factory=list)

    @property
    def packets(self) -> int:
        return sum(s.packets for s in self.streams)

    @property
    def keyframes(self) -> int:
        return sum(s.keyframes for s in self.streams)

    @property
    def payload_bytes(self) -> int:
        return sum(s.payload_bytes for s in self.streams)

    @property
    def framing_bytes(self) -> int:
        """Everything that is not payload: magic, headers, chunk framing, sync, index."""
        return self.file_bytes - self.payload_bytes

    @property
    def framing_bytes_per_packet(self) -> float | None:
        return self.framing_bytes / self.packets if self.packets else None


def measure(inp: InputContainer) -> ContainerStats:
    """Read every packet of *inp* (checking every CRC) and count.

    :raises OdcFormatError: on any damage, as ``demux(on_damage="raise")``.
    """
    streams = [StreamStats(h) for h in inp.streams]
    for packet in inp.demux():
        s = streams[packet.stream_index]
        s.packets += 1
        s.keyframes += packet.keyframe
        s.payload_bytes += len(packet.data)
    size = inp.file_size if inp.file_size is not None else inp._src.pos
    stats = ContainerStats(size, streams)
    single_image = len(streams) == 1 and streams[0].header.media_type == "image"
    for s in streams:
        pixels = s.header.width * s.header.height * s.packets
        if s.header.media_type in ("image", "video") and pixels:
            basis_bytes = size if single_image else s.payload_bytes
            s.bpp = basis_bytes * 8 / pixels
            s.bpp_basis = "file" if single_image else "payload"
    return stats
