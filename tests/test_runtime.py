"""The decoder runtime (onedc_media.runtime): order, identity with sequential decoding,
bounded queues, errors with frame indexes, clean shutdown; the bench and GPU-check CPU paths.

Scheduling is tested on a fake engine (instant, scriptable stages); identity on the
embedded model at small sizes.
"""

from __future__ import annotations

import _thread
import gc
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from onedc_media.errors import BitstreamError, CodecOptionError, OdcError, OdcFormatError
from onedc_media.runtime import (
    CPU_MAX_WORKERS,
    DecodeStats,
    FrameDecodeError,
    SequenceDecoder,
    auto_batch_size,
    decode_frames,
    estimate_frame_bytes,
    vae_batch_size,
)

ROOT = Path(__file__).resolve().parents[1]


def runtime_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("onedc-runtime")]


def assert_no_threads(timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while runtime_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not runtime_threads(), f"threads left running: {runtime_threads()}"


# -- a fake engine ----------------------------------------------------------------------


class FakeItem:
    def __init__(self, index: int, height: int, width: int) -> None:
        self.index, self.height, self.width = index, height, width

    @property
    def shape_key(self):
        return (self.height, self.width)


class FakeEngine:
    """Packets are ``b"index:height:width"``; frames are filled with ``index % 251``.

    ``bad_entropy`` / ``bad_synthesis``: indexes whose stage raises. Counts live items
    (decoded latents not yet synthesised, and synthesised frames not yet released).
    """

    device = "cpu"

    def __init__(
        self, *, entropy_s: float = 0.0, synth_s: float = 0.0, bad_entropy=(), bad_synthesis=()
    ) -> None:
        self.entropy_s, self.synth_s = entropy_s, synth_s
        self.bad_entropy, self.bad_synthesis = set(bad_entropy), set(bad_synthesis)
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()
        self.decoded = 0
        self.active = self.max_active = 0  # synthesis calls running at once
        self.synth_threads: set[int] = set()  # torch threads seen by synthesis calls

    def entropy_decode(self, packet: bytes) -> FakeItem:
        if not isinstance(packet, bytes):
            raise BitstreamError(f"expected bytes, got {type(packet).__name__}")
        index, h, w = (int(v) for v in packet.split(b":"))
        time.sleep(self.entropy_s)
        if index in self.bad_entropy:
            raise BitstreamError(f"damaged packet {index}")
        with self.lock:
            self.decoded += 1
        return FakeItem(index, h, w)

    def synthesize(self, items, batch_size=8):
        assert len({it.shape_key for it in items}) == 1, "a batch mixes shapes"
        assert len(items) <= batch_size
        with self.lock:
            self.batches.append([it.index for it in items])
            self.synth_threads.add(torch.get_num_threads())
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.synth_s)
        with self.lock:
            self.active -= 1
        if any(it.index in self.bad_synthesis for it in items):
            raise RuntimeError("synthesis exploded")
        return [np.full((it.height, it.width, 3), it.index % 251, np.uint8) for it in items]


def packets(n: int, shapes=((4, 6),)) -> list[bytes]:
    return [b"%d:%d:%d" % (i, *shapes[i % len(shapes)]) for i in range(n)]


def check_frames(frames, n, shapes=((4, 6),)) -> None:
    assert len(frames) == n
    for i, f in enumerate(frames):
        assert f.shape == (*shapes[i % len(shapes)], 3), i
        assert int(f[0, 0, 0]) == i % 251, i


# -- scheduling ---------------------------------------------------------------------------


def test_frames_in_order_with_mixed_shapes():
    shapes = ((4, 6), (8, 8), (4, 6), (4, 6), (2, 10))
    eng = FakeEngine(entropy_s=0.001)
    dec = SequenceDecoder(eng, batch_size=3, entropy_threads=3)
    frames = list(dec.decode(packets(40, shapes)))
    check_frames(frames, 40, shapes)
    assert max(len(b) for b in eng.batches) <= 3
    assert sorted(i for b in eng.batches for i in b) == list(range(40))
    st = dec.last_stats
    assert isinstance(st, DecodeStats) and st.frames == 40 and sum(st.batch_sizes) == 40
    assert "frames/s" in st.summary()
    assert_no_threads()


