"""The built-in keyframe policies (``source``, ``gop``, ``scene``), registered through the
same ``register_keyframe_policies`` hook a third-party plugin uses (entry point
``policies = onedc_media_plugins.policies``). Declaring them imports nothing heavy; the
implementations live in :mod:`onedc_media.pipeline.policies` and load on first use.
"""

from __future__ import annotations

from onedc_media import CodecOption, PolicyInfo, PolicyRegistry, hookimpl

__all__ = ["POLICIES", "register_keyframe_policies"]

_IMPL = "onedc_media.pipeline.policies"

POLICIES: tuple[PolicyInfo, ...] = (
    PolicyInfo(
        name="source",
        description="the input's own keyframes (keeps its GOP structure)",
        factory=f"{_IMPL}:SourcePolicy",
        options=(
            CodecOption(
                "max_gop",
                "int",
                0,
                "also force a keyframe after this many frames (0: never)",
                min=0,
            ),
        ),
    ),
    PolicyInfo(
        name="gop",
        description="a keyframe every `size` frames (fixed GOP; --gop N)",
        factory=f"{_IMPL}:GopPolicy",
        options=(CodecOption("size", "int", 250, "frames per GOP; 1 = all intra", min=1),),
    ),
    PolicyInfo(
        name="scene",
        description="a keyframe at each scene cut (FFmpeg scdet score), within GOP bounds",
        factory=f"{_IMPL}:SceneCutPolicy",
        options=(
            CodecOption(
                "threshold",
                "float",
                10.0,
                "scdet score (0..100) above which a frame is a cut",
                min=0,
                max=100,
            ),
            CodecOption("min_gop", "int", 8, "fewest frames between two keyframes", min=1),
            CodecOption(
                "max_gop",
                "int",
                250,
                "force a keyframe after this many frames (0: never)",
                min=0,
            ),
        ),
    ),
)


@hookimpl
def register_keyframe_policies(registry: PolicyRegistry) -> None:
    """Declare the built-in keyframe policies (cheap: nothing is imported here)."""
    for info in POLICIES:
        registry.add(info)
