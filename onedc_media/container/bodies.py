"""Binary bodies of the ``PCKT``, ``sync``, ``indx`` and ``OEND`` chunks.

Integers inside these bodies are unsigned LEB128 varints (``uvarint``, at most 10 bytes,
minimal encoding) or zigzag-mapped signed varints (``svarint``), as in Protocol Buffers;
fixed-width fields are big-endian. Decoders raise ``OdcFormatError`` on anything
malformed, but callers only decode bodies whose CRC already matched.
"""

from __future__ import annotations

import struct

from onedc_media.container.records import IndexEntry, Packet
from onedc_media.errors import OdcFormatError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "SYNC_BODY_SIZE",
    "SYNC_MARKER",
    "SYNC_PATTERN",
    "decode_end",
    "decode_index",
    "decode_packet",
    "decode_sync",
    "encode_end",
    "encode_index_entry",
    "encode_packet_header",
    "encode_sync",
    "uvarint",
]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
_U64_MAX = (1 << 64) - 1

# PCKT flags byte.
KEYFRAME = 0x01
HAS_PTS = 0x02
DTS_SHIFT = 2  # two bits: 0 no dts, 1 dts == pts, 2 dts stored, 3 invalid
RESERVED = 0xF0

#: The distinctive 16 bytes that open every sync chunk body.
SYNC_MARKER = b"\xd9ODCSYNC\r\n\x1a\n\xa5\x5a\x96\x69"
SYNC_BODY_SIZE = 32
#: What a reader searches for after damage: a sync chunk's length, type and marker.
SYNC_PATTERN = struct.pack(">I", SYNC_BODY_SIZE) + b"sync" + SYNC_MARKER

_SYNC = struct.Struct(">16sQQ")
_END = struct.Struct(">QQ")


def uvarint(n: int) -> bytes:
    """Unsigned LEB128 (7 bits a byte, low first, high bit = more follow)."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _unzigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


class _Cursor:
    """Reads varints and bytes from a body; every failure is an ``OdcFormatError``."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def fail(self, msg: str) -> OdcFormatError:
        return OdcFormatError(f"{self.what}: {msg}")

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("body too short")
        self.pos += 1
        return self.data[self.pos - 1]

    def uvarint(self, maximum: int = _U64_MAX) -> int:
        value = shift = 0
        for i in range(10):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if i and not byte:
                    raise self.fail("varint not minimally encoded")
                if value > maximum:
                    raise self.fail(f"value {value} out of range")
                return value
            shift += 7
        raise self.fail("varint longer than 10 bytes")

    def svarint(self) -> int:
        return _unzigzag(self.uvarint())

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out


def encode_packet_header(packet: Packet) -> bytes:
    """Everything of a ``PCKT`` body before the payload (1 to 41 bytes)."""
    flags = KEYFRAME if packet.keyframe else 0
    parts = [b"", uvarint(packet.stream_index)]
    if packet.pts is not None:
        flags |= HAS_PTS
        parts.append(uvarint(_zigzag(packet.pts)))
    if packet.dts is not None:
        if packet.dts == packet.pts:
            flags |= 1 << DTS_SHIFT
        else:
            flags |= 2 << DTS_SHIFT
            parts.append(uvarint(_zigzag(packet.dts)))
    parts.append(uvarint(packet.duration))
    parts[0] = bytes((flags,))
    return b"".join(parts)


def decode_packet(body: bytes, n_streams: int, offset: int) -> Packet:
    cur = _Cursor(body, f"PCKT chunk at byte {offset}")
    flags = cur.u8()
    if flags & RESERVED:
        raise cur.fail(f"reserved flag bits set (0x{flags:02x})")
    stream = cur.uvarint()
    if stream >= n_streams:
        raise cur.fail(f"stream index {stream}, file has {n_streams} streams")
    pts = cur.svarint() if flags & HAS_PTS else None
    dts_mode = (flags >> DTS_SHIFT) & 3
    if dts_mode == 3 or (dts_mode == 1 and pts is None):
        raise cur.fail(f"invalid dts mode {dts_mode}")
    dts = None if dts_mode == 0 else pts if dts_mode == 1 else cur.svarint()
    duration = cur.uvarint(INT64_MAX)
    return Packet(stream, cur.rest(), pts, dts, duration, bool(flags & KEYFRAME))


def encode_sync(offset: int, packets_before: int) -> bytes:
    return _SYNC.pack(SYNC_MARKER, offset, packets_before)


def decode_sync(body: bytes, offset: int) -> int:
    """Check a sync body found at *offset*; return the packet count it records."""
    if len(body) != SYNC_BODY_SIZE:
        raise OdcFormatError(f"sync chunk at byte {offset}: body of {len(body)} bytes, not 32")
    marker, where, count = _SYNC.unpack(body)
    if marker != SYNC_MARKER or where != offset:
        raise OdcFormatError(f"sync chunk at byte {offset}: bad marker or offset {where}")
    return count


def encode_index_entry(entry: IndexEntry, previous_offset: int) -> bytes:
    """One ``indx`` entry; *previous_offset* is the last entry's offset (0 for the first)."""
    pts = b"\x00" if entry.pts is None else b"\x01" + uvarint(_zigzag(entry.pts))
    return uvarint(entry.stream_index) + pts + uvarint(entry.offset - previous_offset)


def decode_index(body: bytes, n_streams: int, lo: int, hi: int) -> list[IndexEntry]:
    """Parse an index body; every offset must lie in ``[lo, hi)`` and increase."""
    cur = _Cursor(body, "indx chunk")
    count = cur.uvarint()
    if count > len(body) // 3:  # an entry takes at least 3 bytes
        raise cur.fail(f"{count} entries cannot fit in {len(body)} bytes")
    entries = []
    prev = 0
    for _ in range(count):
        stream = cur.uvarint()
        if stream >= n_streams:
            raise cur.fail(f"stream index {stream}, file has {n_streams} streams")
        flags = cur.u8()
        if flags > 1:
            raise cur.fail(f"bad entry flags 0x{flags:02x}")
        pts = cur.svarint() if flags else None
        delta = cur.uvarint()
        offset = prev + delta
        if (entries and not delta) or not lo <= offset < hi:
            raise cur.fail(f"entry offset {offset} outside [{lo}, {hi}) or not increasing")
        entries.append(IndexEntry(stream, pts, offset))
        prev = offset
    if cur.pos != len(body):
        raise cur.fail("trailing bytes after the last entry")
    return entries


def encode_end(index_offset: int, packet_count: int) -> bytes:
    return _END.pack(index_offset, packet_count)


def decode_end(body: bytes, offset: int) -> tuple[int, int]:
    """``(index_offset, packet_count)`` of an ``OEND`` body; index_offset 0 = no index."""
    if len(body) != _END.size:
        raise OdcFormatError(f"OEND chunk at byte {offset}: body of {len(body)} bytes, not 16")
    return _END.unpack(body)
