"""``InputContainer``: reads ``.odc`` files, from seekable files or pipes.

Opening reads the magic, the file header and every stream header; packets are read on
demand by :meth:`InputContainer.demux`. A packet is handed out only after its chunk's
CRC matched, so damage can cost packets but never return a wrong one.

A file in the still form (one picture, :mod:`~onedc_media.container.still`) reads the
same way: one image stream, one keyframe packet, an index of one entry; ``form`` says
which form a file is.
"""

from __future__ import annotations

import bisect
import builtins
import io
import operator
import os
from array import array
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO, Literal

from onedc_media.container import bodies, chunks, headers, still
from onedc_media.container.records import IndexEntry, Limits, Packet, StreamHeader
from onedc_media.container.source import Source
from onedc_media.errors import OdcError, OdcFormatError, TruncatedError

__all__ = ["InputContainer", "OnDamage"]

OnDamage = Literal["raise", "stop", "resync"]
_ON_DAMAGE = ("raise", "stop", "resync")
#: Size of the ``OEND`` chunk, which is always the last 28 bytes of a complete file.
FOOTER_SIZE = chunks.CHUNK_OVERHEAD + 16


def _keep_data(ctype: bytes) -> bool:
    return ctype in (chunks.PACKET, chunks.SYNC, chunks.END)


