"""Lazy package attributes: names a package exports but imports only when first used.

``import onedc_media`` stays cheap (no torch, PyAV or OpenCV) while ``onedc_media.cv`` and
``onedc_media.pipeline`` still export their classes by name. (``lazy_loader`` does the same
job; fifteen lines do not justify a dependency every install would carry.)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for *package*: ``names[attr]`` is the module that defines
    ``attr``; it is imported on first access and the value cached in the package."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
