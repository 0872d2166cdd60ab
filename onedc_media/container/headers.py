"""Bodies of the ``OHDR`` (file header) and ``STRM`` (stream header) chunks.

``OHDR`` = ``u16 format_version | u16 min_reader_version | u16 stream_count | JSON``;
``STRM`` = JSON. The JSON is UTF-8, compact, with sorted keys; a key whose value equals
its default is left out, so the same header always gives the same bytes. The key set is
frozen for format version 1 (``docs/odc-format.md``); readers ignore keys they do not know.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import operator
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from fractions import Fraction
from typing import Any

from onedc_media.codec.contract import ModelRef
from onedc_media.container.records import MEDIA_TYPES, ColorInfo, Limits, StreamHeader
from onedc_media.errors import LimitExceededError, OdcFormatError, UnsupportedVersionError

__all__ = [
    "FORMAT_VERSION",
    "MIN_READER_VERSION",
    "READER_VERSION",
    "FileHeader",
    "check_str_map",
    "check_stream_header",
    "decode_file_header",
    "decode_stream_header",
    "dump_json",
    "encode_file_header",
    "encode_stream_header",
    "load_json",
]

#: Version of the spec this writer follows.
FORMAT_VERSION = 1
#: Oldest reader that can read what this writer writes.
MIN_READER_VERSION = 1
#: Highest ``min_reader_version`` this reader accepts.
READER_VERSION = 1

_OHDR = struct.Struct(">HHH")
_INT32_MAX = (1 << 31) - 1
_MAX_DEPTH = 32
_DEFAULT = StreamHeader(media_type="data", codec="x")
_ALWAYS = ("index", "media_type", "codec")

Fail = Callable[[str], Exception]


@dataclass(frozen=True)
class FileHeader:
    format_version: int
    min_reader_version: int
    stream_count: int
    metadata: dict[str, str]


# -- JSON ------------------------------------------------------------------------------


def _dump(obj: object) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _load(body: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(
            body.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
        )
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise OdcFormatError(f"{what}: bad JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise OdcFormatError(f"{what}: JSON is not an object")
    return obj


#: Canonical JSON out, checked JSON in: also the still form's codec parameters.
dump_json = _dump
load_json = _load


# -- validation shared by writer (ValueError) and reader (OdcFormatError) ---------------


def _check_json_value(value: Any, fail: Fail, where: str, depth: int = 0) -> Any:
    """Return *value* as plain JSON types (tuples -> lists), or raise ``fail``."""
    if depth > _MAX_DEPTH:
        raise fail(f"{where} nests deeper than {_MAX_DEPTH}")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise fail(f"{where} holds a non-finite float")
        return value
    if isinstance(value, (list, tuple)):
        return [_check_json_value(v, fail, where, depth + 1) for v in value]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise fail(f"{where} has a non-string key {k!r}")
            out[k] = _check_json_value(v, fail, where, depth + 1)
        return out
    raise fail(f"{where} holds a {type(value).__name__}, not a JSON value")


def check_str_map(value: Any, fail: Fail, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise fail(f"{where} must map strings to strings")
    return dict(value)


def _check_int(value: Any, fail: Fail, where: str, hi: int = _INT32_MAX) -> int:
    """*value* as an ``int`` in ``0..hi`` (numpy integers accepted; bools and floats not)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise fail(f"{where} must be an integer, got {value!r}") from None
    if not 0 <= value <= hi:
        raise fail(f"{where} must be in 0..{hi}, got {value}")
    return value


def _check_str(value: Any, fail: Fail, where: str) -> str:
    if not isinstance(value, str):
        raise fail(f"{where} must be a string, got {type(value).__name__}")
    return value


def _check_rational(value: Any, fail: Fail, where: str) -> Fraction:
    if not isinstance(value, (Fraction, int)) or isinstance(value, bool):
        raise fail(f"{where} must be a Fraction, got {value!r}")
    value = Fraction(value)
    if not (0 < value.numerator <= _INT32_MAX and 0 < value.denominator <= _INT32_MAX):
        raise fail(f"{where} must be positive with 32-bit terms, got {value}")
    return value


def check_stream_header(h: StreamHeader, limits: Limits, fail: Fail = ValueError) -> StreamHeader:
    """Validate every field of *h*; return it with containers normalised to plain types.

    The normalised header is what a reader gives back, so writers return it from
    ``add_stream`` and ``header == read_back`` holds.
    """
    if h.media_type not in MEDIA_TYPES:
        raise fail(f"media_type must be one of {', '.join(MEDIA_TYPES)}, got {h.media_type!r}")
    if not _check_str(h.codec, fail, "codec"):
        raise fail("codec must not be empty")
    ints = {
        name: _check_int(getattr(h, name), fail, name, hi)
        for name, hi in (
            ("width", limits.max_dimension),
            ("height", limits.max_dimension),
            ("sample_rate", _INT32_MAX),
            ("channels", _INT32_MAX),
        )
    }
    for name in ("pixel_format", "channel_layout", "sample_format"):
        _check_str(getattr(h, name), fail, name)
    if not isinstance(h.color, ColorInfo):
        raise fail("color must be a ColorInfo")
    for f in fields(ColorInfo):
        _check_str(getattr(h.color, f.name), fail, f"color.{f.name}")
    if h.model is not None:
        if not isinstance(h.model, ModelRef):
            raise fail("model must be a ModelRef or None")
        for f in fields(ModelRef):
            _check_str(getattr(h.model, f.name), fail, f"model.{f.name}")
    if not isinstance(h.passthrough, bool):
        raise fail("passthrough must be a bool")
    if not isinstance(h.extradata, (bytes, bytearray, memoryview)):
        raise fail("extradata must be bytes")
    if not isinstance(h.codec_params, Mapping):
        raise fail("codec_params must be a mapping")
    if isinstance(h.index, bool) or not isinstance(h.index, int):
        raise fail("index must be an int")
    return replace(
        h,
        **ints,
        time_base=_check_rational(h.time_base, fail, "time_base"),
        frame_rate=None
        if h.frame_rate is None
        else _check_rational(h.frame_rate, fail, "frame_rate"),
        codec_params=_check_json_value(h.codec_params, fail, "codec_params"),
        metadata=check_str_map(h.metadata, fail, "metadata"),
        extradata=bytes(h.extradata),
    )


