"""The local engine: one process, bounded queues, batches on the device.

::

    planned batches ─> reader threads (read, SHA-256, decode; ``jobs`` of them)
        ─> [at most ``2 * jobs`` batches in flight]
        ─> encode: learned codecs in this thread, one batch per call on the device;
           classic codecs in the reader threads (one encoder per thread)
        ─> [queue of 4 batches] ─> writer thread: Committer (spool, fsync, rename, COMMIT)

Memory stays bounded by the window and the queue whatever the collection's size. The
writer drains what is queued into one transaction (fewer fsyncs for small items).
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from onedc_media.archive.encode import ArchiveEncoder, EncodeSettings, WorkItem

__all__ = ["run_local"]

_STOP = object()


class _Writer(threading.Thread):
    """Commits result groups in order; remembers the first error."""

    def __init__(self, committer: Any, size: int = 4) -> None:
        super().__init__(name="archive-writer", daemon=True)
        self.committer = committer
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self.error: BaseException | None = None

    def run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _STOP:
                return
            group = list(item)
            stop = False
            while len(group) < 256:  # take what is already waiting: one transaction
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                group.extend(more)
            if self.error is None:
                try:
                    self.committer.commit(group)
                except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                    self.error = exc
            if stop:
                return

    def put(self, results: list[dict[str, Any]]) -> None:
        while True:
            self._raise()
            try:
                self.queue.put(results, timeout=0.5)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        while self.is_alive():
            try:
                self.queue.put(_STOP, timeout=0.5)
                break
            except queue.Full:
                continue
        self.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


def run_local(
    batches: Iterable[list[WorkItem]],
    settings: EncodeSettings,
    committer: Any,
    *,
    jobs: int | None = None,
    plugins: Any = None,
    spool: str | None = None,
) -> None:
    """Encode *batches* in this process and hand the results to *committer*."""
    jobs = jobs or os.cpu_count() or 1
    main = ArchiveEncoder(settings, plugins=plugins, spool=spool)
    learned = main.info.capabilities.batch or main.info.capabilities.cuda
    local = threading.local()

    def encoder() -> ArchiveEncoder:
        enc = getattr(local, "encoder", None)
        if enc is None:
            enc = local.encoder = ArchiveEncoder(settings, plugins=plugins, spool=spool)
        return enc

    def work(batch: list[WorkItem]) -> Any:
        if learned:  # read and decode here; the device encodes in the main thread
            return [main.load(i) for i in batch if i.kind == "image"]  # load() is thread-safe
        return encoder().process(batch)

    writer = _Writer(committer)
    writer.start()
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="archive-read")
    window: deque[tuple[list[WorkItem], Future[Any]]] = deque()
    it = iter(batches)
    try:
        while True:
            while len(window) < 2 * jobs:
                batch = next(it, None)
                if batch is None:
                    break
                window.append((batch, pool.submit(work, batch)))
            if not window:
                break
            batch, fut = window.popleft()
            out = fut.result()
            if learned:
                results = {r["id"]: r for r in main.encode_images(out)}
                for item in batch:
                    if item.kind != "image":
                        results[item.id] = main.encode_video(item)
                out = [results[i.id] for i in batch]
            writer.put(out)
        writer.close()
        writer._raise()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        writer.close()
        main.close()