class InputContainer:
    """An ``.odc`` file open for reading. Use as a context manager, or call :meth:`close`.

    :param file: a path, or a binary file object open for reading (a pipe is fine;
        then :attr:`index`, :meth:`seek` and :meth:`read_packet_at` are unavailable).
    :param limits: safety bounds on sizes declared in the file.
    :raises OdcFormatError: (or a subclass) the file is not a readable ``.odc`` file.
    """

    def __init__(
        self, file: str | os.PathLike[str] | BinaryIO, *, limits: Limits | None = None
    ) -> None:
        self.limits = limits or Limits()
        self._owns = isinstance(file, (str, os.PathLike))
        #: the path the file was opened from; ``None`` for a file object (whose ``name``
        #: may be anything, e.g. ``'<stdin>'``), so a second reader can open ``path``
        self.path: str | None = None
        if self._owns:
            self.name: str | None = os.fspath(file)
            self.path = self.name
            fp: BinaryIO = builtins.open(self.name, "rb")  # noqa: SIM115 - closed by close()
        else:
            if isinstance(file, io.TextIOBase) or not hasattr(file, "read"):
                raise TypeError(f"expected a path or a binary file object, got {file!r}")
            fp = file
            name = getattr(file, "name", None)
            self.name = name if isinstance(name, str) else None
        self._fp = fp
        self._damage: list[str] = []
        self._index: list[IndexEntry] | None = None
        self._seek_table: dict[int, tuple[list[int], list[IndexEntry]]] | None = None
        self._next_start: int | None = None
        self._ended = False  # a walk reached OEND (a pipe is then read to its end)
        # Offsets of the PCKT chunks met by following chunk lengths from the data start,
        # up to _frontier (None once OEND or damage ended that walk): see _in_sequence.
        self._sequence: array[int] = array("q")
        self._frontier: int | None = None
        self._scanned: frozenset[int] = frozenset()
        self.index_source: str | None = None
        #: ``"stream"`` (the chunked form) or ``"still"`` (one picture, compact framing)
        self.form = "stream"
        self._still: still.StillLayout | None = None
        self._still_packet: Packet | None = None
        self._still_error: OdcFormatError | None = None
        try:
            with self._named():
                self._src = Source(fp)
                self._read_headers()
        except BaseException:
            self.close()
            raise

    # -- headers --------------------------------------------------------------------

    def _read_headers(self) -> None:
        src = self._src
        magic = src.read(len(chunks.MAGIC))
        if magic != chunks.MAGIC:
            if chunks.MAGIC.startswith(magic):
                raise TruncatedError(f"data ends after {len(magic)} bytes, inside the magic")
            raise OdcFormatError("not an .odc file (bad magic)")
        src.mark()
        form = src.read(1)
        if form and still.is_still_form_byte(form[0]):
            src.unmark()
            self._open_still(magic + form)
            return
        src.seek(len(magic))  # the stream form: that byte starts the OHDR chunk
        src.unmark()
        keep = (chunks.FILE_HEADER, chunks.STREAM_HEADER).__contains__
        first = chunks.read_chunk(src, self.limits, keep=keep)
        if first is None:
            raise TruncatedError("data ends after the magic")
        if first.type != chunks.FILE_HEADER:
            raise OdcFormatError(f"first chunk is {first.type!r}, not OHDR")
        fh = headers.decode_file_header(first.body, self.limits)
        self.format_version = fh.format_version
        self.min_reader_version = fh.min_reader_version
        self._metadata = fh.metadata
        self._streams: list[StreamHeader] = []
        while len(self._streams) < fh.stream_count:
            chunk = chunks.read_chunk(src, self.limits, keep=keep)
            if chunk is None:
                raise TruncatedError(
                    f"data ends after {len(self._streams)} of {fh.stream_count} stream headers"
                )
            if chunk.type == chunks.STREAM_HEADER:
                h = headers.decode_stream_header(chunk.body, self.limits, chunk.offset)
                if h.index != len(self._streams):
                    raise OdcFormatError(
                        f"STRM chunk at byte {chunk.offset} has index {h.index}, "
                        f"expected {len(self._streams)}"
                    )
                self._streams.append(h)
            elif chunks.is_critical(chunk.type):
                raise OdcFormatError(
                    f"{chunk.type!r} chunk at byte {chunk.offset} among the stream headers"
                )
        self._data_start = src.pos
        self._frontier = self._data_start

    def _open_still(self, first: bytes) -> None:
        self._still = still.read_still_header(self._src, first, self.limits)
        self.form = "still"
        self.format_version = self.min_reader_version = 1
        self._metadata: dict[str, str] = {}
        self._streams = [self._still.header]
        self._data_start = len(chunks.MAGIC)  # the still's one "chunk" is the whole file
        self._frontier = None

    def _still_demux(self, wanted: set[int] | None, on_damage: OnDamage) -> Iterator[Packet]:
        packet = self._read_still()
        if packet is None:
            if on_damage == "raise" and self._still_error is not None:
                raise self._still_error
            return
        if wanted is None or 0 in wanted:
            yield packet

    def _read_still(self) -> Packet | None:
        """The still's one packet (read once, kept: a pipe cannot be read twice), or
        ``None`` when it is damaged."""
        layout = self._still
        if self._still_packet is None and self._still_error is None and layout is not None:
            try:
                with self._named():
                    self._src.seek(layout.payload_start)
                    data = still.read_still_payload(self._src, layout)
            except OdcFormatError as exc:
                self._note(str(exc))
                self._still_error = exc
                return None
            self._still_packet = Packet(0, data, pts=0, duration=1, keyframe=True)
        return self._still_packet

    @property
    def streams(self) -> list[StreamHeader]:
        return list(self._streams)

    @property
    def metadata(self) -> dict[str, str]:
        """File-level metadata."""
        return dict(self._metadata)

    @property
    def file_size(self) -> int | None:
        """Size in bytes (from the magic on); ``None`` for a pipe."""
        return self._src.size

    @property
    def damage(self) -> str | None:
        """What damage reading found so far (truncation, bad CRC); ``None`` if none."""
        return "; ".join(self._damage) if self._damage else None

    def _note(self, what: str) -> None:
        if what not in self._damage:
            self._damage.append(what)

    @contextmanager
    def _named(self) -> Iterator[None]:
        try:
            yield
        except OdcError as exc:
            if exc.filename is None:
                exc.filename = self.name
            raise

    # -- packets --------------------------------------------------------------------

    def demux(
        self,
        stream_indices: int | Iterable[int] | None = None,
        on_damage: OnDamage = "raise",
    ) -> Iterator[Packet]:
        """Yield packets in file order, from the first one or from where :meth:`seek` put
        the reader (on a pipe: from where the last ``demux`` stopped; nothing once one
        reached the end chunk, so bytes after the file are never read).

        :param stream_indices: only these streams (default: all).
        :param on_damage: ``"raise"``: yield the intact prefix, then raise
            ``TruncatedError`` / ``ChecksumError`` / ``OdcFormatError``; ``"stop"``: end
            quietly; ``"resync"``: skip to the next sync point and go on. Damage is
            recorded in :attr:`damage` in every mode.
        """
        if on_damage not in _ON_DAMAGE:
            raise ValueError(f"on_damage must be one of {', '.join(_ON_DAMAGE)}")
        wanted: set[int] | None = None
        if stream_indices is not None:
            if not isinstance(stream_indices, Iterable):
                stream_indices = (stream_indices,)  # one index (int or numpy integer)
            wanted = {self._check_stream(i) for i in stream_indices}
        if self._ended and not self._src.seekable:
            return iter(())  # a pipe is read once; what follows OEND is not ours
        if self._next_start is not None:
            start = self._next_start
        else:
            start = self._data_start if self._src.seekable else self._src.pos
        self._next_start = None
        if self._still is not None:
            return self._still_demux(wanted, on_damage)
        return self._demux(start, wanted, on_damage)

    def _demux(self, start: int, wanted: set[int] | None, on_damage: OnDamage) -> Iterator[Packet]:
        with self._named():
            for _, packet in self._walk(start, on_damage):
                if wanted is None or packet.stream_index in wanted:
                    yield packet

    def _walk(self, start: int, on_damage: OnDamage) -> Iterator[tuple[int, Packet]]:
        """``(chunk offset, packet)`` for every intact packet from *start* to ``OEND``."""
        src = self._src
        pos = start
        count: int | None = 0 if start == self._data_start else None  # packets so far
        n_streams = len(self._streams)
        while True:
            src.seek(pos)
            src.mark()
            packet = None
            try:
                chunk = chunks.read_chunk(src, self.limits, keep=_keep_data)
                if chunk is None:
                    raise TruncatedError(f"data ends at byte {pos} without an end chunk")
                if chunk.type == chunks.PACKET:
                    packet = bodies.decode_packet(chunk.body, n_streams, pos)
                    count = None if count is None else count + 1
                elif chunk.type == chunks.SYNC:
                    recorded = bodies.decode_sync(chunk.body, pos)
                    if count is not None and recorded != count:
                        raise OdcFormatError(
                            f"sync chunk at byte {pos} follows packet {recorded}, "
                            f"but {count} were read: chunks are missing"
                        )
                    count = recorded
                elif chunk.type == chunks.END:
                    _, total = bodies.decode_end(chunk.body, pos)
                    self._ended = True
                    if count is not None and total != count:
                        raise OdcFormatError(
                            f"end chunk records {total} packets, {count} were read"
                        )
                    return
                elif chunks.is_critical(chunk.type):
                    raise OdcFormatError(f"unexpected critical chunk {chunk.type!r} at byte {pos}")
            except OdcFormatError as exc:
                self._note(str(exc))
                if on_damage == "raise":
                    raise
                if on_damage == "stop":
                    return
                # forward only: a pipe cannot go back into a skipped chunk's body
                found = self._resync(max(pos + 1, src.earliest))
                if found is None:
                    return
                pos, count = found, None
                continue
            pos = chunk.end
            if packet is not None:
                yield chunk.offset, packet

    def _resync(self, start: int) -> int | None:
        """Offset of the first intact sync chunk at or after *start*, or ``None``."""
        src = self._src
        while True:
            found = src.find(bodies.SYNC_PATTERN, start)
            if found is None:
                return None
            src.mark()
            try:
                chunk = chunks.read_chunk(src, self.limits, keep=_keep_data)
                if chunk is not None:
                    bodies.decode_sync(chunk.body, found)
                    return found
            except OdcFormatError:
                pass
            start = found + 1

    # -- index and seeking ----------------------------------------------------------

    @property
    def index(self) -> list[IndexEntry]:
        """Keyframe packets of every stream, in file order.

        From the trailing index when it is present and intact (found in O(1) through
        the footer), else built by one linear scan. ``index_source`` says which.
        """
        self._require_seekable("index")
        if self._index is None and self._still is not None:
            self._index = [IndexEntry(0, 0, self._data_start)]
            self.index_source = "still"
        if self._index is None:
            with self._named():
                entries = self._trailing_index()
                self.index_source = "trailing"
                if entries is None:
                    entries = self._scan_index()
            self._index = entries
        return list(self._index)

    def _scan_index(self) -> list[IndexEntry]:
        entries = [
            IndexEntry(p.stream_index, p.pts, offset)
            for offset, p in self._walk(self._data_start, "resync")
            if p.keyframe
        ]
        self.index_source = "scan"
        self._scanned = frozenset(e.offset for e in entries)
        return entries

    def _trailing_index(self) -> list[IndexEntry] | None:
        src = self._src
        footer_at = (src.size or 0) - FOOTER_SIZE
        if footer_at < self._data_start:
            return None
        src.seek(footer_at)
        try:
            end = chunks.read_chunk(src, self.limits, keep=_keep_data)
            if end is None or end.type != chunks.END:
                return None
            index_offset, _ = bodies.decode_end(end.body, footer_at)
        except OdcFormatError:
            return None  # no intact footer: truncated or damaged; the scan will say
        if index_offset == 0:
            return None  # written without an index
        try:
            if not self._data_start <= index_offset < footer_at:
                raise OdcFormatError(f"footer points at byte {index_offset}")
            src.seek(index_offset)
            chunk = chunks.read_chunk(src, self.limits, keep=chunks.INDEX.__eq__)
            if chunk is None or chunk.type != chunks.INDEX or chunk.end != footer_at:
                raise OdcFormatError(f"no index chunk at byte {index_offset}")
            return bodies.decode_index(
                chunk.body, len(self._streams), self._data_start, index_offset
            )
        except OdcFormatError as exc:
            self._note(f"trailing index unusable ({exc}); rebuilt by a linear scan")
            return None

    def seek(self, stream_index: int, pts: int) -> None:
        """Make the next :meth:`demux` start at the last keyframe of *stream_index* whose
        pts is <= *pts* (at the first packet when there is none).

        The target is checked first (:meth:`read_packet_at`); a trailing index entry that
        fails the check makes the index damaged, and it is rebuilt by a linear scan.
        """
        self._check_stream(stream_index)
        if self._still is not None:
            self._next_start = self._data_start
            return
        entry = self._seek_entry(stream_index, pts)
        if entry is not None and self.index_source == "trailing":
            try:
                self.read_packet_at(entry)
            except OdcFormatError as exc:
                self._note(f"trailing index unusable ({exc}); rebuilt by a linear scan")
                with self._named():
                    self._index = self._scan_index()
                self._seek_table = None
                entry = self._seek_entry(stream_index, pts)
        self._next_start = entry.offset if entry is not None else self._data_start

    def _seek_entry(self, stream_index: int, pts: int) -> IndexEntry | None:
        if self._seek_table is None:
            table: dict[int, list[IndexEntry]] = {}
            for e in self.index:
                if e.pts is not None:
                    table.setdefault(e.stream_index, []).append(e)
            self._seek_table = {}
            for stream, entries in table.items():
                entries.sort(key=lambda e: (e.pts, e.offset))
                self._seek_table[stream] = ([e.pts for e in entries], entries)
        pts_list, entries = self._seek_table.get(stream_index, ([], []))
        i = bisect.bisect_right(pts_list, pts) - 1
        return entries[i] if i >= 0 else None

    def read_packet_at(self, entry: IndexEntry) -> Packet:
        """The keyframe packet an index entry points at (checked against the entry)."""
        self._require_seekable("read_packet_at")
        src = self._src
        if self._still is not None:
            packet = None
            if (entry.stream_index, entry.pts, entry.offset) == (0, 0, self._data_start):
                packet = self._read_still()
            if packet is None:
                if self._still_error is not None:
                    raise self._still_error
                with self._named():
                    raise OdcFormatError(f"no packet at byte {entry.offset} of this still")
            return packet
        with self._named():
            if not self._data_start <= entry.offset < (src.size or 0):
                raise OdcFormatError(f"no packet at byte {entry.offset}: outside the data")
            if not self._in_sequence(entry.offset):
                raise OdcFormatError(
                    f"no packet chunk starts at byte {entry.offset} in the file's chunk sequence"
                )
            src.seek(entry.offset)
            chunk = chunks.read_chunk(src, self.limits, keep=_keep_data)
            if chunk is None or chunk.type != chunks.PACKET:
                raise OdcFormatError(f"no packet chunk at byte {entry.offset}")
            packet = bodies.decode_packet(chunk.body, len(self._streams), entry.offset)
            if (packet.stream_index, packet.pts, packet.keyframe) != (
                entry.stream_index,
                entry.pts,
                True,
            ):
                raise OdcFormatError(
                    f"the packet at byte {entry.offset} does not match its index entry"
                )
        return packet

    def _in_sequence(self, offset: int) -> bool:
        """Whether a ``PCKT`` chunk starts at *offset* in the chain of chunks that starts
        at the data start, each chunk followed by the next (its offset plus its size).

        An index (or a caller) could otherwise point into a packet's payload, at a chunk
        embedded there: it would pass every other check. The walk reads only chunk
        heads, goes no further than asked, and remembers where it got to, so all the
        seeks of a reader together read each head once. A walk ended by damage
        verifies nothing beyond it.
        """
        if offset in self._scanned:
            return True  # the linear scan read it (perhaps after resynchronising)
        src = self._src
        pos = self._frontier
        while pos is not None and pos <= offset:
            src.seek(pos)
            try:
                head = chunks.read_head(src)
            except OdcFormatError:
                head = None
            if head is None or head[0] == chunks.END:
                pos = None
                break
            if head[0] == chunks.PACKET:
                self._sequence.append(pos)
            pos += chunks.CHUNK_OVERHEAD + head[1]
            if pos > (src.size or 0):
                pos = None
        self._frontier = pos
        i = bisect.bisect_left(self._sequence, offset)
        return i < len(self._sequence) and self._sequence[i] == offset

    def _check_stream(self, index: int) -> int:
        if isinstance(index, bool):
            raise TypeError(f"stream index must be an int, got {index!r}")
        index = operator.index(index)
        if not 0 <= index < len(self._streams):
            raise ValueError(f"no stream {index}: the file has {len(self._streams)}")
        return index

    def _require_seekable(self, what: str) -> None:
        if not self._src.seekable:
            raise io.UnsupportedOperation(f"{what} needs a seekable input, not a pipe")

    # -- life cycle -----------------------------------------------------------------

    def close(self) -> None:
        if self._owns:
            self._fp.close()

    def __enter__(self) -> InputContainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kinds = ", ".join(f"{s.media_type}:{s.codec}" for s in self._streams)
        return f"<InputContainer {self.name or '?'} v{self.format_version} {self.form} [{kinds}]>"
