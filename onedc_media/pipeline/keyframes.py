"""The one place keyframe packets become pictures: :func:`decode_keyframes`.

Every keyframe decode in onedc-media goes through this function: the hybrid video
encoder (to get the reconstruction its inter codec predicts from), the hybrid decoder,
``onedc-media decode`` (image streams, videos, ``--keyframes-only``) and the OpenCV
adapters (``imdecode``, ``VideoCapture``). It is the seam where the batched, pipelined
decoder runtime (``onedc_media.runtime``) plugs in: replace the body, keep the contract.

Contract
--------
``decode_keyframes(stream, packets, *, codecs=None, device=None, options=None) -> Iterator[ndarray]``

- *stream* is the :class:`~onedc_media.container.StreamHeader` the packets belong to:
  its ``codec``, ``codec_params`` and ``model`` say how to decode. For a hybrid video
  stream ``codec_params["inter"]`` describes the inter layer and is not passed to the
  keyframe codec (see :data:`INTER_PARAMS_KEY`).
- *options* are decoder-side codec options (``Codec.decoder``'s): the hybrid encoder
  passes its own, so that its keyframes decode with the weights that encoded them
  (``model``: a local folder) rather than those the stream's model name resolves to.
- *packets* is any iterable of packet payloads (``bytes``), one picture each. It may be
  a lazy generator over a file, or a queue that the caller fills one packet at a time.
- The result is a lazy iterator yielding one HxWx3 uint8 RGB frame per packet, in
  packet order. An implementation may read ahead in *packets* and decode several at
  once, but it must yield frame ``i`` without waiting for packet ``i + 1`` to exist,
  because the hybrid encoder feeds packet ``i + 1`` only after it got frame ``i``
  (:class:`PacketFeed`). It must not hold a reference to frames it already yielded.
- Errors: :class:`~onedc_media.errors.BitstreamError` (bad packet),
  :class:`~onedc_media.errors.ModelMismatchError` (other weights),
  :class:`~onedc_media.errors.CodecNotFoundError` (codec not installed); raised from the
  iterator when the bad packet is reached, frames before it having been yielded.
- Closing the iterator (or letting it be garbage collected) releases the decoder.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from onedc_media.codec import CodecRegistry
from onedc_media.container import StreamHeader
from onedc_media.errors import BitstreamError

__all__ = ["INTER_PARAMS_KEY", "PacketFeed", "decode_keyframes", "keyframe_params"]

#: Key of ``codec_params`` that describes a video stream's inter layer (hybrid coding);
#: every other key belongs to the keyframe codec.
INTER_PARAMS_KEY = "inter"


def keyframe_params(stream: StreamHeader) -> dict[str, Any]:
    """The keyframe codec's own parameters of *stream* (without the inter layer's)."""
    return {k: v for k, v in stream.codec_params.items() if k != INTER_PARAMS_KEY}


def decode_keyframes(
    stream: StreamHeader,
    packets: Iterable[bytes],
    *,
    codecs: CodecRegistry | None = None,
    device: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Iterator[np.ndarray]:
    """Decode keyframe (intra) packets of *stream* into RGB frames, lazily, in order.

    See the module docstring for the contract this function keeps.

    :param stream: the stream header (codec name, parameters, model).
    :param packets: the packets' payloads, one picture each.
    :param codecs: the codec registry (default: the installed plugins').
    :param device: passed to ``Codec.decoder`` (``None``: the codec's default).
    :param options: decoder-side codec options, passed to ``Codec.decoder``.
    """
    if codecs is None:
        import onedc_media

        codecs = onedc_media.default_plugins().codecs
    codec = codecs.create(stream.codec)
    decoder = codec.decoder(
        keyframe_params(stream), model=stream.model, device=device, options=options
    )
    return _decode(decoder, stream, packets)


def _decode(decoder: Any, stream: StreamHeader, packets: Iterable[bytes]) -> Iterator[np.ndarray]:
    # Through the batched, pipelined runtime; it never waits for packet i+1 to yield
    # frame i. Hybrid streams decode one picture per batch on one synthesis worker: the
    # inter layer predicts from the reconstruction, and the encoder made it that way (a
    # batch, or a worker's smaller share of torch's threads, can move a pixel by float
    # noise and fail the intra-picture checksum: measured, 2 of 6 GOPs of a clip).
    from onedc_media.runtime import decode_frames

    options: dict[str, Any] = {}
    if INTER_PARAMS_KEY in stream.codec_params:
        options = {"batch_size": 1, "cpu_workers": 1}
    if isinstance(packets, PacketFeed):
        # a feed hands over one packet and waits for its picture: one worker, every thread
        options["cpu_workers"] = 1
    with decoder, contextlib.closing(decode_frames(decoder, packets, **options)) as frames:
        for index, frame in enumerate(frames):
            if stream.width and stream.height and frame.shape[:2] != (stream.height, stream.width):
                raise BitstreamError(
                    f"{stream.codec} keyframe packet {index} decoded to "
                    f"{frame.shape[1]}x{frame.shape[0]}, the stream is "
                    f"{stream.width}x{stream.height}"
                )
            yield frame


class PacketFeed:
    """An iterable of packets that a caller fills one at a time (thread-safe).

    The hybrid encoder uses one long-lived :func:`decode_keyframes` iterator per stream
    (so a model loads once) and feeds it each keyframe packet just before it asks for
    the reconstruction::

        feed = PacketFeed()
        frames = decode_keyframes(stream, feed)
        feed.put(packet)
        recon = next(frames)
        ...
        feed.close()  # ends the iterator
    """

    _END = object()

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()

    def put(self, packet: bytes) -> None:
        self._queue.put(packet)

    def close(self) -> None:
        self._queue.put(self._END)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            yield item  # type: ignore[misc]
