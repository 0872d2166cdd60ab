"""Hook specifications of onedc-media (pluggy project name ``onedc_media``).

A plugin is any module or object with functions marked ``@onedc_media.hookimpl`` whose
names match a spec below. Third-party plugins register through the ``onedc_media.plugins``
entry-point group; the bundled ones use the same group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from onedc_media.codec import CodecRegistry
    from onedc_media.pipeline.policy import PolicyRegistry

PROJECT_NAME = "onedc_media"
ENTRY_POINT_GROUP = "onedc_media.plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_codecs(registry: CodecRegistry) -> None:
    """Add this plugin's codecs with ``registry.add(CodecInfo(...))``.

    :param registry: the shared codec registry. Adding a name that another plugin
        already added raises :class:`~onedc_media.errors.DuplicateCodecError`.

    Implementations must stay cheap: declare codecs, import nothing heavy. The codec's
    ``factory`` string is imported only when the codec is used.
    """


@hookspec
def register_keyframe_policies(registry: PolicyRegistry) -> None:
    """Add keyframe-selection policies with ``registry.add(PolicyInfo(...))``.

    :param registry: the shared policy registry; duplicate names are an error.
    """
