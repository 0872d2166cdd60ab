"""Still pictures to ``.odc`` files: the library behind ``onedc-media encode``.

One picture is written in the still form by default: a few dozen bytes of framing
around the codec's payload, naming the codec, the size and the model (by the start of
its weights' SHA-256; see ``docs/odc-format.md``). Several pictures of one size (or
``form="stream"``) go into the stream form: one image stream (``media_type="image"``),
one packet per picture, a stream header with the codec's parameters and the model's
full hashes. Readers open both forms alike.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, BinaryIO

import numpy as np

from onedc_media import container
from onedc_media.codec.contract import check_frames
from onedc_media.errors import InvalidImageError, PluginError

__all__ = ["FORMS", "EncodeResult", "PictureReader", "SRGB", "codec_registry", "encode_pictures"]

#: Colour description of 8-bit sRGB pictures (FFmpeg names; matrix "gbr" = stored as RGB).
SRGB = container.ColorInfo(primaries="bt709", transfer="iec61966-2-1", matrix="gbr", range="full")
#: ``form`` values of :func:`encode_pictures`: ``"auto"`` is the still form for one
#: picture and the stream form for several.
FORMS = ("auto", "still", "stream")


@dataclass(frozen=True)
class EncodeResult:
    path: str
    codec: str
    form: str
    pictures: int
    pixels: int
    file_bytes: int
    payload_bytes: int
    seconds: float

    @property
    def bpp(self) -> float:
        """Bits per pixel of the whole file (headers included)."""
        return self.file_bytes * 8 / self.pixels


def codec_registry(plugins=None):
    """The codec registry of *plugins* (default: the installed plugins')."""
    import onedc_media

    return (plugins or onedc_media.default_plugins()).codecs


def _file_progress(progress: Callable[[int, int], None], first: int, count: int,
                   n: int) -> Callable[[int, int], None]:
    """A batch's ``(done, total)`` for pictures ``first .. first + count`` of *n*, as the
    file's: the batches before it done, the same work per picture after it."""

    def report(done: int, total: int) -> None:
        per = total / max(count, 1)
        progress(round(per * first) + done, round(per * n))

    return report


def encode_pictures(pictures: Sequence[np.ndarray], output: str | os.PathLike | BinaryIO, *,
                    codec: str = "onedc",
                    options: Mapping[str, Any] | None = None, device: str | None = None,
                    batch_size: int = 4, plugins=None,
                    progress: Callable[[int, int], None] | None = None,
                    form: str = "auto") -> EncodeResult:
    """Encode RGB pictures of one size into one ``.odc`` file (a path is written
    atomically; a binary file object is written to as it is).

    *form*: ``"still"`` (one picture, compact framing), ``"stream"`` (any number of
    pictures) or ``"auto"`` (still for one picture).

    ``progress(done, total)`` reports an encoder's work (see
    :attr:`~onedc_media.codec.contract.Encoder.progress`) over the whole file: each batch's
    count is offset by the batches before it and its total scaled to all the pictures,
    which share one size. Encoders that are fast never call it.
    """
    pictures = check_frames(pictures)
    if not pictures:
        raise InvalidImageError("nothing to encode")
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
    if form == "auto":
        form = "still" if len(pictures) == 1 else "stream"
    if form == "still" and len(pictures) != 1:
        raise InvalidImageError(f"the still form holds one picture, not {len(pictures)}")
    h, w = pictures[0].shape[:2]
    for i, p in enumerate(pictures):
        if p.shape[:2] != (h, w):
            raise InvalidImageError(
                f"picture {i} is {p.shape[1]}x{p.shape[0]}, the first is {w}x{h}: "
                "one .odc image stream holds pictures of one size"
            )
    info = codec_registry(plugins).get(codec)
    impl = info.create()
    t0 = time.perf_counter()
    payload = 0
    with impl.encoder(info.resolve_options(options), device=device) as enc:
        header = container.StreamHeader(
            media_type="image", codec=codec, width=w, height=h, pixel_format="rgb24", color=SRGB,
            time_base=Fraction(1, 1), codec_params=dict(enc.params), model=enc.model,
        )
        if form == "still":
            if progress is not None:
                enc.progress = progress
            packets = enc.encode(pictures)
            if len(packets) != 1:
                raise PluginError(f"codec {codec!r} gave {len(packets)} packets for one picture")
            pkt = packets[0]
            payload = len(pkt)
            size = container.write_still(output, header, pkt)
        else:
            with container.open(output, "w") as out:
                stream = out.add_stream(header)
                for s in range(0, len(pictures), batch_size):
                    if progress is not None:
                        enc.progress = _file_progress(progress, s, len(pictures[s : s + batch_size]),
                                                      len(pictures))
                    for j, pkt in enumerate(enc.encode(pictures[s : s + batch_size])):
                        payload += len(pkt)
                        out.mux(container.Packet(stream_index=stream.index, data=pkt, pts=s + j,
                                                 duration=1, keyframe=True))
            size = out.bytes_written  # closed: the whole file
    seconds = time.perf_counter() - t0
    path = os.fspath(output) if isinstance(output, (str, os.PathLike)) else ""
    return EncodeResult(str(path), codec, form, len(pictures), w * h * len(pictures), size, payload,
                        seconds)


class PictureReader:
    """The pictures of an ``.odc`` file (either form), decoded on demand: what the Pillow
    and imageio plugins read through.

    Decoding goes through :func:`~onedc_media.pipeline.keyframes.decode_keyframes` (the
    decoder runtime) for image streams, and :class:`~onedc_media.pipeline.decoder.VideoDecoder`
    for video streams, one frame after another.

    :param file: a path or a seekable binary file object (not closed here).
    :param model: an exported model folder or an embedded model's name, for codecs that
        take a ``model`` option: the file's weights must be these (a still's model id or
        a stream's hash is checked against them); ``None`` finds them as ``decode`` does.
    :param device: passed to the codec (``None``: its default).
    :raises OdcError: the file is not a readable ``.odc`` file or holds no pictures.
    """

    def __init__(self, file: str | os.PathLike | BinaryIO, *, model: str | os.PathLike | None = None,
                 device: str | None = None, plugins=None) -> None:
        from onedc_media.pipeline.decoder import picture_stream

        self._inp = container.open(file)
        try:
            self.stream = picture_stream(self._inp)
            if self.stream.media_type == "image":
                self._entries = [e for e in self._inp.index if e.stream_index == self.stream.index]
                count = len(self._entries)
            else:
                count = sum(1 for _ in self._inp.demux(self.stream.index))
            if not count:
                raise InvalidImageError("the file holds no pictures", filename=self._inp.name)
        except BaseException:
            self._inp.close()
            raise
        #: number of pictures (frames of a video stream)
        self.count = count
        #: the ``model`` and ``device`` pictures decode with (settable between pictures)
        self.model = None if model is None else os.fspath(model)
        self.device = device
        self._plugins = plugins
        self._frames: Any = None  # a video's decoder and its frames, read in order
        self._iter: Any = None
        self._next = 0

    @property
    def form(self) -> str:
        """``"still"`` or ``"stream"``."""
        return self._inp.form

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the pictures."""
        return self.stream.width, self.stream.height

    def _registry(self):
        return codec_registry(self._plugins)

    def _options(self) -> dict[str, Any] | None:
        if self.model is None:
            return None
        info = self._registry().get(self.stream.codec)
        return {"model": os.fspath(self.model)} if any(o.name == "model" for o in info.options) else None

    def picture(self, index: int) -> np.ndarray:
        """Picture *index* as HxWx3 uint8 RGB.

        :raises IndexError: there is no such picture.
        :raises OdcError: the picture is damaged, or its model or codec is not here.
        """
        if not 0 <= index < self.count:
            raise IndexError(f"picture {index} of {self.count}")
        if self.stream.media_type == "image":
            from onedc_media.pipeline.keyframes import decode_keyframes

            packet = self._inp.read_packet_at(self._entries[index]).data
            frames = decode_keyframes(self.stream, [packet], codecs=self._registry(), device=self.device,
                                      options=self._options())
            with contextlib.closing(frames):  # type: ignore[type-var]
                return next(frames)
        return self._video_frame(index)

    def _video_frame(self, index: int) -> np.ndarray:
        from onedc_media.pipeline.decoder import VideoDecoder

        if self._frames is None or index < self._next:
            self._close_frames()
            self._frames = VideoDecoder(self._inp, self.stream, codecs=self._registry(), device=self.device)
            self._iter = self._frames.frames()
            self._next = 0
        while True:
            frame = next(self._iter, None)
            if frame is None:
                raise InvalidImageError(f"the video ends before frame {index}", filename=self._inp.name)
            self._next += 1
            if self._next - 1 == index:
                return frame.rgb

    def __iter__(self):
        for i in range(self.count):
            yield self.picture(i)

    def _close_frames(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None

    def close(self) -> None:
        self._close_frames()
        self._inp.close()

    def __enter__(self) -> PictureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
