"""Records and base classes of the codec contract (see the package docstring)."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from onedc_media.errors import CodecOptionError, InvalidImageError, PluginError

__all__ = [
    "Capabilities",
    "Codec",
    "CodecInfo",
    "CodecKind",
    "CodecOption",
    "Decoder",
    "Encoder",
    "ModelRef",
    "check_frame",
    "check_frames",
    "MAX_FRAME_PIXELS",
]

CodecKind = Literal["image", "intra-video"]
OptionType = Literal["int", "float", "str", "bool"]

#: Largest frame any bundled codec accepts (width * height). Bounds allocations made
#: from sizes declared in headers: 2**28 pixels is a 16384 x 16384 picture.
MAX_FRAME_PIXELS = 1 << 28
MAX_FRAME_SIDE = 1 << 16

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class CodecOption:
    """One codec option, with its default and the values it accepts.

    Values given as strings (from the command line) are converted to ``type``.
    """

    name: str
    type: OptionType
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise PluginError(f"option name {self.name!r} is not an identifier")
        if self.default is not None:
            self.validate(self.default)

    def validate(self, value: Any) -> Any:
        """Return *value* converted to this option's type, or raise ``CodecOptionError``."""
        if value is None and self.default is None:
            return None  # unset, as its default: the codec decides (e.g. from its model)
        try:
            if self.type == "bool":
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low not in _TRUE | _FALSE:
                        raise ValueError(value)
                    value = low in _TRUE
                else:
                    value = bool(value)
            elif self.type == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError(value)
                if isinstance(value, bool):
                    raise ValueError(value)
                value = int(value)
            elif self.type == "float":
                value = float(value)
                if value != value:  # NaN
                    raise ValueError(value)
            else:
                value = str(value)
        except (TypeError, ValueError):
            raise CodecOptionError(
                f"option {self.name!r} expects {self.type}, got {value!r}"
            ) from None
        if self.min is not None and value < self.min:
            raise CodecOptionError(f"option {self.name!r} must be >= {self.min}, got {value}")
        if self.max is not None and value > self.max:
            raise CodecOptionError(f"option {self.name!r} must be <= {self.max}, got {value}")
        if self.choices is not None and value not in self.choices:
            raise CodecOptionError(
                f"option {self.name!r} must be one of {', '.join(map(str, self.choices))}; "
                f"got {value!r}"
            )
        return value

    def describe(self) -> str:
        """A one-line human description: ``quality=75 (int, 1..100)``."""
        rng = ""
        if self.choices is not None:
            rng = "|".join(map(str, self.choices))
        elif self.min is not None or self.max is not None:
            lo = "" if self.min is None else f"{self.min:g}"
            hi = "" if self.max is None else f"{self.max:g}"
            rng = f"{lo}..{hi}"
        kind = f"{self.type}, {rng}" if rng else self.type
        shown = "(model)" if self.default is None else self.default
        return f"{self.name}={shown} ({kind})"


@dataclass(frozen=True)
class Capabilities:
    """What a codec's implementation can do, so callers can plan without importing it."""

    batch: bool = False  #: encode/decode benefit from several frames per call
    cuda: bool = False  #: can run on a CUDA device
    lossless: bool = False  #: reconstructs input bit-exactly


