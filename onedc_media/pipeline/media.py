"""Small PyAV helpers shared by the video pipeline: colour names, rotation, conversions.

Colour
------
Frames travel through the pipeline as HxWx3 uint8 RGB (the codec contract). The
source's colour description (primaries, transfer, matrix, range) is recorded in the
``.odc`` stream header with FFmpeg's names (:class:`~onedc_media.container.ColorInfo`)
and used again when a decoded video is written back as YCbCr, so an mp4 -> .odc -> mp4
round trip keeps its tags and its matrix. Source YCbCr is converted to RGB with the
frame's own matrix and range (swscale's default, BT.601, when the file does not say).

Rotation
--------
Stored as the stream metadata key ``"rotate"``: FFmpeg's legacy tag, the clockwise
rotation in degrees (0, 90, 180, 270) a player applies before display. It is what
OpenCV reports as ``CAP_PROP_ORIENTATION_META``. PyAV's ``VideoFrame.rotation`` and
``VideoStream.set_display_rotation`` count counter-clockwise; :func:`rotate_tag` and
:func:`display_rotation` convert.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import Interpolation

from onedc_media.container import ColorInfo
from onedc_media.container.cicp import MATRIX as _MATRIX
from onedc_media.container.cicp import PRIMARIES as _PRIMARIES
from onedc_media.container.cicp import RANGE as _RANGE
from onedc_media.container.cicp import TRANSFER as _TRANSFER
from onedc_media.container.writer import fsync_dir

__all__ = [
    "TO_RGB",
    "TO_YUV",
    "atomic_path",
    "color_from_frame",
    "color_tags",
    "create_encoder",
    "display_rotation",
    "fraction",
    "frame_to_rgb",
    "rgb_to_frame",
    "rotate_tag",
    "swscale_colorspace",
]

#: RGB -> YCbCr 4:2:0: area-averaged chroma, exact rounding, reproducible on every CPU.
TO_YUV = Interpolation.AREA | Interpolation.ACCURATE_RND | Interpolation.BITEXACT
#: YCbCr -> RGB: bicubic chroma upsampling, exact rounding, reproducible.
TO_RGB = (
    Interpolation.BICUBIC
    | Interpolation.FULL_CHR_H_INT
    | Interpolation.ACCURATE_RND
    | Interpolation.BITEXACT
)

# FFmpeg's names (av_color_*_name) for the AVCOL_* values: the H.273 code points.
_UNSPECIFIED = 2  # AVCOL_PRI / TRC / SPC_UNSPECIFIED

#: swscale matrix for a recorded matrix name; anything else converts with BT.601.
_SWS_MATRIX = {
    "bt709": "ITU709",
    "fcc": "FCC",
    "bt470bg": "ITU601",
    "smpte170m": "ITU601",
    "smpte240m": "SMPTE240M",
    "bt2020nc": "BT2020",
    "bt2020c": "BT2020",
}


def _name(table: dict[int, str], value: object) -> str:
    try:
        return table.get(int(value), "unknown")  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return "unknown"


def _value(table: dict[int, str], name: str, default: int) -> int:
    for key, value in table.items():
        if value == name:
            return key
    return default


def create_encoder(name: str) -> av.codec.context.CodecContext:
    """A fresh encoder context of the FFmpeg encoder *name*.

    SVT-AV1 prints its configuration to stderr for every encoder it opens; it reads
    ``SVT_LOG`` when one opens, so this sets it to errors only unless the user set it.
    """
    os.environ.setdefault("SVT_LOG", "1")
    return av.CodecContext.create(name, "w")


def color_from_frame(frame: av.VideoFrame) -> ColorInfo:
    """The colour description a decoded frame carries, in FFmpeg's names."""
    return ColorInfo(
        primaries=_name(_PRIMARIES, frame.color_primaries),
        transfer=_name(_TRANSFER, frame.color_trc),
        matrix=_name(_MATRIX, frame.colorspace),
        range=_name(_RANGE, frame.color_range),
    )


def color_tags(color: ColorInfo) -> dict[str, int]:
    """``AVCOL_*`` values for a codec context: primaries, trc, colorspace, range."""
    return {
        "color_primaries": _value(_PRIMARIES, color.primaries, _UNSPECIFIED),
        "color_trc": _value(_TRANSFER, color.transfer, _UNSPECIFIED),
        "colorspace": _value(_MATRIX, color.matrix, _UNSPECIFIED),
        "color_range": _value(_RANGE, color.range, 0),
    }


def swscale_colorspace(color: ColorInfo) -> tuple[str, str]:
    """``(colorspace, color_range)`` arguments of ``VideoFrame.reformat`` for *color*."""
    return _SWS_MATRIX.get(color.matrix, "ITU601"), "JPEG" if color.range == "full" else "MPEG"


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as HxWx3 uint8 RGB, converted with the frame's own matrix and range.

    swscale's default conversion, as ``VideoFrame.to_ndarray`` and OpenCV's
    ``VideoCapture`` make it, so that the three agree on the same file.
    """
    return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))


def rgb_to_frame(rgb: np.ndarray, color: ColorInfo, pix_fmt: str) -> av.VideoFrame:
    """An RGB array as a *pix_fmt* frame with *color*'s matrix and range (and its tags)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    if pix_fmt in ("rgb24", "bgr24", "gbrp"):
        return frame if pix_fmt == "rgb24" else frame.reformat(format=pix_fmt)
    space, rng = swscale_colorspace(color)
    out = frame.reformat(
        format=pix_fmt, dst_colorspace=space, dst_color_range=rng, interpolation=TO_YUV
    )
    tags = color_tags(color)
    out.color_primaries = tags["color_primaries"]
    out.color_trc = tags["color_trc"]
    return out


def rotate_tag(counter_clockwise: float | None) -> int:
    """The ``"rotate"`` tag (clockwise degrees, 0/90/180/270) for a display rotation."""
    if not counter_clockwise:
        return 0
    return int(-round(float(counter_clockwise) / 90) * 90) % 360


def display_rotation(tag: str | int | None) -> int:
    """The counter-clockwise display rotation for a ``"rotate"`` tag (inverse of
    :func:`rotate_tag`); 0 for a missing or malformed tag."""
    try:
        degrees = int(tag or 0)
    except (TypeError, ValueError):
        return 0
    return (-degrees) % 360 if degrees % 90 == 0 else 0


def fraction(value: object) -> Fraction | None:
    """*value* as a positive Fraction, or ``None`` when it is missing or not positive."""
    if value is None:
        return None
    try:
        out = Fraction(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return out if out > 0 else None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside *path* (same extension, so format guessing works);
    rename it over *path* when the block succeeds, delete it when it fails (invariant 6)."""
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(base)
    tmp = os.path.join(folder, f".{stem}.{secrets.token_hex(4)}.partial{ext}")
    try:
        yield tmp
        if os.path.exists(tmp):
            with open(tmp, "rb+") as fp:
                os.fsync(fp.fileno())
            os.replace(tmp, path)
            fsync_dir(folder)  # the rename itself must survive a crash too
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