def test_cpu_workers_synthesise_concurrently_in_order_and_restore_torch_threads():
    import torch

    eng = FakeEngine(synth_s=0.03)
    before = torch.get_num_threads()
    dec = SequenceDecoder(eng, batch_size=2, entropy_threads=1, cpu_workers=2)
    assert len(dec.synthesizers) == 2
    frames, during = [], set()
    for f in dec.decode(packets(20)):
        frames.append(f)
        during.add(torch.get_num_threads())
    check_frames(frames, 20)
    assert eng.max_active == 2  # both workers were busy at once
    assert eng.synth_threads == {max(1, before // 2)}  # each worker has its share
    assert during == {before}  # the caller's thread keeps its threads
    assert torch.get_num_threads() == before
    seen = []  # and threads started after the run get the caller's count again
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [before]
    assert_no_threads()
    for bad in ({"cpu_workers": 0}, {"cpu_workers": True}, {"cpu_workers": "2"}):
        with pytest.raises(CodecOptionError):
            SequenceDecoder(FakeEngine(), **bad)


def test_a_short_sized_source_is_spread_over_the_workers():
    """One picture: one worker with all of torch's threads (a still decodes as fast as
    before); a few: batches split so every worker gets some."""
    import torch

    before = torch.get_num_threads()
    eng = FakeEngine(synth_s=0.02)
    dec = SequenceDecoder(eng, batch_size=8, entropy_threads=1, cpu_workers=2)
    during = set()
    for f in dec.decode(packets(1)):
        during.add(torch.get_num_threads())
        check_frames([f], 1)
    assert during == {before} and eng.max_active == 1 and eng.synth_threads == {before}
    eng = FakeEngine(synth_s=0.05)
    dec = SequenceDecoder(eng, batch_size=8, entropy_threads=2, cpu_workers=2)
    check_frames(list(dec.decode(packets(4))), 4)
    assert max(len(b) for b in eng.batches) <= 2 and eng.max_active == 2
    # an unsized source (a generator) cannot be sized: the workers take what is ready
    eng = FakeEngine()
    check_frames(list(SequenceDecoder(eng, batch_size=8, cpu_workers=2).decode(iter(packets(5)))), 5)
    assert torch.get_num_threads() == before
    assert_no_threads()


def test_only_a_onedc_engine_gets_the_vae_split():
    """Large frames in batches: a OneDC engine splits them for its VAE decoder; any other
    engine is called as the protocol says, synthesize(items, batch_size=)."""
    eng = FakeEngine()  # no .model; its synthesize takes no vae_batch_size
    shapes = ((512, 512),)
    out = list(SequenceDecoder(eng, batch_size=4, cpu_workers=1).decode(packets(8, shapes)))
    check_frames(out, 8, shapes)
    assert max(len(b) for b in eng.batches) > 1


def test_batches_fill_when_synthesis_is_the_bottleneck():
    eng = FakeEngine(synth_s=0.02)
    dec = SequenceDecoder(eng, batch_size=4, entropy_threads=2)
    check_frames(list(dec.decode(packets(24))), 24)
    sizes = [len(b) for b in eng.batches]
    assert sizes.count(4) >= 5, sizes  # batches grow by themselves


def test_queue_depth_bounds_read_ahead_and_memory():
    depth = 5
    eng = FakeEngine()
    read = []

    def source():
        for i, p in enumerate(packets(60)):
            read.append(i)
            yield p

    dec = SequenceDecoder(eng, batch_size=2, entropy_threads=2, queue_depth=depth)
    frames = dec.decode(source())
    for i, frame in enumerate(frames):
        time.sleep(0.002)  # a slow caller: the pipeline must wait for it
        assert len(read) - i <= depth + 1, (len(read), i)  # +1: the packet being read
        assert int(frame[0, 0, 0]) == i
    assert dec.last_stats.max_in_flight <= depth
    assert dec.last_stats.frames == 60


def test_a_frame_does_not_wait_for_the_next_packet():
    """The hybrid encoder feeds packet i + 1 only after it got frame i."""
    eng = FakeEngine()
    feed: queue.SimpleQueue = queue.SimpleQueue()
    end = object()

    def source():
        while (item := feed.get()) is not end:
            yield item

    frames = SequenceDecoder(eng, batch_size=8, entropy_threads=2).decode(source())
    got = []
    for p in packets(5):
        feed.put(p)
        got.append(next(frames))  # would hang if the runtime waited for a full batch
    feed.put(end)
    assert list(frames) == []
    check_frames(got, 5)
    assert_no_threads()


def test_entropy_error_surfaces_with_frame_index():
    eng = FakeEngine(bad_entropy={7})
    got = []
    with pytest.raises(FrameDecodeError) as info:
        got.extend(SequenceDecoder(eng, batch_size=3, entropy_threads=3).decode(packets(30)))
    err = info.value
    assert err.frame_index == 7 and err.stage == "entropy"
    assert isinstance(err, BitstreamError) and isinstance(
        err, ValueError
    )  # old handlers still catch it
    assert isinstance(err.__cause__, BitstreamError) and "damaged packet 7" in str(err)
    check_frames(got, 7)  # every frame before it came out first
    assert_no_threads()


def test_synthesis_error_names_its_batch():
    eng = FakeEngine(bad_synthesis={9})
    got = []
    with pytest.raises(FrameDecodeError) as info:
        got.extend(SequenceDecoder(eng, batch_size=4, entropy_threads=1).decode(packets(20)))
    err = info.value
    assert err.stage == "synthesis" and err.frame_index <= 9 <= err.last_index
    assert len(got) == err.frame_index
    assert isinstance(err.__cause__, RuntimeError) and not isinstance(err, BitstreamError)
    assert_no_threads()


def test_error_in_the_packet_source_and_bad_packet_types():
    def source():
        yield from packets(3)
        raise OSError("disk on fire")

    with pytest.raises(FrameDecodeError) as info:
        list(SequenceDecoder(FakeEngine(), batch_size=2).decode(source()))
    assert info.value.frame_index == 3 and info.value.stage == "read"
    with pytest.raises(BitstreamError) as info2:
        list(SequenceDecoder(FakeEngine()).decode([b"0:4:6", "not bytes"]))
    assert info2.value.frame_index == 1
    assert_no_threads()


def test_early_close_stops_every_thread():
    eng = FakeEngine(entropy_s=0.002, synth_s=0.005)
    read = []

    def source():
        for i, p in enumerate(packets(10_000)):
            read.append(i)
            yield p

    frames = SequenceDecoder(eng, batch_size=4, entropy_threads=2, queue_depth=8).decode(source())
    for _ in range(3):
        next(frames)
    assert runtime_threads()
    frames.close()
    assert_no_threads()
    assert len(read) <= 3 + 8 + 1


def test_dropping_the_iterator_stops_every_thread():
    frames = SequenceDecoder(FakeEngine(synth_s=0.002), batch_size=2).decode(packets(1000))
    next(frames)
    del frames
    gc.collect()
    assert_no_threads()


def test_keyboard_interrupt_in_the_caller():
    import signal

    eng = FakeEngine(synth_s=0.5)
    frames = SequenceDecoder(eng, batch_size=1, entropy_threads=1).decode(packets(100))
    # What Ctrl-C does in a plain Python process, whatever handler an earlier test's
    # library (Ray's driver, for one) left installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.1, _thread.interrupt_main)
    try:
        next(frames)  # the threads are running
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            for _ in frames:
                pass
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    frames.close()
    assert_no_threads()


def test_keyboard_interrupt_in_the_packet_source():
    def source():
        yield from packets(2)
        raise KeyboardInterrupt

    got = []
    with pytest.raises(KeyboardInterrupt):
        got.extend(SequenceDecoder(FakeEngine()).decode(source()))
    assert len(got) == 2
    assert_no_threads()


def test_options_are_checked():
    for bad in (
        {"batch_size": 0},
        {"batch_size": "big"},
        {"entropy_threads": 0},
        {"queue_depth": 0},
        {"precision": "int8"},
        {"cuda_graphs": True},
        {"compile": True, "precision": "bf16"},
    ):
        with pytest.raises(CodecOptionError):
            SequenceDecoder(FakeEngine(), **bad)
    with pytest.raises(CodecOptionError):
        SequenceDecoder(FakeEngine(), precision="fp16")  # no fp16 autocast on CPU


def test_unstarted_iterator_starts_no_threads():
    frames = SequenceDecoder(FakeEngine()).decode(packets(3))
    assert not runtime_threads()
    del frames


class FakeAsyncSynthesizer:
    """A device that computes in the background: ``submit`` returns at once, ``collect``
    waits (as the CUDA synthesizer does with its streams)."""

    def __init__(
        self, engine: FakeEngine, device: str, depth: int = 2, delay: float = 0.004
    ) -> None:
        self.engine, self.device, self.depth, self.delay = engine, device, depth, delay
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = self.collected = 0
        self.indexes: list[int] = []

    def max_batch(self, item) -> int:
        return 3

    def submit(self, items):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.indexes += [it.index for it in items]
        return time.monotonic() + self.delay, items

    def collect(self, handle):
        ready, items = handle
        time.sleep(max(0.0, ready - time.monotonic()))
        self.in_flight -= 1
        self.collected += 1
        return self.engine.synthesize(items, batch_size=len(items)), {
            "synthesis": self.delay,
            "copies": 0.001,
        }


def test_overlapped_devices_round_robin_in_order():
    """Two asynchronous devices (as two GPUs): each keeps <= depth batches in flight,
    both get work, frames still come out in order."""
    eng = FakeEngine(entropy_s=0.0005)
    dec = SequenceDecoder(eng, entropy_threads=2)
    devs = [FakeAsyncSynthesizer(eng, "fake:0"), FakeAsyncSynthesizer(eng, "fake:1")]
    dec.synthesizers = devs
    check_frames(list(dec.decode(packets(60))), 60)
    assert all(d.max_in_flight <= d.depth and d.in_flight == 0 for d in devs)
    assert all(d.indexes for d in devs) and sorted(devs[0].indexes + devs[1].indexes) == list(
        range(60)
    )
    assert dec.last_stats.copy_s > 0
    assert_no_threads()


def test_early_close_collects_batches_in_flight():
    eng = FakeEngine()
    dev = FakeAsyncSynthesizer(eng, "fake:0", delay=0.02)
    dec = SequenceDecoder(eng, entropy_threads=1)
    dec.synthesizers = [dev]
    frames = dec.decode(packets(500))
    next(frames)
    frames.close()
    assert_no_threads()
    assert dev.in_flight == 0  # the device finished with its buffers before the worker left


def test_cuda_is_refused_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    with pytest.raises(CodecOptionError):
        SequenceDecoder(FakeEngine(), device="cuda")
    from onedc_media.runtime.cuda import CudaSynthesizer

    with pytest.raises(CodecOptionError):
        CudaSynthesizer(FakeEngine())


def test_compiled_synthesis_compiles_once_whatever_the_callers_thread_count():
    """Dynamo guards a graph on torch's (per-thread) intra-op count, and the runtime's
    threads see different counts: each new count compiled the synthesis again."""
    from onedc_media.runtime.cuda import CompiledFunction

    graphs: list[object] = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    fn = CompiledFunction(lambda y, z: torch.relu(y) + z, backend=backend)
    y, z = torch.randn(2, 3), torch.ones(2, 3)
    seen: list[int] = []

    def call(threads: int | None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        torch.testing.assert_close(fn(y, z), torch.relu(y) + z)
        seen.append(torch.get_num_threads())

    main = torch.get_num_threads()
    try:
        call(None)
        for threads in (1, 3, None):
            t = threading.Thread(target=call, args=(threads,))
            t.start()
            t.join()
    finally:
        torch.set_num_threads(main)
    assert len(graphs) == 1
    assert seen[1:3] == [1, 3]  # each caller keeps its own count


def test_compiled_synthesis_falls_back_to_eager():
    from onedc_media.runtime.cuda import CompiledFunction

    def broken(gm, example_inputs):
        raise RuntimeError("no compiler here")

    fn = CompiledFunction(lambda y, z: y * 2 + z, backend=broken)
    y = torch.arange(4.0)
    for _ in range(2):
        torch.testing.assert_close(fn(y, y), y * 3)
    assert not fn.ok


class FakeCodecDecoder:
    """A codec ``Decoder`` without an engine (e.g. jpeg)."""

    def decode(self, packets):
        out = []
        for p in packets:
            if p == b"bad":
                raise BitstreamError("bad jpeg")
            out.append(np.full((2, 3, 3), len(p), np.uint8))
        return out


def test_decode_frames_takes_any_codec_decoder():
    frames = list(decode_frames(FakeCodecDecoder(), [b"a", b"bb", b"ccc"]))
    assert [int(f[0, 0, 0]) for f in frames] == [1, 2, 3]
    with pytest.raises(BitstreamError) as info:
        list(decode_frames(FakeCodecDecoder(), [b"a", b"bad"]))
    assert info.value.frame_index == 1
    holder = type("OneDCDecoderLike", (), {"engine": FakeEngine()})()
    check_frames(list(decode_frames(holder, packets(5), batch_size=2)), 5)
    assert_no_threads()


def test_auto_batch_size_follows_memory():
    class E:
        tile = 1024
        model = None

    assert 10 << 20 < estimate_frame_bytes(E(), 512, 512) < 1 << 30
    per = estimate_frame_bytes(E(), 128, 128)
    assert auto_batch_size(E(), 128, 128, free_bytes=per) == 1
    assert auto_batch_size(E(), 128, 128, free_bytes=100 * per, cap=8) == 8
    assert auto_batch_size(E(), 128, 128, free_bytes=8 * per, cap=8) == 4  # half of free memory
    # about CPU_BATCH_PIXELS per batch through the latent networks...
    assert auto_batch_size(E(), 256, 256, free_bytes=1 << 40) == 8
    assert auto_batch_size(E(), 512, 512, free_bytes=1 << 40) == 4
    assert auto_batch_size(E(), 1024, 1024, free_bytes=1 << 40) == 1
    # ... and about CPU_VAE_BATCH_PIXELS per VAE-decoder call
    assert vae_batch_size(512, 512) == 1 and vae_batch_size(500, 500) == 1
    assert vae_batch_size(256, 256) == 4 and vae_batch_size(128, 128) == 16
    # tiles bound it: a huge picture costs about what one tile does
    assert estimate_frame_bytes(E(), 8000, 8000) < 2 * estimate_frame_bytes(E(), 1152, 1152)


# -- the real engine ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine():
    from onedc_media.model.engine import OneDCEngine

    return OneDCEngine.from_pretrained("onedc-tiny")


@pytest.fixture(scope="module")
def coded(engine, photo):
    """8 packets of 3 sizes (crops of a photo), interleaved."""
    import cv2

    sizes = [(64, 96), (64, 96), (80, 48), (64, 96), (64, 64), (80, 48), (64, 96), (64, 96)]
    frames = []
    for i, (h, w) in enumerate(sizes):
        crop = photo[i * 20 : i * 20 + 2 * h, i * 15 : i * 15 + 2 * w]
        frames.append(cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA))
    return [engine.compress([f], i % engine.num_rates)[0] for i, f in enumerate(frames)]


class RecordingEngine:
    """The engine, recording what entropy decoding returned for each packet."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.device = engine.device
        self.latents: dict[bytes, object] = {}

    def entropy_decode(self, packet):
        d = self.engine.entropy_decode(packet)
        self.latents[packet] = d
        return d

    def synthesize(self, items, batch_size=8):
        return self.engine.synthesize(items, batch_size=batch_size)


def test_pipelined_equals_sequential(engine, coded):
    sequential = [engine.decompress([p])[0] for p in coded]
    rec = RecordingEngine(engine)
    # batch 1 on the engine's own (NCHW) networks: the very same computations, so the very
    # same pixels
    one = list(
        SequenceDecoder(rec, batch_size=1, entropy_threads=3, channels_last=False).decode(coded)
    )
    assert all(np.array_equal(a, b) for a, b in zip(one, sequential))
    # entropy decoding on threads is exact: the latents equal a sequential decode's
    for p in coded:
        ref = engine.entropy_decode(p)
        assert torch.equal(rec.latents[p].y_hat, ref.y_hat) and torch.equal(
            rec.latents[p].z_int, ref.z_int
        )
    # batched synthesis on the default NHWC replica: the same frames up to kernel float
    # noise (measured: at most 1 level; oneDNN blocks convolutions by batch size and
    # layout): allow 2 levels, as the engine's own batched-decode test does
    dec = SequenceDecoder(engine, batch_size=4, entropy_threads=2)
    batched = list(dec.decode(coded))
    assert [f.shape for f in batched] == [f.shape for f in sequential]
    diff = max(
        int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(batched, sequential)
    )
    assert diff <= 2, diff
    assert max(dec.last_stats.batch_sizes) > 1
    assert_no_threads()


def test_compiled_cpu_synthesis_matches_eager(engine, coded):
    same = [coded[0], coded[1], coded[0]]  # one shape, batches of 1: a single trace
    eager = [engine.decompress([p])[0] for p in same]
    dec = SequenceDecoder(engine, batch_size=1, compile=True, channels_last=False)
    out = list(dec.decode(same))
    assert max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(out, eager)) <= 1
    assert dec.last_stats.compile_s > 0
    again = SequenceDecoder(engine, batch_size=1, compile=True, channels_last=False)
    list(again.decode(same[:1]))
    assert again.last_stats.compile_s == 0  # traces are kept per engine


def test_vae_split_of_a_batch(engine, coded):
    """Batches split for the VAE decoder: each chunk is decoded as it would be alone."""
    items = [engine.entropy_decode(p) for p in (coded[0], coded[1], coded[0])]  # one shape
    m = engine.model
    y = torch.stack([it.y_hat for it in items])
    z = torch.stack([it.z_int for it in items]).float()
    with torch.no_grad():
        latent = m.synthesize_latent(y, z)[0]
        split = m.synthesize(y, z, vae_batch=2)
        assert torch.equal(split[:2], m.vae.decode(latent[:2]))
        assert torch.equal(split[2:], m.vae.decode(latent[2:]))
        whole = m.synthesize(y, z)
    assert split.shape == whole.shape and float((split - whole).abs().max()) < 1e-4
    a = engine.synthesize(items, batch_size=3, vae_batch_size=1)
    b = engine.synthesize(items, batch_size=3)
    assert max(int(np.abs(x.astype(int) - w.astype(int)).max()) for x, w in zip(a, b)) <= 1


def test_cpu_workers_auto_follows_torch_threads(engine):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert SequenceDecoder(engine).cpu_workers == 2
        assert len(SequenceDecoder(engine).synthesizers) == 2
        torch.set_num_threads(1)  # e.g. an archive job's one-thread worker: no oversubscription
        assert SequenceDecoder(engine).cpu_workers == 1
        torch.set_num_threads(64)
        assert SequenceDecoder(engine).cpu_workers == CPU_MAX_WORKERS
    finally:
        torch.set_num_threads(before)
    assert SequenceDecoder(FakeEngine()).cpu_workers == 1  # not a torch model
    assert SequenceDecoder(engine, cpu_workers=3).cpu_workers == 3


def test_compiled_synthesis_with_two_workers(engine, coded):
    """Two CPU workers share one engine's frozen traces (built under a lock, run at once)."""
    sequential = [engine.decompress([p])[0] for p in coded]
    dec = SequenceDecoder(engine, batch_size=2, compile=True, cpu_workers=2, channels_last=False)
    out = list(dec.decode(coded))
    assert [f.shape for f in out] == [f.shape for f in sequential]
    assert max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(out, sequential)) <= 2
    assert_no_threads()


def test_damaged_packet_in_a_real_sequence(engine, coded):
    bad = bytearray(coded[3])
    bad[len(bad) // 2] ^= 0xFF
    seq = [*coded[:3], bytes(bad), *coded[4:]]
    got = []
    with pytest.raises(OdcError) as info:
        got.extend(SequenceDecoder(engine, batch_size=2).decode(seq))
    assert info.value.frame_index == 3 and len(got) == 3
    assert isinstance(info.value, OdcFormatError)  # as the engine raised it
    assert_no_threads()


def test_onedc_codec_decoder_through_decode_frames(engine, coded):
    holder = type("OneDCDecoderLike", (), {"engine": engine})()
    frames = list(decode_frames(holder, coded[:3], batch_size=2))
    assert [f.shape for f in frames] == [engine.decompress([p])[0].shape for p in coded[:3]]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(engine, coded):
    from onedc_media.model.engine import OneDCEngine

    gpu = OneDCEngine.from_pretrained("onedc-tiny", device="cuda")
    cpu = [engine.decompress([p])[0] for p in coded]
    dec = SequenceDecoder(gpu, batch_size=3)
    out = list(dec.decode(coded))
    assert max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(out, cpu)) <= 3
    assert dec.last_stats.copy_s > 0


# -- the bench and the GPU check, CPU side ----------------------------------------------------


def test_bench_decode_cli(capsys):
    from onedc_media.cli.main import main

    threads = torch.get_num_threads()
    try:  # one torch thread: no OpenMP spin-waiting on a busy test machine
        rc = main(
            [
                "bench",
                "decode",
                "--frames",
                "2",
                "--size",
                "64x48",
                "--batch",
                "2",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--torch-threads",
                "1",
                "--json",
            ]
        )
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    import json

    out = json.loads(capsys.readouterr().out)
    rows = {(r["subject"], r["stage"]): r for r in out["rows"]}
    for s in ("sequential", "batched", "pipelined"):
        assert rows[(s, "decode")]["frames"] == 2 and rows[(s, "decode")]["peak_rss_mb"] > 0
        assert (s, "entropy") in rows and (s, "synthesis") in rows
    assert rows[("pipelined", "decode")]["maxdiff_vs_seq"] <= 2
    assert out["settings"]["batch_size"] == 2


def test_gpu_check_cpu_quick():
    # the check's logic, not speed: keep libgomp from spin-waiting on a busy test machine
    env = {**os.environ, "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "1000")}
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "SUMMARY" in res.stdout and "FAIL" not in res.stdout


def test_synthesis_makes_no_tensor_from_host_data(engine):
    """CUDA graph capture refuses pageable host->device copies and syncs: ``synthesize``
    (what ``cuda_graphs=True`` captures) must not build a tensor from Python data nor read
    a value back. The GPU check
    on an H200 found one (the FSQ levels) that made every capture fall back to eager."""
    from torch.utils._python_dispatch import TorchDispatchMode

    made: list[str] = []

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            # lift_fresh: a tensor from Python data (host->device copy on CUDA);
            # _local_scalar_dense: .item() / bool(tensor) (a device->host sync)
            if func in (torch.ops.aten.lift_fresh.default,
                        torch.ops.aten._local_scalar_dense.default):
                made.append(str(func))
            return func(*args, **(kwargs or {}))

    model = engine.model
    y = torch.zeros(2, model.config.y_channels, 4, 4)
    z = torch.ones(2, len(model.config.z_levels), 1, 1)
    with torch.no_grad(), Watch():
        out = model.synthesize(y, z)
    assert out.shape[0] == 2
    assert made == []


def threads_in_a_new_thread() -> int:
    """torch's global thread count, which a newly started thread picks up."""
    got: list[int] = []
    t = threading.Thread(target=lambda: got.append(torch.get_num_threads()))
    t.start()
    t.join()
    return got[0]


@pytest.fixture
def four_torch_threads():
    """torch's thread count set to 4 for the test (so a share of it is visible on any
    machine), and put back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(threads)


def on_a_fake_device(eng, entropy_threads: int = 2) -> SequenceDecoder:
    dec = SequenceDecoder(eng, entropy_threads=entropy_threads)
    dec.synthesizers = [FakeAsyncSynthesizer(eng, "fake:0")]
    return dec


def test_entropy_threads_share_the_cores_when_synthesis_is_on_devices(four_torch_threads):
    """With synthesis on GPUs, each of N entropy threads gets 1/N of torch's threads (not
    all of them each), and the caller's count is back after close()."""
    seen: list[int] = []

    class CountingEngine(FakeEngine):
        def entropy_decode(self, packet: bytes) -> FakeItem:
            seen.append(torch.get_num_threads())
            return super().entropy_decode(packet)

    dec = on_a_fake_device(CountingEngine())
    check_frames(list(dec.decode(packets(12))), 12)
    assert seen and set(seen) == {2}
    # OpenMP's count is per thread, so the caller's thread keeps 4 whatever happens;
    # a thread started now gets torch's global count, which close() must put back
    assert threads_in_a_new_thread() == 4
    assert_no_threads()


def test_a_thread_that_cannot_start_stops_the_others(monkeypatch, four_torch_threads):
    """If the feeder cannot start (no more threads), the entropy and synthesis threads
    already started are stopped and torch's thread count is put back."""
    start = threading.Thread.start

    def failing_start(self):
        if self.name.endswith("-feed"):
            raise RuntimeError("can't start new thread")
        start(self)

    dec = on_a_fake_device(FakeEngine())
    monkeypatch.setattr(threading.Thread, "start", failing_start)
    with pytest.raises(RuntimeError, match="can't start"):
        list(dec.decode(packets(4)))
    monkeypatch.setattr(threading.Thread, "start", start)
    assert_no_threads()
    assert threads_in_a_new_thread() == 4
