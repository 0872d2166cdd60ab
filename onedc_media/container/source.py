"""Bounded, position-tracking reads from a seekable file or a pipe.

Pillow's ``ImageFile._safe_read`` idea: a length read from a file is never handed to
``read()`` unchecked. On a seekable file a read never asks for more than what is left of
the file; on a pipe it asks in :data:`SAFEBLOCK` pieces, so memory grows only with bytes
that really arrived.

A pipe cannot seek, but the reader needs to step back after damage (to look for the next
sync point inside a chunk that turned out to be bad). :meth:`Source.mark` starts keeping
references to what is read; :meth:`Source.seek` can then return to any position since
the mark, on a pipe too. :meth:`Source.unmark` stops that again: the reader calls it
before streaming the body of a chunk it skips, so a skipped chunk never costs memory
(on a pipe, the search after damage inside such a chunk then starts where reading
stopped: :attr:`Source.earliest`).
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

__all__ = ["SAFEBLOCK", "Source"]

#: Largest single ``read()`` on a pipe (and the block size when searching).
SAFEBLOCK = 1 << 20


class Source:
    """Reads from *fp* with a logical position counted from where *fp* stood at start.

    :param fp: a binary file object open for reading; not closed here.
    """

    def __init__(self, fp: BinaryIO) -> None:
        self.fp = fp
        self.seekable = _is_seekable(fp)
        self.pos = 0
        self._base = 0
        self.size: int | None = None
        if self.seekable:
            self._base = fp.tell()
            end = fp.seek(0, os.SEEK_END)
            fp.seek(self._base)
            self.size = max(0, end - self._base)
        self._pushback = b""
        self._record: list[bytes] | None = None
        self._record_start = 0

    @property
    def remaining(self) -> int | None:
        """Bytes left before the end of a seekable file; ``None`` for a pipe."""
        return None if self.size is None else max(0, self.size - self.pos)

    def mark(self) -> None:
        """Remember bytes read from here on, so :meth:`seek` can come back (pipes)."""
        if not self.seekable:
            self._record = []
            self._record_start = self.pos

    def unmark(self) -> None:
        """Stop remembering bytes; seeking back on a pipe is then impossible."""
        self._record = None

    @property
    def earliest(self) -> int:
        """The lowest position :meth:`seek` can return to."""
        if self.seekable:
            return 0
        return self.pos if self._record is None else self._record_start

    def read(self, n: int) -> bytes:
        """Read up to *n* bytes; fewer only at the end of the data."""
        if n <= 0:
            return b""
        parts: list[bytes] = []
        got = 0
        if self._pushback:
            piece = self._pushback[:n]
            self._pushback = self._pushback[len(piece) :]
            parts.append(piece)
            got = len(piece)
        if self.size is not None:  # seekable: never ask for more than the file holds
            n = min(n, got + self.remaining)
        while got < n:
            piece = self.fp.read(min(SAFEBLOCK, n - got) if self.size is None else n - got)
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        if not parts:
            return b""
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if self._record is not None:
            self._record.append(data)
        self.pos += len(data)
        return data

    def seek(self, pos: int) -> None:
        """Go to logical position *pos*.

        On a pipe: back to any position since the last :meth:`mark`, or forward by
        reading; anything else raises ``io.UnsupportedOperation``.
        """
        if pos == self.pos:
            return
        if self.seekable:
            self.fp.seek(self._base + pos)
            self._pushback = b""
            self.pos = pos
            return
        if pos > self.pos:
            while self.pos < pos and self.read(min(SAFEBLOCK, pos - self.pos)):
                pass
            return
        if self._record is None or pos < self._record_start:
            raise io.UnsupportedOperation("cannot seek back in a non-seekable input")
        kept = b"".join(self._record)
        self._pushback = kept[pos - self._record_start :] + self._pushback
        self._record = []
        self._record_start = pos
        self.pos = pos

    def find(self, pattern: bytes, start: int) -> int | None:
        """Position of the first *pattern* at or after *start*, left there; ``None`` at EOF.

        Reads in :data:`SAFEBLOCK` pieces and keeps only ``len(pattern) - 1`` bytes of
        overlap, so memory stays bounded however far the next match is.
        """
        self.seek(start)
        self._record = None  # a long search must not keep what it reads
        window = b""
        window_start = start
        keep = len(pattern) - 1
        while True:
            block = self.read(SAFEBLOCK)
            if not block:
                return None
            data = window + block
            i = data.find(pattern)
            if i >= 0:
                found = window_start + i
                if self.seekable:
                    self.seek(found)
                else:
                    self._pushback = data[i:] + self._pushback
                    self.pos = found
                return found
            window = data[-keep:] if keep else b""
            window_start = self.pos - len(window)


def _is_seekable(fp: BinaryIO) -> bool:
    try:
        if not fp.seekable():
            return False
        fp.tell()
    except (AttributeError, OSError, ValueError):
        return False
    return True
