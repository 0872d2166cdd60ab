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

from onedc_media.lazy import lazy_attributes
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
    "InterSettings": "onedc_media.pipeline.hybrid",
    "VideoDecoder": "onedc_media.pipeline.decoder",
    "VideoEncoder": "onedc_media.pipeline.encoder",
    "decode_keyframes": "onedc_media.pipeline.keyframes",
    "export_pictures": "onedc_media.pipeline.export",
    "export_video": "onedc_media.pipeline.export",
}

__getattr__ = lazy_attributes(__name__, _LAZY)
