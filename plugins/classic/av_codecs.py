"""AV1-intra (``avif``) and HEVC-intra (``hevc-intra``) through PyAV / FFmpeg.

Each frame is encoded on its own, by a fresh encoder, as one intra (key) picture, so a
packet decodes without any other and the same frame always gives the same bytes whatever
else is in the batch (DESIGN invariant 7 regenerates intra pictures by re-encoding).

Why these libraries
-------------------
``avif`` uses SVT-AV1 (PyAV ``libsvtav1``, all-intra: ``keyint=1``) to encode and dav1d
(PyAV ``libdav1d``) to decode, so decoding never needs the encoder library. SVT-AV1
rather than libaom (Pillow's AVIF plugin): its bytes do not change with the thread
count, and it is faster at equal quality (``benchmarks/README.md`` compares them). A raw
AV1 temporal unit also avoids the HEIF boxes an ``.avif`` file adds per picture, which
would distort bpp at low rates: the stream header of the ``.odc`` file plays the role of
those boxes.

``hevc-intra`` uses x265 (PyAV ``libx265``) with ``wpp=1:lookahead-slices=0`` and
``frame-threads=1``, which makes the output independent of the thread count, and
``info=0``, which drops the ~2 kB SEI message where x265 writes its version and options.
FFmpeg's native ``hevc`` decoder decodes.

Packet format
-------------
A 14-byte header, then the payload (big-endian)::

    offset size  field
    0      4     magic: b"AV1I" (avif) or b"HEVI" (hevc-intra)
    4      1     version = 1
    5      1     flags: bit 0 = full-range YCbCr; bits 1-7 are zero
    6      2     width - 1   (the picture size before padding)
    8      2     height - 1
    10     4     CRC-32 (zlib) of the payload
    14     ...   payload: an AV1 temporal unit (low-overhead OBU format: sequence
                 header + one key frame) or an HEVC Annex-B access unit (VPS, SPS,
                 PPS and one IDR picture)

The CRC is checked before a decoder sees the payload, so truncated or damaged packets
fail cleanly: FFmpeg decoders conceal most errors rather than report them. Payloads that
pass the CRC are still untrusted: the decoder runs with ``err_detect=...+explode`` (stop
at the first error), the size in the header bounds what it may allocate (FFmpeg's
``max_pixels``), and the picture must come out at exactly the declared size.

Colour and sizes
----------------
RGB is converted to 8-bit YCbCr 4:2:0 with the BT.709 matrix in full range, and back
with the same matrix and range (signalled in the bitstream's colour description too).
The conversions use swscale with area downsampling and bicubic chroma upsampling,
``accurate_rnd`` and ``bitexact`` (reproducible on every CPU), which lose far less in the
RGB -> 4:2:0 -> RGB round trip than swscale's default flags (``benchmarks/README.md``).

4:2:0 needs even sizes and the encoders have minimum sizes: smaller or odd frames are
padded by repeating the last row / column, and the decoder crops back to the size in the
header. 1x1 therefore works, at the cost of coding a 16x16 picture. x265 refuses pictures
under 16x16; some SVT-AV1 builds corrupt their heap and abort the process on an 8x8
picture, so AV1 pictures are padded to 16x16 too. The decoder also accepts AV1 pictures
padded only to 8x8, as older packets are.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
from av.video.reformatter import Interpolation
from onedc_media_plugins.classic._common import ClassicCodec, as_bytes, check_declared_size

from onedc_media.codec.contract import Decoder, Encoder, check_frames
from onedc_media.errors import BitstreamError, MediaError, PluginError
from onedc_media.pipeline.media import create_encoder

__all__ = [
    "AvifCodec",
    "HEADER",
    "HevcIntraCodec",
    "IntraSpec",
    "avif_crf",
    "hevc_crf",
    "pack_packet",
    "unpack_packet",
]

#: magic, version, flags, width - 1, height - 1, crc32 of the payload.
HEADER = struct.Struct(">4sBBHHI")
VERSION = 1
FLAG_FULL_RANGE = 0x01

_TO_YUV = Interpolation.AREA | Interpolation.ACCURATE_RND | Interpolation.BITEXACT
_TO_RGB = (
    Interpolation.BICUBIC
    | Interpolation.FULL_CHR_H_INT
    | Interpolation.ACCURATE_RND
    | Interpolation.BITEXACT
)
_BT709 = 1  # AVCOL_SPC / AVCOL_PRI / AVCOL_TRC value of BT.709
_JPEG_RANGE = 2  # AVCOL_RANGE_JPEG: full range


def avif_crf(quality: int) -> int:
    """SVT-AV1 CRF (1..63, lower is better) for a quality of 1..100 (higher is better)."""
    return round(1 + (100 - quality) * 62 / 99)


def hevc_crf(quality: int) -> float:
    """x265 CRF (0..51, lower is better) for a quality of 1..100 (higher is better)."""
    return 51 * (100 - quality) / 100


@dataclass(frozen=True)
class IntraSpec:
    """What differs between the two PyAV intra codecs."""

    codec: str  #: onedc-media codec name
    magic: bytes
    encoder: str  #: FFmpeg encoder name
    decoder: str  #: FFmpeg decoder name
    min_side: int  #: smallest picture the encoder is given (after padding)
    #: every ``min_side`` packets were ever written with, so older packets still decode
    decode_min_sides: tuple[int, ...]


AVIF = IntraSpec("avif", b"AV1I", "libsvtav1", "libdav1d", 16, (16, 8))
HEVC = IntraSpec("hevc-intra", b"HEVI", "libx265", "hevc", 16, (16,))


def pack_packet(spec: IntraSpec, width: int, height: int, payload: bytes) -> bytes:
    """The packet for *payload*, a picture of *width* x *height* before padding."""
    header = HEADER.pack(
        spec.magic, VERSION, FLAG_FULL_RANGE, width - 1, height - 1, zlib.crc32(payload)
    )
    return header + payload


def unpack_packet(spec: IntraSpec, index: int, data: bytes) -> tuple[int, int, bool, bytes]:
    """Check a packet's header and CRC; return ``(width, height, full_range, payload)``."""
    name = spec.codec
    if len(data) <= HEADER.size:
        raise BitstreamError(f"{name} packet {index}: {len(data)} bytes is too short")
    magic, version, flags, w1, h1, crc = HEADER.unpack_from(data)
    if magic != spec.magic:
        raise BitstreamError(f"{name} packet {index}: bad magic {magic!r}, not a {name} packet")
    if version != VERSION:
        raise BitstreamError(f"{name} packet {index}: unsupported packet version {version}")
    if flags & ~FLAG_FULL_RANGE:
        raise BitstreamError(f"{name} packet {index}: reserved flag bits set ({flags:#04x})")
    width, height = w1 + 1, h1 + 1
    check_declared_size(name, index, width, height)
    payload = data[HEADER.size :]
    if zlib.crc32(payload) != crc:
        raise BitstreamError(f"{name} packet {index}: CRC mismatch (truncated or damaged)")
    return width, height, bool(flags & FLAG_FULL_RANGE), payload


