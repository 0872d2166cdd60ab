"""The registries that plugin hooks fill: one generic class, one subclass per kind of entry.

A registry maps names to frozen declarations (:class:`~onedc_media.codec.contract.CodecInfo`,
:class:`~onedc_media.pipeline.policy.PolicyInfo`). Duplicate names are an error naming both
plugins; :meth:`Registry.scoped` gives each plugin a view that stamps its entries with the
plugin's name, so the error can say who registered what.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar, Generic, TypeVar

from onedc_media.codec.contract import Codec, CodecInfo
from onedc_media.errors import CodecNotFoundError, DuplicateCodecError, PluginError

__all__ = ["CodecRegistry", "Registry"]

InfoT = TypeVar("InfoT")


class Registry(Generic[InfoT]):
    """Name -> declaration. Subclasses name the declaration type and the words of errors."""

    #: the declaration class entries must be instances of
    info_type: ClassVar[type]
    #: what an entry is called in messages ("codec", "keyframe policy")
    noun: ClassVar[str]
    #: the hook that fills this registry (named when a plugin adds the wrong type)
    hook: ClassVar[str]
    #: appended to the duplicate-name error (how to resolve it)
    duplicate_hint: ClassVar[str] = ""

    def __init__(self) -> None:
        self._infos: dict[str, InfoT] = {}
        self._plugin = ""

    def add(self, info: InfoT) -> None:
        """Register an entry. Called by plugins from their registry hook."""
        if not isinstance(info, self.info_type):
            raise PluginError(
                f"{self.hook}: expected {self.info_type.__name__}, got {type(info).__name__}"
            )
        entry: Any = info
        if self._plugin and not entry.plugin:
            entry = dataclasses.replace(entry, plugin=self._plugin)
        old: Any = self._infos.get(entry.name)
        if old is not None:
            raise DuplicateCodecError(
                f"{self.noun} {entry.name!r} is registered twice: by plugin "
                f"{old.plugin or '?'!r} and by plugin {entry.plugin or '?'!r}{self.duplicate_hint}"
            )
        self._infos[entry.name] = entry

    def scoped(self, plugin: str) -> Registry[InfoT]:
        """A view whose :meth:`add` stamps entries with *plugin*; shares storage."""
        view = object.__new__(type(self))
        view._infos = self._infos
        view._plugin = plugin
        return view

    def get(self, name: str) -> InfoT:
        try:
            return self._infos[name]
        except KeyError:
            known = ", ".join(sorted(self._infos)) or "none"
            raise CodecNotFoundError(
                f"unknown {self.noun} {name!r} (registered: {known})"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._infos)

    def __contains__(self, name: object) -> bool:
        return name in self._infos

    def __iter__(self) -> Iterator[InfoT]:
        return iter(v for _, v in sorted(self._infos.items()))

    def __len__(self) -> int:
        return len(self._infos)


class CodecRegistry(Registry[CodecInfo]):
    """Name -> :class:`CodecInfo`, filled by ``register_codecs`` hooks."""

    info_type = CodecInfo
    noun = "codec"
    hook = "register_codecs"
    duplicate_hint = " (block one with --block-plugin)"

    def create(self, name: str) -> Codec:
        """Import and instantiate the codec called *name*."""
        return self.get(name).create()
