"""Video pipelines: keyframe policies and the PyAV transcode (imported lazily)."""

from onedc_media.pipeline.policy import KeyframePolicy, PolicyInfo, PolicyRegistry

__all__ = ["KeyframePolicy", "PolicyInfo", "PolicyRegistry"]