# -- STRM ------------------------------------------------------------------------------


def _non_default(obj: object, default: object) -> dict[str, Any]:
    return {
        f.name: getattr(obj, f.name)
        for f in fields(obj)  # type: ignore[arg-type]
        if getattr(obj, f.name) != getattr(default, f.name)
    }


def encode_stream_header(h: StreamHeader) -> bytes:
    """JSON body of the ``STRM`` chunk of a header already checked and normalised."""
    out: dict[str, Any] = {}
    for f in fields(StreamHeader):
        value = getattr(h, f.name)
        if f.name not in _ALWAYS and value == getattr(_DEFAULT, f.name):
            continue
        if f.name == "color":
            value = _non_default(value, ColorInfo())
        elif f.name == "model":
            value = {
                "name": value.name,
                "sha256": value.sha256,
                **_non_default(value, ModelRef(value.name, value.sha256)),
            }
        elif f.name in ("time_base", "frame_rate"):
            value = [value.numerator, value.denominator]
        elif f.name == "extradata":
            value = base64.b64encode(value).decode("ascii")
        out[f.name] = value
    return _dump(out)


def _rational_from_json(value: Any, fail: Fail, where: str) -> Fraction:
    if not (isinstance(value, list) and len(value) == 2):
        raise fail(f"{where} must be [numerator, denominator]")
    num, den = (_check_int(v, fail, where) for v in value)
    if not den:
        raise fail(f"{where} has a zero denominator")
    return Fraction(num, den)


def _record_from_json(cls: type, value: Any, fail: Fail, where: str) -> Any:
    if not isinstance(value, dict):
        raise fail(f"{where} must be an object")
    known = {f.name for f in fields(cls)}
    kwargs = {k: _check_str(v, fail, f"{where}.{k}") for k, v in value.items() if k in known}
    try:
        return cls(**kwargs)
    except TypeError:  # a required key is missing
        raise fail(f"{where} lacks a required key") from None


def decode_stream_header(body: bytes, limits: Limits, offset: int) -> StreamHeader:
    where = f"STRM chunk at byte {offset}"

    def fail(msg: str) -> OdcFormatError:
        return OdcFormatError(f"{where}: {msg}")

    obj = _load(body, where)
    for key in _ALWAYS:
        if key not in obj:
            raise fail(f"missing key {key!r}")
    kwargs: dict[str, Any] = {}
    names = {f.name for f in fields(StreamHeader)}
    for key, value in obj.items():
        if key not in names:
            continue  # added by a later minor version: ignorable by rule
        if key == "color":
            value = _record_from_json(ColorInfo, value, fail, key)
        elif key == "model":
            value = _record_from_json(ModelRef, value, fail, key)
        elif key in ("time_base", "frame_rate"):
            value = _rational_from_json(value, fail, key)
        elif key == "extradata":
            try:
                value = base64.b64decode(_check_str(value, fail, key), validate=True)
            except (binascii.Error, ValueError):
                raise fail("extradata is not base64") from None
        kwargs[key] = value
    if "index" in kwargs:
        _check_int(kwargs["index"], fail, "index", limits.max_streams)
    return check_stream_header(StreamHeader(**kwargs), limits, fail)


# -- OHDR ------------------------------------------------------------------------------


def encode_file_header(stream_count: int, metadata: Mapping[str, str]) -> bytes:
    obj = {"metadata": dict(metadata)} if metadata else {}
    return _OHDR.pack(FORMAT_VERSION, MIN_READER_VERSION, stream_count) + _dump(obj)


def decode_file_header(body: bytes, limits: Limits) -> FileHeader:
    if len(body) < _OHDR.size:
        raise OdcFormatError(f"OHDR chunk: body of {len(body)} bytes is too short")
    version, min_reader, count = _OHDR.unpack_from(body)
    if not 1 <= min_reader <= version:
        raise OdcFormatError(
            f"OHDR chunk: bad versions (format {version}, min reader {min_reader})"
        )
    if min_reader > READER_VERSION:
        raise UnsupportedVersionError(
            f"file needs a reader of version {min_reader} or later (format {version}); "
            f"this reader is version {READER_VERSION}: upgrade onedc-media"
        )
    if count > limits.max_streams:
        raise LimitExceededError(f"file declares {count} streams (limit {limits.max_streams})")
    obj = _load(body[_OHDR.size :], "OHDR chunk")

    def fail(msg: str) -> OdcFormatError:
        return OdcFormatError(f"OHDR chunk: {msg}")

    metadata = check_str_map(obj.get("metadata", {}), fail, "metadata")
    return FileHeader(version, min_reader, count, metadata)
