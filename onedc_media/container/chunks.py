"""Chunk framing: ``length | type | body | crc32``, as in PNG.

``length`` is a big-endian u32 counting the body only; ``type`` is four ASCII letters;
the CRC-32 (zlib / ISO-HDLC) covers type and body. A lower-case first letter (bit 5 of
the first type byte) marks an *ancillary* chunk a reader may skip when it does not know
the type; an upper-case first letter marks a *critical* chunk a reader must understand.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import NamedTuple

from onedc_media.container.records import Limits
from onedc_media.container.source import SAFEBLOCK, Source
from onedc_media.errors import ChecksumError, LimitExceededError, OdcFormatError, TruncatedError

__all__ = [
    "ANCILLARY_BIT",
    "CHUNK_OVERHEAD",
    "END",
    "FILE_HEADER",
    "INDEX",
    "MAGIC",
    "MAX_CHUNK_LENGTH",
    "PACKET",
    "STREAM_HEADER",
    "SYNC",
    "Chunk",
    "chunk_bytes",
    "crc_of",
    "is_critical",
    "read_chunk",
    "read_head",
]

#: The first eight bytes of every ``.odc`` file. Like PNG's: a high-bit byte (catches
#: 7-bit channels), the name, CR LF (catches line-ending conversion), ^Z (stops DOS
#: ``type``), LF (catches the reverse conversion).
MAGIC = b"\x8aODC\r\n\x1a\n"

FILE_HEADER = b"OHDR"  #: critical: versions, stream count, file metadata
STREAM_HEADER = b"STRM"  #: critical: one stream's header (JSON)
PACKET = b"PCKT"  #: critical: one packet
END = b"OEND"  #: critical: end of file and the fixed-size footer
SYNC = b"sync"  #: ancillary: sync point (resynchronisation after damage)
INDEX = b"indx"  #: ancillary: trailing keyframe index

ANCILLARY_BIT = 0x20
#: Bytes of framing around every chunk body: length, type, CRC.
CHUNK_OVERHEAD = 12
#: Largest body length the format allows (as PNG: 2**31 - 1).
MAX_CHUNK_LENGTH = (1 << 31) - 1

_HEAD = struct.Struct(">I4s")
_CRC = struct.Struct(">I")


class Chunk(NamedTuple):
    """A chunk whose CRC was checked: its type, the offset of its first byte, its body
    length and its body (``b""`` when it was not kept)."""

    type: bytes
    offset: int
    length: int
    body: bytes

    @property
    def end(self) -> int:
        """Offset of the byte after the chunk."""
        return self.offset + CHUNK_OVERHEAD + self.length


def is_critical(ctype: bytes) -> bool:
    return not ctype[0] & ANCILLARY_BIT


def _valid_type(ctype: bytes) -> bool:
    return len(ctype) == 4 and ctype.isalpha() and ctype.isascii()


def crc_of(ctype: bytes, *parts: bytes) -> int:
    crc = zlib.crc32(ctype)
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc


def chunk_bytes(ctype: bytes, *parts: bytes) -> list[bytes]:
    """The pieces of one chunk, ready for ``write``: head, body parts, CRC.

    Body parts are not copied, so a large payload is written straight from the
    caller's buffer (Pillow's ``putchunk``).
    """
    length = sum(len(p) for p in parts)
    if length > MAX_CHUNK_LENGTH:
        raise LimitExceededError(f"{ctype.decode()} chunk of {length} bytes is above 2**31 - 1")
    return [_HEAD.pack(length, ctype), *parts, _CRC.pack(crc_of(ctype, *parts))]


def _limit_for(ctype: bytes, limits: Limits) -> int:
    if ctype == PACKET:
        return limits.max_packet_size + 64  # payload + packet header (at most 33 bytes)
    if ctype in (FILE_HEADER, STREAM_HEADER):
        return limits.max_header_size
    if ctype == INDEX:
        return limits.max_index_size
    if ctype == SYNC:
        return 32
    if ctype == END:
        return 16
    return MAX_CHUNK_LENGTH


def read_head(src: Source) -> tuple[bytes, int] | None:
    """``(type, body length)`` of the chunk at ``src.pos``, reading its first 8 bytes
    only; ``None`` at a clean end of data.

    :raises TruncatedError: the data ends inside those 8 bytes.
    :raises OdcFormatError: bad type bytes, or a length above 2**31 - 1.
    """
    offset = src.pos
    head = src.read(8)
    if not head:
        return None
    if len(head) < 8:
        raise TruncatedError(f"data ends inside the chunk header at byte {offset}")
    length, ctype = _HEAD.unpack(head)
    if not _valid_type(ctype):
        raise OdcFormatError(f"bad chunk type {ctype!r} at byte {offset}")
    if length > MAX_CHUNK_LENGTH:
        raise OdcFormatError(f"{ctype.decode()} chunk at byte {offset} declares {length} bytes")
    return ctype, length


def read_chunk(
    src: Source,
    limits: Limits,
    *,
    keep: Callable[[bytes], bool] | None = None,
) -> Chunk | None:
    """Read and CRC-check the chunk at ``src.pos``; ``None`` at a clean end of data.

    The body of a chunk for which *keep* returns false is streamed through the CRC in
    pieces and dropped (``body`` is then ``b""``); by default every body is kept. Only
    kept bodies are held in memory, so only they are bounded by *limits*. Streaming a
    dropped body ends any recording *src* was doing (:meth:`Source.unmark`), so after
    damage inside such a chunk a pipe can only be searched forward from where reading
    stopped.

    :raises TruncatedError: the data ends inside the chunk.
    :raises LimitExceededError: the declared length is above *limits*.
    :raises ChecksumError: the CRC does not match.
    :raises OdcFormatError: the type bytes are not four ASCII letters.
    """
    offset = src.pos
    head = read_head(src)
    if head is None:
        return None
    ctype, length = head
    name = ctype.decode("ascii")
    kept = keep is None or keep(ctype)
    limit = _limit_for(ctype, limits) if kept else MAX_CHUNK_LENGTH
    if length > limit:
        raise LimitExceededError(
            f"{name} chunk at byte {offset} declares {length} bytes (limit {limit})"
        )
    left = src.remaining
    if left is not None and length + 4 > left:
        raise TruncatedError(
            f"{name} chunk at byte {offset} needs {length + 4} more bytes, {left} left"
        )
    if kept:
        body = src.read(length)
        crc = crc_of(ctype, body)
        complete = len(body) == length
    else:  # stream it through the CRC without holding it (nor letting src record it)
        src.unmark()
        body = b""
        crc = zlib.crc32(ctype)
        todo = length
        while todo:
            piece = src.read(min(SAFEBLOCK, todo))
            if not piece:
                break
            crc = zlib.crc32(piece, crc)
            todo -= len(piece)
        complete = not todo
    tail = src.read(4)
    if not complete or len(tail) < 4:
        raise TruncatedError(f"data ends inside the {name} chunk at byte {offset}")
    if _CRC.unpack(tail)[0] != crc:
        raise ChecksumError(f"bad CRC in the {name} chunk at byte {offset}")
    return Chunk(ctype, offset, length, body)
