"""``VideoCapture`` / ``VideoWriter``: ``.odc`` video with ``cv2``'s interface.

Both follow ``cv2.VideoCapture`` / ``cv2.VideoWriter`` (OpenCV's FFmpeg back-end) where
it matters to calling code, and say where they differ:

``VideoCapture(filename)``
    ``isOpened``, ``read``, ``grab``, ``retrieve``, ``get`` / ``set``, ``release``,
    iteration (BGR frames) and ``with``. Frames come out BGR, rotated upright when the
    stream says so (``CAP_PROP_ORIENTATION_AUTO``, on by default, as in OpenCV; then
    ``FRAME_WIDTH`` / ``FRAME_HEIGHT`` are the upright size). ``get`` answers
    ``POS_FRAMES`` (the index of the next frame), ``POS_MSEC`` (the timestamp of the last
    frame read), ``POS_AVI_RATIO``, ``FPS``, ``FRAME_COUNT``, ``FRAME_WIDTH``,
    ``FRAME_HEIGHT``, ``FOURCC``, ``BITRATE``, ``ORIENTATION_META``, ``ORIENTATION_AUTO``
    ``CONVERT_RGB``, ``SAR_NUM`` / ``SAR_DEN``; -1 for anything else and after
    ``release``, as OpenCV 5's FFmpeg back-end. ``set`` seeks with
    ``POS_FRAMES``, ``POS_MSEC`` and ``POS_AVI_RATIO`` through the file's keyframe index:
    it starts decoding at the keyframe before the target, so a seek costs at most one
    GOP. Differences: ``FRAME_COUNT`` is exact (OpenCV estimates it from the duration
    and frame rate, which is wrong for variable frame rates); a file that cannot be
    opened gives ``isOpened() == False`` like OpenCV, with the reason logged and kept in
    :attr:`VideoCapture.error`; damage met while reading ends ``read`` the same way.

``VideoWriter(filename, fourcc, fps, frameSize[, isColor | params])``
    The fourcc chooses the keyframe codec (:data:`~onedc_media.cv.constants.FOURCC_CODECS`),
    frames between keyframes are coded by libx264 from the keyframe reconstruction (see
    :mod:`onedc_media.pipeline.hybrid`). ``params`` as in
    :mod:`onedc_media.cv.constants`. Differences: a frame of the wrong size or type
    raises :class:`~onedc_media.errors.InvalidImageError` (OpenCV drops it silently);
    the file appears, complete, at ``release()`` (written to a temporary file until
    then).
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from onedc_media import container
from onedc_media.codec import CodecRegistry
from onedc_media.container import InputContainer, OutputContainer, StreamHeader
from onedc_media.cv.constants import (
    FOURCC_CODECS,
    ODC_INTER_CODECS,
    VIDEOWRITER_PROP_ODC_INTER_CODEC,
    VIDEOWRITER_PROP_ODC_INTER_CRF,
    fourcc,
    fourcc_name,
)
from onedc_media.cv.image import DEFAULT_CODEC, _codecs, _to_rgb
from onedc_media.errors import CodecOptionError, InvalidImageError, OdcError

__all__ = ["VideoCapture", "VideoWriter"]

log = logging.getLogger(__name__)

# cv2.CAP_PROP_* / VIDEOWRITER_PROP_* numbers (stable across OpenCV 4 and 5).
POS_MSEC, POS_FRAMES, POS_AVI_RATIO, FRAME_WIDTH, FRAME_HEIGHT, FPS, FOURCC, FRAME_COUNT = range(8)
CONVERT_RGB, SAR_NUM, SAR_DEN, BITRATE, ORIENTATION_META, ORIENTATION_AUTO = 16, 40, 41, 47, 48, 49
UNSUPPORTED = -1.0
WRITER_QUALITY, WRITER_FRAMEBYTES, WRITER_IS_COLOR, WRITER_KEY_INTERVAL = 1, 2, 4, 10
DEFAULT_GOP = 250


def _rotate(bgr: np.ndarray, degrees: int) -> np.ndarray:
    import cv2

    codes = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    return cv2.rotate(bgr, codes[degrees]) if degrees in codes else bgr


class VideoCapture:
    """Reads the frames of an ``.odc`` file (see the module docstring).

    :param filename: the ``.odc`` file (a video, or an image file: one frame per picture).
    :param apiPreference: accepted and ignored (there is one back-end).
    :param codecs: codec registry (default: the installed plugins').
    :param device: device for the keyframe codec.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str] | None = None,
        apiPreference: int | None = None,
        params: Sequence[int] | None = None,
        *,
        codecs: CodecRegistry | None = None,
        device: str | None = None,
    ) -> None:
        self._codecs = codecs
        self._device = device
        self._inp: InputContainer | None = None
        self._iter: Iterator[Any] | None = None
        self._current: Any = None
        self._table_cache: list[tuple[int | None, bool]] | None = None
        self._auto_orient = True
        #: why the last ``open`` / ``read`` failed (``None`` when it did not)
        self.error: Exception | None = None
        if filename is not None:
            self.open(filename, apiPreference, params)

    # -- opening --------------------------------------------------------------------

    def open(
        self,
        filename: str | os.PathLike[str],
        apiPreference: int | None = None,
        params: Sequence[int] | None = None,
    ) -> bool:
        """Open *filename*; ``False`` (with :attr:`error` set) when it is not readable."""
        from onedc_media.pipeline.decoder import VideoDecoder, picture_stream

        self.release()
        self.error = None
        try:
            inp = container.open(os.fspath(filename))
        except (OdcError, OSError) as exc:
            return self._fail(exc)
        try:
            stream = picture_stream(inp)
            decoder = VideoDecoder(inp, stream, codecs=_codecs(self._codecs), device=self._device)
        except (OdcError, OSError) as exc:
            inp.close()
            return self._fail(exc)
        self._inp, self._stream, self._decoder = inp, stream, decoder
        self._pos = 0
        self._last_ms = 0.0
        self._rotate = _rotate_tag(stream)
        return True

    def _fail(self, exc: Exception) -> bool:
        self.error = exc
        log.warning("onedc_media.cv.VideoCapture: %s", exc)
        self.release()
        return False

    def isOpened(self) -> bool:
        return self._inp is not None

    def getBackendName(self) -> str:
        return "ODC"

    # -- reading --------------------------------------------------------------------

    def grab(self) -> bool:
        """Decode the next frame; ``False`` at the end (or on damage, see :attr:`error`)."""
        if self._inp is None:
            return False
        if self._iter is None:
            self._iter = self._decoder.frames()
        try:
            frame = next(self._iter)
        except StopIteration:
            self._current = None
            return False
        except OdcError as exc:
            self.error = exc
            log.warning("onedc_media.cv.VideoCapture: %s", exc)
            self._current = None
            self._iter = iter(())
            return False
        self._current = frame
        self._pos += 1
        self._last_ms = self._msec(frame.pts)
        return True

    def retrieve(
        self, image: np.ndarray | None = None, flag: int = 0
    ) -> tuple[bool, np.ndarray | None]:
        """The frame :meth:`grab` decoded, BGR (upright unless ORIENTATION_AUTO is off)."""
        if self._current is None:
            return False, None
        bgr = np.ascontiguousarray(self._current.rgb[:, :, ::-1])
        if self._auto_orient:
            bgr = _rotate(bgr, self._rotate)
        if image is not None and image.shape == bgr.shape and image.dtype == bgr.dtype:
            np.copyto(image, bgr)
            return True, image
        return True, bgr

    def read(self, image: np.ndarray | None = None) -> tuple[bool, np.ndarray | None]:
        """``grab`` then ``retrieve``: ``(True, frame)``, or ``(False, None)`` at the end."""
        if not self.grab():
            return False, None
        return self.retrieve(image)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            ok, frame = self.read()
            if not ok:
                return
            yield frame  # type: ignore[misc]

    # -- properties -----------------------------------------------------------------

    def _table(self) -> list[tuple[int | None, bool]]:
        """``(pts, keyframe)`` of every packet of the stream (one scan, by a second reader)."""
        if self._table_cache is None:
            assert self._inp is not None and self._inp.path is not None
            with container.open(self._inp.path) as scan:
                self._table_cache = [
                    (p.pts, p.keyframe) for p in scan.demux(self._stream.index, on_damage="stop")
                ]
        return self._table_cache

    def _msec(self, pts: int | None) -> float:
        if pts is None:
            return 0.0
        return float(Fraction(pts) * self._stream.time_base * 1000)

    def get(self, propId: int) -> float:
        if self._inp is None:
            return UNSUPPORTED
        s = self._stream
        upright_swap = self._auto_orient and self._rotate in (90, 270)
        if propId == POS_FRAMES:
            return float(self._pos)
        if propId == POS_MSEC:
            return self._last_ms
        if propId == POS_AVI_RATIO:
            count = len(self._table())
            return self._pos / count if count else 0.0
        if propId == FRAME_WIDTH:
            return float(s.height if upright_swap else s.width)
        if propId == FRAME_HEIGHT:
            return float(s.width if upright_swap else s.height)
        if propId == FPS:
            return float(s.frame_rate) if s.frame_rate else 0.0
        if propId == FRAME_COUNT:
            return float(len(self._table()))
        if propId == FOURCC:
            code = next((k for k, v in FOURCC_CODECS.items() if v == s.codec), None)
            return float(fourcc(*code)) if code else 0.0
        if propId == BITRATE:
            table = self._table()
            pts = [p for p, _ in table if p is not None]
            if len(pts) < 2 or not self._inp.file_size:
                return 0.0
            span = (max(pts) - min(pts)) * s.time_base * len(pts) / (len(pts) - 1)
            return float(self._inp.file_size * 8 / span / 1000) if span else 0.0
        if propId == ORIENTATION_META:
            return float(self._rotate)
        if propId == ORIENTATION_AUTO:
            return 1.0 if self._auto_orient else 0.0
        if propId in (CONVERT_RGB, SAR_NUM, SAR_DEN):
            return 1.0
        return UNSUPPORTED

    def set(self, propId: int, value: float) -> bool:
        """Seek (``POS_FRAMES``, ``POS_MSEC``, ``POS_AVI_RATIO``) or set
        ``ORIENTATION_AUTO``; ``False`` for anything else."""
        if self._inp is None:
            return False
        if propId == ORIENTATION_AUTO:
            self._auto_orient = bool(value)
            return True
        if propId not in (POS_FRAMES, POS_MSEC, POS_AVI_RATIO):
            return False
        table = self._table()
        if propId == POS_FRAMES:
            target = round(value)
        elif propId == POS_AVI_RATIO:
            target = round(float(value) * len(table))
        else:
            times = [self._msec(p) for p, _ in table]
            target = bisect.bisect_left(times, float(value) - 1e-6)
        return self._seek(max(0, min(target, len(table))))

    def _seek(self, target: int) -> bool:
        table = self._table()
        self._close_iter()
        self._current = None
        self._pos = target
        self._last_ms = self._msec(table[target - 1][0]) if target > 0 else 0.0
        if target >= len(table):
            self._iter = iter(())
            return True
        key = next((i for i in range(target, -1, -1) if table[i][1]), None)
        entry = None
        if key is not None:
            rank = sum(1 for _, k in table[:key] if k)
            entries = [e for e in self._inp.index if e.stream_index == self._stream.index]  # type: ignore[union-attr]
            if rank >= len(entries):
                return False
            entry = entries[rank]
        if entry is None or entry.pts is None:  # no keyframe to start at: from the start
            self._iter = self._decoder.frames()
            skip = target
        else:
            self._iter = self._decoder.frames(start=entry)
            skip = target - key  # type: ignore[operator]
        try:
            for _ in range(skip):
                next(self._iter)
        except (StopIteration, OdcError) as exc:
            self.error = exc if isinstance(exc, OdcError) else None
            self._iter = iter(())
            return False
        return True

    # -- closing --------------------------------------------------------------------

    def _close_iter(self) -> None:
        close = getattr(self._iter, "close", None)
        if close is not None:
            close()
        self._iter = None

    def release(self) -> None:
        self._close_iter()
        if self._inp is not None:
            self._decoder.close()
            self._inp.close()
        self._inp = None
        self._current = None
        self._table_cache = None

    def __enter__(self) -> VideoCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _rotate_tag(stream: StreamHeader) -> int:
    try:
        degrees = int(stream.metadata.get("rotate", "0"))
    except ValueError:
        return 0
    return degrees % 360 if degrees % 90 == 0 else 0


