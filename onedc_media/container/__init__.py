"""The ``.odc`` container: a small chunked format for OneDC (and classic) streams.

Spec: ``docs/odc-format.md``. Modelled on PNG (``length | type | body | crc32`` chunks,
critical vs. ancillary by the case of the first type letter) with PyAV's vocabulary::

    with container.open("out.odc", "w") as out:
        s = out.add_stream(StreamHeader("image", "onedc", width=768, height=512))
        out.mux(Packet(s.index, payload, pts=0, keyframe=True))

    with container.open("out.odc") as inp:
        for packet in inp.demux():
            ...

Modules: ``records`` (dataclasses), ``source`` (bounded reads), ``chunks`` (framing),
``headers`` / ``bodies`` (chunk bodies), ``writer``, ``reader``, ``still`` (the compact
form of one picture, :func:`write_still`; the reader opens both forms), ``cicp`` (colour
code points) and ``stats`` (true byte counts and bpp). Importing this package
loads neither torch nor PyAV.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Literal, overload

from onedc_media.container.chunks import MAGIC
from onedc_media.container.headers import FORMAT_VERSION, READER_VERSION
from onedc_media.container.reader import InputContainer, OnDamage
from onedc_media.container.records import (
    ColorInfo,
    IndexEntry,
    Limits,
    MediaType,
    ModelRef,
    Packet,
    StreamHeader,
)
from onedc_media.container.stats import ContainerStats, StreamStats, measure
from onedc_media.container.still import CODEC_IDS, is_model_id, write_still
from onedc_media.container.writer import OutputContainer

__all__ = [
    "CODEC_IDS",
    "FORMAT_VERSION",
    "MAGIC",
    "READER_VERSION",
    "ColorInfo",
    "ContainerStats",
    "IndexEntry",
    "InputContainer",
    "Limits",
    "MediaType",
    "ModelRef",
    "OnDamage",
    "OutputContainer",
    "Packet",
    "StreamHeader",
    "StreamStats",
    "is_model_id",
    "is_odc",
    "measure",
    "open",
    "write_still",
]

_File = str | os.PathLike[str] | BinaryIO


@overload
def open(file: _File, mode: Literal["r"] = "r", **options: object) -> InputContainer: ...
@overload
def open(file: _File, mode: Literal["w"], **options: object) -> OutputContainer: ...


def open(file: _File, mode: str = "r", **options: object) -> InputContainer | OutputContainer:
    """Open an ``.odc`` file, like ``av.open``.

    :param file: a path or a binary file object (pipes are fine in both modes).
    :param mode: ``"r"`` -> :class:`InputContainer` (option ``limits``); ``"w"`` ->
        :class:`OutputContainer` (options ``sync_every_packets``, ``sync_every_bytes``,
        ``write_index``, ``limits``).
    """
    if mode == "r":
        return InputContainer(file, **options)  # type: ignore[arg-type]
    if mode == "w":
        return OutputContainer(file, **options)  # type: ignore[arg-type]
    raise ValueError(f"mode must be 'r' or 'w', got {mode!r}")


def is_odc(prefix: bytes) -> bool:
    """Whether *prefix* (the first bytes of a file, 8 or more) starts an ``.odc`` file."""
    return prefix[: len(MAGIC)] == MAGIC