def _coded_size(width: int, height: int, min_side: int) -> tuple[int, int]:
    """The padded size the encoder codes: even, and at least *min_side*."""
    return max(min_side, width + (width & 1)), max(min_side, height + (height & 1))


def _aligned(n: int) -> int:
    return (n + 127) // 64 * 64


def _check_available(name: str, mode: str) -> None:
    try:
        av.codec.Codec(name, mode)
    except Exception as exc:  # UnknownCodecError, or FFmpeg without that library
        what = "encoder" if mode == "w" else "decoder"
        raise PluginError(f"this PyAV build has no {name} {what} ({exc})") from None


class IntraEncoder(Encoder):
    """One fresh FFmpeg encoder per frame; one intra picture per packet."""

    def __init__(self, spec: IntraSpec, codec_options: dict[str, str], params: dict[str, Any]):
        _check_available(spec.encoder, "w")
        self.spec = spec
        self.codec_options = codec_options
        self.params = params

    def encode(self, frames: Sequence[np.ndarray]) -> list[bytes]:
        return [self._encode_one(i, frame) for i, frame in enumerate(check_frames(frames))]

    def _encode_one(self, index: int, frame: np.ndarray) -> bytes:
        height, width = frame.shape[:2]
        coded_w, coded_h = _coded_size(width, height, self.spec.min_side)
        if (coded_w, coded_h) != (width, height):
            frame = np.pad(frame, ((0, coded_h - height), (0, coded_w - width), (0, 0)), "edge")
        yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
            format="yuv420p",
            dst_colorspace="ITU709",
            dst_color_range="JPEG",
            interpolation=_TO_YUV,
        )
        yuv.pts = 0
        try:
            ctx = create_encoder(self.spec.encoder)
            ctx.width, ctx.height = coded_w, coded_h
            ctx.pix_fmt = "yuv420p"
            ctx.time_base = Fraction(1, 25)
            ctx.color_range = _JPEG_RANGE
            ctx.colorspace = ctx.color_primaries = ctx.color_trc = _BT709
            ctx.options = dict(self.codec_options)
            out = ctx.encode(yuv) + ctx.encode(None)
        except av.FFmpegError as exc:
            raise MediaError(f"frame {index}: {self.spec.encoder} failed: {exc}") from exc
        payload = b"".join(bytes(p) for p in out)
        if not payload:
            raise MediaError(f"frame {index}: {self.spec.encoder} produced no data")
        return pack_packet(self.spec, width, height, payload)


