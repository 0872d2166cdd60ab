"""Errors of the decoder runtime: the failing stage's error, plus the frame it hit.

:class:`FrameDecodeError` carries ``frame_index`` (the packet's position in the
sequence, from 0) and ``stage`` (``"read"``, ``"entropy"`` or ``"synthesis"``). When the
cause is itself an :class:`~onedc_media.errors.OdcError`, the raised error also
subclasses the cause's class, so existing handlers keep working::

    try:
        for frame in runtime.decode(packets): ...
    except BitstreamError as exc:        # a damaged packet: still caught here,
        print(exc.frame_index, exc)      # and it knows which frame it was
"""

from __future__ import annotations

import threading

from onedc_media.errors import OdcError

__all__ = ["FrameDecodeError", "frame_error"]

STAGES = ("read", "entropy", "synthesis")


class FrameDecodeError(OdcError):
    """Decoding frame :attr:`frame_index` failed in :attr:`stage`; ``__cause__`` is the
    original error.

    :param frame_index: position of the packet in the sequence (0-based).
    :param stage: ``"read"`` (the packet source raised), ``"entropy"`` or ``"synthesis"``.
    :param last_index: for a synthesis batch, the last frame of the batch (frames
        ``frame_index..last_index`` were decoded together); else ``frame_index``.
    """

    def __init__(
        self,
        *args: object,
        frame_index: int = -1,
        stage: str = "",
        last_index: int | None = None,
        filename: str | None = None,
    ) -> None:
        super().__init__(*args, filename=filename)
        self.frame_index = frame_index
        self.stage = stage
        self.last_index = frame_index if last_index is None else last_index


_classes: dict[type, type] = {}
_classes_lock = threading.Lock()


def _class_for(cause: BaseException) -> type[FrameDecodeError]:
    """``FrameDecodeError`` for foreign causes; a cached subclass of both it and the
    cause's class for ``OdcError`` causes (``FrameBitstreamError`` for a ``BitstreamError``)."""
    kind = type(cause)
    if not isinstance(cause, OdcError) or issubclass(kind, FrameDecodeError):
        return FrameDecodeError
    with _classes_lock:
        cls = _classes.get(kind)
        if cls is None:
            cls = type(
                f"Frame{kind.__name__}",
                (FrameDecodeError, kind),
                {
                    "__module__": __name__,
                    "__doc__": f"{kind.__name__} while decoding one frame (see FrameDecodeError).",
                },
            )
            _classes[kind] = cls
        return cls


def frame_error(
    cause: BaseException, frame_index: int, stage: str, last_index: int | None = None
) -> FrameDecodeError:
    """Wrap *cause* (raised while decoding frame *frame_index* in *stage*).

    Raise the result ``from cause`` so the traceback shows both.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if isinstance(cause, FrameDecodeError):
        return cause
    where = f"frame {frame_index}"
    if last_index is not None and last_index != frame_index:
        where = f"frames {frame_index}..{last_index}"
    detail = str(cause) if isinstance(cause, OdcError) else f"{type(cause).__name__}: {cause}"
    cls = _class_for(cause)
    err = cls(
        f"{where} ({stage}): {detail}",
        frame_index=frame_index,
        stage=stage,
        last_index=last_index,
        filename=getattr(cause, "filename", None),
    )
    return err
