"""``OutputContainer``: writes an ``.odc`` file front to back, never seeking.

Layout written (``docs/odc-format.md``)::

    MAGIC  OHDR  STRM*  ( [sync] PCKT )*  [indx]  OEND

The file header and stream headers go out with the first packet (or at ``close()``), so
streams and file metadata can be set until then. Nothing is ever patched, so the writer
works on pipes. A path target is written to a temporary file beside it, fsynced and
renamed on success only (invariant 6).
"""

from __future__ import annotations

import operator
import os
import secrets
import weakref
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType, TracebackType
from typing import BinaryIO

from onedc_media.container import bodies, chunks, headers
from onedc_media.container.records import IndexEntry, Limits, Packet, StreamHeader
from onedc_media.errors import LimitExceededError

__all__ = ["OutputContainer"]

#: Chunks smaller than this are joined into one ``write()`` call.
_JOIN_BELOW = 1 << 16


class OutputContainer:
    """An ``.odc`` file being written. Use as a context manager, or call :meth:`close`.

    :param file: a path, or a binary file object open for writing (a pipe is fine; it
        is not closed here).
    :param sync_every_packets: write a sync point at least every this many packets.
    :param sync_every_bytes: ... and at least every this many bytes.
    :param write_index: write the trailing keyframe index (readers can rebuild it by
        scanning when it is absent). It is left out anyway when it would be larger than
        ``limits.max_index_size``, which default readers would refuse.
    :param limits: bounds a packet must satisfy so default readers accept the file.
    """

    def __init__(
        self,
        file: str | os.PathLike[str] | BinaryIO,
        *,
        sync_every_packets: int = 32,
        sync_every_bytes: int = 256 << 10,
        write_index: bool = True,
        limits: Limits | None = None,
    ) -> None:
        if sync_every_packets < 1 or sync_every_bytes < 1:
            raise ValueError("sync intervals must be at least 1")
        self.limits = limits or Limits()
        self._sync_packets = sync_every_packets
        self._sync_bytes = sync_every_bytes
        self._write_index = write_index
        self._path: str | None = None
        self._tmp: str | None = None
        if isinstance(file, (str, os.PathLike)):
            self._path = os.fspath(file)
            self._fp, self._tmp = _open_temp(self._path)
            self._finalizer = weakref.finalize(self, _discard, self._fp, self._tmp)
            self.name: str | None = self._path
        else:
            if not hasattr(file, "write"):
                raise TypeError(f"expected a path or a binary file object, got {file!r}")
            self._fp = file
            self._finalizer = None
            name = getattr(file, "name", None)
            self.name = name if isinstance(name, str) else None
        self._streams: list[StreamHeader] = []
        self._stream_bodies: list[bytes] = []
        self._metadata: dict[str, str] = {}
        self._started = False
        self._closed = False
        self._pos = 0
        self._packets = 0
        self._payload_bytes = 0
        self._since_sync = (0, 0)  # packets, bytes
        self._index: list[bytes] = []  # encoded entries: ~6 bytes per keyframe
        self._index_prev = 0

    # -- set-up ---------------------------------------------------------------------

    @property
    def streams(self) -> list[StreamHeader]:
        """The streams added so far, with their indices."""
        return list(self._streams)

    @property
    def metadata(self) -> Mapping[str, str]:
        """File-level metadata (str -> str); editable until the first packet."""
        return self._metadata if not self._started else MappingProxyType(self._metadata)

    @metadata.setter
    def metadata(self, value: Mapping[str, str]) -> None:
        self._check_setup("set metadata")
        self._metadata = dict(value)

    def add_stream(self, header: StreamHeader) -> StreamHeader:
        """Add a stream; returns the header as a reader will see it (index set)."""
        self._check_setup("add a stream")
        if len(self._streams) >= self.limits.max_streams:
            raise LimitExceededError(f"more than {self.limits.max_streams} streams")
        if not isinstance(header, StreamHeader):
            raise TypeError(f"expected a StreamHeader, got {type(header).__name__}")
        header = headers.check_stream_header(header, self.limits)
        header = replace(header, index=len(self._streams))
        body = headers.encode_stream_header(header)
        self._check_header_size(body, f"stream {header.index}'s header")
        self._streams.append(header)
        self._stream_bodies.append(body)
        return header

    def _check_header_size(self, body: bytes, what: str) -> None:
        if len(body) > self.limits.max_header_size:
            raise LimitExceededError(
                f"{what} takes {len(body)} bytes, above the limit of "
                f"{self.limits.max_header_size} (extradata, codec_params or metadata too big)"
            )

    def _check_setup(self, what: str) -> None:
        if self._closed:
            raise ValueError(f"cannot {what}: the container is closed")
        if self._started:
            raise ValueError(f"cannot {what} after the first packet")

    def _start(self) -> None:
        meta = headers.check_str_map(self._metadata, ValueError, "metadata")
        body = headers.encode_file_header(len(self._streams), meta)
        self._check_header_size(body, "the file header")
        self._started = True
        out = [chunks.MAGIC, *chunks.chunk_bytes(chunks.FILE_HEADER, body)]
        for body in self._stream_bodies:
            out += chunks.chunk_bytes(chunks.STREAM_HEADER, body)
        self._write(b"".join(out))
        self._flush()

    # -- packets --------------------------------------------------------------------

    def mux(self, packet: Packet) -> None:
        """Append one packet. The first call writes the file and stream headers."""
        if self._closed:
            raise ValueError("cannot mux: the container is closed")
        packet, data = self._check_packet(packet)
        if not self._started:
            self._start()
        n, size = self._since_sync
        if self._packets and (n >= self._sync_packets or size >= self._sync_bytes):
            self._write(
                b"".join(
                    chunks.chunk_bytes(chunks.SYNC, bodies.encode_sync(self._pos, self._packets))
                )
            )
            self._flush()
            n = size = 0
        start = self._pos
        parts = chunks.chunk_bytes(chunks.PACKET, bodies.encode_packet_header(packet), data)
        if len(data) < _JOIN_BELOW:
            self._write(b"".join(parts))
        else:
            self._write(parts[0] + parts[1])
            self._write(data)
            self._write(parts[3])
        if packet.keyframe:
            entry = IndexEntry(packet.stream_index, packet.pts, start)
            self._index.append(bodies.encode_index_entry(entry, self._index_prev))
            self._index_prev = start
        self._packets += 1
        self._payload_bytes += len(data)
        self._since_sync = (n + 1, size + self._pos - start)

    def _check_packet(self, packet: Packet) -> tuple[Packet, bytes | bytearray | memoryview]:
        """The packet with plain ``int`` / ``bool`` fields, and its payload as bytes."""
        if not isinstance(packet, Packet):
            raise TypeError(f"expected a Packet, got {type(packet).__name__}")
        stream = _check_int(packet.stream_index, "stream_index", 0, len(self._streams) - 1)
        pts, dts = (
            None if v is None else _check_int(v, name, bodies.INT64_MIN, bodies.INT64_MAX)
            for name, v in (("pts", packet.pts), ("dts", packet.dts))
        )
        duration = _check_int(packet.duration, "duration", 0, bodies.INT64_MAX)
        if packet.keyframe not in (True, False):
            raise TypeError(f"packet keyframe must be a bool, got {packet.keyframe!r}")
        data = packet.data
        if isinstance(data, memoryview):
            data = data.cast("B") if data.format != "B" or data.ndim != 1 else data
        elif not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"packet data must be bytes, got {type(data).__name__}")
        if len(data) > self.limits.max_packet_size:
            raise LimitExceededError(
                f"packet of {len(data)} bytes is above the limit of "
                f"{self.limits.max_packet_size} bytes"
            )
        return Packet(stream, b"", pts, dts, duration, bool(packet.keyframe)), data

    # -- finishing ------------------------------------------------------------------

    @property
    def bytes_written(self) -> int:
        """Bytes written so far (the whole file once closed)."""
        return self._pos

    @property
    def packet_count(self) -> int:
        return self._packets

    @property
    def payload_bytes(self) -> int:
        """Sum of packet payload sizes written so far."""
        return self._payload_bytes

    def close(self) -> None:
        """Write the index and end chunk; for a path, fsync and rename into place."""
        if self._closed:
            return
        try:
            if not self._started:
                self._start()
            index_offset = 0
            out: list[bytes] = []
            index = bodies.uvarint(len(self._index)) + b"".join(self._index)
            if self._write_index and len(index) <= self.limits.max_index_size:
                index_offset = self._pos
                out += chunks.chunk_bytes(chunks.INDEX, index)
            out += chunks.chunk_bytes(chunks.END, bodies.encode_end(index_offset, self._packets))
            self._write(b"".join(out))
            self._flush()
            self._closed = True
            if self._tmp is not None:
                os.fsync(self._fp.fileno())
                self._fp.close()
                os.replace(self._tmp, self._path)
                self._finalizer.detach()
                fsync_dir(os.path.dirname(os.path.abspath(self._path)))
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stop without finishing: a path target is removed (its temporary file is
        deleted, an existing file keeps its old content); a file object is left as is
        (it ends without an end chunk, so readers see it as truncated)."""
        self._closed = True
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> OutputContainer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = self._fp.write(view)
            if n is None:  # a raw non-blocking stream that would block
                raise BlockingIOError("the output would block")
            view = view[n:]
            self._pos += n

    def _flush(self) -> None:
        flush = getattr(self._fp, "flush", None)
        if flush is not None:
            flush()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._packets} packets"
        return f"<OutputContainer {self.name or '?'} {len(self._streams)} streams, {state}>"


def _check_int(value: object, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"packet {name} must be an int, got a bool")
    try:
        value = operator.index(value)  # numpy integers too
    except TypeError:
        raise TypeError(f"packet {name} must be an int, got {type(value).__name__}") from None
    if not lo <= value <= hi:
        raise ValueError(f"packet {name} {value} is outside {lo}..{hi}")
    return value


def _open_temp(path: str) -> tuple[BinaryIO, str]:
    """A new file beside *path*, created with the usual permissions (umask applies)."""
    folder, base = os.path.split(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, f".{base}.{secrets.token_hex(4)}.tmp")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        return os.fdopen(fd, "wb"), tmp


def _discard(fp: BinaryIO, tmp: str) -> None:
    try:
        fp.close()
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


def fsync_dir(folder: str) -> None:
    """Make a rename (or a new entry) in *folder* durable; quietly nothing where a
    folder cannot be opened or synced (some file systems, other platforms)."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
