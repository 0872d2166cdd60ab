"""Numbers and codes of the OpenCV adapters (frozen: they appear in user code).

``imencode`` parameters
-----------------------
As with ``cv2.imencode``, ``params`` is a flat list of ``[id, value, id, value, ...]``:

==========================  ==========================================================
``IMWRITE_ODC_CODEC``       the codec: one of the ``ODC_CODEC_*`` numbers below, or a
                            registered codec name as a ``str`` (``"jpeg"``); default
                            ``onedc``
``IMWRITE_ODC_QUALITY``     the codec's quality option (``-q``): OneDC's rate point
                            (1 = fewest bits), 1..100 for JPEG / WebP / AVIF / HEVC
==========================  ==========================================================

For example ``imencode(".odc", img, [IMWRITE_ODC_CODEC, ODC_CODEC_JPEG,
IMWRITE_ODC_QUALITY, 90])``. Other codec options go in the ``options`` keyword
(``options={"subsampling": "444"}``).

``VideoWriter``
---------------
The fourcc names the keyframe codec (:data:`FOURCC_CODECS`; ``0`` or ``-1`` takes the
default, ``onedc``); the frames between keyframes are coded by libx264 unless the
parameters say otherwise. ``params`` (the ``cv2.VideoWriter`` overload that takes them)
accepts OpenCV's ``VIDEOWRITER_PROP_QUALITY`` (1; the keyframe codec's quality) and
``VIDEOWRITER_PROP_KEY_INTERVAL`` (10; frames per GOP, default 250), and:

===================================  ================================================
``VIDEOWRITER_PROP_ODC_INTER_CODEC``  ``ODC_INTER_X264`` (default), ``ODC_INTER_X265``,
                                      ``ODC_INTER_SVTAV1`` or ``ODC_INTER_NONE``
                                      (keyframes only); or the codec name as a ``str``
``VIDEOWRITER_PROP_ODC_INTER_CRF``    the inter codec's CRF
===================================  ================================================

The ``ODC`` numbers start at 0x0DC0, far from OpenCV's own, so they never collide.
"""

from __future__ import annotations

IMWRITE_ODC_QUALITY = 0x0DC1
IMWRITE_ODC_CODEC = 0x0DC2

VIDEOWRITER_PROP_ODC_INTER_CODEC = 0x0DD1
VIDEOWRITER_PROP_ODC_INTER_CRF = 0x0DD2

ODC_CODEC_ONEDC = 0
ODC_CODEC_JPEG = 1
ODC_CODEC_WEBP = 2
ODC_CODEC_PNG = 3
ODC_CODEC_AVIF = 4
ODC_CODEC_HEVC_INTRA = 5

#: ``ODC_CODEC_*`` number -> codec name. Frozen: append only.
ODC_CODECS: dict[int, str] = {
    ODC_CODEC_ONEDC: "onedc",
    ODC_CODEC_JPEG: "jpeg",
    ODC_CODEC_WEBP: "webp",
    ODC_CODEC_PNG: "png",
    ODC_CODEC_AVIF: "avif",
    ODC_CODEC_HEVC_INTRA: "hevc-intra",
}

ODC_INTER_NONE = 0
ODC_INTER_X264 = 1
ODC_INTER_X265 = 2
ODC_INTER_SVTAV1 = 3

#: ``ODC_INTER_*`` number -> inter codec name (``None``: keyframes only).
ODC_INTER_CODECS: dict[int, str | None] = {
    ODC_INTER_NONE: None,
    ODC_INTER_X264: "libx264",
    ODC_INTER_X265: "libx265",
    ODC_INTER_SVTAV1: "libsvtav1",
}


def fourcc(c1: str, c2: str, c3: str, c4: str) -> int:
    """``cv2.VideoWriter_fourcc``: four characters as a little-endian int."""
    return ord(c1) | ord(c2) << 8 | ord(c3) << 16 | ord(c4) << 24


def fourcc_name(code: int) -> str:
    """The four characters of a fourcc code."""
    return "".join(chr((int(code) >> (8 * i)) & 0xFF) for i in range(4))


#: fourcc -> keyframe codec for ``VideoWriter``; the first code per codec is what
#: ``VideoCapture.get(CAP_PROP_FOURCC)`` reports.
FOURCC_CODECS: dict[str, str] = {
    "ONDC": "onedc",
    "MJPG": "jpeg",
    "JPEG": "jpeg",
    "WEBP": "webp",
    "PNG ": "png",
    "MPNG": "png",
    "AV01": "avif",
    "AVIF": "avif",
    "HEVC": "hevc-intra",
    "HEV1": "hevc-intra",
    "HVC1": "hevc-intra",
}
