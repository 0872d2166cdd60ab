"""onedc-media: OneDC one-step diffusion image compression as a media tool.

Importing this package is cheap (no torch): the heavy parts load on first use.
"""

from __future__ import annotations

from functools import lru_cache

from onedc_media.codec import (
    Capabilities,
    Codec,
    CodecInfo,
    CodecOption,
    CodecRegistry,
    Decoder,
    Encoder,
    ModelRef,
)
from onedc_media.errors import OdcError
from onedc_media.hooks import Plugins, hookimpl, load_plugins
from onedc_media.pipeline.policy import KeyframePolicy, PolicyInfo, PolicyRegistry

__version__ = "0.1.0"

__all__ = [
    "Capabilities",
    "Codec",
    "CodecInfo",
    "CodecOption",
    "CodecRegistry",
    "Decoder",
    "Encoder",
    "KeyframePolicy",
    "ModelRef",
    "OdcError",
    "PolicyInfo",
    "PolicyRegistry",
    "Plugins",
    "__version__",
    "default_plugins",
    "hookimpl",
    "load_plugins",
]


@lru_cache(maxsize=1)
def default_plugins() -> Plugins:
    """The plugins installed in this environment (entry points, minus blocked ones).

    Cached for the process; tests and tools that need another set call
    :func:`load_plugins` directly.
    """
    return load_plugins()
