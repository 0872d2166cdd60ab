"""Hybrid video coding: keyframes by the keyframe codec, the other frames by x264 & co.

DESIGN invariant 7: keyframes are stored once. Each GOP is coded like this::

    source:    K    f1   f2   f3 ...          (K = the GOP's keyframe)
    keyframe codec:  K -> packet_K -> decode_keyframes -> R   (R = its reconstruction)
    inter codec, a fresh encoder per GOP, fed  R  f1  f2  f3 ...
                                        out:   I  P1  P2  P3 ...
    stored:    packet_K   P1'  P2  P3 ...      (I is dropped: only its checksum is kept)

The inter codec predicts from ``R``, the picture the decoder will have. The intra packet
``I`` is not stored: the decoder regenerates it by encoding ``R`` alone, with the same
settings, in a fresh encoder. That is only possible because the settings make the intra
picture depend on ``R`` and nothing else, deterministically: no lookahead (mbtree /
cutree / rc-lookahead off), no B-frames or scene cuts, one thread, no temporal filter,
an infinite keyint. The encoder checks, for every GOP, that the regenerated packet
equals the one the GOP was coded with, so a file is never written that its own build
cannot decode exactly.

A decoder whose encoder library differs (another x264 version) may regenerate a
different intra packet; the CRC stored with the GOP detects it, a warning is logged,
and decoding goes on: the inter frames then predict from a slightly different
reference, so they drift a little until the next keyframe. The CRC covers the coded
picture only: for H.264 and HEVC the NAL units other than SEI, access-unit delimiters
and filler data (x264 writes its version string into an SEI), for AV1 the whole packet.

The displayed keyframe is always ``R``; the inter codec's decode of ``I`` is dropped.

Packets (payload of the non-key ``PCKT`` chunks of a hybrid video stream)::

    0x00  codec packet                          an inter picture
    0x01  u32 CRC-32  codec packet              the first inter picture of a GOP; the CRC
                                                (big-endian) is of the intra picture

Settings (``codec_params["inter"]`` of the video stream, see :class:`InterSettings`)::

    {"codec": "libx264", "crf": 23, "preset": "medium", "settings": 1}

``settings`` names the fixed parameter set below (version 1); the decoder rebuilds the
encoder options from these validated fields only, never from free text in the file
(x264 options can write files). RGB is converted to YCbCr 4:2:0 with the BT.709 matrix
in full range and back, with swscale's bit-exact flags; odd sizes and pictures smaller
than 16 pixels are padded by repeating the edge and cropped after decoding.
"""

from __future__ import annotations

import logging
import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from onedc_media.errors import BitstreamError, CodecOptionError, MediaError, OdcFormatError
from onedc_media.pipeline.media import TO_RGB, TO_YUV, create_encoder

__all__ = [
    "INTER_CODECS",
    "InterDecoder",
    "InterEncoder",
    "InterSettings",
    "intra_checksum",
    "pack_inter",
    "unpack_inter",
]

log = logging.getLogger(__name__)

SETTINGS_VERSION = 1
FLAG_GOP_START = 0x01
_CRC = struct.Struct(">I")
_TIME_BASE = Fraction(1, 25)  # part of settings version 1 (the frame times x264 sees)
_MIN_SIDE = 16
#: Pixel formats the inter decoders give for the settings' 8-bit 4:2:0 (FFmpeg's h264
#: decoder says full range with the old J format).
_DECODED = ("yuv420p", "yuvj420p")
_X26X_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
    "veryslow", "placebo",
)  # fmt: skip


@dataclass(frozen=True)
class _Spec:
    encoder: str
    decoders: tuple[str, ...]
    crf_default: float
    crf_range: tuple[float, float]
    crf_integer: bool
    presets: tuple[str, ...]
    preset_default: str
    options_key: str  # FFmpeg option that takes the codec's own parameter string
    fixed: str  # settings version 1
    vcl: str  # how intra_checksum reads the packet: "h264", "hevc" or "raw"


