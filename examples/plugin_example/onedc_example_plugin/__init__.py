"""The plugin module: declarations only, so that listing codecs stays fast.

Nothing heavy is imported here; the implementation in ``codec.py`` is imported by
onedc-media the first time the codec is used, through the ``factory`` string.
"""

from onedc_media import Capabilities, CodecInfo, CodecOption, hookimpl


@hookimpl
def register_codecs(registry):
    registry.add(
        CodecInfo(
            name="example-zlib",
            long_name="Example: raw RGB compressed with zlib (lossless)",
            kind="image",
            lossy=False,
            factory="onedc_example_plugin.codec:ZlibCodec",
            options=(
                CodecOption("level", "int", 6, "zlib compression level", min=0, max=9),
            ),
            capabilities=Capabilities(lossless=True),
            quality_option=None,  # lossless: -q has nothing to choose
        )
    )
