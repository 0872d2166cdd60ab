"""The decoder runtime: OneDC packet sequences to frames, pipelined and batched.

Entropy decoding (exact, CPU) runs on a pool of threads ahead of synthesis; synthesis
runs in batches of equal-shaped frames on the fastest device (CPU threads by default;
on CUDA with pinned buffers and copy/compute streams, see :mod:`onedc_media.runtime.cuda`).
Queues are bounded, frames come out in packet order, and errors name their frame.

::

    from onedc_media.runtime import SequenceDecoder, decode_frames

    frames = SequenceDecoder(engine, batch_size="auto").decode(packets)  # an engine
    frames = decode_frames(codec_decoder, packets)  # a codec Decoder (onedc or any other)

``onedc-media bench decode`` measures it against per-frame and plain batched decoding.
"""

from onedc_media.runtime.decoder import (
    CPU_MAX_BATCH,
    CPU_MAX_WORKERS,
    GPU_MAX_BATCH,
    CpuSynthesizer,
    DecodeStats,
    SequenceDecoder,
    auto_batch_size,
    decode_frames,
    engine_on,
    estimate_frame_bytes,
    vae_batch_size,
)
from onedc_media.runtime.errors import FrameDecodeError

__all__ = [
    "CPU_MAX_BATCH",
    "CPU_MAX_WORKERS",
    "GPU_MAX_BATCH",
    "CpuSynthesizer",
    "DecodeStats",
    "FrameDecodeError",
    "SequenceDecoder",
    "auto_batch_size",
    "decode_frames",
    "engine_on",
    "estimate_frame_bytes",
    "vae_batch_size",
]
