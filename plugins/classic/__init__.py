"""Classic codecs (JPEG, WebP, PNG, AVIF/AV1-intra, HEVC-intra): the baselines.

This module only *declares* the codecs, through the same ``register_codecs`` hook a
third-party plugin uses (entry point ``classic = onedc_media_plugins.classic`` in the
``onedc_media.plugins`` group). It imports nothing heavy: OpenCV and PyAV load only when
a codec's ``factory`` is imported, i.e. when the codec is actually used.

===========  ============================  =========================================
codec        implementation                packet (see the module docstrings)
===========  ============================  =========================================
jpeg         OpenCV (libjpeg-turbo)         a complete JFIF file
webp         OpenCV (libwebp)               a complete RIFF/WebP file
png          OpenCV (libpng), lossless      a complete PNG file
avif         PyAV: libsvtav1 / libdav1d     14-byte header + AV1 temporal unit (OBUs)
hevc-intra   PyAV: libx265 / FFmpeg hevc    14-byte header + HEVC Annex-B access unit
===========  ============================  =========================================
"""

from __future__ import annotations

from onedc_media import Capabilities, CodecInfo, CodecOption, CodecRegistry, hookimpl

__all__ = ["CODECS", "register_codecs"]

_OPENCV = "onedc_media_plugins.classic.opencv_codecs"
_AV = "onedc_media_plugins.classic.av_codecs"

#: x265 presets, fastest first (``--preset`` of x265 / FFmpeg).
X265_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)


# The quality ladders run from each codec's lowest useful rate on photographs to near
# transparency; JPEG cannot reach the lowest rates of the others, so its ladder starts higher.


def _quality(default: int, help: str) -> CodecOption:
    return CodecOption("quality", "int", default, help, min=1, max=100)


CODECS: tuple[CodecInfo, ...] = (
    CodecInfo(
        name="jpeg",
        long_name="JPEG (OpenCV / libjpeg-turbo), baseline JFIF",
        kind="image",
        lossy=True,
        factory=f"{_OPENCV}:JpegCodec",
        options=(
            _quality(75, "libjpeg quality; higher is better and larger"),
            CodecOption(
                "subsampling",
                "str",
                "420",
                "chroma subsampling of the YCbCr planes",
                choices=("420", "422", "444"),
            ),
        ),
        quality_ladder=(2, 5, 10, 20, 30, 50, 75),
    ),
    CodecInfo(
        name="webp",
        long_name="WebP lossy (OpenCV / libwebp), VP8 intra",
        kind="image",
        lossy=True,
        factory=f"{_OPENCV}:WebpCodec",
        options=(_quality(75, "libwebp quality; higher is better and larger"),),
        quality_ladder=(1, 5, 10, 25, 50, 75, 85),
    ),
    CodecInfo(
        name="png",
        long_name="PNG (OpenCV / libpng), lossless",
        kind="image",
        lossy=False,
        factory=f"{_OPENCV}:PngCodec",
        options=(
            CodecOption(
                "compression",
                "int",
                6,
                "zlib effort; higher is smaller and slower, never lossy",
                min=0,
                max=9,
            ),
        ),
        capabilities=Capabilities(lossless=True),
        # -q means picture quality; PNG has one (perfect), so -q does not apply.
        quality_option=None,
    ),
    CodecInfo(
        name="avif",
        long_name="AV1 intra, the AVIF image coding (SVT-AV1 encoder, dav1d decoder)",
        kind="image",
        lossy=True,
        factory=f"{_AV}:AvifCodec",
        options=(
            _quality(50, "maps to SVT-AV1 CRF = round(1 + (100 - quality) * 62 / 99)"),
            CodecOption(
                "preset", "int", 6, "SVT-AV1 preset; lower is slower and smaller", min=0, max=13
            ),
        ),
        quality_ladder=(1, 5, 10, 20, 30, 40, 50, 60),
    ),
    CodecInfo(
        name="hevc-intra",
        long_name="HEVC intra, Main profile (x265 encoder, FFmpeg decoder)",
        kind="intra-video",
        lossy=True,
        factory=f"{_AV}:HevcIntraCodec",
        options=(
            _quality(50, "maps to x265 CRF = 51 * (100 - quality) / 100"),
            CodecOption(
                "preset",
                "str",
                "medium",
                "x265 preset; slower is smaller",
                choices=X265_PRESETS,
            ),
        ),
        quality_ladder=(1, 5, 10, 15, 20, 25, 30, 40),
    ),
)


@hookimpl
def register_codecs(registry: CodecRegistry) -> None:
    """Declare the classic codecs (cheap: nothing is imported here)."""
    for info in CODECS:
        registry.add(info)
