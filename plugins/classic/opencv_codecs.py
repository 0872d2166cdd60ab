"""JPEG, WebP and PNG through OpenCV's ``imencode`` / ``imdecode``.

Packet format
-------------
Each packet is one complete, standard image file, exactly what OpenCV writes: a JFIF
JPEG, a RIFF WebP (simple lossy ``VP8 `` format) or a PNG. A packet extracted from an
``.odc`` file therefore opens in any image viewer, and the bytes counted for bpp are the
bytes a user would store. The stream parameters (:attr:`Encoder.params`) only record the
options used; the decoder needs nothing but the packet.

Colour
------
Frames are RGB; OpenCV's BGR order is converted at the boundary.

- ``jpeg``: JFIF YCbCr (BT.601 matrix, full range), chroma 4:2:0 by default
  (option ``subsampling``: 420, 422 or 444).
- ``webp``: VP8 YUV 4:2:0 (BT.601, limited range, as the WebP format fixes it).
- ``png``: 8-bit RGB, lossless.

All three handle any size from 1x1 up to the format's limit (JPEG 65535, WebP 16383
pixels per side); larger frames raise :class:`~onedc_media.errors.InvalidImageError`.

Decoding untrusted packets
--------------------------
Before OpenCV sees a packet, a small parser reads the picture size from the file header
(PNG ``IHDR``, the WebP ``VP8``/``VP8L``/``VP8X`` chunk, the JPEG ``SOFn`` segment), bounds
it against :data:`~onedc_media.codec.contract.MAX_FRAME_PIXELS`, and checks that the file
is complete (PNG ends with ``IEND``, JPEG with ``EOI``, the RIFF length matches). That
matters because libjpeg decodes a truncated JPEG "successfully" into grey. The decoded
picture must then have exactly the declared size. Every failure is a
:class:`~onedc_media.errors.BitstreamError`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from onedc_media.codec.contract import Decoder, Encoder, check_frames
from onedc_media.errors import BitstreamError, InvalidImageError, MediaError
from onedc_media_plugins.classic._common import ClassicCodec, as_bytes, check_declared_size

__all__ = ["JpegCodec", "PngCodec", "WebpCodec", "jpeg_size", "png_size", "webp_size"]

_IMREAD = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


# --- header parsers: (packet) -> (width, height), raising ValueError on malformed data ---

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a complete PNG file's ``IHDR`` chunk."""
    if not data.startswith(_PNG_MAGIC):
        raise ValueError("not a PNG file (bad signature)")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ValueError("PNG file without an IHDR chunk")
    if not data.endswith(_PNG_IEND):
        raise ValueError("PNG file is truncated (no IEND chunk at the end)")
    width, height = struct.unpack_from(">II", data, 16)
    return width, height


def webp_size(data: bytes) -> tuple[int, int]:
    """Canvas width and height from a complete, single-frame WebP file."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP file (bad RIFF header)")
    (riff_size,) = struct.unpack_from("<I", data, 4)
    if riff_size + 8 != len(data):
        raise ValueError(f"WebP RIFF size says {riff_size + 8} bytes, packet has {len(data)}")
    fourcc = data[12:16]
    if fourcc == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ValueError("WebP VP8 chunk without a key-frame start code")
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if fourcc == b"VP8L":
        if data[20] != 0x2F:
            raise ValueError("WebP VP8L chunk with a bad signature")
        (bits,) = struct.unpack_from("<I", data, 21)
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if fourcc == b"VP8X":
        if data[20] & 0x02:
            raise ValueError("animated WebP is not a single picture")
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    raise ValueError(f"WebP file with an unknown first chunk {fourcc!r}")


# SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) are not frame headers.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from a complete JPEG file's frame header (``SOFn``)."""
    if not data.startswith(b"\xff\xd8\xff"):
        raise ValueError("not a JPEG file (no SOI marker)")
    if not data.endswith(b"\xff\xd9"):
        raise ValueError("JPEG file is truncated (no EOI marker at the end)")
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            raise ValueError(f"JPEG segment with impossible length {length}")
        if marker in _JPEG_SOF:
            if length < 8 or pos + 9 > end:
                raise ValueError("JPEG frame header is truncated")
            height, width = struct.unpack_from(">HH", data, pos + 5)
            if height == 0:
                raise ValueError("JPEG with the height deferred to a DNL marker")
            return width, height
        if marker in (0xDA, 0xD9):
            raise ValueError("JPEG scan before any frame header")
        pos += 2 + length
    raise ValueError("JPEG file without a frame header")