@dataclass(frozen=True)
class CodecInfo:
    """The declaration of a codec. Cheap to build: it imports nothing.

    :param factory: ``"package.module:Attribute"`` naming a :class:`Codec` subclass;
        imported on first use only.
    :param quality_option: the option ``-q/--quality`` maps to (``None`` if none).
    :param quality_ladder: the quality values, lowest first, that span the codec's useful
        range on photographs: what ``eval`` measures by default, what quality-targeted
        encoding searches and what the size-matrix tests cover. Empty: six points over the
        quality option's range.
    """

    name: str
    long_name: str
    kind: CodecKind
    lossy: bool
    factory: str
    pixel_formats: tuple[str, ...] = ("rgb24",)
    options: tuple[CodecOption, ...] = ()
    capabilities: Capabilities = field(default_factory=Capabilities)
    quality_option: str | None = "quality"
    quality_ladder: tuple[Any, ...] = ()
    plugin: str = ""  #: set by the registry to the plugin that registered it

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise PluginError(f"codec name {self.name!r} must be [A-Za-z0-9._-]+")
        if self.kind not in ("image", "intra-video"):
            raise PluginError(f"codec {self.name!r}: kind must be 'image' or 'intra-video'")
        if ":" not in self.factory:
            raise PluginError(f"codec {self.name!r}: factory must be 'module:attribute'")
        names = [o.name for o in self.options]
        if len(set(names)) != len(names):
            raise PluginError(f"codec {self.name!r} declares an option twice")
        if self.quality_option is not None and self.quality_option not in names:
            raise PluginError(
                f"codec {self.name!r}: quality_option {self.quality_option!r} is not an option"
            )
        if self.quality_ladder:
            if self.quality_option is None:
                raise PluginError(f"codec {self.name!r}: quality_ladder without quality_option")
            opt = self.option(self.quality_option)
            for value in self.quality_ladder:
                try:
                    opt.validate(value)
                except CodecOptionError as exc:
                    raise PluginError(f"codec {self.name!r}: quality_ladder: {exc}") from None

    def ladder(self) -> tuple[Any, ...]:
        """The quality values to measure or search, lowest quality first.

        :attr:`quality_ladder` where the codec declares one, else six points over the
        quality option's range (its default where the range is open); ``(None,)`` for a
        codec without a quality option.
        """
        if self.quality_option is None:
            return (None,)
        if self.quality_ladder:
            return self.quality_ladder
        opt = self.option(self.quality_option)
        if opt.min is None or opt.max is None or opt.type not in ("int", "float"):
            return (opt.default,)
        step = (opt.max - opt.min) / 5
        values = [opt.min + i * step for i in range(5)] + [opt.max]
        if opt.type == "int":
            return tuple(sorted({round(v) for v in values}))
        return tuple(float(v) for v in values)

    def option(self, name: str) -> CodecOption:
        for opt in self.options:
            if opt.name == name:
                return opt
        raise CodecOptionError(
            f"codec {self.name!r} has no option {name!r}"
            + (f" (options: {', '.join(o.name for o in self.options)})" if self.options else "")
        )

    def resolve_options(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validate *given* options and fill in defaults for the rest."""
        given = dict(given or {})
        out: dict[str, Any] = {}
        for key, value in given.items():
            out[key] = self.option(key).validate(value)
        for opt in self.options:
            out.setdefault(opt.name, opt.default)
        return out

    def load(self) -> type[Codec]:
        """Import the implementation named by :attr:`factory`."""
        module_name, _, attr = self.factory.partition(":")
        try:
            module = importlib.import_module(module_name)
            obj = module
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise PluginError(
                f"codec {self.name!r} (plugin {self.plugin or '?'}): cannot load "
                f"{self.factory}: {exc}"
            ) from exc
        if not (isinstance(obj, type) and issubclass(obj, Codec)):
            raise PluginError(f"codec {self.name!r}: {self.factory} is not a Codec subclass")
        return obj

    def create(self) -> Codec:
        """Import and instantiate the implementation."""
        return self.load()(self)


@dataclass(frozen=True)
class ModelRef:
    """The model a stream was encoded with, recorded in its stream header.

    ``sha256`` covers the synthesis weights; ``parsing_sha256`` covers everything that
    decides a symbol (integer weights, tables, entropy coder name and version), so a
    decoder can say which of the two differs.
    """

    name: str
    sha256: str
    parsing_sha256: str = ""


class Encoder(ABC):
    """Turns batches of frames into self-contained packets."""

    #: JSON-serialisable parameters a decoder needs, stored in the stream header.
    params: dict[str, Any]
    #: The model this encoder uses, stored in the stream header; ``None`` for classic codecs.
    model: ModelRef | None = None
    #: Set by a caller that shows progress: an encoder whose batches take long (OneDC with
    #: ``refine``) calls it as ``progress(done, total)`` in units of its own choosing while
    #: :meth:`encode` runs, counted within that call. Fast encoders may ignore it.
    progress: Callable[[int, int], None] | None = None

    @abstractmethod
    def encode(self, frames: Sequence[np.ndarray]) -> list[bytes]:
        """Encode HxWx3 uint8 RGB frames; one packet per frame, in order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Encoders are also context managers."""

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Decoder(ABC):
    """Turns packets back into frames."""

    @abstractmethod
    def decode(self, packets: Sequence[bytes]) -> list[np.ndarray]:
        """Decode packets into HxWx3 uint8 RGB frames, one per packet, in order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Decoders are also context managers."""

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Codec(ABC):
    """A codec implementation: makes encoders and decoders for one :class:`CodecInfo`."""

    def __init__(self, info: CodecInfo) -> None:
        self.info = info

    @abstractmethod
    def encoder(self, options: Mapping[str, Any], *, device: str | None = None) -> Encoder:
        """Return an encoder. *options* are already validated and complete."""

    @abstractmethod
    def decoder(
        self,
        params: Mapping[str, Any],
        *,
        model: ModelRef | None = None,
        device: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Decoder:
        """Return a decoder for a stream whose header holds *params* and *model*.

        :param options: decoder-side options the user chose (e.g. ``model``: where to
            find the weights); codecs ignore options that do not concern decoding.

        Raise :class:`~onedc_media.errors.ModelMismatchError` if *model* names weights
        this implementation does not hold.
        """


def check_frame(frame: object, *, index: int | None = None) -> np.ndarray:
    """Return *frame* as a C-contiguous HxWx3 uint8 array or raise ``InvalidImageError``."""
    where = "" if index is None else f"frame {index}: "
    if not isinstance(frame, np.ndarray):
        raise InvalidImageError(f"{where}expected a numpy array, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InvalidImageError(f"{where}expected shape HxWx3, got {frame.shape}")
    if frame.dtype != np.uint8:
        raise InvalidImageError(f"{where}expected dtype uint8, got {frame.dtype}")
    h, w = frame.shape[:2]
    if h < 1 or w < 1:
        raise InvalidImageError(f"{where}empty frame {w}x{h}")
    if h > MAX_FRAME_SIDE or w > MAX_FRAME_SIDE or h * w > MAX_FRAME_PIXELS:
        raise InvalidImageError(f"{where}frame {w}x{h} is larger than supported")
    return np.ascontiguousarray(frame)


def check_frames(frames: Sequence[object]) -> list[np.ndarray]:
    """Validate a batch of frames (see :func:`check_frame`)."""
    return [check_frame(f, index=i) for i, f in enumerate(frames)]
