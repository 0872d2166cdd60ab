"""``onedc-media codecs``: list installed codecs, keyframe policies and plugins."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "codecs",
        help="list installed codecs with their options and capabilities",
        description="List every codec the installed plugins register, with its kind, "
        "options (default and range), capabilities and the plugin it comes from. "
        "Nothing heavy is imported: this is fast.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import onedc_media

    plugins = onedc_media.default_plugins()
    if args.json:
        out = {
            "codecs": [
                {
                    "name": i.name,
                    "long_name": i.long_name,
                    "kind": i.kind,
                    "lossy": i.lossy,
                    "pixel_formats": list(i.pixel_formats),
                    "capabilities": vars(i.capabilities) if hasattr(i.capabilities, "__dict__")
                    else {k: getattr(i.capabilities, k) for k in ("batch", "cuda", "lossless")},
                    "options": [
                        {"name": o.name, "type": o.type, "default": o.default, "min": o.min,
                         "max": o.max, "choices": list(o.choices) if o.choices else None,
                         "help": o.help}
                        for o in i.options
                    ],
                    "plugin": i.plugin,
                }
                for i in plugins.codecs
            ],
            "keyframe_policies": [
                {"name": p.name, "description": p.description, "plugin": p.plugin}
                for p in plugins.policies
            ],
            "plugins": plugins.plugin_names(),
        }
        print(json.dumps(out, indent=2))
        return 0
    print("Codecs:")
    print(f"  {'name':<12} {'kind':<12} {'lossy':<6} {'caps':<14} {'plugin':<10} description")
    for info in plugins.codecs:
        caps = ",".join(
            k for k in ("batch", "cuda", "lossless") if getattr(info.capabilities, k)
        ) or "-"
        print(
            f"  {info.name:<12} {info.kind:<12} {'yes' if info.lossy else 'no':<6} "
            f"{caps:<14} {info.plugin:<10} {info.long_name}"
        )
        for opt in info.options:
            print(f"      --opt {opt.describe():<38} {opt.help}")
    if len(plugins.policies):
        print("\nKeyframe policies:")
        for pol in plugins.policies:
            print(f"  {pol.name:<12} {pol.description}")
    print(f"\nPlugins: {', '.join(plugins.plugin_names()) or 'none'}")
    return 0