# --- encoder / decoder --------------------------------------------------------------


class OpenCVEncoder(Encoder):
    """Encodes each frame with ``cv2.imencode(ext, bgr, flags)``."""

    def __init__(
        self, codec: str, ext: str, flags: Sequence[int], max_side: int, params: dict[str, Any]
    ) -> None:
        self.codec = codec
        self.ext = ext
        self.flags = list(flags)
        self.max_side = max_side
        self.params = params

    def encode(self, frames: Sequence[np.ndarray]) -> list[bytes]:
        packets = []
        for i, frame in enumerate(check_frames(frames)):
            height, width = frame.shape[:2]
            if max(width, height) > self.max_side:
                raise InvalidImageError(
                    f"frame {i}: {width}x{height} is larger than {self.codec} allows "
                    f"({self.max_side} pixels per side)"
                )
            bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            try:
                ok, buf = cv2.imencode(self.ext, bgr, self.flags)
            except cv2.error as exc:
                raise MediaError(f"frame {i}: {self.codec} encoding failed: {exc}") from exc
            if not ok:
                raise MediaError(f"frame {i}: {self.codec} encoding failed")
            packets.append(buf.tobytes())
        return packets


class OpenCVDecoder(Decoder):
    """Checks the file header (size, completeness), then ``cv2.imdecode``."""

    def __init__(self, codec: str, read_size: Callable[[bytes], tuple[int, int]]) -> None:
        self.codec = codec
        self.read_size = read_size

    def decode(self, packets: Sequence[bytes]) -> list[np.ndarray]:
        return [self._decode_one(i, packet) for i, packet in enumerate(packets)]

    def _decode_one(self, index: int, packet: object) -> np.ndarray:
        data = as_bytes(self.codec, index, packet)
        try:
            width, height = self.read_size(data)
        except (ValueError, struct.error, IndexError) as exc:
            raise BitstreamError(f"{self.codec} packet {index}: {exc}") from None
        check_declared_size(self.codec, index, width, height)
        try:
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _IMREAD)
        except cv2.error as exc:
            raise BitstreamError(f"{self.codec} packet {index}: cannot decode: {exc}") from None
        if bgr is None:
            raise BitstreamError(f"{self.codec} packet {index}: cannot decode")
        if bgr.shape != (height, width, 3) or bgr.dtype != np.uint8:
            raise BitstreamError(
                f"{self.codec} packet {index}: decoded {bgr.shape} {bgr.dtype}, header "
                f"says {width}x{height}"
            )
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class _OpenCVCodec(ClassicCodec):
    ext = ""
    max_side = 0
    read_size: Callable[[bytes], tuple[int, int]]

    def flags(self, options: Mapping[str, Any]) -> list[int]:
        raise NotImplementedError

    def make_encoder(self, options: dict[str, Any]) -> Encoder:
        return OpenCVEncoder(self.info.name, self.ext, self.flags(options), self.max_side, options)

    def make_decoder(self) -> Decoder:
        return OpenCVDecoder(self.info.name, type(self).read_size)


_JPEG_SAMPLING = {
    "420": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    "422": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    "444": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
}


class JpegCodec(_OpenCVCodec):
    """Baseline JPEG through libjpeg-turbo."""

    ext = ".jpg"
    max_side = 65535
    read_size = staticmethod(jpeg_size)

    def flags(self, options: Mapping[str, Any]) -> list[int]:
        return [
            cv2.IMWRITE_JPEG_QUALITY,
            options["quality"],
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            _JPEG_SAMPLING[options["subsampling"]],
        ]


class WebpCodec(_OpenCVCodec):
    """Lossy WebP (VP8 intra) through libwebp."""

    ext = ".webp"
    max_side = 16383
    read_size = staticmethod(webp_size)

    def flags(self, options: Mapping[str, Any]) -> list[int]:
        return [cv2.IMWRITE_WEBP_QUALITY, options["quality"]]


class PngCodec(_OpenCVCodec):
    """Lossless 8-bit RGB PNG through libpng."""

    ext = ".png"
    max_side = (1 << 31) - 1
    read_size = staticmethod(png_size)

    def flags(self, options: Mapping[str, Any]) -> list[int]:
        return [cv2.IMWRITE_PNG_COMPRESSION, options["compression"]]
