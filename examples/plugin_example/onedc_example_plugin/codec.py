"""The implementation of ``example-zlib``.

Packet format (big-endian): ``b"EXZ1" | width u32 | height u32 | zlib(RGB bytes)``.
"""

import struct
import zlib

import numpy as np

from onedc_media.codec import Codec, Decoder, Encoder, check_frames
from onedc_media.codec.contract import MAX_FRAME_PIXELS
from onedc_media.errors import BitstreamError

HEADER = struct.Struct(">4sII")
MAGIC = b"EXZ1"


class ZlibEncoder(Encoder):
    def __init__(self, level):
        self.level = level
        self.params = {"level": level}  # stored in the stream header

    def encode(self, frames):
        packets = []
        for frame in check_frames(frames):  # HxWx3 uint8, or InvalidImageError
            height, width = frame.shape[:2]
            body = zlib.compress(frame.tobytes(), self.level)
            packets.append(HEADER.pack(MAGIC, width, height) + body)
        return packets


class ZlibDecoder(Decoder):
    def decode(self, packets):
        return [self._decode_one(i, bytes(p)) for i, p in enumerate(packets)]

    def _decode_one(self, index, data):
        if len(data) < HEADER.size:
            raise BitstreamError(f"example-zlib packet {index}: truncated header")
        magic, width, height = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise BitstreamError(f"example-zlib packet {index}: bad magic {magic!r}")
        # Bound the declared size before allocating anything for it.
        if not (0 < width * height <= MAX_FRAME_PIXELS):
            raise BitstreamError(f"example-zlib packet {index}: bad size {width}x{height}")
        expected = width * height * 3
        inflater = zlib.decompressobj()
        try:
            # max_length caps the output: a zip bomb cannot exceed the declared size.
            raw = inflater.decompress(data[HEADER.size :], expected)
            if inflater.unconsumed_tail:  # the end of the stream (checksum), or too much data
                raw += inflater.decompress(inflater.unconsumed_tail, 1)
        except zlib.error as exc:
            raise BitstreamError(f"example-zlib packet {index}: {exc}") from None
        if len(raw) != expected or not inflater.eof or inflater.unused_data:
            raise BitstreamError(f"example-zlib packet {index}: truncated or damaged")
        return np.frombuffer(raw, np.uint8).reshape(height, width, 3).copy()


class ZlibCodec(Codec):
    """``self.info`` is the CodecInfo declared in ``__init__.py``."""

    def encoder(self, options, *, device=None):
        options = self.info.resolve_options(options)  # defaults, types, ranges
        return ZlibEncoder(options["level"])

    def decoder(self, params, *, model=None, device=None, options=None):
        return ZlibDecoder()
