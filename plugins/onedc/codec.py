"""The ``onedc`` codec: the codec contract over :class:`~onedc_media.model.engine.OneDCEngine`.

A stream header records the model (name, SHA-256 of the synthesis weights, hash of the
parsing model) and ``{"quality": q}``; each packet is one OneDC picture
(:mod:`onedc_media.model.bitstream`). Decoders refuse streams made with other weights.

A file outlives the weights a release embeds: a decoder whose embedded model is not the
one a stream names looks for it, by SHA-256, in the folders of ``ONEDC_MEDIA_MODEL_PATH``
(``os.pathsep``-separated; each an exported model folder or a folder of them), which
``onedc-media decode --model DIR`` extends. The model card lists earlier weights.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from onedc_media.codec.contract import Codec, Decoder, Encoder, ModelRef, check_frames
from onedc_media.errors import BitstreamError, CodecOptionError, ModelError, ModelMismatchError
from onedc_media.container import is_model_id
from onedc_media.model.loading import find_model, resolve_model_id

__all__ = ["OneDCCodec", "OneDCDecoder", "OneDCEncoder", "get_engine"]

_DTYPES = ("float32", "bfloat16", "float16")
_lock = threading.Lock()


def resolve_device(device: str | None) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CodecOptionError(f"device {device!r} requested but CUDA is not available")
    if not (device == "cpu" or device.startswith("cuda")):
        raise CodecOptionError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return device


@lru_cache(maxsize=4)
def _engine(model: str, device: str, dtype: str, tile: int):
    import torch

    from onedc_media.model.engine import OneDCEngine

    return OneDCEngine.from_pretrained(model, device=device, dtype=getattr(torch, dtype), tile=tile)


def get_engine(model: str = "onedc-tiny", device: str | None = "auto", dtype: str = "float32",
               tile: int = 1024):
    """A process-wide cached engine (loading weights costs seconds)."""
    if dtype not in _DTYPES:
        raise CodecOptionError(f"dtype must be one of {', '.join(_DTYPES)}")
    with _lock:
        return _engine(model, resolve_device(device), dtype, tile)


class OneDCEncoder(Encoder):
    def __init__(self, options: Mapping[str, Any], device: str | None) -> None:
        self.engine = get_engine(options["model"], device or options["device"], options["dtype"], options["tile"])
        given = options.get("quality")
        q = self.engine.default_quality if given is None else int(given)
        if q > self.engine.num_rates:
            raise CodecOptionError(
                f"model {self.engine.ref.name} has {self.engine.num_rates} rate points; quality {q} "
                f"is out of range 1..{self.engine.num_rates}"
            )
        self.q = q - 1
        self.model = self.engine.ref
        self.params = {"quality": q}
        steps = int(options.get("refine") or 0)
        from onedc_media.model.refine import RefineConfig
        from onedc_media.model.residual import enhance_config

        self.refine = RefineConfig(steps=steps) if steps else None
        level = float(options.get("enhance") or 0)
        point = self.engine.model.config.rate_points[self.q]
        try:  # the option's range admits 0 < enhance < 1, which is neither off nor a level
            self.residual = enhance_config(level, float(point["lmbda"])) if level else None
        except ValueError as exc:
            raise CodecOptionError(f"option 'enhance': {exc} (0 turns the layer off)") from None

    def encode(self, frames: Sequence[np.ndarray]) -> list[bytes]:
        frames = check_frames(frames)
        report = self.progress
        total = sum(self.engine.encode_steps(f.shape[0], f.shape[1], self.refine, self.residual) for f in frames)
        if report is None or not total:  # plain encodes report nothing
            return self.engine.compress(frames, self.q, refine=self.refine, residual=self.residual)
        report(0, total)
        return self.engine.compress(frames, self.q, refine=self.refine, residual=self.residual,
                                    progress=lambda n: report(n, total))


class OneDCDecoder(Decoder):
    def __init__(self, params: Mapping[str, Any], model: ModelRef | None, options: Mapping[str, Any],
                 device: str | None, *, explicit: bool = False) -> None:
        """*explicit*: ``options["model"]`` was the user's choice: it is used or refused,
        never replaced by a folder the search path holds."""
        if is_model_id(model):  # a still names its weights by the start of their SHA-256
            model = resolve_model_id(model, options["model"] if explicit else None)
        name = str(options.get("model") or (model.name if model else "") or "onedc-tiny")
        args = (device or options["device"], options["dtype"], options["tile"])
        engine = None
        try:
            engine = get_engine(name, *args)
        except ModelError:  # no such model here: perhaps on the search path
            if explicit or model is None:
                raise
        if not explicit and model is not None and (engine is None or engine.ref.sha256 != model.sha256):
            found = find_model(model)
            if found:
                engine = get_engine(found, *args)
                if engine.ref.sha256 != model.sha256:  # the folder's weights changed since cached
                    with _lock:
                        _engine.cache_clear()
                    engine = get_engine(found, *args)
        if engine is None:
            raise ModelMismatchError(
                f"stream was encoded with weights {model.name} sha256 {model.sha256[:16]}..., "
                "which are not embedded here (decode --model DIR, or ONEDC_MEDIA_MODEL_PATH, "
                "with a folder holding them)"
            )
        self.engine = engine
        self.engine.check_model(model)

    def decode(self, packets: Sequence[bytes]) -> list[np.ndarray]:
        for i, p in enumerate(packets):
            if not isinstance(p, (bytes, bytearray, memoryview)):
                raise BitstreamError(f"onedc packet {i}: expected bytes, got {type(p).__name__}")
        from onedc_media.runtime import SequenceDecoder

        # The batched, pipelined runtime: entropy decoding on threads ahead of synthesis.
        return SequenceDecoder(self.engine).decode_all(packets)


class OneDCCodec(Codec):
    def encoder(self, options: Mapping[str, Any], *, device: str | None = None) -> Encoder:
        return OneDCEncoder(self.info.resolve_options(options), device)

    def decoder(self, params: Mapping[str, Any], *, model: ModelRef | None = None,
                device: str | None = None, options: Mapping[str, Any] | None = None) -> Decoder:
        """``options`` may override ``model`` (a local folder holding the stream's weights)."""
        given = {k: v for k, v in (options or {}).items() if k != "quality"}
        resolved = self.info.resolve_options(given)
        explicit = "model" in given
        if not explicit:
            resolved["model"] = model.name if model else resolved["model"]
        return OneDCDecoder(params, model, resolved, device, explicit=explicit)
