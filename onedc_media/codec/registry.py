"""The codec registry that ``register_codecs(registry)`` hooks fill."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from onedc_media.codec.contract import Codec, CodecInfo
from onedc_media.errors import CodecNotFoundError, DuplicateCodecError, PluginError

__all__ = ["CodecRegistry"]


class CodecRegistry:
    """Name -> :class:`CodecInfo`. Duplicate names are an error naming both plugins."""

    def __init__(self) -> None:
        self._infos: dict[str, CodecInfo] = {}
        self._plugin = ""

    def add(self, info: CodecInfo) -> None:
        """Register a codec. Called by plugins from their ``register_codecs`` hook."""
        if not isinstance(info, CodecInfo):
            raise PluginError(f"register_codecs: expected CodecInfo, got {type(info).__name__}")
        if self._plugin and not info.plugin:
            info = dataclasses.replace(info, plugin=self._plugin)
        old = self._infos.get(info.name)
        if old is not None:
            raise DuplicateCodecError(
                f"codec {info.name!r} is registered twice: by plugin {old.plugin or '?'!r} "
                f"and by plugin {info.plugin or '?'!r} (block one with --block-plugin)"
            )
        self._infos[info.name] = info

    def scoped(self, plugin: str) -> CodecRegistry:
        """A view whose :meth:`add` stamps entries with *plugin*; shares storage."""
        view = object.__new__(CodecRegistry)
        view._infos = self._infos
        view._plugin = plugin
        return view

    def get(self, name: str) -> CodecInfo:
        try:
            return self._infos[name]
        except KeyError:
            known = ", ".join(sorted(self._infos)) or "none"
            raise CodecNotFoundError(f"unknown codec {name!r} (registered: {known})") from None

    def create(self, name: str) -> Codec:
        """Import and instantiate the codec called *name*."""
        return self.get(name).create()

    def names(self) -> list[str]:
        return sorted(self._infos)

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    def __iter__(self) -> Iterator[CodecInfo]:
        return iter(sorted(self._infos.values(), key=lambda i: i.name))

    def __len__(self) -> int:
        return len(self._infos)
