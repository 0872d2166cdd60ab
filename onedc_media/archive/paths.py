"""Paths a manifest records, kept inside the folder they belong to.

A manifest is data, and data can be damaged or crafted: a row whose ``source`` is
``../../victim/x.png`` or whose ``output`` is ``/etc/passwd`` must not make a restore
write, or a verify read, outside its folder. Every path the archive code takes from a
manifest goes through this module before anything is opened:

- :func:`split_relative` refuses, from the text alone, paths that are absolute or have an
  empty, ``.``, ``..`` or NUL-holding component (:class:`UnsafePathError`);
- :func:`resolve_inside` joins a safe path to its folder and refuses it when a symbolic
  link on the way (a folder, or the file itself) resolves outside that folder;
- :func:`open_inside` opens it one component at a time (``openat`` with
  ``O_NOFOLLOW``), so no symbolic link is followed at all, even one swapped in after a
  check.

The walk records sources without ``..`` and never enters symlinked folders, but it
follows symlinked files (``walk.py``): source reads pass ``follow_last=True``. Outputs
and restored files are regular files in real folders the archive created.
"""

from __future__ import annotations

import os

from onedc_media.errors import OdcError

__all__ = ["UnsafePathError", "open_inside", "path_problem", "resolve_inside", "split_relative"]


class UnsafePathError(OdcError, ValueError):
    """A path recorded in a manifest would lead outside its folder."""


def path_problem(rel: object) -> str | None:
    """Why the manifest path *rel* is unsafe, or ``None`` when it is a plain relative
    ``/``-separated path (see :func:`split_relative`)."""
    if not isinstance(rel, str):
        return f"not a text path ({type(rel).__name__})"
    if not rel:
        return "empty path"
    if "\x00" in rel:
        return "contains a NUL character"
    if rel.startswith("/") or os.path.isabs(rel):
        return "absolute path"
    parts = rel.split("/")
    if any(p == ".." for p in parts):
        return "contains '..'"
    if any(p in ("", ".") for p in parts):
        return "has an empty or '.' component"
    return None


def split_relative(rel: object, what: str = "path") -> list[str]:
    """The components of the manifest path *rel*; :class:`UnsafePathError` when it is
    absolute or has an empty, ``.``, ``..`` or NUL-holding component."""
    problem = path_problem(rel)
    if problem is not None:
        raise UnsafePathError(f"unsafe {what} in the manifest: {rel!r} ({problem})")
    return str(rel).split("/")


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def resolve_inside(root: str, rel: str, *, what: str = "path", follow_last: bool = False) -> str:
    """``root/rel`` after checking that it stays inside *root* once resolved.

    Every folder on the way that exists must resolve (symbolic links followed) inside
    ``realpath(root)``; so must the file itself when it is a symbolic link, unless
    *follow_last* (a source the walk reached through a symlinked file). Parts that do not
    exist yet resolve to themselves, so the path can be created afterwards.

    :raises UnsafePathError: *rel* is unsafe as text, or resolves outside *root*.
    """
    parts = split_relative(rel, what)
    real_root = os.path.realpath(root)
    path = os.path.join(root, *parts)
    check = os.path.dirname(path) if follow_last else path
    if not _within(os.path.realpath(check), real_root):
        raise UnsafePathError(
            f"{what} {rel!r} leads outside {root} through a symbolic link", filename=path
        )
    return path


def open_inside(
    root: str, rel: str, flags: int = os.O_RDONLY, *, what: str = "path", follow_last: bool = False
) -> int:
    """Open ``root/rel`` without following any symbolic link below *root* (the last
    component's only with *follow_last*); returns a file descriptor.

    :raises UnsafePathError: *rel* is unsafe as text, or a folder on the way is a
        symbolic link.
    :raises OSError: as ``os.open`` (missing file, permissions; ``ELOOP`` when the file
        is a symbolic link and *follow_last* is false).
    """
    parts = split_relative(rel, what)
    nofollow = os.O_NOFOLLOW
    directory = os.O_RDONLY | os.O_DIRECTORY | nofollow
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            try:
                nxt = os.open(
                    name,
                    (flags | (0 if follow_last else nofollow)) if last else directory,
                    dir_fd=fd,
                )
            except OSError:
                if (not last or not follow_last) and os.path.islink(
                    os.path.join(root, *parts[: i + 1])
                ):
                    raise UnsafePathError(
                        f"{what} {rel!r} passes through a symbolic link",
                        filename=os.path.join(root, *parts),
                    ) from None
                raise
            os.close(fd)
            fd = nxt
        out, fd = fd, -1
        return out
    finally:
        if fd >= 0:
            os.close(fd)
