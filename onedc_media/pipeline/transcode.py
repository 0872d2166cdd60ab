"""``transcode``: any video PyAV reads -> ``.odc`` (keyframe codec + hybrid inter coding).

::

    input.mp4 --VideoSource--> RGB frames --VideoEncoder--> video stream  \\
              \\--------------> audio packets (untouched) --> passthrough  > out.odc
                                                                         /

The output has one video stream (see :mod:`onedc_media.pipeline.encoder`) followed by
one passthrough stream per audio stream of the input: its packets are the input's
own, with the codec name, extradata, sample rate, channels, layout, sample format and
time base in the stream header, so ``onedc-media decode`` can remux them unchanged.
Subtitle and data streams are not carried.

The output file is written atomically: a temporary file beside it, renamed on success.
Progress is reported through a callback (the library prints nothing).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from onedc_media import container
from onedc_media.container import Packet, StreamHeader
from onedc_media.pipeline.encoder import EncodeStats, VideoEncoder, make_policy
from onedc_media.pipeline.hybrid import InterSettings
from onedc_media.pipeline.source import SourceFrame, VideoSource

__all__ = ["DEFAULT_INTER", "DEFAULT_KEYFRAME_CODEC", "TranscodeResult", "transcode"]

#: The keyframe codec used when none is named.
DEFAULT_KEYFRAME_CODEC = "onedc"
#: The inter layer used when none is named: libx264 at its default CRF and preset.
DEFAULT_INTER = InterSettings()


@dataclass
class TranscodeResult:
    """What :func:`transcode` wrote."""

    output: str
    width: int
    height: int
    frames: int
    duration_s: float  #: from the first frame's pts to the end of the last frame
    file_bytes: int
    video: EncodeStats
    audio_streams: int
    audio_packets: int
    audio_bytes: int
    elapsed_s: float

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


def transcode(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    keyframe_codec: str = DEFAULT_KEYFRAME_CODEC,
    codec_options: Mapping[str, Any] | None = None,
    policy: str = "source",
    policy_options: Mapping[str, Any] | None = None,
    inter: InterSettings | None = DEFAULT_INTER,
    start: float | None = None,
    duration: float | None = None,
    max_frames: int | None = None,
    audio: bool = True,
    threads: int = 0,
    plugins: Any = None,
    device: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> TranscodeResult:
    """Transcode the video *input* into the ``.odc`` file *output*.

    :param keyframe_codec: registered codec for keyframes (``onedc``, ``jpeg``, ...).
    :param codec_options: its options (e.g. ``{"quality": 80}``).
    :param policy: keyframe policy name (``source``, ``gop``, ``scene`` or a plugin's).
    :param policy_options: its options (e.g. ``{"size": 30}`` for ``gop``).
    :param inter: the inter codec settings; ``None`` keeps keyframes only.
    :param start: skip to this time (seconds); timestamps then start near 0.
    :param duration: stop after this many seconds.
    :param max_frames: stop after this many frames.
    :param audio: carry the input's audio streams (passthrough).
    :param threads: decoding threads (0: automatic).
    :param plugins: loaded :class:`~onedc_media.hooks.Plugins` (default: installed).
    :param device: device for the keyframe codec (``None``: its default).
    :param progress: called as ``progress(frames_done, frames_expected_or_None)``.
    :raises InvalidVideoError: the input is unreadable, has no video or no frames.
    """
    if plugins is None:
        import onedc_media

        plugins = onedc_media.default_plugins()
    began = time.perf_counter()
    output = os.fspath(output)
    policy_obj = make_policy(policy, policy_options, plugins=plugins)
    with VideoSource(
        os.fspath(input),
        start=start,
        duration=duration,
        max_frames=max_frames,
        audio=audio,
        threads=threads,
    ) as src:
        total = src.estimated_frames
        import onedc_media

        with container.open(output, "w") as out:
            out.metadata = {"encoder": f"onedc-media {onedc_media.__version__}"}
            encoder = VideoEncoder(
                out,
                width=src.width,
                height=src.height,
                time_base=src.time_base,
                frame_rate=src.frame_rate,
                color=src.color,
                metadata=src.metadata,
                keyframe_codec=keyframe_codec,
                codec_options=codec_options,
                policy=policy_obj,
                inter=inter,
                codecs=plugins.codecs,
                device=device,
            )
            with encoder:
                audio_index = [out.add_stream(_audio_header(info)).index for info in src.audio]
                audio_packets = audio_bytes = 0
                first_pts: int | None = None
                end_pts = 0
                for item in src:
                    if isinstance(item, SourceFrame):
                        encoder.write(
                            item.rgb,
                            item.pts,
                            duration=item.duration,
                            source_keyframe=item.keyframe,
                        )
                        if first_pts is None:
                            first_pts = item.pts
                        end_pts = item.pts + item.duration
                        if progress is not None:
                            progress(encoder.frames_written, total)
                    else:
                        out.mux(
                            Packet(
                                audio_index[item.audio_index],
                                item.data,
                                pts=item.pts,
                                dts=item.dts,
                                duration=item.duration,
                                keyframe=item.keyframe,
                            )
                        )
                        audio_packets += 1
                        audio_bytes += len(item.data)
            stats = encoder.stats
        width, height, time_base = src.width, src.height, src.time_base
    return TranscodeResult(
        output=output,
        width=width,
        height=height,
        frames=stats.frames,
        duration_s=float(Fraction(end_pts - (first_pts or 0)) * time_base),
        file_bytes=os.path.getsize(output),
        video=stats,
        audio_streams=len(audio_index),
        audio_packets=audio_packets,
        audio_bytes=audio_bytes,
        elapsed_s=time.perf_counter() - began,
    )


def _audio_header(info: Any) -> StreamHeader:
    return StreamHeader(
        media_type="audio",
        codec=info.codec,
        time_base=info.time_base,
        passthrough=True,
        extradata=info.extradata,
        sample_rate=info.sample_rate,
        channels=info.channels,
        channel_layout=info.channel_layout,
        sample_format=info.sample_format,
        metadata=info.metadata,
    )
