"""Where an archive keeps things, and how an output gets there exactly once.

::

    DEST/
      a/b.jpg.odc                       outputs, mirroring SRC
      .onedc-archive/
        manifest.sqlite (+ -wal, -shm)  the manifest (see manifest.py)
        lock                            held (flock) by the running job
        spool/                          temporary files; emptied when a job starts

An output is written to ``spool/``, fsynced, renamed over its final path (same file
system, so the rename is atomic) and its directory fsynced (:func:`commit_file`); only
then may the manifest say ``done``. A job killed at any point leaves at most files in
``spool/`` (removed by the next job) and, at worst, an output that the manifest does
not list yet: the next job redoes that item and renames over it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

from onedc_media.archive.manifest import ManifestError
from onedc_media.archive.paths import open_inside, resolve_inside
from onedc_media.container.writer import fsync_dir

__all__ = ["STATE_DIR", "Layout", "commit_file", "job_lock"]

STATE_DIR = ".onedc-archive"


@dataclass(frozen=True)
class Layout:
    """The paths of the archive rooted at *dest*."""

    dest: str

    @classmethod
    def at(cls, dest: str | os.PathLike[str]) -> Layout:
        return cls(os.path.abspath(os.fspath(dest)))

    @property
    def state(self) -> str:
        return os.path.join(self.dest, STATE_DIR)

    @property
    def manifest(self) -> str:
        return os.path.join(self.state, "manifest.sqlite")

    @property
    def spool(self) -> str:
        return os.path.join(self.state, "spool")

    @property
    def lock(self) -> str:
        return os.path.join(self.state, "lock")

    def output_path(self, output: str) -> str:
        """The absolute path of the output recorded as *output* ('/'-separated), checked
        to stay inside DEST (``UnsafePathError``; see :mod:`~onedc_media.archive.paths`)."""
        return resolve_inside(self.dest, output, what="output")

    def read_output(self, output: str) -> bytes:
        """The bytes of the output recorded as *output*, opened without following any
        symbolic link below DEST (``UnsafePathError``, ``OSError``)."""
        with os.fdopen(open_inside(self.dest, output, what="output"), "rb") as fh:
            return fh.read()

    def spool_path(self, suffix: str = ".partial") -> str:
        return os.path.join(self.spool, secrets.token_hex(8) + suffix)

    def clean_spool(self) -> int:
        """Remove what killed jobs left in ``spool/``; return how many entries."""
        if not os.path.isdir(self.spool):
            return 0
        n = 0
        for name in os.listdir(self.spool):
            path = os.path.join(self.spool, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            n += 1
        return n


@contextlib.contextmanager
def job_lock(layout: Layout) -> Iterator[None]:
    """Hold the archive's lock for a job; a second job on the same DEST gets
    ``ManifestError``. The lock dies with its process (also on SIGKILL)."""
    import fcntl

    os.makedirs(layout.state, exist_ok=True)
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ManifestError(
                f"another archive job (pid {holder}) is using this archive", filename=layout.dest
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def commit_file(layout: Layout, data: bytes, final: str) -> None:
    """Write *data* to the absolute path *final* atomically and durably (spool file,
    fsync, rename, fsync of the directory)."""
    os.makedirs(layout.spool, exist_ok=True)
    tmp = layout.spool_path()
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _makedirs_durable(os.path.dirname(final))
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(final))


def _makedirs_durable(folder: str) -> None:
    """``os.makedirs`` that also fsyncs the parent of every directory it creates."""
    if os.path.isdir(folder):
        return
    parent = os.path.dirname(folder)
    if parent and parent != folder:
        _makedirs_durable(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder)
        fsync_dir(parent)
