"""Helpers shared by the classic codec implementations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from onedc_media.codec.contract import (
    MAX_FRAME_PIXELS,
    MAX_FRAME_SIDE,
    Codec,
    CodecInfo,
    Decoder,
    Encoder,
    ModelRef,
)
from onedc_media.errors import BitstreamError, CodecOptionError, ModelMismatchError

__all__ = [
    "ClassicCodec",
    "as_bytes",
    "check_declared_size",
    "check_device",
    "check_no_model",
]


class ClassicCodec(Codec):
    """A CPU codec without weights: checks device and model, resolves options."""

    def make_encoder(self, options: dict[str, Any]) -> Encoder:
        """Return an encoder for complete, validated *options*."""
        raise NotImplementedError

    def make_decoder(self) -> Decoder:
        """Return a decoder; classic packets are self-contained (no stream params)."""
        raise NotImplementedError

    def encoder(self, options: Mapping[str, Any], *, device: str | None = None) -> Encoder:
        check_device(self.info, device)
        return self.make_encoder(self.info.resolve_options(options))

    def decoder(
        self,
        params: Mapping[str, Any],
        *,
        model: ModelRef | None = None,
        device: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Decoder:
        check_device(self.info, device)
        check_no_model(self.info, model)
        return self.make_decoder()


def check_device(info: CodecInfo, device: str | None) -> None:
    """Classic codecs run on the CPU; refuse an explicit request for anything else."""
    if device not in (None, "cpu", "auto"):
        raise CodecOptionError(f"codec {info.name!r} runs on the CPU only, not on {device!r}")


def check_no_model(info: CodecInfo, model: ModelRef | None) -> None:
    """Classic codecs have no weights: a stream that names a model is not theirs."""
    if model is not None:
        raise ModelMismatchError(
            f"codec {info.name!r} uses no model, but the stream names model "
            f"{model.name!r} (sha256 {model.sha256[:12]})"
        )


def as_bytes(codec: str, index: int, packet: object) -> bytes:
    """Return *packet* as ``bytes``; anything not bytes-like is a malformed packet."""
    if isinstance(packet, bytes):
        data = packet
    elif isinstance(packet, (bytearray, memoryview)):
        data = bytes(packet)
    else:
        raise BitstreamError(
            f"{codec} packet {index}: expected bytes, got {type(packet).__name__}"
        )
    if not data:
        raise BitstreamError(f"{codec} packet {index}: empty packet")
    return data


def check_declared_size(codec: str, index: int, width: int, height: int) -> None:
    """Bound a size read from a packet header before anything is allocated for it."""
    if width < 1 or height < 1:
        raise BitstreamError(f"{codec} packet {index}: impossible size {width}x{height}")
    if width > MAX_FRAME_SIDE or height > MAX_FRAME_SIDE or width * height > MAX_FRAME_PIXELS:
        raise BitstreamError(
            f"{codec} packet {index}: declared size {width}x{height} is above the "
            f"supported maximum ({MAX_FRAME_PIXELS} pixels, {MAX_FRAME_SIDE} per side)"
        )
