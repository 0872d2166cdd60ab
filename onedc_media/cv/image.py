"""``imencode`` / ``imdecode``: ``.odc`` pictures with ``cv2``'s signatures and BGR order.

``imencode(".odc", img, params)`` writes an image ``.odc`` file into memory, as
``onedc-media encode`` (:func:`onedc_media.stills.encode_pictures`) writes one to disk: one stream (``media_type "image"``), one
packet, the codec's parameters and model in the stream header. ``imdecode(buf, flags)``
reads the first picture of any ``.odc`` file (image, or the first frame of a video).

Like ``cv2.imdecode``, :func:`imdecode` returns ``None`` for data it cannot decode (the
reason is logged at debug level); wrong argument types raise.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from onedc_media import container
from onedc_media.codec import CodecRegistry, check_frame
from onedc_media.container import Packet, StreamHeader
from onedc_media.cv.constants import IMWRITE_ODC_CODEC, IMWRITE_ODC_QUALITY, ODC_CODECS
from onedc_media.errors import CodecNotFoundError, CodecOptionError, InvalidImageError, OdcError
from onedc_media.stills import SRGB

__all__ = ["imdecode", "imencode"]

log = logging.getLogger(__name__)

DEFAULT_CODEC = "onedc"

# cv2.IMREAD_* values (stable across OpenCV 4 and 5).
_GRAYSCALE, _COLOR, _UNCHANGED, _ANYDEPTH, _ANYCOLOR, _COLOR_RGB = 0, 1, -1, 2, 4, 256
_IGNORE_ORIENTATION = 128
_REDUCED = {
    16: (2, True),
    17: (2, False),
    32: (4, True),
    33: (4, False),
    64: (8, True),
    65: (8, False),
}


def _codecs(codecs: CodecRegistry | None) -> CodecRegistry:
    if codecs is not None:
        return codecs
    import onedc_media

    return onedc_media.default_plugins().codecs


def _to_rgb(img: object) -> np.ndarray:
    """A BGR / BGRA / grey uint8 image (cv2's layouts) as HxWx3 RGB."""
    import cv2

    if not isinstance(img, np.ndarray):
        raise InvalidImageError(f"expected a numpy array, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise InvalidImageError(f"expected an 8-bit image (uint8), got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return check_frame(cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_GRAY2RGB))
    if img.ndim == 3 and img.shape[2] == 4:
        return check_frame(cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGRA2RGB))
    if img.ndim == 3 and img.shape[2] == 3:
        return check_frame(np.ascontiguousarray(img[:, :, ::-1]))
    raise InvalidImageError(f"expected HxW, HxWx1, HxWx3 or HxWx4, got shape {img.shape}")


def _parse_params(params: Sequence[Any] | None) -> tuple[str | None, Any]:
    if params is None:
        return None, None
    params = list(params)
    if len(params) % 2:
        raise CodecOptionError("imencode params must be [id, value, id, value, ...] pairs")
    codec = quality = None
    for key, value in zip(params[::2], params[1::2], strict=True):
        if key == IMWRITE_ODC_CODEC:
            if isinstance(value, str):
                codec = value
            elif isinstance(value, (int, np.integer)) and int(value) in ODC_CODECS:
                codec = ODC_CODECS[int(value)]
            else:
                raise CodecOptionError(
                    f"IMWRITE_ODC_CODEC takes an ODC_CODEC_* number or a codec name, got {value!r}"
                )
        elif key == IMWRITE_ODC_QUALITY:
            quality = value
        else:
            raise CodecOptionError(
                f"imencode('.odc'): unknown parameter {key!r} (use IMWRITE_ODC_CODEC, "
                "IMWRITE_ODC_QUALITY)"
            )
    return codec, quality


