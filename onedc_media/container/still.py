"""The still form of ``.odc``: one picture with a few dozen bytes of framing.

The stream form spends hundreds of bytes on what a stream needs (JSON headers with two
SHA-256 hashes, a sync point, an index, a footer); a OneDC picture can be smaller than
that. The still form keeps what the invariants need and nothing else::

    magic(8) | form(1) | flags(1) | codec id(1) [name] | width | height
    [model id(8)] [colour(4)] [params] | payload length | payload | crc32(4)

Byte 8 tells the forms apart: in the stream form it is the high byte of the ``OHDR``
length (at most ``0x7F``); here it is ``0x80`` plus the still layout version. Layout,
the codec table and the colour default: ``docs/odc-format.md`` section 12.

The codec is a small number from :data:`CODEC_IDS`, a frozen table (a number written
in a file never changes meaning), or :data:`ESCAPE` and the codec's registry name. The
model is named by the first 8 bytes of the SHA-256 of its weights: a reader gives it back
as a :class:`ModelRef` whose ``sha256`` holds those 16 hex digits and whose ``name`` is
empty (:func:`is_model_id`); the codec finds the weights that start so.
"""

from __future__ import annotations

import os
import re
import struct
import weakref
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from fractions import Fraction
from types import MappingProxyType
from typing import BinaryIO

from onedc_media.codec.contract import ModelRef
from onedc_media.container import cicp, headers
from onedc_media.container.bodies import uvarint
from onedc_media.container.chunks import MAGIC
from onedc_media.container.records import ColorInfo, Limits, StreamHeader
from onedc_media.container.source import Source
from onedc_media.container.writer import _discard, _open_temp, fsync_dir
from onedc_media.errors import (
    ChecksumError,
    LimitExceededError,
    OdcFormatError,
    TruncatedError,
    UnsupportedVersionError,
)

__all__ = [
    "CODEC_IDS",
    "ESCAPE",
    "MODEL_ID_BYTES",
    "STILL_COLOR",
    "STILL_VERSION",
    "StillLayout",
    "encode_still",
    "is_model_id",
    "is_still_form_byte",
    "read_still_header",
    "read_still_payload",
    "still_header",
    "write_still",
]

#: Bit 7 of byte 8 marks the still form; bits 0-6 are its layout version.
_FORM_BIT = 0x80
#: The layout version this module writes and the highest it reads.
STILL_VERSION = 1

FLAG_MODEL = 0x01  #: an 8-byte model id follows the size
FLAG_COLOR = 0x02  #: four colour code points follow (else :data:`STILL_COLOR`)
FLAG_PARAMS = 0x04  #: a JSON object of codec parameters follows
_RESERVED = 0xF8

#: Codec ids of the bundled codecs. Frozen: never renumber, never reuse a number; a new
#: codec gets the next free one. 0 is :data:`ESCAPE`.
CODEC_IDS: Mapping[str, int] = MappingProxyType(
    {"onedc": 1, "jpeg": 2, "webp": 3, "png": 4, "avif": 5, "hevc-intra": 6}
)
_CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}
#: Codec id meaning "the codec's name follows" (u8 length, 1..64 ASCII bytes).
ESCAPE = 0
_MAX_NAME = 64
_NAME = re.compile(r"[\x21-\x7e]{1,64}")

#: Bytes of the SHA-256 of the weights that name the model.
MODEL_ID_BYTES = 8
#: The colour a still has when it stores none: 8-bit sRGB, stored as R, G, B.
STILL_COLOR = ColorInfo(primaries="bt709", transfer="iec61966-2-1", matrix="gbr", range="full")
_COLOR_TABLES = (cicp.PRIMARIES, cicp.TRANSFER, cicp.MATRIX, cicp.RANGE)

#: What every still's single packet is: pts 0, duration 1 in a 1/1 time base, a keyframe.
_TIME_BASE = Fraction(1, 1)
_CRC = struct.Struct(">I")
_HEX = re.compile(r"[0-9a-f]{16,64}")


def is_still_form_byte(byte: int) -> bool:
    """Whether byte 8 of an ``.odc`` file (the one after the magic) opens a still."""
    return bool(byte & _FORM_BIT)


def is_model_id(ref: ModelRef | None) -> bool:
    """Whether *ref* is a still's model id (16 hex digits, no name) rather than a full
    record: a decoder must then find the weights whose SHA-256 starts with it."""
    return ref is not None and not ref.name and len(ref.sha256) == 2 * MODEL_ID_BYTES


# -- writing ---------------------------------------------------------------------------


def _model_id(ref: ModelRef) -> bytes:
    if not _HEX.fullmatch(ref.sha256):
        raise ValueError(
            f"model sha256 {ref.sha256!r} is not 16 to 64 lower-case hex digits: the still "
            "form names a model by the first 8 bytes of its SHA-256"
        )
    return bytes.fromhex(ref.sha256[: 2 * MODEL_ID_BYTES])


