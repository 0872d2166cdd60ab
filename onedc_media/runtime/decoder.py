"""The decoder runtime: packets in, frames out, in order, as fast as the hardware allows.

One :meth:`SequenceDecoder.decode` call runs this pipeline::

    packets ──► feeder thread ──► entropy pool ──────► pending window ──► synthesis worker(s)
      (any iterable;  (reads ahead,   (N CPU threads:    (decoded latents,   (one per device: batches
       may block)      <= queue_depth   CRC, integer      in packet order)    of equal-shaped frames)
                       frames in        parsing, rANS)                              │
                       flight)                                                      ▼
    caller ◄──────────── frames in packet order ◄───────────────────────── reorder buffer

- **Bounded.** At most ``queue_depth`` frames are between "packet read" and "frame
  yielded" (packets, latents and pictures alike): the feeder stops reading while the
  caller holds back, so memory stays flat however long the sequence (back-pressure).
- **Batches only from what exists.** A worker takes the oldest decoded frame plus the
  frames already read whose shape matches (waiting only for their entropy decoding, never
  for a packet not yet read), up to the batch size. So frame ``i`` is yielded without
  waiting for packet ``i + 1`` to exist (a caller may feed packets one at a time), and
  batches grow by themselves when synthesis is the bottleneck.
- **Errors** from any stage are raised from the iterator when the failing frame is
  reached (frames before it are yielded first) as a :class:`FrameDecodeError` naming
  the frame and stage; it also subclasses the cause's class (``BitstreamError``...).
- **Shutdown.** Closing the iterator (``close()``, ``break`` + garbage collection, an
  exception or Ctrl-C in the caller) stops every thread: each finishes the item in hand
  (one entropy decode, one synthesis batch) and exits. A feeder blocked inside the
  caller's packet source cannot be interrupted; it is a daemon thread and exits as soon
  as the source returns (``PacketFeed.close()`` does that).

The synthesis of a batch is the engine's own (:meth:`OneDCEngine.synthesize` on CPU, the
same networks on CUDA streams in :mod:`onedc_media.runtime.cuda`). On CPU it runs by
default on a replica of the float networks in ``channels_last`` memory format (oneDNN's
NHWC convolutions: 1.18x at 512x512), and batches are sized by picture area
(:data:`CPU_BATCH_PIXELS`). So against per-frame decoding only float noise remains
(layout, batch size and a worker's thread count change kernel blockings: at most 1
level of 255 measured, 2 allowed in ``tests/test_runtime.py``); with
``channels_last=False``, batches of 1 and ``cpu_workers=1`` the frames are bit-identical.
Entropy decoding is exact everywhere.

CPU threads: torch's OpenMP pool is per calling thread, so the synthesis worker and the
entropy threads each bring their own. On a machine shared with other CPU-heavy work,
libgomp's default spin-waiting can make a lone OpenMP team several times slower; a
second team (as this runtime creates) switches libgomp to throttled spinning. Compare
timings with ``GOMP_SPINCOUNT`` set (``onedc-media bench decode --help``).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from onedc_media.errors import BitstreamError, CodecOptionError
from onedc_media.runtime.errors import FrameDecodeError, frame_error

__all__ = [
    "CPU_MAX_BATCH",
    "CPU_MAX_WORKERS",
    "GPU_MAX_BATCH",
    "CpuSynthesizer",
    "DecodeStats",
    "FrameDecodeError",
    "SequenceDecoder",
    "Synthesizer",
    "auto_batch_size",
    "decode_frames",
    "engine_on",
    "estimate_frame_bytes",
    "vae_batch_size",
]

log = logging.getLogger(__name__)

#: Largest batch "auto" picks on CPU.
CPU_MAX_BATCH = 8
#: On CPU "auto" batches frames up to about this many pixels through the latent networks
#: (semantic adaptor, synthesis, U-Net: 1/8 resolution), which gain from batches even of
#: large pictures (``onedc-tiny``, 512x512, 2 cores: 118 -> 86 ms per frame in 4s).
CPU_BATCH_PIXELS = 1 << 20
#: ... and splits batches into about this many pixels for the VAE decoder, whose
#: full-resolution feature maps outgrow the caches: at 512x512 one frame at a time is
#: fastest (113 ms per frame; 132 ms in 4s), small pictures still gain from batches.
CPU_VAE_BATCH_PIXELS = 1 << 18
#: Most CPU synthesis workers ``cpu_workers="auto"`` starts.
CPU_MAX_WORKERS = 4
#: Largest batch "auto" picks on a GPU (memory allowing).
GPU_MAX_BATCH = 32
#: Share of available memory "auto" lets synthesis activations use.
MEMORY_SHARE = 0.5

_JOIN_S = 120.0  # a stage's item in hand (one entropy decode, one batch) ends well before
_FEEDER_JOIN_S = 0.5  # the feeder may sit in the caller's packet source: do not wait on it


# -- batch size ----------------------------------------------------------------------


def estimate_frame_bytes(engine: Any, height: int, width: int, *, itemsize: int = 4) -> int:
    """A rough upper bound of the activation memory synthesising one picture takes.

    Synthesis peaks in the VAE decoder's finest level: a handful of feature maps of its
    channel count at that level's resolution (tiles of at most ``engine.tile`` pixels a
    side are synthesised one at a time). Measured on CPU for ``onedc-tiny`` at 512x512:
    ~40-60 MB per frame; this returns ~70 MB.
    """
    tile = int(getattr(engine, "tile", 1024) or 1024)
    h = min(-(-height // 64) * 64, tile + 128)
    w = min(-(-width // 64) * 64, tile + 128)
    channels, shuffle = 128, 1
    vae = getattr(getattr(getattr(engine, "model", None), "config", None), "vae_config", None)
    if isinstance(vae, dict):
        kw = vae.get("kwargs") or {}
        shuffle = int(vae.get("pixel_shuffle") or 1)
        if kw.get("decoder_block_out_channels"):  # AutoencoderTiny: the last block is the finest
            channels = int(kw["decoder_block_out_channels"][-1])
        elif kw.get("block_out_channels"):  # AutoencoderKL: the first is the finest
            channels = int(kw["block_out_channels"][0])
    per_pixel = max(channels // (shuffle * shuffle), 3) * itemsize * 6 + 3 * 4 * 2
    return h * w * per_pixel


def available_memory() -> int:
    """Bytes of host memory available to new allocations (``MemAvailable``)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def auto_batch_size(
    engine: Any,
    height: int,
    width: int,
    *,
    free_bytes: int | None = None,
    per_frame_bytes: int | None = None,
    cap: int = CPU_MAX_BATCH,
) -> int:
    """The batch size "auto" uses for pictures of this size on CPU: about
    :data:`CPU_BATCH_PIXELS` pixels, and no more frames than :data:`MEMORY_SHARE` of the
    free memory holds; at most *cap*, at least 1.

    :param free_bytes: memory to plan with (default: the host's available memory).
    :param per_frame_bytes: measured cost of one frame (default: :func:`estimate_frame_bytes`).
    """
    free = available_memory() if free_bytes is None else free_bytes
    per = per_frame_bytes or estimate_frame_bytes(engine, height, width)
    padded = -(-height // 64) * 64 * (-(-width // 64) * 64)
    by_size = max(1, CPU_BATCH_PIXELS // padded)
    return int(max(1, min(cap, by_size, (free * MEMORY_SHARE) // max(per, 1))))


def vae_batch_size(height: int, width: int) -> int:
    """Pictures per VAE-decoder call on CPU: about :data:`CPU_VAE_BATCH_PIXELS` pixels."""
    padded = -(-height // 64) * 64 * (-(-width // 64) * 64)
    return max(1, CPU_VAE_BATCH_PIXELS // padded)


# -- synthesizers --------------------------------------------------------------------


class Synthesizer(Protocol):
    """Runs synthesis on one device. A worker thread calls :meth:`submit` for batch
    ``k + 1`` before :meth:`collect` for batch ``k`` when :attr:`depth` > 1 (so copies and
    compute of consecutive batches overlap)."""

    device: str
    depth: int
    lock: threading.Lock  #: held by the worker using it (one decode run at a time)

    def max_batch(self, item: Any) -> int: ...

    def submit(self, items: Sequence[Any]) -> Any: ...

    def collect(self, handle: Any) -> tuple[list[np.ndarray], dict[str, float]]: ...


class CpuSynthesizer:
    """Synthesis with the engine's own batched :meth:`synthesize` (CPU, or any device
    without streams); ``depth`` 1: each batch is done when :meth:`submit` returns.

    Give it an engine whose networks are ``channels_last`` (:func:`engine_on`) for
    oneDNN's faster NHWC convolutions: 1.18x on ``onedc-tiny`` at 512x512, pixels
    within 1 level of NCHW.

    :param precision: ``"fp32"`` (default) or ``"bf16"`` (CPU autocast: faster on CPUs
        with bf16 instructions, less exact).
    :param compile: run the networks as frozen TorchScript traces, one per input shape
        (:class:`~onedc_media.runtime.compiled.FrozenFunction`; fp32 only): a one-time
        trace per shape, then faster batches.
    """

    depth = 1

    def __init__(
        self,
        engine: Any,
        batch_size: int | str = "auto",
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise CodecOptionError(
                f"precision {precision!r} is not available on CPU (fp32 or bf16)"
            )
        self.frozen = None
        if compile and hasattr(engine, "model"):
            from onedc_media.runtime.compiled import frozen_synthesize, with_synthesize

            self.frozen = frozen_synthesize(engine)
            engine = with_synthesize(engine, self.frozen)
        self.engine = engine
        self.batch_size = batch_size
        self.precision = precision
        self.device = str(getattr(engine, "device", "cpu"))
        self.lock = threading.Lock()
        self._limits: dict[Any, int] = {}
        # only a OneDC engine splits batches for its VAE decoder; other engines keep the
        # protocol's synthesize(items, batch_size=)
        self._split_vae = hasattr(engine, "model")

    def max_batch(self, item: Any) -> int:
        if self.batch_size != "auto":
            return int(self.batch_size)
        key = getattr(item, "shape_key", None)
        if key not in self._limits:
            h, w = getattr(item, "height", 512), getattr(item, "width", 512)
            self._limits[key] = auto_batch_size(self.engine, h, w)
        return self._limits[key]

    def submit(self, items: Sequence[Any]) -> tuple[list[np.ndarray], dict[str, float]]:
        t0 = time.perf_counter()
        traced = self.frozen.trace_s if self.frozen is not None else 0.0
        kwargs: dict[str, Any] = {"batch_size": len(items)}
        h, w = getattr(items[0], "height", None), getattr(items[0], "width", None)
        if self._split_vae and isinstance(h, int) and isinstance(w, int) and vae_batch_size(h, w) < len(items):
            kwargs["vae_batch_size"] = vae_batch_size(h, w)
        if self.precision == "bf16":
            import torch

            with torch.autocast("cpu", dtype=torch.bfloat16):
                frames = self.engine.synthesize(list(items), **kwargs)
        else:
            frames = self.engine.synthesize(list(items), **kwargs)
        compile_s = (self.frozen.trace_s - traced) if self.frozen is not None else 0.0
        return frames, {"synthesis": time.perf_counter() - t0 - compile_s, "compile": compile_s}

    def collect(self, handle: Any) -> tuple[list[np.ndarray], dict[str, float]]:
        return handle


# -- statistics ----------------------------------------------------------------------


@dataclass
class DecodeStats:
    """What one :meth:`SequenceDecoder.decode` run did (times in seconds).

    Stage times are busy times summed over that stage's threads, so with overlap they
    add up to more than :attr:`wall_s`.
    """

    frames: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    read_s: float = 0.0  #: in the caller's packet source
    entropy_s: float = 0.0  #: entropy decoding, summed over the pool's threads
    synthesis_s: float = 0.0  #: synthesis (on CPU including the small host copies)
    copy_s: float = 0.0  #: CUDA: host<->device copies (event-timed, on the copy stream)
    compile_s: float = 0.0  #: one-time tracing / compiling for new shapes (``compile``)
    wait_s: float = 0.0  #: the caller waiting for its next frame
    wall_s: float = 0.0
    max_in_flight: int = 0  #: most frames between "packet read" and "frame yielded"
    devices: tuple[str, ...] = ()
    entropy_threads: int = 0

    @property
    def batches(self) -> int:
        return len(self.batch_sizes)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else float("nan")

    def summary(self) -> str:
        mean_b = sum(self.batch_sizes) / len(self.batch_sizes) if self.batch_sizes else 0.0
        return (
            f"{self.frames} frames in {self.wall_s:.2f} s ({self.frames_per_s:.2f} frames/s) on "
            f"{', '.join(self.devices)}; batches {self.batches} (mean {mean_b:.1f}); busy s: "
            f"read {self.read_s:.2f}, entropy {self.entropy_s:.2f} ({self.entropy_threads} "
            f"threads), synthesis {self.synthesis_s:.2f}, copies {self.copy_s:.2f}, compile "
            f"{self.compile_s:.2f}; caller "
            f"waited {self.wait_s:.2f}; max in flight {self.max_in_flight}"
        )


# -- one run -------------------------------------------------------------------------

_STOP = object()  # take_batch: no more batches for this worker
_END = object()  # result: the sequence is over


class _Entry:
    """One frame between "packet read" and "handed to synthesis"."""

    __slots__ = ("done", "error", "index", "packet", "stage", "value")

    def __init__(self, index: int, packet: Any) -> None:
        self.index = index
        self.packet = packet
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None
        self.stage = "entropy"


class _Failure:
    __slots__ = ("cause", "index", "last", "stage")

    def __init__(
        self, cause: BaseException, index: int, stage: str, last: int | None = None
    ) -> None:
        self.cause, self.index, self.stage, self.last = cause, index, stage, last

    def raise_(self) -> None:
        if not isinstance(self.cause, Exception):  # KeyboardInterrupt, SystemExit: as they are
            raise self.cause
        raise frame_error(self.cause, self.index, self.stage, self.last) from self.cause


class _Run:
    """The threads and queues of one decode call."""

    def __init__(self, owner: SequenceDecoder, packets: Iterable[Any]) -> None:
        self.owner = owner
        self.packets = packets
        self.engine = owner.engine
        self.depth = owner.queue_depth
        self.cond = threading.Condition()
        self.take_lock = threading.Lock()  # one worker forms a batch at a time
        self.pending: deque[_Entry] = deque()  # read, not yet taken by a worker, in order
        self.results: dict[int, Any] = {}  # index -> frame or _Failure
        self.jobs: queue.SimpleQueue[_Entry | None] = queue.SimpleQueue()
        self.n_read = 0
        self.in_flight = 0
        self.source_done = False
        self.halt_at: int | None = None  # the first failed frame: nothing after it is needed
        self.stop = False
        self.fatal: BaseException | None = None
        self.stats = DecodeStats(
            devices=tuple(s.device for s in owner.synthesizers),
            entropy_threads=owner.entropy_threads,
        )
        self.threads: list[threading.Thread] = []
        self.feeder: threading.Thread | None = None
        self.saved_torch_threads: int | None = None
        self.worker_threads: int | None = None  # torch threads of each CPU worker
        self.entropy_torch_threads: int | None = None  # torch threads of each entropy thread
        try:  # a sized source (a list of packets): its length sizes the run
            self.known: int | None = len(packets)  # type: ignore[arg-type]
        except TypeError:
            self.known = None
        self.synthesizers = self._active_synthesizers()
        self.batch_cap = (
            max(1, -(-self.known // len(self.synthesizers))) if self.known else None
        )

    def _active_synthesizers(self) -> list[Synthesizer]:
        """All synthesizers, but no more CPU workers than a sized source has frames: one
        picture is synthesised by one worker with all of torch's threads."""
        synths = list(self.owner.synthesizers)
        if self.known is None:
            return synths
        keep, cpu = [], 0
        for s in synths:
            if isinstance(s, CpuSynthesizer):
                cpu += 1
                if cpu > max(1, self.known):
                    continue
            keep.append(s)
        return keep

    # ---- threads -------------------------------------------------------------------
    def start(self) -> None:
        name = "onedc-runtime"
        workers = sum(isinstance(s, CpuSynthesizer) for s in self.synthesizers)
        if workers > 1:  # they share the cores: divide torch's intra-op threads among them
            import torch

            # Each worker (and entropy thread) sets its own count: OpenMP's is per
            # thread, so the caller's thread keeps its threads for its own work (a
            # transcode's encoder). torch also keeps the last count set as the one for
            # threads that start later: close() puts the caller's back.
            self.saved_torch_threads = torch.get_num_threads()
            self.worker_threads = max(1, self.saved_torch_threads // workers)
            self.entropy_torch_threads = self.worker_threads
        elif self.owner.entropy_threads > 1:
            # Several entropy threads (synthesis on devices, or one CPU worker): each gets
            # its share, not torch's full count each (which oversubscribes the cores
            # entropy_threads times). On the H200 machine, 8 entropy threads with 16
            # torch threads each decoded 64 frames/s at 512x512 where synthesis ran at
            # 383 (the change is not yet measured there). As with the CPU workers,
            # threads the caller starts while the run lasts inherit the share.
            import torch

            self.saved_torch_threads = torch.get_num_threads()
            self.entropy_torch_threads = max(
                1, self.saved_torch_threads // self.owner.entropy_threads
            )
        for i in range(self.owner.entropy_threads):
            self.threads.append(
                threading.Thread(target=self._entropy_loop, name=f"{name}-entropy-{i}", daemon=True)
            )
        for synth in self.synthesizers:
            self.threads.append(
                threading.Thread(
                    target=self._synth_loop,
                    args=(synth,),
                    name=f"{name}-synth-{synth.device}",
                    daemon=True,
                )
            )
        self.feeder = threading.Thread(target=self._feed_loop, name=f"{name}-feed", daemon=True)
        for t in self.threads:
            t.start()
        self.feeder.start()

    def close(self) -> None:
        with self.cond:
            self.stop = True
            self.cond.notify_all()
        for _ in range(self.owner.entropy_threads):
            self.jobs.put(None)
        me = threading.current_thread()
        for t in self.threads:
            if t is not me and t.ident is not None:  # started (start() may have failed)
                t.join(_JOIN_S)
                if t.is_alive():
                    log.warning(
                        "decoder runtime: thread %s did not stop within %.0f s", t.name, _JOIN_S
                    )
        if self.feeder is not None and self.feeder is not me and self.feeder.ident is not None:
            self.feeder.join(_FEEDER_JOIN_S)
            if self.feeder.is_alive():
                log.debug(
                    "decoder runtime: the packet source is still blocking the feeder; it "
                    "exits when the source returns"
                )
        with self.cond:  # drop what is left (frames, latents, packets)
            self.pending.clear()
            self.results.clear()
        if self.saved_torch_threads is not None:
            import torch

            torch.set_num_threads(self.saved_torch_threads)
            self.saved_torch_threads = None

    def _crash(self, exc: BaseException) -> None:
        """A bug in the runtime itself: stop everything, raise it in the caller."""
        with self.cond:
            if self.fatal is None:
                self.fatal = exc
            self.stop = True
            self.cond.notify_all()

    def _halt(self, index: int) -> None:
        if self.halt_at is None or index < self.halt_at:
            self.halt_at = index

    def _feed_loop(self) -> None:
        try:
            it = iter(self.packets)
            while True:
                with self.cond:
                    while self.in_flight >= self.depth and not self.stop:
                        self.cond.wait()
                    if self.stop or self.halt_at is not None:
                        return
                    index = self.n_read
                t0 = time.perf_counter()
                try:
                    packet = next(it)
                except StopIteration:
                    return
                except BaseException as exc:  # noqa: BLE001 - reported at its frame
                    entry = _Entry(index, None)
                    entry.done, entry.error, entry.stage = True, exc, "read"
                    with self.cond:
                        self.n_read += 1
                        self.in_flight += 1
                        self.pending.append(entry)
                        self._halt(index)
                        self.cond.notify_all()
                    return
                dt = time.perf_counter() - t0
                entry = _Entry(index, packet)
                with self.cond:
                    if self.stop:
                        return
                    self.stats.read_s += dt
                    self.n_read += 1
                    self.in_flight += 1
                    self.stats.max_in_flight = max(self.stats.max_in_flight, self.in_flight)
                    self.pending.append(entry)
                self.jobs.put(entry)
        except BaseException as exc:  # noqa: BLE001
            self._crash(exc)
        finally:
            with self.cond:
                self.source_done = True
                self.cond.notify_all()

    def _entropy_loop(self) -> None:
        decode = self.engine.entropy_decode
        try:
            if self.entropy_torch_threads is not None:  # a share of the cores
                import torch

                torch.set_num_threads(self.entropy_torch_threads)
            while True:
                entry = self.jobs.get()
                if entry is None:
                    return
                if self.stop:
                    continue
                t0 = time.perf_counter()
                value, error = None, None
                try:
                    value = decode(entry.packet)
                except BaseException as exc:  # noqa: BLE001 - reported at its frame
                    error = exc
                dt = time.perf_counter() - t0
                with self.cond:
                    entry.packet = None
                    entry.value, entry.error, entry.done = value, error, True
                    if error is not None:
                        self._halt(entry.index)
                    self.stats.entropy_s += dt
                    self.cond.notify_all()
        except BaseException as exc:  # noqa: BLE001
            self._crash(exc)

    def _take_batch(self, synth: Synthesizer, wait: bool) -> Any:
        """The next batch for *synth*: a list of entries, ``None`` (nothing ready and
        ``wait`` is false) or ``_STOP``."""
        if not self.take_lock.acquire(blocking=wait):
            return None  # another worker is forming a batch; collect what is in flight
        try:
            return self._take_batch_locked(synth, wait)
        finally:
            self.take_lock.release()

    def _take_batch_locked(self, synth: Synthesizer, wait: bool) -> Any:
        with self.cond:
            while True:
                if self.stop:
                    return _STOP
                if self.pending:
                    head = self.pending[0]
                    if self.halt_at is not None and head.index > self.halt_at:
                        return _STOP
                    if head.done:
                        break
                elif self.source_done:
                    return _STOP
                if not wait:
                    return None
                self.cond.wait()
            head = self.pending.popleft()
            if head.error is not None:
                self.results[head.index] = _Failure(head.error, head.index, head.stage)
                self.cond.notify_all()
                return []
            batch = [head]
            limit = max(1, min(synth.max_batch(head.value), self.depth))
            if self.batch_cap is not None:  # a sized source: spread it over the workers
                limit = min(limit, self.batch_cap)
            key = head.value.shape_key
            i = 0  # scan the frames already read, in order, for more of the same shape
            while len(batch) < limit and i < len(self.pending):
                entry = self.pending[i]
                if not entry.done:
                    if not wait:
                        break
                    self.cond.wait()  # its entropy decoding is under way: worth waiting for
                    if self.stop:
                        return _STOP
                    continue
                if entry.error is not None:
                    break  # frames after a failure are not needed
                if entry.value.shape_key == key:
                    del self.pending[i]
                    batch.append(entry)
                else:
                    i += 1
            return batch

    def _deliver(
        self, batch: list[_Entry], frames: list[np.ndarray], times: dict[str, float]
    ) -> None:
        with self.cond:
            if len(frames) != len(batch):
                exc = RuntimeError(
                    f"synthesis returned {len(frames)} pictures for {len(batch)} frames"
                )
                self._fail(batch, exc)
                return
            for entry, frame in zip(batch, frames):
                self.results[entry.index] = frame
            self.stats.batch_sizes.append(len(batch))
            self.stats.synthesis_s += times.get("synthesis", 0.0)
            self.stats.copy_s += times.get("copies", 0.0)
            self.stats.compile_s += times.get("compile", 0.0)
            self.cond.notify_all()

    def _fail(self, batch: list[_Entry], exc: BaseException) -> None:
        first, last = min(e.index for e in batch), max(e.index for e in batch)
        with self.cond:
            for entry in batch:
                self.results[entry.index] = _Failure(exc, first, "synthesis", last)
            self._halt(first)
            self.cond.notify_all()

    def _synth_loop(self, synth: Synthesizer) -> None:
        try:
            if self.worker_threads is not None and isinstance(synth, CpuSynthesizer):
                import torch

                torch.set_num_threads(self.worker_threads)
            with synth.lock:
                inflight: deque[tuple[list[_Entry], Any]] = deque()
                try:
                    self._synth_batches(synth, inflight)
                finally:
                    for (
                        _,
                        handle,
                    ) in inflight:  # stopped early: let the device finish with its buffers
                        try:
                            synth.collect(handle)
                        except Exception:  # noqa: BLE001, S110 - the run is being abandoned
                            pass
        except BaseException as exc:  # noqa: BLE001
            self._crash(exc)

    def _synth_batches(self, synth: Synthesizer, inflight: deque[tuple[list[_Entry], Any]]) -> None:
        while not self.stop:
            # With a batch in flight, take only what is ready now; else wait for work.
            batch = self._take_batch(synth, wait=not inflight)
            if batch is _STOP and not inflight:
                return
            if isinstance(batch, list) and batch:
                items = [e.value for e in batch]
                for e in batch:
                    e.value = None
                try:
                    inflight.append((batch, synth.submit(items)))
                except Exception as exc:  # noqa: BLE001 - reported at its frames
                    self._fail(batch, exc)
                del items
            if inflight and (not isinstance(batch, list) or len(inflight) >= synth.depth):
                done, handle = inflight.popleft()
                try:
                    frames, times = synth.collect(handle)
                except Exception as exc:  # noqa: BLE001 - reported at its frames
                    self._fail(done, exc)
                else:
                    self._deliver(done, frames, times)
                del handle

    # ---- the caller's side ---------------------------------------------------------
    def result(self, index: int) -> Any:
        """Frame *index* (or its ``_Failure``), or ``_END``; blocks until it is there."""
        t0 = time.perf_counter()
        with self.cond:
            try:
                while True:
                    if self.fatal is not None:
                        raise RuntimeError("decoder runtime failed") from self.fatal
                    if index in self.results:
                        self.in_flight -= 1
                        self.cond.notify_all()
                        return self.results.pop(index)
                    if self.source_done and index >= self.n_read:
                        return _END
                    self.cond.wait(0.25)  # a timeout keeps Ctrl-C responsive everywhere
            finally:
                self.stats.wait_s += time.perf_counter() - t0


# -- the decoder ---------------------------------------------------------------------


def _parse_devices(engine: Any, device: Any) -> list[str]:
    if device is None:
        return [str(getattr(engine, "device", "cpu"))]
    if isinstance(device, (list, tuple)):
        return [str(d) for d in device] or [str(getattr(engine, "device", "cpu"))]
    dev = str(device)
    if dev in ("auto", "cuda:*", "cuda:all"):
        import torch

        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if dev != "auto":
            raise CodecOptionError(f"device {dev!r} requested but CUDA is not available")
        return ["cpu"]
    if dev.startswith("cuda:") and "," in dev:
        return [f"cuda:{i.strip()}" for i in dev[5:].split(",") if i.strip()]
    return [dev]


def _auto_cpu_workers(engine: Any, devices: Sequence[str]) -> int:
    if not hasattr(engine, "model") or any(d.startswith("cuda") for d in devices):
        return 1
    import torch

    return max(1, min(CPU_MAX_WORKERS, torch.get_num_threads()))


def _default_entropy_threads(devices: Sequence[str]) -> int:
    cpus = os.cpu_count() or 1
    if any(d.startswith("cuda") for d in devices):
        return max(1, min(8, cpus - len(devices)))  # the CPU does nothing else
    return max(1, min(4, cpus // 2))  # leave the cores to synthesis


_replicas: weakref.WeakKeyDictionary[Any, dict[tuple[str, bool], Any]] = weakref.WeakKeyDictionary()
_replicas_lock = threading.Lock()


def engine_on(engine: Any, device: str, *, channels_last: bool = False) -> Any:
    """*engine* itself when it is on *device* (and in NCHW when *channels_last* is false),
    else a replica there: same parsing model, identity and settings, a copy of the float
    networks (moved, and in ``channels_last`` memory format if asked). Replicas are
    cached per engine, so building decoders repeatedly copies the weights once."""
    if not hasattr(engine, "model"):
        return engine
    import torch

    dev = str(torch.device(device))
    if dev == "cuda":
        dev = f"cuda:{torch.cuda.current_device()}"
    current = str(getattr(engine, "device", "cpu"))
    if (current == dev or current == str(device)) and not channels_last:
        return engine
    with _replicas_lock:
        cache = _replicas.setdefault(engine, {})
        replica = cache.get((dev, channels_last))
        if replica is None:
            import copy

            model = copy.deepcopy(engine.model)
            fine = getattr(engine, "fine_decoder", None)  # layered pictures name it
            replica = type(engine)(
                model,
                engine.parsing,
                engine.ref,
                device=torch.device(dev),
                dtype=engine.dtype,
                tile=engine.tile,
                fine_decoder=copy.deepcopy(fine),
                fine_dir=getattr(engine, "fine_dir", None),
            )
            if channels_last:
                replica.model.to(memory_format=torch.channels_last)
                if replica.fine_decoder is not None:
                    replica.fine_decoder.vae.to(memory_format=torch.channels_last)
            cache[(dev, channels_last)] = replica
        return replica


class SequenceDecoder:
    """Decode a sequence of OneDC packets into frames, pipelined and batched.

    ::

        engine = OneDCEngine.from_pretrained("onedc-tiny")
        decoder = SequenceDecoder(engine)            # CPU threads + batching
        for frame in decoder.decode(packets):        # any iterable of bytes, lazily
            ...                                      # HxWx3 uint8 RGB, in packet order
        print(decoder.last_stats.summary())

    Args:
        engine: an :class:`~onedc_media.model.engine.OneDCEngine` (anything with
            ``entropy_decode(bytes) -> item`` (items have ``shape_key``, ``height``,
            ``width``) and ``synthesize(items, batch_size=) -> list[ndarray]`` works on CPU).
        batch_size: frames per synthesis batch, or ``"auto"``: from free memory (host
            RAM on CPU, at most :data:`CPU_MAX_BATCH`; measured GPU memory on CUDA).
        entropy_threads: CPU threads decoding packets ahead of synthesis (default: half
            the cores without a GPU, all but one per GPU with one).
        queue_depth: most frames in flight, read but not yet yielded (default: twice
            what the devices' batches hold, plus the entropy threads).
        device: where synthesis runs: ``None`` (the engine's device), ``"cpu"``,
            ``"cuda"``, ``"cuda:1"``, ``"cuda:0,1"`` / ``"cuda:*"`` / a list (several
            GPUs: each takes the next batch when free, a model replica each) or
            ``"auto"``.
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` (autocast; fp16 CUDA
            only). Entropy decoding is exact whatever this is.
        channels_last: run synthesis on a replica of the float networks in NHWC memory
            format (default: on CPU, where oneDNN is faster with it; costs one copy of
            the float weights, cached per engine). Pixels move by at most 1 level.
        compile: fixed-shape compilation of the synthesis networks, one per input shape:
            ``torch.compile`` on CUDA, frozen TorchScript traces on CPU (fp32).
        cuda_graphs: replay CUDA graphs for repeated batch shapes (CUDA).
        cpu_workers: CPU synthesis workers, each taking the next batch when free, or
            ``"auto"`` (default): one per torch intra-op thread, at most
            :data:`CPU_MAX_WORKERS` (1 where synthesis runs on a GPU or the engine is not
            a torch model). On few cores the small convolutions of ``onedc-tiny`` scale
            better across frames than across threads (2 cores, 512x512: 2 workers of 1
            thread synthesise 1.05-1.26x faster than 1 worker of 2, over four
            measurements). With N workers each worker
            thread runs torch with 1/N of the caller's intra-op threads (at least 1); the
            caller's own thread keeps its count. A sized source (a list) of fewer frames
            than workers runs fewer workers: one picture gets one worker with every
            thread. Sources that hand over one packet at a time (``PacketFeed``) should
            pass ``cpu_workers=1``.
    """

    def __init__(
        self,
        engine: Any,
        *,
        batch_size: int | str = "auto",
        entropy_threads: int | None = None,
        queue_depth: int | None = None,
        device: Any = None,
        precision: str = "fp32",
        channels_last: bool | None = None,
        compile: bool = False,
        cuda_graphs: bool = False,
        cpu_workers: int | str = "auto",
    ) -> None:
        if cpu_workers != "auto" and (
            isinstance(cpu_workers, bool) or not isinstance(cpu_workers, int) or cpu_workers < 1
        ):
            raise CodecOptionError(
                f"cpu_workers must be 'auto' or a positive integer, got {cpu_workers!r}"
            )
        if batch_size != "auto" and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise CodecOptionError(
                f"batch_size must be 'auto' or a positive integer, got {batch_size!r}"
            )
        if precision not in ("fp32", "bf16", "fp16"):
            raise CodecOptionError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
        self.engine = engine
        self.batch_size = batch_size
        devices = _parse_devices(engine, device)
        if cpu_workers == "auto":
            cpu_workers = _auto_cpu_workers(engine, devices)
        #: CPU synthesis workers this decoder runs (``"auto"`` resolved)
        self.cpu_workers = int(cpu_workers)
        self.synthesizers: list[Synthesizer] = []
        for dev in devices:
            if dev.startswith("cuda"):
                import torch

                if not torch.cuda.is_available():
                    raise CodecOptionError(f"device {dev!r} requested but CUDA is not available")
                from onedc_media.runtime.cuda import CudaSynthesizer

                self.synthesizers.append(
                    CudaSynthesizer(
                        engine_on(engine, dev, channels_last=bool(channels_last)),
                        batch_size=batch_size,
                        precision=precision,
                        compile=compile,
                        cuda_graphs=cuda_graphs,
                    )
                )
            else:
                if cuda_graphs:
                    raise CodecOptionError("cuda_graphs needs a CUDA device")
                if compile and precision != "fp32":
                    raise CodecOptionError("compile on CPU runs fp32 only")
                cl = channels_last is None or channels_last
                replica = engine_on(engine, dev, channels_last=cl)
                for _ in range(cpu_workers):  # one replica, read-only, shared by the workers
                    self.synthesizers.append(
                        CpuSynthesizer(replica, batch_size, precision, compile)
                    )
        if entropy_threads is None:
            entropy_threads = _default_entropy_threads(devices)
        if entropy_threads < 1:
            raise CodecOptionError(f"entropy_threads must be at least 1, got {entropy_threads}")
        self.entropy_threads = int(entropy_threads)
        if queue_depth is None:
            per = (
                batch_size
                if isinstance(batch_size, int)
                else (GPU_MAX_BATCH // 2 if devices[0].startswith("cuda") else CPU_MAX_BATCH)
            )
            queue_depth = 2 * per * len(self.synthesizers) + self.entropy_threads
        if queue_depth < 1:
            raise CodecOptionError(f"queue_depth must be at least 1, got {queue_depth}")
        self.queue_depth = int(queue_depth)
        self.devices = tuple(devices)
        #: statistics of the last finished (or closed) :meth:`decode` run
        self.last_stats: DecodeStats | None = None

    def decode(self, packets: Iterable[Any]) -> Iterator[np.ndarray]:
        """Frames of *packets*, one per packet, in packet order (a lazy iterator).

        Threads start with the first ``next()`` and stop when the iterator ends, raises
        or is closed. Raises :class:`FrameDecodeError` (also a subclass of the cause's
        ``OdcError`` class) when the failing frame is reached.
        """
        run = _Run(self, packets)
        t0 = time.perf_counter()
        try:
            run.start()  # inside: a thread that cannot start still gets the others stopped
            index = 0
            while True:
                frame = run.result(index)
                if frame is _END:
                    return
                if isinstance(frame, _Failure):
                    frame.raise_()
                run.stats.frames += 1
                yield frame
                del frame  # hold no reference to what was yielded
                index += 1
        finally:
            run.close()
            run.stats.wall_s = time.perf_counter() - t0
            self.last_stats = run.stats

    def decode_all(self, packets: Iterable[Any]) -> list[np.ndarray]:
        """All frames of *packets* as a list (the codec ``Decoder.decode`` contract)."""
        return list(self.decode(packets))


# -- generic callers -----------------------------------------------------------------


class _Decoded:
    """A picture a codec decoder already produced (its 'synthesis' is a no-op)."""

    __slots__ = ("frame",)
    shape_key = None

    def __init__(self, frame: np.ndarray) -> None:
        self.frame = frame


class _CodecStages:
    """Runs any codec ``Decoder`` in the runtime: ``decode([packet])`` is the threaded
    stage (one thread: decoders need not be thread-safe), synthesis passes through."""

    device = "cpu"

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder

    def entropy_decode(self, packet: Any) -> _Decoded:
        frames = self.decoder.decode([packet])
        if len(frames) != 1:
            raise BitstreamError(f"the decoder returned {len(frames)} pictures for one packet")
        return _Decoded(frames[0])

    def synthesize(self, items: Sequence[_Decoded], batch_size: int = 1) -> list[np.ndarray]:
        return [it.frame for it in items]


def decode_frames(decoder: Any, packets: Iterable[Any], **options: Any) -> Iterator[np.ndarray]:
    """One frame per packet, in order, lazily, through the runtime: the single call the
    keyframe decoder, the OpenCV reader, ``decode``/``transcode`` and archive jobs use.

    *decoder* is an :class:`OneDCEngine`, a codec ``Decoder`` holding one as ``.engine``
    (the ``onedc`` plugin's), or any other codec ``Decoder`` (decoded one packet at a
    time on a read-ahead thread). *options* go to :class:`SequenceDecoder`. Errors are
    :class:`FrameDecodeError` s carrying the frame index (and the cause's class).
    """
    engine = getattr(decoder, "engine", decoder)
    if hasattr(engine, "entropy_decode") and hasattr(engine, "synthesize"):
        return SequenceDecoder(engine, **options).decode(packets)
    return SequenceDecoder(
        _CodecStages(decoder),
        batch_size=1,
        entropy_threads=1,
        queue_depth=options.get("queue_depth", 4),
    ).decode(packets)
