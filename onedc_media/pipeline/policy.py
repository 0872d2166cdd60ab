"""The keyframe-policy contract: which frames of a video become keyframes.

Policies are pluggable exactly like codecs: a frozen :class:`PolicyInfo` (cheap) names
its implementation lazily, and plugins add them from a ``register_keyframe_policies``
hook. A policy sees frames in decode order and answers, per frame, whether it starts a
new GOP.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from onedc_media.codec.contract import CodecOption
from onedc_media.codec.registry import Registry
from onedc_media.errors import PluginError

__all__ = ["KeyframePolicy", "PolicyInfo", "PolicyRegistry"]


class KeyframePolicy(ABC):
    """Decides keyframes. Instances are stateful: one per video, frames in order."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    @abstractmethod
    def is_keyframe(self, index: int, frame: np.ndarray, *, source_keyframe: bool) -> bool:
        """Return True if frame *index* (0-based) should be a keyframe.

        :param frame: the HxWx3 uint8 RGB picture.
        :param source_keyframe: whether the input container flagged it as a keyframe.
        The first frame is always a keyframe; callers enforce that.
        """


@dataclass(frozen=True)
class PolicyInfo:
    """Declaration of a keyframe policy; ``factory`` is ``"module:Class"``."""

    name: str
    description: str
    factory: str
    options: tuple[CodecOption, ...] = ()
    plugin: str = ""

    def resolve_options(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        by_name = {o.name: o for o in self.options}
        out: dict[str, Any] = {}
        for key, value in (given or {}).items():
            if key not in by_name:
                raise PluginError(f"keyframe policy {self.name!r} has no option {key!r}")
            out[key] = by_name[key].validate(value)
        for opt in self.options:
            out.setdefault(opt.name, opt.default)
        return out

    def create(self, options: Mapping[str, Any] | None = None) -> KeyframePolicy:
        module_name, _, attr = self.factory.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"keyframe policy {self.name!r}: cannot load {self.factory}") from exc
        if not (isinstance(cls, type) and issubclass(cls, KeyframePolicy)):
            raise PluginError(f"keyframe policy {self.name!r}: {self.factory} is not a KeyframePolicy")
        return cls(**self.resolve_options(options))


class PolicyRegistry(Registry[PolicyInfo]):
    """Name -> :class:`PolicyInfo`, filled by ``register_keyframe_policies`` hooks."""

    info_type = PolicyInfo
    noun = "keyframe policy"
    hook = "register_keyframe_policies"
