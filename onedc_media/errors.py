"""The ``OdcError`` family: every failure a user can cause raises one of these.

Like PyAV's ``av.error``, each error also subclasses the matching builtin, so callers
can catch either ``OdcFormatError`` or plain ``ValueError``. The CLI turns any
``OdcError`` into a one-line message and a non-zero exit status; anything else is a bug.
"""

from __future__ import annotations

__all__ = [
    "OdcError",
    "OdcFormatError",
    "TruncatedError",
    "ChecksumError",
    "UnsupportedVersionError",
    "LimitExceededError",
    "BitstreamError",
    "CodecNotFoundError",
    "CodecOptionError",
    "DuplicateCodecError",
    "PluginError",
    "ModelError",
    "ModelMismatchError",
    "MediaError",
    "InvalidImageError",
    "InvalidVideoError",
]


class OdcError(Exception):
    """Base class of every error onedc-media raises on purpose.

    :param filename: the file involved, when there is one (as ``OSError.filename``).
    """

    def __init__(self, *args: object, filename: str | None = None) -> None:
        super().__init__(*args)
        self.filename = filename

    def __str__(self) -> str:
        msg = super().__str__()
        if self.filename and self.filename not in msg:
            return f"{self.filename}: {msg}"
        return msg


class OdcFormatError(OdcError, ValueError):
    """The bytes are not a valid ``.odc`` file or packet."""


class TruncatedError(OdcFormatError, EOFError):
    """The data ends before a declared length is satisfied."""


class ChecksumError(OdcFormatError):
    """A CRC check failed: the bytes were damaged after they were written."""


class UnsupportedVersionError(OdcFormatError):
    """The file needs a newer reader (``min_reader_version`` is above ours)."""


class LimitExceededError(OdcFormatError):
    """A size declared in a header is above the configured safety bound."""


class BitstreamError(OdcFormatError):
    """A codec payload is malformed (bad header, impossible sizes, coder desync)."""


class CodecNotFoundError(OdcError, LookupError):
    """No registered codec (or keyframe policy) has the requested name."""


class CodecOptionError(OdcError, ValueError):
    """A codec option is unknown, of the wrong type or out of range."""


class DuplicateCodecError(OdcError, ValueError):
    """Two plugins registered the same codec or policy name."""


class PluginError(OdcError, RuntimeError):
    """A plugin failed to load or violates the hook contract."""


class ModelError(OdcError, ValueError):
    """Model weights or config are missing, malformed or inconsistent."""


class ModelMismatchError(ModelError):
    """A stream was encoded with different model weights than the decoder holds."""


class MediaError(OdcError, ValueError):
    """An input image or video cannot be used."""


class InvalidImageError(MediaError):
    """An image is unreadable, empty, or of an unsupported shape / dtype."""


class InvalidVideoError(MediaError):
    """A video is unreadable, has no video stream, or no decodable frames."""
