"""Decoding ``.odc`` files back to files other programs open.

- :func:`export_video`: a video stream -> ``.mp4`` / ``.mkv`` / ``.mov`` (any format
  PyAV writes), re-encoded with a conventional codec (libx264 by default), with the
  source's timestamps, frame rate, colour tags and rotation, and every passthrough audio
  stream remuxed untouched.
- :func:`export_pictures`: the pictures of an image stream, or the frames (or only the
  keyframes) of a video stream -> PNG / JPEG / WebP files.

Both write atomically: a temporary file beside each output, renamed on success.

Output names for :func:`export_pictures`: a directory (an existing one, or a path ending
in ``/``) receives ``<stem>_%06d.png``; a name with a ``%d``-style field (``out_%04d.png``)
is formatted with each picture's index in its stream (a frame number for video, counting
every frame, also with ``keyframes_only``); a plain name (``out.png``) takes exactly one
picture.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from onedc_media import container
from onedc_media.codec import CodecRegistry
from onedc_media.container import InputContainer, Packet, StreamHeader
from onedc_media.errors import InvalidImageError, InvalidVideoError, MediaError
from onedc_media.imageio import WRITE_SUFFIXES
from onedc_media.pipeline.decoder import VideoDecoder, picture_stream
from onedc_media.pipeline.keyframes import decode_keyframes
from onedc_media.pipeline.media import (
    atomic_path,
    color_tags,
    display_rotation,
    rgb_to_frame,
)

__all__ = [
    "VIDEO_EXTENSIONS",
    "ExportResult",
    "export_pictures",
    "export_video",
    "names_many_pictures",
    "picture_paths",
]

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".m4v", ".webm", ".avi")
_PATTERN = re.compile(r"%0?\d*d")


@dataclass
class ExportResult:
    """What an export wrote."""

    paths: list[str]
    frames: int
    audio_packets: int = 0
    #: GOPs whose regenerated intra picture differed from its checksum (see hybrid)
    mismatches: int = 0


# -- video ------------------------------------------------------------------------------


def export_video(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    video_codec: str = "libx264",
    crf: float = 18,
    preset: str = "medium",
    audio: bool = True,
    stream: int | None = None,
    codecs: CodecRegistry | None = None,
    device: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> ExportResult:
    """Decode the video stream of the ``.odc`` file *source* into *output* (mp4, mkv...).

    :param video_codec: FFmpeg encoder for the video (``libx264``, ``libx265``...).
    :param crf: its constant-rate factor (libx264 18 is visually lossless).
    :param preset: its speed preset.
    :param audio: remux the passthrough audio streams.
    :param stream: the video stream's index (default: the first video stream).
    :param progress: called as ``progress(frames_done, None)``.
    """
    source, output = os.fspath(source), os.fspath(output)
    with container.open(source) as inp:
        video = picture_stream(inp, stream)
        if video.media_type != "video":
            raise InvalidVideoError(
                f"stream {video.index} holds still images: decode it to .png / .jpg files",
                filename=source,
            )
        audios = (
            [s for s in inp.streams if s.media_type == "audio" and s.passthrough] if audio else []
        )
        decoder = VideoDecoder(inp, video, codecs=codecs, device=device)
        frames = audio_packets = 0
        with atomic_path(output) as tmp:
            try:
                out = av.open(tmp, "w")
            except (av.FFmpegError, ValueError) as exc:
                raise MediaError(f"cannot write {output}: {exc}") from None
            try:
                vs = _add_video(out, video, video_codec, crf, preset, output)
                amap = {h.index: _add_passthrough(out, h, output) for h in audios}
                for packet in inp.demux([video.index, *amap]):
                    if packet.stream_index == video.index:
                        for frame in decoder.decode(packet):
                            _mux_frame(out, vs, video, frame.rgb, frame.pts)
                            frames += 1
                            if progress is not None:
                                progress(frames, None)
                    else:
                        _mux_packet(
                            out, amap[packet.stream_index], packet, inp.streams[packet.stream_index]
                        )
                        audio_packets += 1
                for frame in decoder.flush():
                    _mux_frame(out, vs, video, frame.rgb, frame.pts)
                    frames += 1
                for p in vs.encode(None):
                    out.mux(p)
                out.close()
            except av.FFmpegError as exc:
                hint = ""
                if amap:
                    codecs_ = ", ".join(sorted({h.codec for h in audios}))
                    hint = f" (does the format take {codecs_} audio? try .mkv, or no audio)"
                raise MediaError(f"cannot write {output}: {exc}{hint}") from None
            finally:
                _close_quietly(out)
                decoder.close()
    if frames == 0:
        raise InvalidVideoError("the video stream has no frames", filename=source)
    return ExportResult([output], frames, audio_packets, decoder.mismatches)


def _close_quietly(out: Any) -> None:
    try:
        out.close()
    except (av.FFmpegError, ValueError, OSError):  # closing a failed file
        log.debug("closing %s failed", out.name, exc_info=True)


def _add_video(out: Any, h: StreamHeader, codec: str, crf: float, preset: str, output: str) -> Any:
    try:
        vs = out.add_stream(codec, rate=h.frame_rate or Fraction(25))
    except (av.FFmpegError, ValueError) as exc:
        raise MediaError(f"cannot write {codec} video into {output}: {exc}") from None
    vs.width, vs.height = h.width, h.height
    odd = h.width % 2 or h.height % 2
    # 4:2:0 needs even sizes; 4:4:4 keeps odd ones exact (H.264 High 4:4:4, HEVC RExt).
    vs.pix_fmt = "yuv444p" if odd and codec in ("libx264", "libx265") else "yuv420p"
    vs.time_base = h.time_base
    vs.codec_context.time_base = h.time_base
    for key, value in color_tags(h.color).items():
        setattr(vs.codec_context, key, value)
    options = {"crf": f"{crf:g}", "preset": preset}
    if codec == "libx265":
        options["x265-params"] = "log-level=error"
    vs.codec_context.options = options
    rotation = display_rotation(h.metadata.get("rotate"))
    if rotation:
        vs.set_display_rotation(rotation)
    language = h.metadata.get("language")
    if language:
        vs.metadata["language"] = language
    return vs


def _mux_frame(out: Any, vs: Any, h: StreamHeader, rgb: np.ndarray, pts: int | None) -> None:
    frame = rgb_to_frame(rgb, h.color, vs.pix_fmt)
    frame.pts = pts
    frame.time_base = h.time_base
    for p in vs.encode(frame):
        out.mux(p)


def _add_passthrough(out: Any, h: StreamHeader, output: str) -> Any:
    """An output stream that takes *h*'s packets as they are.

    PyAV copies codec parameters only from another stream, so the stream is made with
    the codec's encoder, opened (never used), and given the stored extradata before the
    header is written. The sample format is the stored one when the encoder takes it,
    else one it takes (a format only describes decoded samples; the packets stay as
    they are). Without an encoder for the codec, a stream without a codec context
    is used, which suits codecs that need no extradata (MP3, AC-3).
    """
    fmt = _openable_format(h)
    try:
        if fmt is None:
            stream = out.add_mux_stream(h.codec, rate=h.sample_rate or None)
            stream.time_base = h.time_base
        else:
            stream = out.add_stream(h.codec, rate=h.sample_rate or None)
            ctx = stream.codec_context
            _describe(ctx, h, fmt)
            stream.time_base = h.time_base
            ctx.open()
            ctx.extradata = h.extradata or None
    except (av.FFmpegError, ValueError, TypeError) as exc:
        raise MediaError(
            f"cannot carry the {h.codec} audio into {os.path.basename(output)} ({exc}); "
            "try another container (.mkv), or decode without audio"
        ) from None
    if h.metadata.get("language"):
        stream.metadata["language"] = h.metadata["language"]
    return stream


def _describe(ctx: Any, h: StreamHeader, fmt: str) -> None:
    if h.sample_rate:
        ctx.sample_rate = h.sample_rate
    if h.channel_layout:
        ctx.layout = h.channel_layout
    ctx.format = fmt
    ctx.time_base = h.time_base
    ctx.options = {"strict": "experimental"}  # e.g. FFmpeg's vorbis: never run anyway


def _openable_format(h: StreamHeader) -> str | None:
    """A sample format with which *h*'s codec's encoder opens, or ``None``."""
    try:
        codec = av.codec.Codec(h.codec, "w")
    except (av.FFmpegError, ValueError):  # UnknownCodecError: no encoder in this FFmpeg
        return None
    formats = [h.sample_format, *(f.name for f in codec.audio_formats or ())]
    for fmt in dict.fromkeys(f for f in formats if f):
        try:
            ctx = av.CodecContext.create(codec.name, "w")
            _describe(ctx, h, fmt)
            ctx.open()
        except (av.FFmpegError, ValueError, TypeError):
            continue
        return fmt
    return None


def _mux_packet(out: Any, stream: Any, packet: Packet, h: StreamHeader) -> None:
    p = av.Packet(packet.data)
    p.stream = stream
    p.time_base = h.time_base
    p.pts = packet.pts
    p.dts = packet.dts if packet.dts is not None else packet.pts
    p.duration = packet.duration
    p.is_keyframe = packet.keyframe
    out.mux(p)


# -- pictures ---------------------------------------------------------------------------


def names_many_pictures(output: str | os.PathLike[str]) -> bool:
    """Whether *output* is a directory or a ``%d``-style pattern (one file per picture),
    rather than a single file name (see the module docstring)."""
    output = os.fspath(output)
    return _is_folder(output) or _PATTERN.search(output) is not None


def _is_folder(output: str) -> bool:
    return output.endswith(("/", os.sep)) or os.path.isdir(output)


def picture_paths(
    output: str | os.PathLike[str], stem: str, ext: str = ".png"
) -> Callable[[int], str]:
    """A function from picture index to path, for *output* (see the module docstring)."""
    output = os.fspath(output)
    if _is_folder(output):
        return lambda i: os.path.join(output, f"{stem}_{i:06d}{ext}")
    if _PATTERN.search(output):
        return lambda i: _PATTERN.sub(lambda m: m.group(0) % i, output, count=1)
    return lambda i: output


def export_pictures(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    keyframes_only: bool = False,
    stream: int | None = None,
    jpeg_quality: int = 95,
    codecs: CodecRegistry | None = None,
    device: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> ExportResult:
    """Write the pictures of an image stream, or the frames of a video stream, as images.

    The image format follows *output*'s extension (``.png`` by default for a directory).
    With ``keyframes_only`` a video gives only its keyframes (the keyframe codec's
    pictures; nothing else is decoded).

    :raises InvalidImageError: a plain file name was given for more than one picture.
    """
    source, output = os.fspath(source), os.fspath(output)
    ext = os.path.splitext(output)[1].lower()
    if ext not in WRITE_SUFFIXES:
        ext = ".png"
    stem = os.path.splitext(os.path.basename(source))[0]
    name = picture_paths(output, stem, ext)
    single = not names_many_pictures(output)
    with container.open(source) as inp:
        h = picture_stream(inp, stream)
        if single and _count_pictures(inp, h, keyframes_only) > 1:
            raise InvalidImageError(
                f"{source} holds more than one picture: give a directory (out/) or a "
                "pattern (out_%04d.png) instead of a single file name"
            )
        if single and os.path.dirname(output):
            os.makedirs(os.path.dirname(output), exist_ok=True)
        elif not single:
            folder = os.path.dirname(name(0))
            if folder:
                os.makedirs(folder, exist_ok=True)
        paths: list[str] = []
        decoder = None
        if h.media_type != "image" and not keyframes_only:
            decoder = VideoDecoder(inp, h, codecs=codecs, device=device)
        try:
            for index, rgb in _pictures(inp, h, decoder, codecs, device):
                path = name(index)
                _write_image(path, rgb, jpeg_quality)
                paths.append(path)
                if progress is not None:
                    progress(len(paths), None)
        finally:
            if decoder is not None:
                decoder.close()
    if not paths:
        raise InvalidImageError(f"stream {h.index} holds no pictures", filename=source)
    return ExportResult(paths, len(paths), 0, 0 if decoder is None else decoder.mismatches)


def _count_pictures(inp: InputContainer, h: StreamHeader, keyframes_only: bool) -> int:
    if h.media_type == "image" or keyframes_only:
        return sum(1 for e in inp.index if e.stream_index == h.index)
    return sum(1 for _ in inp.demux(h.index))


def _pictures(
    inp: InputContainer,
    h: StreamHeader,
    decoder: VideoDecoder | None,
    codecs: CodecRegistry | None,
    device: str | None,
) -> Any:
    """``(index in the stream, rgb)`` of the pictures to write: every frame through
    *decoder*, or without one only the keyframes (every picture of an image stream)."""
    if decoder is None:
        indices: list[int] = []

        def packets() -> Any:
            for i, packet in enumerate(inp.demux(h.index)):
                if packet.keyframe:
                    indices.append(i)
                    yield packet.data

        for n, rgb in enumerate(decode_keyframes(h, packets(), codecs=codecs, device=device)):
            yield indices[n], rgb
        return
    for i, frame in enumerate(decoder.frames()):
        yield i, frame.rgb


def _write_image(path: str, rgb: np.ndarray, jpeg_quality: int) -> None:
    import cv2

    from onedc_media.imageio import write_image

    ext = os.path.splitext(path)[1].lower()
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, 101]  # > 100: lossless
    write_image(path, rgb, params)