INTER_CODECS: dict[str, _Spec] = {
    "libx264": _Spec(
        "libx264", ("h264",), 23, (0, 51), False, _X26X_PRESETS, "medium", "x264-params",
        "keyint=infinite:min-keyint=1:scenecut=0:bframes=0:rc-lookahead=0:mbtree=0:"
        "threads=1:sliced-threads=0",
        "h264",
    ),
    "libx265": _Spec(
        "libx265", ("hevc",), 28, (0, 51), False, _X26X_PRESETS, "medium", "x265-params",
        "log-level=error:keyint=-1:min-keyint=1:scenecut=0:bframes=0:b-adapt=0:"
        "rc-lookahead=0:cutree=0:open-gop=0:frame-threads=1:pools=1:wpp=0:"
        "lookahead-slices=0:info=0",
        "hevc",
    ),
    "libsvtav1": _Spec(
        "libsvtav1", ("libdav1d", "av1"), 35, (1, 63), True,
        tuple(str(i) for i in range(14)), "8", "svtav1-params",
        "keyint=-1:scd=0:lp=1:pred-struct=1:enable-tf=0:lookahead=0",
        "raw",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class InterSettings:
    """How the non-key frames of a hybrid stream are coded.

    :param codec: ``libx264`` (default), ``libx265`` or ``libsvtav1``.
    :param crf: the codec's constant-rate factor (lower is better and larger);
        ``None`` takes the codec's default (23, 28, 35).
    :param preset: the codec's speed preset (x264 / x265 names, SVT-AV1 ``0``..``13``);
        ``None`` takes the default (``medium``, ``medium``, ``8``).
    """

    codec: str = "libx264"
    crf: float | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        spec = INTER_CODECS.get(self.codec)
        if spec is None:
            raise CodecOptionError(
                f"unknown inter codec {self.codec!r} (choices: {', '.join(INTER_CODECS)}, none)"
            )
        crf = spec.crf_default if self.crf is None else self.crf
        try:
            crf = float(crf)
        except (TypeError, ValueError):
            raise CodecOptionError(f"--crf expects a number, got {self.crf!r}") from None
        lo, hi = spec.crf_range
        if not lo <= crf <= hi or (spec.crf_integer and not crf.is_integer()):
            kind = "an integer" if spec.crf_integer else "a number"
            raise CodecOptionError(
                f"{self.codec} crf must be {kind} in {lo:g}..{hi:g}, got {crf:g}"
            )
        preset = spec.preset_default if self.preset is None else str(self.preset)
        if preset not in spec.presets:
            raise CodecOptionError(
                f"{self.codec} preset must be one of {', '.join(spec.presets)}, got {preset!r}"
            )
        object.__setattr__(self, "crf", int(crf) if crf.is_integer() else crf)
        object.__setattr__(self, "preset", preset)

    @property
    def spec(self) -> _Spec:
        return INTER_CODECS[self.codec]

    def to_params(self) -> dict[str, Any]:
        """The JSON object stored as ``codec_params["inter"]``."""
        return {
            "codec": self.codec,
            "crf": self.crf,
            "preset": self.preset,
            "settings": SETTINGS_VERSION,
        }

    @classmethod
    def from_params(cls, params: object) -> InterSettings:
        """Validate ``codec_params["inter"]`` read from a file (untrusted)."""
        if not isinstance(params, Mapping):
            raise OdcFormatError("codec_params.inter must be an object")
        settings = params.get("settings")
        if settings != SETTINGS_VERSION:
            raise OdcFormatError(
                f"inter settings version {settings!r} is not known to this onedc-media "
                f"(it knows {SETTINGS_VERSION}): upgrade onedc-media"
            )
        crf = params.get("crf")
        if isinstance(crf, bool) or not isinstance(crf, (int, float)):
            raise OdcFormatError("codec_params.inter.crf must be a number")
        try:
            return cls(str(params.get("codec")), crf, str(params.get("preset")))
        except CodecOptionError as exc:
            raise OdcFormatError(f"codec_params.inter: {exc}") from None

    def encoder_options(self) -> dict[str, str]:
        """The FFmpeg options of the encoder (fixed parameter set, version 1)."""
        spec = self.spec
        return {"preset": str(self.preset), "crf": f"{self.crf:g}", spec.options_key: spec.fixed}


def coded_size(width: int, height: int) -> tuple[int, int]:
    """The size the inter codec codes: even, at least 16 pixels per side."""
    return max(_MIN_SIDE, width + (width & 1)), max(_MIN_SIDE, height + (height & 1))


def _pad(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = rgb.shape[:2]
    coded_w, coded_h = size
    if (coded_w, coded_h) == (width, height):
        return rgb
    return np.pad(rgb, ((0, coded_h - height), (0, coded_w - width), (0, 0)), "edge")


def _to_yuv(rgb: np.ndarray, size: tuple[int, int], pts: int) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_pad(rgb, size)), format="rgb24")
    yuv = frame.reformat(
        format="yuv420p", dst_colorspace="ITU709", dst_color_range="JPEG", interpolation=TO_YUV
    )
    yuv.pts = pts
    yuv.time_base = _TIME_BASE
    return yuv


def _to_rgb(yuv: av.VideoFrame, width: int, height: int) -> np.ndarray:
    # Rebuild the frame from its planes: the decoder's frame carries tags (chroma siting)
    # that swscale would honour, and the encoder's frame, built from an array, had none.
    planes = av.VideoFrame.from_ndarray(yuv.to_ndarray(), format="yuv420p")
    rgb = planes.reformat(
        format="rgb24", src_colorspace="ITU709", src_color_range="JPEG", interpolation=TO_RGB
    ).to_ndarray()
    return np.ascontiguousarray(rgb[:height, :width])


# -- the intra checksum -----------------------------------------------------------------

_START_CODE = re.compile(b"\x00\x00\x01")
_H264_SKIP = {6, 9, 12}  # SEI, access unit delimiter, filler data
_HEVC_SKIP = {35, 38, 39, 40}  # AUD, filler data, prefix SEI, suffix SEI


def _nal_units(data: bytes) -> list[bytes]:
    starts = [m.end() for m in _START_CODE.finditer(data)]
    units = []
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        unit = data[start:end].rstrip(b"\x00")  # trailing_zero_8bits / 4-byte start codes
        if unit:
            units.append(unit)
    return units


def intra_checksum(kind: str, packet: bytes) -> int:
    """CRC-32 of the coded picture in an intra packet (see the module docstring)."""
    if kind == "raw":
        return zlib.crc32(packet)
    crc = 0
    for unit in _nal_units(packet):
        nal_type = unit[0] & 0x1F if kind == "h264" else (unit[0] >> 1) & 0x3F
        if nal_type in (_H264_SKIP if kind == "h264" else _HEVC_SKIP):
            continue
        crc = zlib.crc32(unit, zlib.crc32(len(unit).to_bytes(4, "big"), crc))
    return crc


def pack_inter(packet: bytes, intra_crc: int | None = None) -> bytes:
    """The stored payload of an inter packet (the GOP's first carries the intra CRC)."""
    if intra_crc is None:
        return b"\x00" + packet
    return bytes([FLAG_GOP_START]) + _CRC.pack(intra_crc) + packet


def unpack_inter(payload: bytes) -> tuple[int | None, bytes]:
    """``(intra CRC or None, codec packet)`` of a stored inter packet."""
    if len(payload) < 2:
        raise BitstreamError(f"inter packet of {len(payload)} bytes is too short")
    flags = payload[0]
    if flags == 0:
        return None, payload[1:]
    if flags == FLAG_GOP_START and len(payload) > 1 + _CRC.size:
        return _CRC.unpack_from(payload, 1)[0], payload[1 + _CRC.size :]
    raise BitstreamError(f"inter packet with bad flags {flags:#04x} or too short")


# -- encoder ----------------------------------------------------------------------------


def _check_available(name: str, mode: str) -> None:
    try:
        av.codec.Codec(name, mode)
    except (av.FFmpegError, ValueError) as exc:  # UnknownCodecError: not in this FFmpeg
        what = "encoder" if mode == "w" else "decoder"
        raise MediaError(f"this PyAV/FFmpeg build has no {name} {what} ({exc})") from None


class _Encoding:
    """Shared by encoder and decoder: opening the deterministic encoder, regenerating."""

    def __init__(self, settings: InterSettings, width: int, height: int) -> None:
        _check_available(settings.spec.encoder, "w")
        self.settings = settings
        self.width, self.height = width, height
        self.size = coded_size(width, height)
        self._options = settings.encoder_options()

    def open_encoder(self) -> av.codec.context.CodecContext:
        ctx = create_encoder(self.settings.spec.encoder)
        ctx.width, ctx.height = self.size
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = _TIME_BASE
        ctx.framerate = 1 / _TIME_BASE
        ctx.thread_count = 1
        ctx.color_range = 2  # AVCOL_RANGE_JPEG: full range, as converted
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1  # BT.709
        ctx.options = dict(self._options)
        return ctx

    def regenerate(self, recon: np.ndarray) -> bytes:
        """The intra packet the inter codec makes of *recon* alone (deterministic)."""
        try:
            ctx = self.open_encoder()
            packets = ctx.encode(_to_yuv(recon, self.size, 0)) + ctx.encode(None)
        except av.FFmpegError as exc:
            raise MediaError(f"{self.settings.codec} failed on a keyframe: {exc}") from exc
        if len(packets) != 1:
            raise MediaError(f"{self.settings.codec} made {len(packets)} packets of one picture")
        return bytes(packets[0])


class InterEncoder(_Encoding):
    """Codes the non-key frames of a video, GOP by GOP (see the module docstring).

    Call :meth:`start_gop` with each keyframe's reconstruction, :meth:`encode` with each
    following frame, :meth:`finish_gop` at the end of the GOP. ``encode`` and
    ``finish_gop`` return stored payloads (:func:`pack_inter`), one per inter frame, in
    order; the encoder may hold a few back until ``finish_gop``.
    """

    def __init__(self, settings: InterSettings, width: int, height: int) -> None:
        super().__init__(settings, width, height)
        self._recon: np.ndarray | None = None
        self._ctx: av.codec.context.CodecContext | None = None
        self._expected: bytes | None = None
        self._crc: int | None = None
        self._first = False
        self._frames = 0
        #: bytes of the intra packets that were regenerated, not stored (for reports)
        self.intra_bytes_not_stored = 0

    def start_gop(self, recon: np.ndarray) -> None:
        self._recon = recon
        self._ctx = None
        self._frames = 0

    def encode(self, rgb: np.ndarray) -> list[bytes]:
        if self._recon is None:
            raise ValueError("InterEncoder.encode before start_gop")
        if self._ctx is None:  # first inter frame of the GOP: the intra picture first
            self._expected = self.regenerate(self._recon)
            self._crc = None
            self._ctx = self.open_encoder()
            out = self._run(_to_yuv(self._recon, self.size, 0))
        else:
            out = []
        self._frames += 1
        return out + self._run(_to_yuv(rgb, self.size, self._frames))

    def finish_gop(self) -> list[bytes]:
        out = self._run(None) if self._ctx is not None else []
        self._ctx = None
        self._recon = None
        return out

    def _run(self, frame: av.VideoFrame | None) -> list[bytes]:
        assert self._ctx is not None
        try:
            packets = [bytes(p) for p in self._ctx.encode(frame)]
        except av.FFmpegError as exc:
            raise MediaError(f"{self.settings.codec} failed: {exc}") from exc
        out = []
        for packet in packets:
            if self._crc is None:  # the intra picture: check, keep its CRC, drop it
                if packet != self._expected:
                    raise MediaError(
                        f"{self.settings.codec} did not reproduce the GOP's intra picture "
                        "bit for bit when re-encoding the keyframe alone; this encoder "
                        "build is not deterministic with the hybrid settings"
                    )
                self._crc = intra_checksum(self.settings.spec.vcl, packet)
                self.intra_bytes_not_stored += len(packet)
                self._first = True
                continue
            out.append(pack_inter(packet, self._crc if self._first else None))
            self._first = False
        return out


# -- decoder ----------------------------------------------------------------------------


class InterDecoder(_Encoding):
    """Decodes the inter frames of a hybrid stream, GOP by GOP.

    :meth:`start_gop` takes the keyframe's reconstruction; :meth:`decode` takes each
    stored inter payload and returns the RGB frames that came out (the decoder may hold
    some back until :meth:`finish_gop`). The intra picture is regenerated from the
    reconstruction when the GOP's first inter packet arrives, and checked against the
    CRC stored there: a mismatch is counted in :attr:`mismatches` and logged as a
    warning, and decoding goes on.
    """

    def __init__(self, settings: InterSettings, width: int, height: int) -> None:
        super().__init__(settings, width, height)
        self.decoder_name = next(
            (n for n in settings.spec.decoders if _has_decoder(n)), settings.spec.decoders[0]
        )
        _check_available(self.decoder_name, "r")
        self._recon: np.ndarray | None = None
        self._ctx: av.codec.context.CodecContext | None = None
        self._drop = 0
        #: GOPs whose regenerated intra picture did not match the stored CRC
        self.mismatches = 0
        #: GOPs whose intra picture was regenerated
        self.regenerated = 0

    def start_gop(self, recon: np.ndarray) -> None:
        if recon.shape != (self.height, self.width, 3):
            raise BitstreamError(
                f"keyframe of {recon.shape[1]}x{recon.shape[0]} in a hybrid stream of "
                f"{self.width}x{self.height}"
            )
        self._recon = recon
        self._ctx = None

    def decode(self, payload: bytes) -> list[np.ndarray]:
        crc, packet = unpack_inter(payload)
        if self._ctx is None:
            if self._recon is None:
                raise BitstreamError("inter packet before any keyframe")
            if crc is None:
                raise BitstreamError("the first inter packet of a GOP lacks the intra CRC")
            self._open_gop(crc)
        elif crc is not None:
            raise BitstreamError("a GOP-start inter packet in the middle of a GOP")
        return self._run(av.Packet(packet))

    def finish_gop(self) -> list[np.ndarray]:
        out = self._run(None) if self._ctx is not None else []
        self._ctx = None
        self._recon = None
        return out

    def _open_gop(self, crc: int) -> None:
        assert self._recon is not None
        intra = self.regenerate(self._recon)
        self.regenerated += 1
        if intra_checksum(self.settings.spec.vcl, intra) != crc:
            self.mismatches += 1
            level = logging.WARNING if self.mismatches == 1 else logging.DEBUG
            log.log(
                level,
                "%s: the regenerated intra picture does not match the stored checksum "
                "(another encoder build?); decoding anyway, inter frames may drift slightly "
                "until the next keyframe%s",
                self.settings.codec,
                "" if self.mismatches == 1 else f" ({self.mismatches} GOPs so far)",
            )
        try:
            ctx = av.CodecContext.create(self.decoder_name, "r")
            w, h = self.size
            ctx.options = {"max_pixels": str((w + 128) * (h + 128))}
        except av.FFmpegError as exc:
            raise MediaError(f"cannot open the {self.decoder_name} decoder: {exc}") from None
        self._ctx = ctx
        self._drop = 1
        self._run(av.Packet(intra))

    def _run(self, packet: av.Packet | None) -> list[np.ndarray]:
        assert self._ctx is not None
        try:
            frames = self._ctx.decode(packet)
        except av.FFmpegError as exc:
            raise BitstreamError(
                f"{self.settings.codec} inter packet: cannot decode: {exc}"
            ) from None
        out = []
        for frame in frames:
            # The settings imply 8-bit 4:2:0 at the coded size; a hostile packet can
            # carry its own parameter sets (4:4:4, 10-bit...) that the decoder follows.
            if (frame.width, frame.height) != self.size or frame.format.name not in _DECODED:
                raise BitstreamError(
                    f"{self.settings.codec} inter picture: {frame.width}x{frame.height} "
                    f"{frame.format.name}, expected {self.size[0]}x{self.size[1]} yuv420p"
                )
            if self._drop:
                self._drop -= 1
                continue
            out.append(_to_rgb(frame, self.width, self.height))
        return out


def _has_decoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "r")
    except (av.FFmpegError, ValueError):
        return False
    return True