def _color_codes(color: ColorInfo) -> bytes:
    codes = []
    for f, table in zip(fields(ColorInfo), _COLOR_TABLES):
        name = getattr(color, f.name)
        code = cicp.code_of(table, name)
        if code is None:
            raise ValueError(f"color.{f.name} {name!r} has no H.273 code point: write the stream form")
        codes.append(code)
    return bytes(codes)


def _refuse(h: StreamHeader) -> None:
    """Raise ``ValueError`` for a field a still cannot hold (the stream form can)."""
    if h.media_type != "image":
        raise ValueError(f"a still holds one image, not a {h.media_type} stream")
    if not (h.width and h.height):
        raise ValueError("a still needs the picture size")
    extra = [
        name
        for name, bad in (
            ("pixel_format", h.pixel_format != "rgb24"),
            ("time_base", h.time_base != _TIME_BASE),
            ("frame_rate", h.frame_rate is not None),
            ("passthrough", h.passthrough),
            ("extradata", bool(h.extradata)),
            ("audio fields", bool(h.sample_rate or h.channels or h.channel_layout or h.sample_format)),
            ("metadata", bool(h.metadata)),
        )
        if bad
    ]
    if extra:
        raise ValueError(f"the still form cannot hold {', '.join(extra)}: write the stream form")


def encode_still(header: StreamHeader, payload: bytes, limits: Limits | None = None) -> list[bytes]:
    """The pieces of a still file, ready for ``write``: head, payload, CRC.

    ``header.codec_params`` are written only for a codec outside :data:`CODEC_IDS`: the
    table's codecs decode from the packet alone, their stream parameters only record the
    encoder's options.

    :raises ValueError: a field the still form cannot hold (use the stream form).
    :raises LimitExceededError: the payload is above ``limits.max_packet_size``.
    """
    limits = limits or Limits()
    h = headers.check_stream_header(header, limits)
    _refuse(h)
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
    if len(payload) > limits.max_packet_size:
        raise LimitExceededError(
            f"packet of {len(payload)} bytes is above the limit of {limits.max_packet_size} bytes"
        )
    flags = 0
    codec_id = CODEC_IDS.get(h.codec, ESCAPE)
    if codec_id == ESCAPE:
        if not _NAME.fullmatch(h.codec):
            raise ValueError(f"codec name {h.codec!r} is not 1 to {_MAX_NAME} printable ASCII characters")
        codec = bytes((ESCAPE, len(h.codec))) + h.codec.encode("ascii")
    else:
        codec = bytes((codec_id,))
    tail = [uvarint(h.width), uvarint(h.height)]
    if h.model is not None:
        flags |= FLAG_MODEL
        tail.append(_model_id(h.model))
    if h.color != STILL_COLOR:
        flags |= FLAG_COLOR
        tail.append(_color_codes(h.color))
    if h.codec_params and codec_id == ESCAPE:
        params = headers.dump_json(h.codec_params)
        if len(params) > limits.max_header_size:
            raise LimitExceededError(f"codec_params take {len(params)} bytes (limit {limits.max_header_size})")
        flags |= FLAG_PARAMS
        tail += [uvarint(len(params)), params]
    tail.append(uvarint(len(payload)))
    head = b"".join([MAGIC, bytes((_FORM_BIT | STILL_VERSION, flags)), codec, *tail])
    return [head, payload, _CRC.pack(zlib.crc32(payload, zlib.crc32(head)))]


def write_still(
    file: str | os.PathLike[str] | BinaryIO,
    header: StreamHeader,
    payload: bytes,
    *,
    limits: Limits | None = None,
) -> int:
    """Write one picture in the still form; return the bytes written.

    A path is written atomically (a temporary file beside it, fsynced, renamed on
    success), as :class:`~onedc_media.container.OutputContainer` does.
    """
    parts = encode_still(header, payload, limits)
    size = sum(len(p) for p in parts)
    if not isinstance(file, (str, os.PathLike)):
        for part in parts:
            file.write(part)
        return size
    path = os.fspath(file)
    fp, tmp = _open_temp(path)
    done = weakref.finalize(fp, _discard, fp, tmp)
    try:
        for part in parts:
            fp.write(part)
        fp.flush()
        os.fsync(fp.fileno())
        fp.close()
        os.replace(tmp, path)
        done.detach()
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    finally:
        done()
    return size


# -- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StillLayout:
    """What a reader learnt from a still's head: the stream it describes, the bytes of
    the head (the CRC covers them), and where the payload starts and how long it is."""

    header: StreamHeader
    head: bytes
    payload_start: int
    payload_length: int


