"""OpenCV adapters for ``.odc``: ``cv2``'s signatures, BGR order, ``.odc`` inside.

::

    from onedc_media import cv as odc

    ok, buf = odc.imencode(".odc", bgr, [odc.IMWRITE_ODC_CODEC, odc.ODC_CODEC_JPEG,
                                         odc.IMWRITE_ODC_QUALITY, 90])
    bgr2 = odc.imdecode(buf, cv2.IMREAD_COLOR)

    out = odc.VideoWriter("clip.odc", odc.VideoWriter.fourcc(*"ONDC"), 25, (w, h))
    out.write(bgr); out.release()

    with odc.VideoCapture("clip.odc") as cap:
        cap.set(cv2.CAP_PROP_POS_FRAMES, 100)   # seeks through the keyframe index
        for bgr in cap: ...

Parameters and codes: :mod:`onedc_media.cv.constants`. Behaviour and the few
differences from ``cv2``: :mod:`onedc_media.cv.image` and :mod:`onedc_media.cv.video`.
Importing this package is cheap; OpenCV and PyAV load on first use.
"""

from __future__ import annotations

from onedc_media.cv.constants import (
    FOURCC_CODECS,
    IMWRITE_ODC_CODEC,
    IMWRITE_ODC_QUALITY,
    ODC_CODEC_AVIF,
    ODC_CODEC_HEVC_INTRA,
    ODC_CODEC_JPEG,
    ODC_CODEC_ONEDC,
    ODC_CODEC_PNG,
    ODC_CODEC_WEBP,
    ODC_CODECS,
    ODC_INTER_CODECS,
    ODC_INTER_NONE,
    ODC_INTER_SVTAV1,
    ODC_INTER_X264,
    ODC_INTER_X265,
    VIDEOWRITER_PROP_ODC_INTER_CODEC,
    VIDEOWRITER_PROP_ODC_INTER_CRF,
    fourcc,
)
from onedc_media.lazy import lazy_attributes

__all__ = [
    "FOURCC_CODECS",
    "IMWRITE_ODC_CODEC",
    "IMWRITE_ODC_QUALITY",
    "ODC_CODECS",
    "ODC_CODEC_AVIF",
    "ODC_CODEC_HEVC_INTRA",
    "ODC_CODEC_JPEG",
    "ODC_CODEC_ONEDC",
    "ODC_CODEC_PNG",
    "ODC_CODEC_WEBP",
    "ODC_INTER_CODECS",
    "ODC_INTER_NONE",
    "ODC_INTER_SVTAV1",
    "ODC_INTER_X264",
    "ODC_INTER_X265",
    "VIDEOWRITER_PROP_ODC_INTER_CODEC",
    "VIDEOWRITER_PROP_ODC_INTER_CRF",
    "VideoCapture",
    "VideoWriter",
    "fourcc",
    "imdecode",
    "imencode",
]

_LAZY = {
    "imencode": "onedc_media.cv.image",
    "imdecode": "onedc_media.cv.image",
    "VideoCapture": "onedc_media.cv.video",
    "VideoWriter": "onedc_media.cv.video",
}

__getattr__ = lazy_attributes(__name__, _LAZY)
