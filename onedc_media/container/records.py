"""The records the ``.odc`` container reads and writes: plain frozen dataclasses.

Naming follows PyAV (container -> stream -> packet) and FFmpeg (colour and sample
format names), so a PyAV user finds no synonyms. See ``docs/odc-format.md`` for how each
field is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from onedc_media.codec.contract import ModelRef

__all__ = [
    "MEDIA_TYPES",
    "ColorInfo",
    "IndexEntry",
    "Limits",
    "MediaType",
    "ModelRef",
    "Packet",
    "StreamHeader",
]

MediaType = Literal["video", "image", "audio", "data"]
MEDIA_TYPES: tuple[str, ...] = ("video", "image", "audio", "data")


@dataclass(frozen=True)
class ColorInfo:
    """Colour description of a picture stream, in FFmpeg's names (``"unknown"`` allowed).

    ``primaries`` / ``transfer`` / ``matrix`` are e.g. ``bt709``, ``bt2020nc``, ``smpte170m``;
    ``range`` is ``"full"`` (pc / jpeg), ``"limited"`` (tv / mpeg) or ``"unknown"``.
    """

    primaries: str = "bt709"
    transfer: str = "bt709"
    matrix: str = "bt709"
    range: str = "full"


@dataclass(frozen=True)
class StreamHeader:
    """Everything a decoder needs to know about one stream; one ``STRM`` chunk.

    :param media_type: ``"video"``, ``"image"``, ``"audio"`` or ``"data"``.
    :param codec: registry codec name (``"onedc"``, ``"jpeg"``); for a passthrough
        stream the source codec's FFmpeg name (``"aac"``).
    :param codec_params: JSON-serialisable parameters the codec's decoder needs
        (``Encoder.params``). Tuples come back as lists.
    :param model: the weights the stream was encoded with (invariant 3), if any.
    :param passthrough: packets are the source's own codec packets (remuxed as is).
    :param extradata: codec extradata of a passthrough stream.
    :param index: 0-based stream index, assigned by the writer; ``-1`` before that.
    """

    media_type: MediaType
    codec: str
    width: int = 0
    height: int = 0
    pixel_format: str = "rgb24"
    color: ColorInfo = ColorInfo()
    time_base: Fraction = Fraction(1, 1)
    frame_rate: Fraction | None = None
    codec_params: Mapping[str, Any] = field(default_factory=dict)
    model: ModelRef | None = None
    passthrough: bool = False
    extradata: bytes = b""
    sample_rate: int = 0
    channels: int = 0
    channel_layout: str = ""
    sample_format: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    index: int = -1


@dataclass(frozen=True)
class Packet:
    """One compressed frame (or audio / data unit) of one stream.

    ``pts`` / ``dts`` / ``duration`` count ticks of the stream's ``time_base``.
    """

    stream_index: int
    data: bytes
    pts: int | None = None
    dts: int | None = None
    duration: int = 0
    keyframe: bool = False


@dataclass(frozen=True)
class IndexEntry:
    """Where one keyframe packet starts: ``offset`` is the byte offset of its chunk,
    counted from the first byte of the magic."""

    stream_index: int
    pts: int | None
    offset: int


@dataclass(frozen=True)
class Limits:
    """Safety bounds a reader applies to sizes declared in a file, before allocating.

    A chunk above its bound raises :class:`~onedc_media.errors.LimitExceededError`;
    a chunk longer than what is left of a seekable file raises
    :class:`~onedc_media.errors.TruncatedError` before anything is read. The defaults
    suit every file onedc-media writes; raise them for unusual inputs only.
    """

    max_packet_size: int = 256 << 20  #: payload bytes of one packet
    max_header_size: int = 1 << 20  #: body of an ``OHDR`` / ``STRM`` chunk (JSON)
    max_streams: int = 64
    max_index_size: int = 64 << 20  #: body of the trailing ``indx`` chunk
    max_dimension: int = 1 << 16  #: width / height declared in a stream header