class _Head:
    """Reads a still's head from a :class:`Source`, keeping every byte for the CRC."""

    def __init__(self, src: Source, first: bytes) -> None:
        self.src = src
        self.parts = [first]

    def take(self, n: int, what: str) -> bytes:
        data = self.src.read(n)
        if len(data) < n:
            raise TruncatedError(f"still: data ends inside the {what} at byte {self.src.pos}")
        self.parts.append(data)
        return data

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def uvarint(self, what: str, hi: int) -> int:
        value = shift = 0
        for i in range(10):
            byte = self.u8(what)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if i and not byte:
                    raise OdcFormatError(f"still: the {what} is not minimally encoded")
                if value > hi:
                    raise LimitExceededError(f"still: {what} {value} is above {hi}")
                return value
            shift += 7
        raise OdcFormatError(f"still: the {what} is longer than 10 bytes")


def read_still_header(src: Source, first: bytes, limits: Limits) -> StillLayout:
    """Read a still's head; *first* holds the bytes already read (magic and form byte).

    Nothing in the head is trusted beyond its bounds until the CRC at the end of the
    file matched (:func:`read_still_payload`).
    """
    version = first[-1] & ~_FORM_BIT
    if version != STILL_VERSION:
        raise UnsupportedVersionError(
            f"still layout version {version}; this reader reads version {STILL_VERSION}: "
            "upgrade onedc-media"
        )
    head = _Head(src, first)
    flags = head.u8("flags")
    if flags & _RESERVED:
        raise OdcFormatError(f"still: reserved flag bits set (0x{flags:02x})")
    codec_id = head.u8("codec id")
    if codec_id == ESCAPE:
        n = head.u8("codec name length")
        raw = head.take(n, "codec name")
        name = raw.decode("ascii", "replace")
        if not _NAME.fullmatch(name):
            raise OdcFormatError(f"still: bad codec name {raw!r}")
    elif codec_id in _CODEC_NAMES:
        name = _CODEC_NAMES[codec_id]
    else:
        raise UnsupportedVersionError(
            f"still: codec id {codec_id} is not in this reader's table: upgrade onedc-media"
        )
    width = head.uvarint("width", limits.max_dimension)
    height = head.uvarint("height", limits.max_dimension)
    if not (width and height):
        raise OdcFormatError(f"still: impossible picture size {width}x{height}")
    model = None
    if flags & FLAG_MODEL:
        model = ModelRef(name="", sha256=head.take(MODEL_ID_BYTES, "model id").hex())
    color = STILL_COLOR
    if flags & FLAG_COLOR:
        codes = head.take(4, "colour")
        names = [cicp.name_of(t, c) for t, c in zip(_COLOR_TABLES, codes)]
        if None in names:
            raise OdcFormatError(f"still: unknown colour code points {tuple(codes)}")
        color = ColorInfo(*names)  # type: ignore[arg-type]
    params: dict = {}
    if flags & FLAG_PARAMS:
        n = head.uvarint("codec parameters length", limits.max_header_size)
        params = headers.load_json(head.take(n, "codec parameters"), "still codec parameters")
    length = head.uvarint("payload length", limits.max_packet_size)
    header = StreamHeader(
        "image", name, width=width, height=height, color=color,
        codec_params=params, model=model, index=0,
    )  # fmt: skip

    def fail(msg: str) -> OdcFormatError:
        return OdcFormatError(f"still: {msg}")

    header = headers.check_stream_header(header, limits, fail)
    return StillLayout(header, b"".join(head.parts), src.pos, length)


def read_still_payload(src: Source, layout: StillLayout) -> bytes:
    """Read the payload and check the CRC over head and payload (*src* at the payload).

    :raises TruncatedError: the file ends before the payload and CRC.
    :raises ChecksumError: the CRC does not match: the head or the payload is damaged.
    """
    left = src.remaining
    need = layout.payload_length + _CRC.size
    if left is not None and need > left:
        raise TruncatedError(
            f"still: the picture needs {need} more bytes at byte {layout.payload_start}, {left} left"
        )
    payload = src.read(layout.payload_length)
    tail = src.read(_CRC.size)
    if len(payload) < layout.payload_length or len(tail) < _CRC.size:
        raise TruncatedError(f"still: data ends inside the picture at byte {src.pos}")
    if _CRC.unpack(tail)[0] != zlib.crc32(payload, zlib.crc32(layout.head)):
        raise ChecksumError("still: bad CRC (the header or the picture is damaged)")
    return payload


def still_header(header: StreamHeader) -> StreamHeader:
    """*header* as a still of it reads back: no codec parameters for a codec of the table,
    the model as its id."""
    model = header.model
    if model is not None:
        model = ModelRef(name="", sha256=_model_id(model).hex())
    params = header.codec_params if header.codec not in CODEC_IDS else {}
    return replace(header, model=model, codec_params=params, index=0)
