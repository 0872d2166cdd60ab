"""A Pillow plugin for ``.odc`` files: ``PIL.Image.open`` reads them, ``Image.save`` writes them.

::

    import onedc_media.pillow
    from PIL import Image, ImageSequence

    onedc_media.pillow.register()            # as pillow-heif's register_heif_opener()
    im = Image.open("photo.odc")             # the header only: size, mode, n_frames
    im.load()                                # decodes (OneDC: the embedded model, or the
                                             # folders decode would search)
    im.save("copy.odc", codec="jpeg", quality=90)
    for frame in ImageSequence.Iterator(Image.open("pictures.odc")):
        ...

Files are recognised by their magic, whatever their name. Pictures decode through the
project's decode path (:class:`~onedc_media.stills.PictureReader`); they are RGB.
``save`` takes the codec's options as keywords (``codec="onedc"``, ``quality=3``,
``model="my-model/"``, ...), writes one picture in the still form and, with ``save_all``,
several pictures of one size in the stream form. Errors are Pillow's:
``UnidentifiedImageError`` when a file with the ``.odc`` magic cannot be opened, ``OSError``
when a picture cannot be decoded or saved, each with onedc-media's one-line message.
"""

from __future__ import annotations

import os
from typing import IO, Any

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from onedc_media.container.chunks import MAGIC
from onedc_media.errors import OdcError

__all__ = ["FORMAT", "OdcImageFile", "register"]

#: The name Pillow knows the format by (``im.format``).
FORMAT = "ODC"
_EXTENSION = ".odc"
_MIME = "image/x-onedc"
#: Defaults set by :func:`register`, used by every ``Image.open``.
_DEFAULTS: dict[str, Any] = {"model": None, "device": None}


def register(*, model: str | os.PathLike | None = None, device: str | None = None) -> None:
    """Teach Pillow the ``.odc`` format (open, save, save_all; extension and MIME type).

    :param model: an exported model folder (or an embedded model's name) that pictures
        of learned codecs must be decoded with; ``None``: the embedded model, else the
        folders of ``ONEDC_MEDIA_MODEL_PATH``, as ``onedc-media decode`` finds them.
    :param device: where learned codecs decode (``None``: their default).
    """
    _DEFAULTS.update(model=None if model is None else os.fspath(model), device=device)
    Image.register_open(FORMAT, OdcImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_save_all(FORMAT, _save_all)
    Image.register_extension(FORMAT, _EXTENSION)
    Image.register_mime(FORMAT, _MIME)


def _accept(prefix: bytes) -> bool:
    return prefix[: len(MAGIC)] == MAGIC


class OdcImageFile(ImageFile.ImageFile):
    """An ``.odc`` file opened by Pillow: one frame per picture of its picture stream."""

    format = FORMAT
    format_description = "onedc-media .odc picture"
    _close_exclusive_fp_after_loading = False  # seek() reads other pictures later

    def _open(self) -> None:
        from onedc_media.stills import PictureReader

        try:
            self._reader = PictureReader(self.fp, **_DEFAULTS)
        except OdcError as exc:
            raise UnidentifiedImageError(_message(exc, self)) from None
        self._size = self._reader.size
        self._mode = "RGB"
        self.n_frames = self._reader.count
        self.is_animated = self.n_frames > 1
        self._frame = 0
        self._loaded: int | None = None
        stream = self._reader.stream
        self.info["codec"] = stream.codec
        self.info["odc_form"] = self._reader.form
        if stream.model is not None:
            self.info["model_sha256"] = stream.model.sha256

    def seek(self, frame: int) -> None:
        if not self._seek_check(frame):
            return
        self._frame = frame

    def tell(self) -> int:
        return self._frame

    def load(self) -> Any:
        if self._loaded != self._frame:
            try:
                rgb = self._reader.picture(self._frame)
            except OdcError as exc:
                raise OSError(_message(exc, self)) from None
            self.im = Image.core.new("RGB", self.size)
            self.frombytes(np.ascontiguousarray(rgb).tobytes())
            self._loaded = self._frame
        return Image.Image.load(self)

    def close(self) -> None:
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.close()
        super().close()


def _message(exc: OdcError, im: OdcImageFile) -> str:
    """onedc-media's one-line message, naming the file once."""
    if exc.filename is None and im.filename:
        exc.filename = os.fsdecode(im.filename)
    return str(exc)


def _options(info: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The codec and its options from ``save``'s keywords (Pillow's own ones dropped)."""
    from onedc_media.stills import codec_registry

    codec = str(info.get("codec", "onedc"))
    spec = codec_registry().get(codec)
    names = {o.name for o in spec.options}
    options = {k: v for k, v in info.items() if k in names}
    return codec, options


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes, *, frames: list | None = None) -> None:
    from onedc_media.stills import encode_pictures

    pictures = [np.asarray(f.convert("RGB")) for f in (frames or [im])]
    try:
        codec, options = _options(im.encoderinfo)
        encode_pictures(pictures, fp, codec=codec, options=options,  # type: ignore[arg-type]
                        device=im.encoderinfo.get("device"),
                        form="stream" if im.encoderinfo.get("stream_form") else "auto")
    except OdcError as exc:
        raise OSError(str(exc)) from None


def _save_all(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from PIL import ImageSequence

    frames = []
    for each in [im, *im.encoderinfo.get("append_images", [])]:
        for frame in ImageSequence.Iterator(each):
            frames.append(frame.copy())
    _save(im, fp, filename, frames=frames)
