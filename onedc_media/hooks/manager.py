"""Building the plugin manager and the registries it fills.

Mirrors pytest's ``get_config``: add the specs, load the entry points (unless a test
asks for explicit plugins only), register extra plugin objects, then ``check_pending()``
so that a misspelled hook name fails loudly instead of being ignored.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import pluggy

from onedc_media.codec import CodecRegistry
from onedc_media.errors import OdcError, PluginError
from onedc_media.hooks import specs
from onedc_media.pipeline.policy import PolicyRegistry

__all__ = ["BLOCK_ENV", "Plugins", "get_plugin_manager", "load_plugins", "blocked_from_env"]

#: Comma-separated plugin names to block, e.g. ``ONEDC_MEDIA_BLOCK_PLUGINS=classic,myplugin``.
BLOCK_ENV = "ONEDC_MEDIA_BLOCK_PLUGINS"


def blocked_from_env() -> list[str]:
    return [n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()]


def get_plugin_manager(
    *,
    entry_points: bool = True,
    plugins: Iterable[object] = (),
    blocked: Iterable[str] = (),
) -> pluggy.PluginManager:
    """Return a plugin manager with the hook specs, entry-point plugins and *plugins*.

    :param entry_points: load plugins from the ``onedc_media.plugins`` group.
    :param plugins: extra plugin objects (modules), registered under their ``__name__``.
    :param blocked: plugin names (entry-point names) that must not load.
    """
    pm = pluggy.PluginManager(specs.PROJECT_NAME)
    pm.add_hookspecs(specs)
    for name in blocked:
        pm.set_blocked(name)
    try:
        if entry_points:
            pm.load_setuptools_entrypoints(specs.ENTRY_POINT_GROUP)
        for plugin in plugins:
            name = getattr(plugin, "__name__", None) or repr(plugin)
            if pm.is_blocked(name):
                continue
            pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} is invalid: {exc}") from exc
    except OdcError:
        raise
    except Exception as exc:  # an entry point that fails to import
        raise PluginError(f"failed to load plugins: {exc}") from exc
    return pm


@dataclass
class Plugins:
    """The loaded plugin manager and the registries its hooks filled."""

    manager: pluggy.PluginManager
    codecs: CodecRegistry
    policies: PolicyRegistry

    def plugin_names(self) -> list[str]:
        return sorted(
            n for n, p in self.manager.list_name_plugin() if p is not None and n is not None
        )


def _call_each(pm: pluggy.PluginManager, hook_name: str, registry: CodecRegistry | PolicyRegistry) -> None:
    """Call one registry hook per plugin so each entry records which plugin added it."""
    caller = getattr(pm.hook, hook_name)
    for impl in caller.get_hookimpls():  # registration order (pluggy calls LIFO)
        try:
            impl.function(registry=registry.scoped(impl.plugin_name))
        except OdcError:
            raise
        except Exception as exc:
            raise PluginError(f"plugin {impl.plugin_name!r} failed in {hook_name}: {exc}") from exc


def load_plugins(
    *,
    entry_points: bool = True,
    plugins: Iterable[object] = (),
    blocked: Iterable[str] | None = None,
) -> Plugins:
    """Load plugins and fill fresh codec and keyframe-policy registries.

    :param blocked: plugin names to block; ``None`` reads :data:`BLOCK_ENV`.
    """
    pm = get_plugin_manager(
        entry_points=entry_points,
        plugins=plugins,
        blocked=blocked_from_env() if blocked is None else blocked,
    )
    codecs = CodecRegistry()
    policies = PolicyRegistry()
    _call_each(pm, "register_codecs", codecs)
    _call_each(pm, "register_keyframe_policies", policies)
    return Plugins(manager=pm, codecs=codecs, policies=policies)