class VideoWriter:
    """Writes frames into an ``.odc`` video (see the module docstring).

    ``VideoWriter(filename, fourcc, fps, frameSize, isColor=True)``,
    ``VideoWriter(filename, fourcc, fps, frameSize, params)`` or
    ``VideoWriter(filename, apiPreference, fourcc, fps, frameSize[, params])``.

    Keyword-only extras: ``codec_options`` (the keyframe codec's options by name),
    ``policy`` / ``policy_options`` (keyframe policy; default ``gop`` with
    ``VIDEOWRITER_PROP_KEY_INTERVAL`` or 250 frames), ``plugins`` (loaded
    :class:`~onedc_media.hooks.Plugins`; default: the installed ones), ``device``.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str] | None = None,
        *args: Any,
        codec_options: Mapping[str, Any] | None = None,
        policy: str | None = None,
        policy_options: Mapping[str, Any] | None = None,
        plugins: Any = None,
        device: str | None = None,
    ) -> None:
        self._extras = {
            "codec_options": dict(codec_options or {}),
            "policy": policy,
            "policy_options": dict(policy_options or {}),
        }
        self._plugins = plugins
        self._device = device
        self._out: OutputContainer | None = None
        self._encoder: Any = None
        #: why ``open`` failed (``None`` when it did not)
        self.error: Exception | None = None
        if filename is not None:
            self.open(filename, *args)

    @staticmethod
    def fourcc(c1: str, c2: str, c3: str, c4: str) -> int:
        return fourcc(c1, c2, c3, c4)

    def open(self, filename: str | os.PathLike[str], *args: Any) -> bool:
        """Start writing *filename* (the overloads of the constructor)."""
        self.release()
        self.error = None
        try:
            fourcc_code, fps, size, is_color, params = _parse_writer_args(args)
            self._open(os.fspath(filename), fourcc_code, fps, size, is_color, params)
        except (OdcError, OSError, ValueError, TypeError) as exc:
            self.error = exc
            log.warning("onedc_media.cv.VideoWriter: %s", exc)
            if self._out is not None:
                self._out.abort()
            self._out = self._encoder = None
            return False
        return True

    def _open(
        self,
        filename: str,
        fourcc_code: int,
        fps: float,
        size: tuple[int, int],
        is_color: bool,
        params: Sequence[Any],
    ) -> None:
        from onedc_media.pipeline.encoder import VideoEncoder, make_policy
        from onedc_media.pipeline.hybrid import InterSettings

        if fourcc_code in (0, -1):
            codec = DEFAULT_CODEC
        else:
            name = fourcc_name(fourcc_code).upper()
            if name not in FOURCC_CODECS:
                raise CodecOptionError(
                    f"fourcc {name!r} names no keyframe codec (use one of "
                    f"{', '.join(repr(k) for k in FOURCC_CODECS)})"
                )
            codec = FOURCC_CODECS[name]
        if not fps or fps <= 0:
            raise CodecOptionError(f"fps must be positive, got {fps}")
        width, height = (int(v) for v in size)
        if width < 1 or height < 1:
            raise InvalidImageError(f"frameSize must be positive, got {size}")
        rate = Fraction(fps).limit_denominator(1001)
        if self._plugins is None:
            import onedc_media

            self._plugins = onedc_media.default_plugins()
        registry = self._plugins.codecs
        options = dict(self._extras["codec_options"])
        gop = DEFAULT_GOP
        inter_codec: str | None = "libx264"
        crf: float | None = None
        if len(params) % 2:
            raise CodecOptionError("params must be [id, value, id, value, ...] pairs")
        info = registry.get(codec)
        for key, value in zip(params[::2], params[1::2], strict=True):
            if key == WRITER_QUALITY:
                if info.quality_option is None:
                    raise CodecOptionError(f"codec {codec!r} has no quality option")
                options[info.quality_option] = int(value)
            elif key == WRITER_KEY_INTERVAL:
                gop = int(value)
            elif key == WRITER_IS_COLOR:
                is_color = bool(value)
            elif key == VIDEOWRITER_PROP_ODC_INTER_CODEC:
                if isinstance(value, str):
                    inter_codec = None if value == "none" else value
                elif int(value) in ODC_INTER_CODECS:
                    inter_codec = ODC_INTER_CODECS[int(value)]
                else:
                    raise CodecOptionError(f"unknown ODC_INTER_* value {value!r}")
            elif key == VIDEOWRITER_PROP_ODC_INTER_CRF:
                crf = float(value)
            else:
                raise CodecOptionError(f"VideoWriter: unsupported parameter {key!r}")
        inter = None if inter_codec is None else InterSettings(inter_codec, crf)
        policy_name = self._extras["policy"] or "gop"
        policy_options = dict(self._extras["policy_options"])
        if policy_name == "gop":
            policy_options.setdefault("size", gop)
        policy_obj = make_policy(policy_name, policy_options, plugins=self._plugins)
        self._out = container.open(filename, "w")
        import onedc_media

        self._out.metadata = {"encoder": f"onedc-media {onedc_media.__version__} (cv.VideoWriter)"}
        self._encoder = VideoEncoder(
            self._out, width=width, height=height, time_base=1 / rate, frame_rate=rate,
            keyframe_codec=codec, codec_options=options, policy=policy_obj, inter=inter,
            codecs=registry, device=self._device,
        )  # fmt: skip
        self._size = (width, height)
        self._is_color = is_color
        self._quality = options.get(info.quality_option or "", 0)
        self._gop = gop

    def isOpened(self) -> bool:
        return self._out is not None

    def getBackendName(self) -> str:
        return "ODC"

    def write(self, image: np.ndarray) -> None:
        """Add a BGR frame (grey when ``isColor`` is false) of ``frameSize``."""
        if self._out is None:
            return
        if not isinstance(image, np.ndarray):
            raise InvalidImageError(f"expected a numpy array, got {type(image).__name__}")
        if image.shape[:2] != (self._size[1], self._size[0]):
            raise InvalidImageError(
                f"frame of {image.shape[1]}x{image.shape[0]}, the writer was opened for "
                f"{self._size[0]}x{self._size[1]}"
            )
        rgb = _to_rgb(image)
        try:
            self._encoder.write(rgb, self._encoder.frames_written, duration=1)
        except BaseException:
            self._out.abort()
            self._out = self._encoder = None
            raise

    def get(self, propId: int) -> float:
        if self._out is None:
            return 0.0
        if propId == WRITER_QUALITY:
            return float(self._quality or 0)
        if propId == WRITER_KEY_INTERVAL:
            return float(self._gop)
        if propId == WRITER_IS_COLOR:
            return 1.0 if self._is_color else 0.0
        if propId == WRITER_FRAMEBYTES:
            return float(self._out.bytes_written)
        return 0.0

    def set(self, propId: int, value: float) -> bool:
        return False

    def release(self) -> None:
        """Finish the file: flush the last GOP, write the index, rename into place."""
        out, encoder = self._out, self._encoder
        self._out = self._encoder = None
        if out is None:
            return
        try:
            encoder.close()
            out.close()
        except BaseException:
            out.abort()
            raise

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.release()
        elif self._out is not None:
            self._out.abort()
            self._out = self._encoder = None


def _parse_writer_args(
    args: tuple[Any, ...],
) -> tuple[int, float, tuple[int, int], bool, list[Any]]:
    """Sort out cv2.VideoWriter's overloads: ``(fourcc, fps, size[, isColor|params])`` and
    ``(apiPreference, fourcc, fps, size[, params|isColor])``."""

    def is_size(v: Any) -> bool:
        return (
            isinstance(v, (tuple, list))
            and len(v) == 2
            and all(isinstance(x, (int, np.integer)) for x in v)
        )

    # Without apiPreference frameSize is the third argument; with it, the third is fps
    # (a number), so a size there settles it. Only then may args[3] be frameSize: a
    # one-pair params list ([id, value]) in the fourth place looks like a size too.
    if not (len(args) >= 3 and is_size(args[2])) and len(args) >= 4 and is_size(args[3]):
        args = args[1:]  # drop apiPreference
    if len(args) < 3 or not is_size(args[2]):
        raise TypeError("VideoWriter(filename, fourcc, fps, frameSize[, isColor | params])")
    code, fps, size = int(args[0]), float(args[1]), (int(args[2][0]), int(args[2][1]))
    is_color, params = True, []
    if len(args) > 3:
        extra = args[3]
        if isinstance(extra, (list, tuple)):
            params = list(extra)
        else:
            is_color = bool(extra)
    if len(args) > 4:
        raise TypeError("too many arguments to VideoWriter")
    return code, fps, size, is_color, params
