"""Video pipelines: keyframe policies, the PyAV transcode, hybrid inter coding, decode.

::

    transcode.transcode(in, out)    any video -> .odc               (pipeline.transcode)
    export_video(odc, out.mp4)      .odc -> a video file, with audio (pipeline.export)
    export_pictures(odc, out/)      .odc -> PNG / JPEG pictures      (pipeline.export)
    decode_keyframes(stream, pkts)  THE keyframe-decode seam         (pipeline.keyframes)
    VideoEncoder / VideoDecoder     one video stream, frame by frame (pipeline.encoder/decoder)
    InterSettings                   the inter codec of hybrid coding (pipeline.hybrid)

(``transcode`` is also the name of its module, so import it from there.) Everything but
the policy contract is imported lazily, so ``import onedc_media`` stays
cheap (no PyAV, no OpenCV).
"""

from __future__ import annotations

import importlib
from typing import Any

from onedc_media.pipeline.policy import KeyframePolicy, PolicyInfo, PolicyRegistry

__all__ = [
    "InterSettings",
    "KeyframePolicy",
    "PolicyInfo",
    "PolicyRegistry",
    "VideoDecoder",
    "VideoEncoder",
    "decode_keyframes",
    "export_pictures",
    "export_video",
]

_LAZY = {
    "InterSettings": "hybrid",
    "VideoDecoder": "decoder",
    "VideoEncoder": "encoder",
    "decode_keyframes": "keyframes",
    "export_pictures": "export",
    "export_video": "export",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'onedc_media.pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"onedc_media.pipeline.{module}"), name)
    globals()[name] = value
    return value
