"""An archive job: scan, plan, encode (local or Ray engine), commit, verify.

::

    walk SRC ──> reconcile with the manifest ──> plan (pending items, equal-sized
    pictures batched) ──> engine: ArchiveEncoder.load/encode ──> Committer:
    spool file, fsync, rename into DEST, fsync dir ──> manifest COMMIT ──> [verify]

:func:`archive` is the library call behind ``onedc-media archive SRC DEST``. Run it
again with the same arguments after a kill (or a crash, or Ctrl-C) and it finishes the
job: items the manifest lists as done are not redone, the rest are.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from onedc_media.archive.encode import EncodeSettings, WorkItem, settings_key
from onedc_media.archive.layout import Layout, commit_file, job_lock
from onedc_media.archive.manifest import RESULT_COLUMNS, Manifest, ManifestError, Seen
from onedc_media.archive.paths import UnsafePathError, path_problem, split_relative
from onedc_media.archive.walk import probe_size, walk_sources
from onedc_media.digest import sha256_file
from onedc_media.errors import CodecOptionError, MediaError

__all__ = [
    "ENGINES",
    "ArchiveResult",
    "Committer",
    "Progress",
    "ScanResult",
    "archive",
    "plan_batches",
    "scan",
]

ENGINES = ("local", "ray")


@dataclass
class Progress:
    """Where a job stands; handed to the ``progress`` callback after each commit."""

    total: int  #: items to encode in this run
    done: int = 0
    failed: int = 0
    bytes_in: int = 0  #: source bytes of the items committed so far
    bytes_out: int = 0  #: output bytes written so far
    elapsed: float = 0.0

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def items_per_s(self) -> float:
        return self.finished / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def mb_in_per_s(self) -> float:
        return self.bytes_in / 1e6 / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def mb_out_per_s(self) -> float:
        return self.bytes_out / 1e6 / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        rate = self.items_per_s
        return (self.total - self.finished) / rate if rate > 0 else None


@dataclass
class ScanResult:
    """What the scan found: sources, and why items are (re)done."""

    sources: int = 0
    new: int = 0
    changed: int = 0  #: source size / mtime / SHA-256 differs from the manifest
    resettled: int = 0  #: settings changed, output missing, retry of failed
    unsupported: int = 0
    pending: int = 0  #: items to encode now
    warnings: list[str] = field(default_factory=list)


@dataclass
class ArchiveResult:
    """What :func:`archive` did."""

    dest: str
    engine: str
    scan: ScanResult
    progress: Progress
    counts: dict[str, int]  #: items per status in the manifest afterwards
    seconds: float
    cleaned: int = 0  #: temporary files of killed jobs removed
    verify: Any = None  #: a :class:`~onedc_media.archive.verify.VerifyResult` with ``verify``


class Committer:
    """Writes outputs and commits their rows: the only code that makes an item done.

    For each group of results: every successful output is written to the spool,
    fsynced and renamed into place; then one transaction records the whole group.
    """

    def __init__(
        self,
        manifest: Manifest,
        layout: Layout,
        total: int,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.manifest = manifest
        self.layout = layout
        self.state = Progress(total)
        self._progress = progress
        self._t0 = time.perf_counter()

    def commit(self, results: Iterable[Mapping[str, Any]]) -> None:
        rows = []
        for r in results:
            if r["status"] == "done":
                try:
                    final = self.layout.output_path(r["output"])
                except UnsafePathError as exc:  # a symlinked folder in DEST: not written
                    r = {**r, "status": "failed", "error": str(exc)}
            if r["status"] == "done":
                commit_file(self.layout, r["data"], final)
                self.state.done += 1
                self.state.bytes_out += int(r["out_size"])
            else:
                self.state.failed += 1
            self.state.bytes_in += int(r["src_size"] or 0)
            rows.append({"id": r["id"], **{c: r.get(c) for c in RESULT_COLUMNS if c in r}})
        if rows:
            self.manifest.commit_results(rows)
        self.state.elapsed = time.perf_counter() - self._t0
        if self._progress is not None:
            self._progress(self.state)


# -- scan ----------------------------------------------------------------------------------


def scan(
    manifest: Manifest,
    src: str,
    layout: Layout,
    settings: EncodeSettings,
    info: Any,
    options: Mapping[str, Any],
    *,
    checksum: bool = False,
    retry_failed: bool = False,
    jobs: int = 1,
) -> ScanResult:
    """Reconcile the manifest with what is under *src* now; leaves to-do items pending."""
    res = ScanResult()
    seen: list[Seen] = list(
        walk_sources(
            src, exclude=(layout.dest,), on_skip=lambda p, why: res.warnings.append(f"{p}: {why}")
        )
    )
    res.sources = len(seen)
    listed = _known(manifest)  # once: one query per source made a scan quadratic
    new = [s for s in seen if s.source not in listed]
    res.new = len(new)
    if new:
        manifest.insert_sources(new)
    known = _known(manifest, full=True)
    keys = {kind: settings_key(info, options, kind, settings.videos) for kind in ("image", "video")}
    changes: list[tuple[int, str, str | None]] = []
    probe: list[tuple[int, str]] = []
    newset = {s.source for s in new}
    for s in seen:
        row = known[s.source]
        status, target, why = row["status"], None, None
        path = os.path.join(src, *s.source.split("/"))
        if s.kind == "other":
            res.unsupported += 1
            if status != "failed":
                ext = os.path.splitext(s.source)[1] or "no suffix"
                target, why = "failed", f"unsupported file type ({ext}): not an image or video"
        elif s.kind == "video" and settings.videos == "skip":
            if status in ("pending", "failed"):
                target, why = "skipped", "videos are skipped (--videos skip)"
        else:
            try:
                st = os.stat(path)
                now = (st.st_size, st.st_mtime_ns)
                regular = stat.S_ISREG(st.st_mode)
            except OSError:
                now, regular = (None, None), True  # the encoder says why it cannot read it
            changed = now != (row["src_size"], row["src_mtime_ns"])
            if not regular:  # a FIFO or device: never opened (it could block)
                if status != "failed":
                    target, why = "failed", "not a regular file"
            elif s.source in newset or status == "pending":
                target = "pending"
            elif status == "skipped":
                target, why = "pending", None
            elif status == "failed":
                if changed or retry_failed or row["settings"] != keys[s.kind]:
                    target, why = "pending", None
                    res.resettled += 0 if changed else 1
            else:  # done / verified
                reason = None
                if changed:
                    reason, res.changed = "source changed", res.changed + 1
                elif row["settings"] != keys[s.kind]:
                    reason = "settings changed"
                elif _output_size(layout, row["output"]) != row["out_size"]:
                    reason = "output missing or damaged"
                elif checksum and _sha_or_none(path) != row["src_sha256"]:
                    reason, res.changed = "source changed (checksum)", res.changed + 1
                if reason is not None:
                    target, why = "pending", reason
                    if not reason.startswith("source"):
                        res.resettled += 1
            if target == "pending" and s.kind == "image" and (changed or row["width"] is None):
                probe.append((row["id"], path))
        if target is not None and (target != status or why is not None):
            changes.append((row["id"], target, why))
    changes += _unsafe_rows(manifest)
    if changes:
        manifest.set_status(changes)
    if probe:
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            sizes = list(pool.map(lambda p: probe_size(p[1]), probe))
        manifest.set_probe([(i, *(wh or (None, None))) for (i, _), wh in zip(probe, sizes)])
    res.pending = manifest.db.execute(
        "SELECT COUNT(*) FROM items WHERE status = 'pending' AND kind IN ('image', 'video')"
    ).fetchone()[0]
    return res


def _unsafe_rows(manifest: Manifest) -> list[tuple[int, str, str | None]]:
    """Rows whose source or output path is unsafe (absolute, ``..``...: a damaged or
    crafted manifest) become ``failed``: they are never read, encoded or written."""
    out = []
    for item_id, status, error, *paths in manifest.db.execute(
        "SELECT id, status, error, source, output FROM items"
    ):
        for what, path in zip(("source", "output"), paths):
            problem = path_problem(path)
            if problem is not None:
                why = f"unsafe {what} path in the manifest: {path!r} ({problem})"
                if (status, error) != ("failed", why):
                    out.append((item_id, "failed", why))
                break
    return out


def _known(manifest: Manifest, full: bool = False) -> dict[str, Any]:
    cols = (
        (
            "id, source, kind, status, src_size, src_mtime_ns, src_sha256, settings, output, "
            "out_size, width"
        )
        if full
        else "source"
    )
    return {r["source"]: r for r in manifest.db.execute(f"SELECT {cols} FROM items")}


def _output_size(layout: Layout, output: str) -> int | None:
    try:
        return os.path.getsize(layout.output_path(output))
    except (OSError, UnsafePathError):
        return None


def _sha_or_none(path: str) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


# -- plan ----------------------------------------------------------------------------------


def plan_batches(manifest: Manifest, src: str, batch_size: int) -> Iterator[list[WorkItem]]:
    """The pending items as batches: images ordered by size, equal-sized ones batched
    (at most *batch_size*; sizes unknown to the probe are batched together and the
    encoder groups them by their real size), then each video on its own. Deterministic:
    the same manifest gives the same batches to either engine."""
    batch: list[WorkItem] = []
    key: tuple[Any, Any] | None = None
    for row in manifest.pending("image"):
        k = (row["width"], row["height"])
        if batch and (k != key or len(batch) >= batch_size):
            yield batch
            batch = []
        key = k
        batch.append(_work_item(row, src))
    if batch:
        yield batch
    for row in manifest.pending("video"):
        yield [_work_item(row, src)]


def _work_item(row: Mapping[str, Any], src: str) -> WorkItem:
    return WorkItem(
        int(row["id"]),
        row["source"],
        row["kind"],
        row["output"],
        os.path.join(src, *split_relative(row["source"], "source")),
        root=src,
    )


# -- the job -------------------------------------------------------------------------------


def archive(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    settings: EncodeSettings | None = None,
    *,
    engine: str = "local",
    jobs: int | None = None,
    batch_size: int = 4,
    checksum: bool = False,
    retry_failed: bool = False,
    verify: bool = False,
    metrics: tuple[str, ...] = ("psnr", "ms_ssim"),
    progress: Callable[[Progress], None] | None = None,
    verify_progress: Callable[[int, int], None] | None = None,
    plugins: Any = None,
    ray_options: Mapping[str, Any] | None = None,
) -> ArchiveResult:
    """Archive every image and video under *src* into *dest* (see the module docstring).

    :param settings: codec, options, video mode, limits (default: OneDC defaults).
    :param engine: ``local`` (this process) or ``ray`` (Ray Data; ``pip install
        onedc-media[ray]``).
    :param jobs: local: reader threads (classic codecs: encoder threads too); ray:
        actors. Default: the CPU count (local) or what the cluster holds (ray).
    :param batch_size: pictures per batch (equal sizes only).
    :param checksum: also re-hash unchanged-looking sources of done items (like
        ``rsync -c``); without it a source counts as changed when its size or mtime did.
    :param retry_failed: retry items that failed before (default: only when the source
        or the settings changed).
    :param verify: afterwards, verify every output (:func:`~onedc_media.archive.verify.verify_archive`).
    :param metrics: what verification measures for lossy codecs.
    :param progress: called with a :class:`Progress` after each commit.
    :param ray_options: for the Ray engine: ``address``, ``num_cpus``, ``num_gpus``
        (per actor), ``window`` (see :mod:`onedc_media.archive.ray_engine`).
    :raises ManifestError: *dest* belongs to another source folder or job.
    """
    import onedc_media

    t0 = time.perf_counter()
    settings = settings or EncodeSettings()
    if engine not in ENGINES:
        raise CodecOptionError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if batch_size < 1:
        raise CodecOptionError("batch size must be at least 1")
    if jobs is not None and jobs < 1:
        raise CodecOptionError("jobs must be at least 1")
    src = os.path.abspath(os.fspath(src))
    if not os.path.isdir(src):
        raise MediaError("not a folder", filename=src)
    layout = Layout.at(dest)
    if _inside(src, layout.dest):
        raise CodecOptionError(f"the source folder {src} lies inside the archive {layout.dest}")
    given_plugins = plugins  # None: Ray actors load the installed ones themselves
    plugins = plugins or onedc_media.default_plugins()
    info = plugins.codecs.get(settings.codec)
    options = info.resolve_options(settings.options)  # fail before touching anything
    os.makedirs(layout.dest, exist_ok=True)
    with job_lock(layout):
        cleaned = layout.clean_spool()
        with Manifest(layout.manifest, create=True) as manifest:
            _check_source(manifest, src)
            result = scan(
                manifest,
                src,
                layout,
                settings,
                info,
                options,
                checksum=checksum,
                retry_failed=retry_failed,
                jobs=jobs or os.cpu_count() or 1,
            )
            run = manifest.start_run(engine, settings.to_dict())
            committer = Committer(manifest, layout, result.pending, progress)
            if result.pending:
                batches = plan_batches(manifest, src, batch_size)
                if engine == "local":
                    from onedc_media.archive.local import run_local

                    run_local(
                        batches, settings, committer, jobs=jobs, plugins=plugins, spool=layout.spool
                    )
                else:
                    from onedc_media.archive.ray_engine import run_ray

                    run_ray(
                        batches,
                        settings,
                        committer,
                        actors=jobs,
                        spool=layout.spool,
                        plugins=given_plugins,
                        **dict(ray_options or {}),
                    )
            manifest.finish_run(run, committer.state.done, committer.state.failed)
            verified = None
            if verify:
                from onedc_media.archive.verify import verify_archive

                verified = verify_archive(
                    layout.dest,
                    manifest=manifest,
                    plugins=plugins,
                    metrics=metrics,
                    src=src,
                    progress=verify_progress,
                )
            counts = manifest.counts()
        _remove_empty(layout.spool)
    return ArchiveResult(
        layout.dest,
        engine,
        result,
        committer.state,
        counts,
        time.perf_counter() - t0,
        cleaned,
        verified,
    )


def _check_source(manifest: Manifest, src: str) -> None:
    known = manifest.get_meta("source")
    if known is None:
        manifest.set_meta({"source": src, "created": json.dumps(time.time())})
    elif os.path.realpath(known) != os.path.realpath(src):
        raise ManifestError(
            f"this archive holds {known}, not {src} (use another DEST)", filename=manifest.path
        )


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _remove_empty(folder: str) -> None:
    try:
        os.rmdir(folder)
    except OSError:
        pass