def imencode(
    ext: str,
    img: np.ndarray,
    params: Sequence[Any] | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    codecs: CodecRegistry | None = None,
    device: str | None = None,
) -> tuple[bool, np.ndarray]:
    """Encode a BGR (or grey, or BGRA: alpha dropped) uint8 image as an ``.odc`` file.

    :param ext: ``".odc"`` (the only format this adapter writes).
    :param params: ``[IMWRITE_ODC_CODEC, ODC_CODEC_JPEG, IMWRITE_ODC_QUALITY, 90]``
        (see :mod:`onedc_media.cv.constants`).
    :param options: more options of the codec, by name.
    :returns: ``(True, buffer)``, the buffer a 1-D uint8 array, as ``cv2.imencode``.
    :raises OdcError: bad image, unknown codec or option (``cv2`` raises too).
    """
    if not isinstance(ext, str) or ext.lower().lstrip(".") != "odc":
        raise CodecNotFoundError(f"onedc_media.cv.imencode writes '.odc', not {ext!r}")
    rgb = _to_rgb(img)
    codec_name, quality = _parse_params(params)
    registry = _codecs(codecs)
    info = registry.get(codec_name or DEFAULT_CODEC)
    given = dict(options or {})
    if quality is not None:
        if info.quality_option is None:
            raise CodecOptionError(f"codec {info.name!r} has no quality option")
        given[info.quality_option] = int(quality) if isinstance(quality, np.integer) else quality
    height, width = rgb.shape[:2]
    buffer = io.BytesIO()
    with info.create().encoder(info.resolve_options(given), device=device) as encoder:
        (payload,) = encoder.encode([rgb])
        header = StreamHeader(
            media_type="image", codec=info.name, width=width, height=height,
            pixel_format="rgb24", color=SRGB, time_base=Fraction(1, 1),
            codec_params=dict(encoder.params), model=encoder.model,
        )  # fmt: skip
        with container.open(buffer, "w") as out:
            stream = out.add_stream(header)
            out.mux(Packet(stream.index, payload, pts=0, duration=1, keyframe=True))
    return True, np.frombuffer(buffer.getvalue(), dtype=np.uint8).copy()


def imdecode(
    buf: Any,
    flags: int = _COLOR,
    *,
    codecs: CodecRegistry | None = None,
    device: str | None = None,
) -> np.ndarray | None:
    """Decode the first picture of an ``.odc`` file held in *buf* (bytes or a uint8 array).

    :param flags: ``cv2.IMREAD_COLOR`` (BGR, default), ``IMREAD_GRAYSCALE``,
        ``IMREAD_COLOR_RGB``, ``IMREAD_UNCHANGED`` / ``ANYCOLOR`` / ``ANYDEPTH`` (BGR),
        ``IMREAD_REDUCED_*_2/4/8`` (area-averaged to 1/2, 1/4, 1/8);
        ``IMREAD_IGNORE_ORIENTATION`` is accepted (pictures carry no orientation).
    :returns: the image, or ``None`` if *buf* is not a decodable ``.odc`` file.
    """
    import cv2

    from onedc_media.pipeline.decoder import picture_stream
    from onedc_media.pipeline.keyframes import decode_keyframes

    if isinstance(buf, np.ndarray):
        data = buf.tobytes()
    elif isinstance(buf, (bytes, bytearray, memoryview)):
        data = bytes(buf)
    else:
        raise TypeError(f"imdecode expects bytes or a numpy array, got {type(buf).__name__}")
    flags = int(flags)
    base = flags & ~_IGNORE_ORIENTATION if flags >= 0 else flags
    reduce, gray = _REDUCED.get(base, (1, base == _GRAYSCALE))
    if base not in _REDUCED and base not in (
        _GRAYSCALE,
        _COLOR,
        _UNCHANGED,
        _ANYDEPTH,
        _ANYCOLOR,
        _COLOR_RGB,
    ):
        raise ValueError(f"imdecode: unsupported flags {flags}")
    try:
        with container.open(io.BytesIO(data)) as inp:
            stream = picture_stream(inp)
            first = next(
                (p.data for p in inp.demux(stream.index, on_damage="stop") if p.keyframe), None
            )
            if first is None:
                raise InvalidImageError("no picture in the file")
            frames = decode_keyframes(stream, [first], codecs=_codecs(codecs), device=device)
            rgb = next(frames)
            close = getattr(frames, "close", None)
            if close is not None:
                close()
    except OdcError as exc:
        log.debug("imdecode: %s", exc)
        return None
    if reduce > 1:
        h, w = rgb.shape[:2]
        rgb = cv2.resize(rgb, ((w + reduce - 1) // reduce, (h + reduce - 1) // reduce),
                         interpolation=cv2.INTER_AREA)  # fmt: skip
    if gray:
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if base == _COLOR_RGB:
        return np.ascontiguousarray(rgb)
    return np.ascontiguousarray(rgb[:, :, ::-1])
