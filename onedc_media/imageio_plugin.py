"""An imageio v3 plugin for ``.odc`` files: ``imread``, ``imwrite``, ``improps``, ``imiter``.

::

    import imageio.v3 as iio
    import onedc_media.imageio_plugin

    onedc_media.imageio_plugin.register()    # adds the plugin to imageio.config
    rgb = iio.imread("photo.odc")            # the first picture, HxWx3 uint8
    iio.imwrite("photo.odc", rgb, codec="onedc", quality=3)
    iio.improps("photo.odc").shape           # from the header, nothing decoded
    for rgb in iio.imiter("pictures.odc"):
        ...
    iio.imread("photo.odc", plugin="ODC", model="my-model/")   # weights from a folder

imageio v3 finds plugins in ``imageio.config.known_plugins`` (a :class:`PluginConfig`
naming the module and class, imported lazily) and file extensions in
``imageio.config.known_extensions`` (a :class:`FileExtension` whose ``priority`` lists
plugin names); :func:`register` adds both, as its documentation describes for plugins
outside imageio. ``plugin=OdcPlugin`` works without registering. Files are recognised by
their magic. Pictures decode through :class:`~onedc_media.stills.PictureReader`, the
project's decode path; errors are onedc-media's typed ones (``OdcError``, a
``ValueError``), with its one-line message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from imageio.config import FileExtension, PluginConfig, extension_list, known_extensions, known_plugins
from imageio.core.request import URI_BYTES, URI_FILENAME, InitializationError, IOMode, Request
from imageio.core.v3_plugin_api import ImageProperties, PluginV3

from onedc_media.container.chunks import MAGIC

__all__ = ["NAME", "OdcPlugin", "register"]

#: The plugin's name in ``imageio.config.known_plugins`` (``plugin="ODC"``).
NAME = "ODC"
_EXTENSION = ".odc"


def register() -> None:
    """Make imageio v3 handle ``.odc`` files with :class:`OdcPlugin` (idempotent)."""
    known_plugins[NAME] = PluginConfig(name=NAME, class_name="OdcPlugin", module_name=__name__)
    formats = known_extensions.setdefault(_EXTENSION, [])
    if not any(NAME in f.priority for f in formats):
        ext = FileExtension(name="onedc-media .odc", extension=_EXTENSION, priority=[NAME],
                            description="OneDC and classic codec pictures in the .odc container")
        formats.insert(0, ext)
        extension_list.append(ext)


class OdcPlugin(PluginV3):
    """Reads and writes ``.odc`` files.

    :param request: imageio's request.
    :param model: for reading: an exported model folder (or an embedded model's name)
        the pictures of learned codecs must be decoded with; ``None`` finds the weights as
        ``onedc-media decode`` does.
    :param device: where learned codecs run (``None``: their default).
    """

    def __init__(self, request: Request, *, model: str | os.PathLike | None = None,
                 device: str | None = None) -> None:
        super().__init__(request)
        self._reader: Any = None
        self._device = device
        if request.mode.io_mode == IOMode.read:
            if request.firstbytes[: len(MAGIC)] != MAGIC:
                raise InitializationError(f"{request.raw_uri!r} is not an .odc file")
            from onedc_media.stills import PictureReader

            self._reader = PictureReader(request.get_file(), model=model, device=device)
        else:
            extension = request.extension or request.format_hint
            if extension != _EXTENSION and request._uri_type != URI_BYTES:
                raise InitializationError(f"this plugin writes {_EXTENSION} files, not {extension}")

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        super().close()

    # -- reading ---------------------------------------------------------------------

    def _require_reader_only(self) -> Any:
        if self._reader is None:
            raise OSError("the file is open for writing")
        return self._reader

    def _require_reader(self, model: str | os.PathLike | None = None, device: str | None = None) -> Any:
        reader = self._require_reader_only()
        if model is not None:
            reader.model = os.fspath(model)
        if device is not None:
            reader.device = device
        return reader

    def read(self, *, index: int | None = None, model: str | os.PathLike | None = None,
             device: str | None = None) -> np.ndarray:
        """Picture *index* (``None``: the first) as HxWx3 uint8 RGB, or with
        ``index=...`` every picture stacked into NxHxWx3. *model* and *device* as the
        constructor's (``imread(..., model=DIR)`` passes them here)."""
        reader = self._require_reader(model, device)
        if index is Ellipsis:
            return np.stack(list(reader))
        return reader.picture(0 if index is None else int(index))

    def iter(self, *, model: str | os.PathLike | None = None,
             device: str | None = None) -> Iterator[np.ndarray]:
        """Each picture in file order."""
        yield from self._require_reader(model, device)

    def properties(self, index: int | None = None) -> ImageProperties:
        """Shape and dtype from the header; nothing is decoded."""
        reader = self._require_reader()
        width, height = reader.size
        if index is Ellipsis:
            return ImageProperties(shape=(reader.count, height, width, 3), dtype=np.dtype("uint8"),
                                   n_images=reader.count, is_batch=True)
        return ImageProperties(shape=(height, width, 3), dtype=np.dtype("uint8"))

    def metadata(self, index: int | None = None, exclude_applied: bool = True) -> dict[str, Any]:
        """The file's form, the codec, the model and the number of pictures."""
        reader = self._require_reader()
        stream = reader.stream
        out: dict[str, Any] = {"form": reader.form, "codec": stream.codec, "n_images": reader.count,
                               "codec_params": dict(stream.codec_params)}
        if stream.model is not None:
            out["model"] = {"name": stream.model.name, "sha256": stream.model.sha256}
        return out

    # -- writing ---------------------------------------------------------------------

    def write(self, ndimage: np.ndarray | list[np.ndarray], *, is_batch: bool | None = None,
              codec: str = "onedc", stream_form: bool = False, **options: Any) -> bytes | None:
        """Encode one HxWx3 uint8 RGB picture (the still form) or a batch of them of one
        size (NxHxWx3 or a list: the stream form), with *codec* and its *options*.

        :returns: the file's bytes when the request's target is ``"<bytes>"``.
        """
        from onedc_media.stills import encode_pictures

        if self._request.mode.io_mode != IOMode.write:
            raise OSError("the file is open for reading")
        if is_batch is None:
            is_batch = isinstance(ndimage, list) or np.asarray(ndimage).ndim == 4
        pictures = [np.asarray(p) for p in ndimage] if is_batch else [np.asarray(ndimage)]
        request = self._request
        # a file name is written atomically (nothing is left behind on failure)
        target = request.filename if request._uri_type == URI_FILENAME else request.get_file()
        encode_pictures(pictures, target, codec=codec, options=options,
                        device=self._device, form="stream" if stream_form else "auto")
        if self._request._uri_type == URI_BYTES:
            return self._request.get_file().getvalue()
        return None
