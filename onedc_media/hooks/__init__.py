"""Plugin hooks (pluggy): the specs and the manager that loads plugins."""

from onedc_media.hooks.manager import BLOCK_ENV, Plugins, get_plugin_manager, load_plugins
from onedc_media.hooks.specs import ENTRY_POINT_GROUP, PROJECT_NAME, hookimpl, hookspec

__all__ = [
    "BLOCK_ENV",
    "ENTRY_POINT_GROUP",
    "PROJECT_NAME",
    "Plugins",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
    "load_plugins",
]
