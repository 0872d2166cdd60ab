"""Still pictures to ``.odc`` files: the library behind ``onedc-media encode``.

One picture is written in the still form by default: a few dozen bytes of framing
around the codec's payload, naming the codec, the size and the model (by the start of
its weights' SHA-256; see ``docs/odc-format.md``). Several pictures of one size (or
``form="stream"``) go into the stream form: one image stream (``media_type="image"``),
one packet per picture, a stream header with the codec's parameters and the model's
full hashes. Readers open both forms alike.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from onedc_media import container
from onedc_media.codec.contract import check_frames
from onedc_media.errors import InvalidImageError, PluginError

__all__ = ["FORMS", "EncodeResult", "encode_pictures", "SRGB"]

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


def _file_progress(progress: Callable[[int, int], None], first: int, count: int,
                   n: int) -> Callable[[int, int], None]:
    """A batch's ``(done, total)`` for pictures ``first .. first + count`` of *n*, as the
    file's: the batches before it done, the same work per picture after it."""

    def report(done: int, total: int) -> None:
        per = total / max(count, 1)
        progress(round(per * first) + done, round(per * n))

    return report


def encode_pictures(pictures: Sequence[np.ndarray], output: str | os.PathLike, *, codec: str = "onedc",
                    options: Mapping[str, Any] | None = None, device: str | None = None,
                    batch_size: int = 4, plugins=None,
                    progress: Callable[[int, int], None] | None = None,
                    form: str = "auto") -> EncodeResult:
    """Encode RGB pictures of one size into one ``.odc`` file (written atomically).

    *form*: ``"still"`` (one picture, compact framing), ``"stream"`` (any number of
    pictures) or ``"auto"`` (still for one picture).

    ``progress(done, total)`` reports an encoder's work (see
    :attr:`~onedc_media.codec.contract.Encoder.progress`) over the whole file: each batch's
    count is offset by the batches before it and its total scaled to all the pictures,
    which share one size. Encoders that are fast never call it.
    """
    import onedc_media

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
    registry = (plugins or onedc_media.default_plugins()).codecs
    info = registry.get(codec)
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
            container.write_still(output, header, pkt)
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
    seconds = time.perf_counter() - t0
    return EncodeResult(str(output), codec, form, len(pictures), w * h * len(pictures),
                        os.path.getsize(output), payload, seconds)
