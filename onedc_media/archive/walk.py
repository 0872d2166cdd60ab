"""Finding the sources: walk ``SRC``, classify each file, mirror its path under ``DEST``.

Every regular file under ``SRC`` is a source (nothing is skipped silently): images and
videos (by suffix) are archived, anything else is recorded as ``failed`` ("unsupported
file type"). ``SRC/a/b.jpg`` becomes ``DEST/a/b.jpg.odc``: the whole name plus ``.odc``,
so ``b.jpg`` and ``b.png`` never collide and the mapping is one to one. Order is sorted
and so deterministic. Directory symlinks are not followed (no cycles); file symlinks are.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from onedc_media.archive.manifest import Seen
from onedc_media.imageio import IMAGE_SUFFIXES

__all__ = ["VIDEO_SUFFIXES", "classify", "output_name", "probe_size", "walk_sources"]

VIDEO_SUFFIXES = (
    ".mp4",
    ".mkv",
    ".mov",
    ".m4v",
    ".webm",
    ".avi",
    ".mpg",
    ".mpeg",
    ".ts",
    ".m2ts",
    ".mts",
    ".wmv",
    ".flv",
    ".3gp",
)


def classify(name: str) -> str:
    """``"image"``, ``"video"`` or ``"other"``, from the file name's suffix."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return "other"


def output_name(source: str) -> str:
    """The output path (under ``DEST``) of the source path *source* (under ``SRC``)."""
    return source + ".odc"


def walk_sources(
    src: str | os.PathLike[str],
    *,
    exclude: tuple[str, ...] = (),
    on_skip: Callable[[str, str], None] | None = None,
) -> Iterator[Seen]:
    """Yield every file under *src* as a :class:`Seen`, sorted by path.

    :param exclude: absolute directories not to enter (the archive itself, when it lies
        inside ``SRC``).
    :param on_skip: called as ``on_skip(path, reason)`` for a name that cannot be
        recorded (not valid UTF-8).
    """
    root = os.path.abspath(os.fspath(src))
    excluded = {os.path.abspath(e) for e in exclude}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if os.path.join(folder, d) not in excluded)
        for name in sorted(files):
            full = os.path.join(folder, name)
            rel = Path(os.path.relpath(full, root)).as_posix()
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                if on_skip is not None:
                    on_skip(full, "file name is not valid UTF-8")
                continue
            yield Seen(rel, classify(name), output_name(rel))


def probe_size(path: str) -> tuple[int, int] | None:
    """``(width, height)`` of an image as it will decode (EXIF orientation applied), read
    from its header only; ``None`` when the header is not understood. Used to order the
    work so that equal-sized pictures share a batch; the decode checks again."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block
        fh = os.fdopen(fd, "rb")
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fh)
        with im:
            w, h = im.size
            orientation = 1
            if im.format in ("JPEG", "MPO"):  # EXIF in the header; PNG's would need a decode
                # a bad EXIF block only loses the hint
                with contextlib.suppress(Exception):
                    orientation = im.getexif().get(0x0112, 1)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    finally:
        fh.close()
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return int(w), int(h)
