"""Synthesis on a CUDA device: pinned host buffers, a copy stream, a compute stream.

One batch (frames of equal shape, already entropy-decoded on the CPU) goes::

    host: stack y_hat, z_int into pinned buffers (slot s)
    copy stream:    H2D y, z ──► event h2d
    compute stream: wait h2d ─► y-synthesis + U-Net + VAE decode (autocast) ─► uint8 NHWC ─► event done
    copy stream:    wait done ─► D2H into pinned uint8 buffer (slot s) ──► event d2h
    host (collect): wait d2h ─► copy each frame out of the pinned buffer

The worker submits batch ``k + 1`` before it collects batch ``k`` (``depth`` 2, two
pinned slots), so the upload of one batch overlaps the compute of the previous and the
download of one overlaps the next's compute. Tensors used on a stream other than the one
that allocated them are marked with ``record_stream`` so the caching allocator does not
reuse them early.

Options:

- ``precision``: ``"bf16"`` / ``"fp16"`` run the networks under ``torch.autocast``; the
  GPU check (``benchmarks/gpu_check.py``) reports their PSNR against fp32.
- ``compile``: ``torch.compile`` the networks (``dynamic=False``: one graph per batch
  shape; ``mode="reduce-overhead"`` with ``cuda_graphs`` too).
- ``cuda_graphs`` (without compile): each (batch, tile) shape is captured once into a
  CUDA graph and replayed (static input/output buffers, one shared memory pool).

A compile or capture that fails falls back to eager execution with a warning (it is an
optimisation, never a requirement).

``batch_size="auto"``: the first batch of each new picture shape runs alone and
synchronously, measuring its peak device memory; later batches of that shape hold as
many frames as half the free device memory allows (at most ``GPU_MAX_BATCH``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from onedc_media.errors import CodecOptionError
from onedc_media.runtime.compiled import with_synthesize
from onedc_media.runtime.decoder import GPU_MAX_BATCH, MEMORY_SHARE

__all__ = ["CompiledFunction", "CudaSynthesizer", "GraphedFunction"]

log = logging.getLogger(__name__)

_SLOTS = 2  # pinned buffer sets: one per batch in flight
_CACHED_SHAPES = 4  # pinned buffers kept per slot for this many batch shapes


def _autocast_state() -> Any:
    import torch

    try:
        return torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()


class CompiledFunction:
    """``fn(y, z)`` through ``torch.compile`` (``dynamic=False``), falling back to eager.

    TorchDynamo guards every compiled graph on torch's intra-op thread count (its "global
    state"; the test shows a second thread count compiling the graph again), and that
    count is per thread here: the decoder runtime gives each entropy thread a share of the
    cores, and a synthesis thread started while they set theirs inherits one count or the
    other, run by run. So every call runs under the count the function was made with (the
    GPU kernels do not use those threads) and puts the caller's back afterwards. New batch
    shapes still compile once each (``dynamic=False``): a sequence meets the memory probe's
    one-frame batch, the measured batch size and its last, shorter batch.
    """

    def __init__(
        self, fn: Callable[..., Any], *, mode: str | None = None, backend: Any = "inductor"
    ) -> None:
        import torch

        self.fn = fn
        self.compiled = torch.compile(fn, dynamic=False, mode=mode, backend=backend)
        self.threads = torch.get_num_threads()
        self.ok = True

    def __call__(self, y: Any, z: Any) -> Any:
        import torch

        if self.ok:
            own = torch.get_num_threads()
            if own != self.threads:
                torch.set_num_threads(self.threads)
            try:
                return self.compiled(y, z)
            except Exception as exc:  # noqa: BLE001 - an optimisation: fall back to eager
                log.warning("torch.compile of the synthesis failed (running eagerly): %s", exc)
                self.ok = False
            finally:
                if own != self.threads:
                    torch.set_num_threads(own)
        return self.fn(y, z)


class GraphedFunction:
    """``fn(y, z) -> Tensor`` replayed from CUDA graphs, one per input shape and dtype.

    Inputs are copied into static buffers, the graph replays, and a clone of the static
    output is returned (so a later replay cannot overwrite what a caller holds). A shape
    whose capture fails runs eagerly from then on.
    """

    def __init__(self, fn: Callable[..., Any], device: Any, warmup: int = 2) -> None:
        import torch

        self.fn = fn
        self.device = device
        self.warmup = warmup
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[tuple, Any] = {}
        self.failed: set[tuple] = set()

    def __call__(self, y: Any, z: Any) -> Any:
        import torch

        key = (tuple(y.shape), tuple(z.shape), y.dtype, z.dtype, _autocast_state())
        if key in self.failed:
            return self.fn(y, z)
        entry = self.graphs.get(key)
        if entry is None:
            try:
                entry = self._capture(y, z)
            except Exception as exc:  # noqa: BLE001 - an optimisation: fall back to eager
                log.warning(
                    "CUDA graph capture failed for shape %s (running eagerly): %s", key[:2], exc
                )
                self.failed.add(key)
                torch.cuda.synchronize(self.device)
                return self.fn(y, z)
            self.graphs[key] = entry
        graph, sy, sz, out = entry
        sy.copy_(y)
        sz.copy_(z)
        graph.replay()
        return out.clone()

    def _capture(self, y: Any, z: Any) -> tuple[Any, Any, Any, Any]:
        import torch

        sy, sz = y.clone(), z.clone()
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm up (cuDNN autotuning, lazy inits) off the graph
            for _ in range(self.warmup):
                self.fn(sy, sz)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self.fn(sy, sz)
        return graph, sy, sz, out


class _Handle:
    __slots__ = (
        "base_bytes",
        "ev_c0",
        "ev_d2h",
        "ev_done",
        "ev_h2d",
        "ev_start",
        "n",
        "out_host",
        "sizes",
        "slot",
    )


class CudaSynthesizer:
    """OneDC synthesis on one CUDA device with copy/compute streams (see the module doc).

    Args:
        engine: an :class:`OneDCEngine` whose ``device`` is this CUDA device.
        batch_size: ``"auto"`` (measured, see the module doc) or a fixed size.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast).
        compile: ``torch.compile`` the synthesis networks.
        cuda_graphs: replay CUDA graphs per shape.
    """

    depth = _SLOTS

    def __init__(
        self,
        engine: Any,
        *,
        batch_size: int | str = "auto",
        precision: str = "fp32",
        compile: bool = False,
        cuda_graphs: bool = False,
    ) -> None:
        import torch

        if not torch.cuda.is_available():
            raise CodecOptionError("CUDA synthesis requested but CUDA is not available")
        dev = torch.device(engine.device)
        if dev.type != "cuda":
            raise CodecOptionError(f"CudaSynthesizer needs an engine on a CUDA device, not {dev}")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self.dev = dev
        self.device = str(dev)
        self.batch_size = batch_size
        self.precision = precision
        self.amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise CodecOptionError(f"{self.device} does not support bfloat16")
        self.lock = threading.Lock()
        self.copy_stream = torch.cuda.Stream(device=dev)
        self.compute_stream = torch.cuda.Stream(device=dev)
        self.limits: dict[Any, int] = {}  # shape_key -> batch size ("auto": measured)
        self.frame_bytes: dict[Any, int] = {}  # shape_key -> measured peak bytes per frame
        self._pinned: list[OrderedDict[tuple, tuple[Any, Any, Any]]] = [
            OrderedDict() for _ in range(_SLOTS)
        ]
        self._free_slots = list(range(_SLOTS))
        self.compiled = False
        self.engine = self._with_synthesize(engine, compile, cuda_graphs)
        self.graphs = cuda_graphs

    # -- setup ---------------------------------------------------------------------
    def _with_synthesize(self, engine: Any, compile: bool, cuda_graphs: bool) -> Any:
        if not (compile or cuda_graphs):
            return engine

        model = engine.model
        eager = model.synthesize
        if compile:
            fn: Callable[..., Any] = CompiledFunction(
                eager, mode="reduce-overhead" if cuda_graphs else None
            )
            self.compiled = True
        else:
            fn = GraphedFunction(eager, self.dev)
        return with_synthesize(engine, fn)

    # -- batching ------------------------------------------------------------------
    def max_batch(self, item: Any) -> int:
        if self.batch_size != "auto":
            return int(self.batch_size)
        return self.limits.get(item.shape_key, 1)  # unknown shape: one frame, measured

    def _limit_from(self, per_frame: int) -> int:
        import torch

        free, _total = torch.cuda.mem_get_info(self.dev)
        cached = torch.cuda.memory_reserved(self.dev) - torch.cuda.memory_allocated(self.dev)
        return int(
            max(1, min(GPU_MAX_BATCH, ((free + cached) * MEMORY_SHARE) // max(per_frame, 1)))
        )

    def _buffers(
        self, slot: int, b: int, y_shape: tuple, z_shape: tuple, out_hw: tuple[int, int]
    ) -> tuple:
        import torch

        key = (b, y_shape, z_shape, out_hw)
        cache = self._pinned[slot]
        bufs = cache.get(key)
        if bufs is None:
            bufs = (
                torch.empty((b, *y_shape), dtype=torch.float32, pin_memory=True),
                torch.empty((b, *z_shape), dtype=torch.int64, pin_memory=True),
                torch.empty((b, *out_hw, 3), dtype=torch.uint8, pin_memory=True),
            )
            cache[key] = bufs
            while len(cache) > _CACHED_SHAPES:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return bufs

    # -- the two halves of a batch ---------------------------------------------------
    def submit(self, items: Sequence[Any]) -> _Handle:
        import torch

        key = items[0].shape_key
        probe = self.batch_size == "auto" and key not in self.limits
        h = _Handle()
        h.n = len(items)
        h.sizes = [(it.height, it.width) for it in items]
        y_shape = tuple(items[0].y_hat.shape)
        z_shape = tuple(items[0].z_int.shape)
        out_hw = (y_shape[-2] * 16, y_shape[-1] * 16)
        if not self._free_slots:
            raise RuntimeError("CudaSynthesizer: more batches in flight than pinned slots")
        h.slot = self._free_slots.pop()
        try:
            y_host, z_host, h.out_host = self._buffers(h.slot, len(items), y_shape, z_shape, out_hw)
            torch.stack([it.y_hat for it in items], out=y_host)
            torch.stack([it.z_int for it in items], out=z_host)
            with torch.cuda.device(self.dev):
                if probe:
                    torch.cuda.synchronize(self.dev)
                    torch.cuda.reset_peak_memory_stats(self.dev)
                    h.base_bytes = torch.cuda.memory_allocated(self.dev)
                h.ev_start, h.ev_h2d, h.ev_c0, h.ev_done, h.ev_d2h = (
                    torch.cuda.Event(enable_timing=True) for _ in range(5)
                )
                with torch.cuda.stream(self.copy_stream):
                    h.ev_start.record()
                    y = y_host.to(self.dev, non_blocking=True)
                    z = z_host.to(self.dev, non_blocking=True)
                    h.ev_h2d.record()
                self.compute_stream.wait_event(h.ev_h2d)
                with torch.cuda.stream(self.compute_stream), torch.no_grad():
                    h.ev_c0.record()  # compute starts (after the upload, and the previous batch)
                    y.record_stream(self.compute_stream)
                    z.record_stream(self.compute_stream)
                    e = self.engine
                    y = y.to(e.dtype)
                    z = z.to(e.dtype)
                    with torch.autocast(
                        "cuda", dtype=self.amp_dtype or torch.float16,
                        enabled=self.amp_dtype is not None, cache_enabled=not self.graphs,
                    ):
                        if getattr(items[0], "residual", None) is None:
                            x = e._synthesize_tiled(y, z)
                        else:  # the residual layer (shape_key keeps layered pictures apart)
                            x = e.draw_layered(y, z, items)
                    # the engine's conversion (engine.synthesize), on the device
                    x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
                    x = x.permute(0, 2, 3, 1).contiguous()
                    h.ev_done.record()
                self.copy_stream.wait_event(h.ev_done)
                with torch.cuda.stream(self.copy_stream):
                    x.record_stream(self.copy_stream)
                    h.out_host.copy_(x, non_blocking=True)
                    h.ev_d2h.record()
                del x, y, z
                if probe:  # alone on the device: its peak is this batch's
                    h.ev_d2h.synchronize()
                    peak = torch.cuda.max_memory_allocated(self.dev) - h.base_bytes
                    per = max(1, peak // h.n)
                    self.frame_bytes[key] = per
                    self.limits[key] = self._limit_from(per)
                    log.info(
                        "%s: %.0f MiB per frame for latents %s: batches of %d",
                        self.device,
                        per / 2**20,
                        key,
                        self.limits[key],
                    )
        except BaseException:
            self._release(h)
            raise
        return h

    def collect(self, h: _Handle) -> tuple[list[np.ndarray], dict[str, float]]:

        try:
            h.ev_d2h.synchronize()
            t0 = time.perf_counter()
            out = h.out_host.numpy()
            # copies: the pinned buffer is reused by a later batch
            frames = [out[j, :hh, :ww].copy() for j, (hh, ww) in enumerate(h.sizes)]
            host_copy = time.perf_counter() - t0
            times = {
                "synthesis": h.ev_c0.elapsed_time(h.ev_done) / 1e3,
                "copies": (h.ev_start.elapsed_time(h.ev_h2d) + h.ev_done.elapsed_time(h.ev_d2h))
                / 1e3
                + host_copy,
            }
        finally:
            self._release(h)
        return frames, times

    def _release(self, h: _Handle) -> None:
        slot = getattr(h, "slot", None)
        if slot is not None and slot not in self._free_slots:
            self._free_slots.append(slot)
