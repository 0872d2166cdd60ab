"""The OneDC picture bitstream: one ``.odc`` packet payload per picture.

Layout (little-endian), version 1::

    offset  size  field
    0       4     magic b"ODCP"
    4       1     version (1)
    5       1     flags: bit 0 = the picture carries a latent residual layer;
                  bit 1 = the layer is drawn by the model's fine decoder (only with bit 0);
                  others 0
    6       1     rate point q (0-based)
    7       1     band rows R of y per chunk (even, >= 2)
    8       4     width  (1 .. 65536)
    12      4     height (1 .. 65536)
    16      2     chunk count n
    18      8n    chunk table: n x (u32 length, u32 CRC-32C of the body)
    18+8n   4     CRC-32C of bytes [0, 18+8n)
    22+8n   ...   chunk bodies, in table order

Chunk 0 holds ``z`` (fixed-length FSQ tokens, raster order). Chunks 1.. hold ``y``: for
stage k = 0..3 (the 2x2 quad context order), for band b (rows ``[bR, (b+1)R)`` of the
``y`` grid), the rANS words of that stage's symbols in that band. Every length and the
chunk count are implied by the dimensions, so they are checked before anything is
allocated; every body is CRC-checked before the entropy decoder sees it.

With flag bit 0 one more chunk follows the ``y`` chunks: the latent residual layer
(:mod:`~onedc_media.model.residual`). Readers that predate the flag refuse such a
picture by its flags ("unknown OneDC picture flags") rather than decode it without the
layer; pictures without it are byte-identical to those written before the flag existed.

With flag bit 1 as well, the residual chunk starts with the 8-byte id of the *fine
decoder* (the first 8 bytes of the SHA-256 of its weights file), the VAE decoder the
layer was fitted through and that must draw it; the layer's own fields follow. Without
bit 1 the layer is drawn by the model's VAE decoder (pictures written before bit 1
existed). Readers without bit 1 refuse such pictures by their flags.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass

import google_crc32c

from onedc_media.codec.contract import MAX_FRAME_PIXELS, MAX_FRAME_SIDE
from onedc_media.errors import BitstreamError, ChecksumError, LimitExceededError, TruncatedError

__all__ = [
    "FINE_ID_BYTES",
    "FLAG_FINE_DECODER",
    "FLAG_RESIDUAL",
    "MAGIC",
    "VERSION",
    "PictureHeader",
    "add_residual",
    "band_count",
    "pack_picture",
    "unpack_picture",
]

MAGIC = b"ODCP"
VERSION = 1
#: Header flag: the last chunk is a latent residual layer.
FLAG_RESIDUAL = 0x01
#: Header flag: the residual layer is drawn by the fine decoder its chunk names.
FLAG_FINE_DECODER = 0x02
#: Bytes of the fine decoder's id at the start of the residual chunk (with FLAG_FINE_DECODER).
FINE_ID_BYTES = 8
_FIXED = struct.Struct("<4sBBBBIIH")
_ENTRY = struct.Struct("<II")
_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class PictureHeader:
    q: int
    width: int
    height: int
    band_rows: int
    residual: bool = False  #: the last chunk is a latent residual layer
    fine_decoder: bool = False  #: the layer is drawn by the fine decoder the chunk names

    def __post_init__(self) -> None:
        if self.fine_decoder and not self.residual:
            raise ValueError("fine_decoder needs a residual layer")

    @property
    def y_size(self) -> tuple[int, int]:
        """Rows and columns of the ``y`` grid (1/16 of the size padded to 64)."""
        return (-(-self.height // 64) * 4, -(-self.width // 64) * 4)

    @property
    def z_size(self) -> tuple[int, int]:
        return (-(-self.height // 64), -(-self.width // 64))


def band_count(y_rows: int, band_rows: int) -> int:
    return -(-y_rows // band_rows)


def crc32c(data: bytes) -> int:
    return google_crc32c.value(data)


def pack_picture(header: PictureHeader, chunks: list[bytes]) -> bytes:
    flags = (FLAG_RESIDUAL if header.residual else 0) | (FLAG_FINE_DECODER if header.fine_decoder else 0)
    fixed = _FIXED.pack(MAGIC, VERSION, flags, header.q, header.band_rows, header.width,
                        header.height, len(chunks))
    table = b"".join(_ENTRY.pack(len(c), crc32c(c)) for c in chunks)
    head = fixed + table
    return head + _CRC.pack(crc32c(head)) + b"".join(chunks)


def add_residual(payload: bytes, chunk: bytes, *, num_rates: int, fine_id: bytes | None = None) -> bytes:
    """*payload* (a picture without the layer) with the residual-layer *chunk* appended and
    its flag set: the ``y`` chunks are kept as coded. With *fine_id* (the fine decoder's
    id, :data:`FINE_ID_BYTES` bytes) the layer is marked as drawn by that decoder."""
    header, chunks = unpack_picture(payload, num_rates=num_rates)
    if header.residual:
        raise ValueError("the picture already carries a residual layer")
    if fine_id is not None and len(fine_id) != FINE_ID_BYTES:
        raise ValueError(f"a fine decoder id has {FINE_ID_BYTES} bytes, got {len(fine_id)}")
    head = dataclasses.replace(header, residual=True, fine_decoder=fine_id is not None)
    return pack_picture(head, [*chunks, (fine_id or b"") + bytes(chunk)])


def unpack_picture(data: bytes, *, num_rates: int, z_chunk_bytes: int | None = None
                   ) -> tuple[PictureHeader, list[bytes]]:
    """Parse and verify a picture payload; every failure is an ``OdcFormatError``."""
    data = bytes(data)
    if len(data) < _FIXED.size:
        raise TruncatedError(f"OneDC picture too short ({len(data)} bytes)")
    magic, version, flags, q, band_rows, width, height, n = _FIXED.unpack_from(data, 0)
    if magic != MAGIC:
        raise BitstreamError("not a OneDC picture (bad magic)")
    if version != VERSION:
        raise BitstreamError(f"OneDC picture version {version} is not supported (this reader: {VERSION})")
    if flags & ~(FLAG_RESIDUAL | FLAG_FINE_DECODER):
        raise BitstreamError(f"unknown OneDC picture flags {flags:#x}")
    if flags & FLAG_FINE_DECODER and not flags & FLAG_RESIDUAL:
        raise BitstreamError("OneDC picture names a fine decoder but has no residual layer")
    if not (1 <= width <= MAX_FRAME_SIDE and 1 <= height <= MAX_FRAME_SIDE) or width * height > MAX_FRAME_PIXELS:
        raise LimitExceededError(f"OneDC picture size {width}x{height} is out of bounds")
    if q >= num_rates:
        raise BitstreamError(f"rate point {q + 1} does not exist in this model ({num_rates} rate points)")
    if band_rows < 2 or band_rows % 2:
        raise BitstreamError(f"invalid band height {band_rows}")
    header = PictureHeader(q=q, width=width, height=height, band_rows=band_rows,
                           residual=bool(flags & FLAG_RESIDUAL),
                           fine_decoder=bool(flags & FLAG_FINE_DECODER))
    expect = 1 + 4 * band_count(header.y_size[0], band_rows) + header.residual
    if n != expect:
        raise BitstreamError(f"OneDC picture has {n} chunks, expected {expect}")
    head_len = _FIXED.size + _ENTRY.size * n
    if len(data) < head_len + _CRC.size:
        raise TruncatedError("OneDC picture header is truncated")
    (head_crc,) = _CRC.unpack_from(data, head_len)
    if crc32c(data[:head_len]) != head_crc:
        raise ChecksumError("OneDC picture header checksum mismatch")
    entries = [_ENTRY.unpack_from(data, _FIXED.size + i * _ENTRY.size) for i in range(n)]
    pos = head_len + _CRC.size
    total = sum(length for length, _ in entries)
    if pos + total != len(data):
        if pos + total > len(data):
            raise TruncatedError(f"OneDC picture is truncated ({len(data)} of {pos + total} bytes)")
        raise BitstreamError("OneDC picture has trailing bytes")
    if z_chunk_bytes is not None and entries[0][0] != z_chunk_bytes:
        raise BitstreamError(f"z chunk has {entries[0][0]} bytes, expected {z_chunk_bytes}")
    chunks = []
    for i, (length, crc) in enumerate(entries):
        body = data[pos : pos + length]
        if crc32c(body) != crc:
            raise ChecksumError(f"OneDC picture chunk {i} checksum mismatch")
        chunks.append(body)
        pos += length
    return header, chunks
