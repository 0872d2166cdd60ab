"""The codec contract: how a codec describes itself and how frames become packets.

A codec is declared by a frozen :class:`CodecInfo` (cheap: no heavy imports) whose
``factory`` names the implementation as ``"module:attribute"``; the registry imports it
only when the codec is used, so ``onedc-media codecs`` never imports torch.

The implementation is a :class:`Codec` subclass. Encoders and decoders work on batches::

    frames (list of HxWx3 uint8 RGB arrays) -> Encoder.encode -> packets (list of bytes)
    packets + stream params                 -> Decoder.decode -> frames

Every packet a codec produces is self-contained (intra only): any packet decodes
without the others, given the stream parameters the encoder reported in
:attr:`Encoder.params` and the stream's :class:`ModelRef`.
"""

from onedc_media.codec.contract import (
    Capabilities,
    Codec,
    CodecInfo,
    CodecKind,
    CodecOption,
    Decoder,
    Encoder,
    ModelRef,
    check_frame,
    check_frames,
)
from onedc_media.codec.registry import CodecRegistry

__all__ = [
    "Capabilities",
    "Codec",
    "CodecInfo",
    "CodecKind",
    "CodecOption",
    "CodecRegistry",
    "Decoder",
    "Encoder",
    "ModelRef",
    "check_frame",
    "check_frames",
]