class IntraDecoder(Decoder):
    """Checks header and CRC, then decodes the payload with a fresh FFmpeg decoder."""

    def __init__(self, spec: IntraSpec) -> None:
        _check_available(spec.decoder, "r")
        self.spec = spec

    def decode(self, packets: Sequence[bytes]) -> list[np.ndarray]:
        return [self._decode_one(i, packet) for i, packet in enumerate(packets)]

    def _decode_one(self, index: int, packet: object) -> np.ndarray:
        name = self.spec.codec
        data = as_bytes(name, index, packet)
        width, height, full_range, payload = unpack_packet(self.spec, index, data)
        coded = {_coded_size(width, height, m) for m in self.spec.decode_min_sides}
        coded_w, coded_h = max(coded)
        try:
            ctx = av.CodecContext.create(self.spec.decoder, "r")
            # FFmpeg refuses, before allocating, any picture larger than the header
            # declares (with slack: it checks block- and stride-aligned sizes).
            ctx.options = {
                "max_pixels": str(_aligned(coded_w) * _aligned(coded_h)),
                "err_detect": "crccheck+bitstream+buffer+explode",
            }
            frames = ctx.decode(av.Packet(payload)) + ctx.decode(None)
        except av.FFmpegError as exc:
            raise BitstreamError(f"{name} packet {index}: cannot decode: {exc}") from None
        if len(frames) != 1:
            raise BitstreamError(f"{name} packet {index}: {len(frames)} pictures, expected 1")
        yuv = frames[0]
        if (yuv.width, yuv.height) not in coded or yuv.format.name not in (
            "yuv420p",
            "yuvj420p",
        ):
            raise BitstreamError(
                f"{name} packet {index}: decoded {yuv.width}x{yuv.height} {yuv.format.name}, "
                f"expected {coded_w}x{coded_h} yuv420p"
            )
        # Rebuild the frame from its planes: the decoder's frame carries colour metadata
        # (chroma siting among it) that swscale would honour, and the encoder's frame,
        # built from an array, had none. The same conventions both ways lose least.
        planes = av.VideoFrame.from_ndarray(yuv.to_ndarray(), format="yuv420p")
        rgb = planes.reformat(
            format="rgb24",
            src_colorspace="ITU709",
            src_color_range="JPEG" if full_range else "MPEG",
            interpolation=_TO_RGB,
        ).to_ndarray()
        return np.ascontiguousarray(rgb[:height, :width])


class _IntraCodec(ClassicCodec):
    spec: IntraSpec

    def codec_options(self, options: Mapping[str, Any]) -> dict[str, str]:
        raise NotImplementedError

    def make_encoder(self, options: dict[str, Any]) -> Encoder:
        return IntraEncoder(self.spec, self.codec_options(options), options)

    def make_decoder(self) -> Decoder:
        return IntraDecoder(self.spec)


class AvifCodec(_IntraCodec):
    """AV1 intra: SVT-AV1 encodes, dav1d decodes."""

    spec = AVIF

    def codec_options(self, options: Mapping[str, Any]) -> dict[str, str]:
        return {
            "crf": str(avif_crf(options["quality"])),
            "preset": str(options["preset"]),
            "svtav1-params": "keyint=1",
        }


class HevcIntraCodec(_IntraCodec):
    """HEVC intra (Main profile): x265 encodes, FFmpeg's hevc decoder decodes."""

    spec = HEVC

    def codec_options(self, options: Mapping[str, Any]) -> dict[str, str]:
        return {
            "crf": f"{hevc_crf(options['quality']):g}",
            "preset": options["preset"],
            "x265-params": "log-level=error:keyint=1:frame-threads=1:wpp=1:"
            "lookahead-slices=0:info=0",
        }
