"""The .odc container: round trips, golden files, seeking, damage, limits, and ``info``."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import struct
import subprocess
import sys
import threading
import tracemalloc
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from onedc_media import container
from onedc_media.cli.main import main as cli_main
from onedc_media.codec import ModelRef
from onedc_media.container import (
    ColorInfo,
    IndexEntry,
    Limits,
    Packet,
    StreamHeader,
    bodies,
)
from onedc_media.errors import (
    ChecksumError,
    LimitExceededError,
    OdcFormatError,
    TruncatedError,
    UnsupportedVersionError,
)

GOLDEN = Path(__file__).parent / "golden"
_spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
golden = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("make_golden", golden)
_spec.loader.exec_module(golden)
NonSeekable = golden.NonSeekable


def write(packets, streams=None, metadata=None, **options) -> bytes:
    if streams is None:
        streams = [StreamHeader("image", "raw", width=4, height=4)]
    buf = io.BytesIO()
    with container.open(buf, "w", **options) as out:
        out.metadata.update(metadata or {})
        for s in streams:
            out.add_stream(s)
        for p in packets:
            out.mux(p)
    return buf.getvalue()


def read_all(data: bytes, **demux) -> list[Packet]:
    with container.open(io.BytesIO(data)) as inp:
        return list(inp.demux(**demux))


def full_header(**kw) -> StreamHeader:
    """A header with every field away from its default."""
    fields = dict(
        media_type="video",
        codec="onedc",
        width=1920,
        height=1080,
        pixel_format="yuv420p10le",
        color=ColorInfo("bt2020", "smpte2084", "bt2020nc", "limited"),
        time_base=Fraction(1, 12800),
        frame_rate=Fraction(60000, 1001),
        codec_params={"q": 2, "f": 0.25, "s": "x", "b": True, "n": None, "l": [1, [2, {}]]},
        model=ModelRef("onedc-sd15", "a" * 64, "b" * 64),
        passthrough=True,
        extradata=bytes(range(256)),
        sample_rate=44100,
        channels=6,
        channel_layout="5.1",
        sample_format="s16",
        metadata={"rotate": "90", "título": "ünïcødé"},
    )
    fields.update(kw)
    return StreamHeader(**fields)


PACKETS = [
    Packet(0, b"key0", pts=0, dts=0, duration=1, keyframe=True),
    Packet(1, b"", pts=None, dts=None),
    Packet(0, b"p1", pts=2, dts=1, duration=1),
    Packet(1, b"\x00" * 3, pts=-5, dts=-(1 << 63), duration=(1 << 63) - 1, keyframe=True),
    Packet(0, b"key1", pts=(1 << 63) - 1, dts=None, keyframe=True),
]


# -- round trips --------------------------------------------------------------------


def test_round_trip_all_fields_through_a_path(tmp_path):
    path = tmp_path / "all.odc"
    streams = [full_header(), StreamHeader("data", "x")]
    with container.open(path, "w") as out:
        out.metadata["title"] = "ünïcødé"
        written = [out.add_stream(s) for s in streams]
        for p in PACKETS:
            out.mux(p)
    assert [s.index for s in written] == [0, 1]
    with container.open(path) as inp:
        assert inp.streams == written
        assert inp.streams[0] == full_header(index=0)
        assert inp.metadata == {"title": "ünïcødé"}
        assert inp.format_version == container.FORMAT_VERSION == 1
        assert inp.file_size == path.stat().st_size
        assert list(inp.demux()) == PACKETS
        assert inp.damage is None


def test_add_stream_normalises_like_the_reader():
    buf = io.BytesIO()
    with container.open(buf, "w") as out:
        h = out.add_stream(
            StreamHeader("image", "x", width=np.int64(5), codec_params={"t": (1, (2, 3))})
        )
    assert h.codec_params == {"t": [1, [2, 3]]} and type(h.width) is int
    assert container.open(io.BytesIO(buf.getvalue())).streams == [h]


def test_defaults_are_left_out_of_the_stream_header():
    data = write([])
    body = data.split(b"STRM", 1)[1]
    assert body.startswith(b'{"codec":"raw","height":4,"index":0,"media_type":"image","width":4}')


@pytest.mark.parametrize("size", [0, 1, (1 << 16) + 3, (3 << 20) + 5])
def test_payload_sizes_round_trip_seekable_and_pipe(size):
    packets = [Packet(0, golden.payload("x", size), pts=0, keyframe=True), Packet(0, b"", pts=1)]
    data = write(packets)
    assert read_all(data) == packets
    with container.open(NonSeekable(data, piece=1 << 20)) as inp:
        assert inp.file_size is None
        assert list(inp.demux()) == packets


def test_empty_files():
    data = write([], streams=[])
    with container.open(io.BytesIO(data)) as inp:
        assert inp.streams == [] and list(inp.demux()) == [] and inp.index == []
    one = write([])
    assert read_all(one) == []


def test_os_pipe_round_trip_while_writing():
    r, w = os.pipe()
    packets = [
        Packet(i % 2, golden.payload(f"p{i}", 5000), pts=i, keyframe=True) for i in range(40)
    ]

    def produce():
        with os.fdopen(w, "wb") as wf, container.open(wf, "w", sync_every_packets=4) as out:
            out.add_stream(StreamHeader("video", "a"))
            out.add_stream(StreamHeader("audio", "b", passthrough=True))
            for p in packets:
                out.mux(p)

    t = threading.Thread(target=produce)
    t.start()
    with os.fdopen(r, "rb") as rf, container.open(rf) as inp:
        assert [s.codec for s in inp.streams] == ["a", "b"]
        got = list(inp.demux())
        with pytest.raises(io.UnsupportedOperation):
            inp.seek(0, 0)
    t.join()
    assert got == packets


def test_a_pipe_is_not_read_past_the_end_chunk():
    data = write(PACKETS, streams=[StreamHeader("data", "a"), StreamHeader("data", "b")])
    pipe = NonSeekable(data + b"\x00\x00\x00\x04next thing in the pipe")
    with container.open(pipe) as inp:
        assert list(inp.demux()) == PACKETS
        assert list(inp.demux()) == [] and inp.damage is None
    assert pipe.read() == b"\x00\x00\x00\x04next thing in the pipe"


def test_demux_selects_streams_and_restarts_on_seekable_files():
    data = write(PACKETS, streams=[StreamHeader("video", "a"), StreamHeader("audio", "b")])
    with container.open(io.BytesIO(data)) as inp:
        assert list(inp.demux(1)) == [p for p in PACKETS if p.stream_index == 1]
        assert list(inp.demux([0])) == [p for p in PACKETS if p.stream_index == 0]
        assert list(inp.demux()) == PACKETS
        with pytest.raises(ValueError):
            inp.demux(2)
        with pytest.raises(ValueError):
            inp.demux(on_damage="ignore")


def test_writes_are_deterministic():
    streams = [full_header(), StreamHeader("audio", "aac")]
    assert write(PACKETS, streams, {"a": "b"}) == write(PACKETS, streams, {"a": "b"})


def test_sync_points_follow_the_intervals():
    packets = [Packet(0, b"x" * 100, pts=i) for i in range(10)]
    assert write(packets, sync_every_packets=3).count(b"sync") == 3
    assert write(packets, sync_every_bytes=200).count(b"sync") == 4
    assert write(packets[:1], sync_every_packets=1).count(b"sync") == 0


# -- the writer: atomic paths, validation -------------------------------------------


def test_path_target_appears_only_on_success(tmp_path):
    path = tmp_path / "out.odc"
    with pytest.raises(RuntimeError), container.open(path, "w") as out:
        out.add_stream(StreamHeader("image", "x"))
        out.mux(Packet(0, b"data"))
        raise RuntimeError("encoder failed")
    assert list(tmp_path.iterdir()) == []
    path.write_bytes(b"old content")
    out = container.open(path, "w")
    out.add_stream(StreamHeader("image", "x"))
    out.abort()
    assert path.read_bytes() == b"old content"
    with container.open(path, "w") as out:
        out.add_stream(StreamHeader("image", "x"))
    assert [p.name for p in tmp_path.iterdir()] == ["out.odc"]
    assert container.is_odc(path.read_bytes())
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_abandoned_writer_leaves_no_temp_file(tmp_path):
    out = container.open(tmp_path / "x.odc", "w")
    out.add_stream(StreamHeader("image", "x"))
    del out
    assert list(tmp_path.iterdir()) == []


def test_file_object_target_left_truncated_on_error():
    buf = io.BytesIO()
    with pytest.raises(RuntimeError), container.open(buf, "w") as out:
        out.add_stream(StreamHeader("image", "x"))
        out.mux(Packet(0, b"data", keyframe=True))
        raise RuntimeError
    inp = container.open(io.BytesIO(buf.getvalue()))
    with pytest.raises(TruncatedError):
        list(inp.demux())


@pytest.mark.parametrize(
    "header",
    [
        StreamHeader("picture", "x"),
        StreamHeader("image", ""),
        StreamHeader("image", "x", width=-1),
        StreamHeader("image", "x", width=1 << 17),
        StreamHeader("image", "x", time_base=Fraction(-1, 2)),
        StreamHeader("image", "x", time_base=0.5),
        StreamHeader("image", "x", codec_params={"a": float("nan")}),
        StreamHeader("image", "x", codec_params={1: 2}),
        StreamHeader("image", "x", codec_params={"a": object()}),
        StreamHeader("image", "x", metadata={"a": 1}),
        StreamHeader("image", "x", passthrough=1),
    ],
)
def test_invalid_stream_headers_are_refused(header):
    with container.open(io.BytesIO(), "w") as out, pytest.raises(ValueError):
        out.add_stream(header)


def test_writer_refuses_misuse():
    out = container.open(io.BytesIO(), "w", limits=Limits(max_packet_size=10, max_streams=1))
    out.add_stream(StreamHeader("image", "x"))
    with pytest.raises(LimitExceededError):
        out.add_stream(StreamHeader("image", "y"))
    small = container.open(io.BytesIO(), "w", limits=Limits(max_header_size=100))
    with pytest.raises(LimitExceededError, match="extradata"):
        small.add_stream(StreamHeader("audio", "aac", extradata=bytes(100)))
    small.metadata["big"] = "x" * 100
    with pytest.raises(LimitExceededError):
        small.close()
    for bad, exc in [
        (Packet(1, b""), ValueError),
        (Packet(0, "text"), TypeError),
        (Packet(0, b"", pts=1 << 63), ValueError),
        (Packet(0, b"", duration=-1), ValueError),
        (Packet(0, b"", pts=1.0), TypeError),
        (Packet(0, b"x" * 11), LimitExceededError),
    ]:
        with pytest.raises(exc):
            out.mux(bad)
    out.mux(Packet(0, memoryview(b"ok")))
    out.mux(Packet(np.int64(0), b"np", pts=np.int64(-3), duration=np.uint8(2), keyframe=np.True_))
    with pytest.raises(ValueError):
        out.add_stream(StreamHeader("image", "z"))
    with pytest.raises(ValueError):
        out.metadata = {"late": "x"}
    with pytest.raises(TypeError):
        out.metadata["late"] = "x"
    out.close()
    assert read_all(out._fp.getvalue())[1] == Packet(0, b"np", -3, None, 2, True)
    with pytest.raises(ValueError):
        out.mux(Packet(0, b""))
    with pytest.raises(ValueError):
        container.open(io.BytesIO(), "a")


# -- golden files -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(golden.expected_files()))
def test_golden_files(name):
    """Committed files read back exactly; today's writer writes them again, byte for byte."""
    expected = golden.expected_files()[name]
    path = GOLDEN / name
    if os.environ.get("GENERATE_EXPECTED"):
        golden.write_all()
    assert golden.read_sums()[name] == golden.hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.read_bytes() == expected
    base = name.removesuffix(".odc")
    source = {"truncated": "av_passthrough", "unknown_ancillary": "small_mixed"}
    case = golden.CASES[source.get(base, base)]()
    with container.open(path) as inp:
        assert [s.index for s in inp.streams] == list(range(len(case.streams)))
        assert inp.streams == [
            container.writer.replace(s, index=i) for i, s in enumerate(case.streams)
        ]
        if name == "truncated.odc":
            got = list(inp.demux(on_damage="stop"))
            assert got == case.packets[: len(got)] and len(got) > 3
            assert "needs" in inp.damage
        else:
            assert inp.metadata == case.metadata
            assert list(inp.demux()) == case.packets
            assert inp.damage is None
            entries = inp.index
            assert inp.index_source == (
                "scan" if not case.options.get("write_index", True) else "trailing"
            )
            keyframes = [p for p in case.packets if p.keyframe]
            assert [(e.stream_index, e.pts) for e in entries] == [
                (p.stream_index, p.pts) for p in keyframes
            ]
            assert [inp.read_packet_at(e) for e in entries] == keyframes


def test_golden_truncated_raises_after_the_prefix():
    with container.open(GOLDEN / "truncated.odc") as inp:
        got = []
        with pytest.raises(TruncatedError) as err:
            for p in inp.demux():
                got.append(p)
    assert str(GOLDEN / "truncated.odc") in str(err.value)
    assert got == golden.CASES["av_passthrough"]().packets[: len(got)]


# -- index and seeking --------------------------------------------------------------


def _seek_file(**options) -> tuple[bytes, list[Packet]]:
    packets = []
    for i in range(20):
        packets.append(Packet(0, bytes([i]) * 50, pts=i * 10, keyframe=i % 5 == 0))
        packets.append(Packet(1, bytes([i]) * 7, pts=i * 3, keyframe=True))
    streams = [StreamHeader("video", "v"), StreamHeader("audio", "a", passthrough=True)]
    return write(packets, streams, sync_every_packets=6, **options), packets


def _check_seeks(inp, packets):
    for target, first in [(0, 0), (45, 0), (50, 50), (99, 50), (120, 100), (1000, 150), (-1, None)]:
        inp.seek(0, target)
        got = next(inp.demux(0))
        if first is None:  # before the first keyframe: from the start
            assert got == packets[0]
        else:
            assert got.pts == first and got.keyframe
    inp.seek(1, 31)
    assert next(inp.demux(1)).pts == 30
    inp.seek(0, 100)
    rest = list(inp.demux(on_damage="stop"))
    assert rest == packets[packets.index(Packet(0, bytes([10]) * 50, 100, None, 0, True)) :]


def test_seek_via_trailing_index():
    data, packets = _seek_file()
    with container.open(io.BytesIO(data)) as inp:
        assert len(inp.index) == 4 + 20 and inp.index_source == "trailing"
        _check_seeks(inp, packets)


def test_seek_via_linear_scan_without_index():
    data, packets = _seek_file(write_index=False)
    with container.open(io.BytesIO(data)) as inp:
        assert len(inp.index) == 24 and inp.index_source == "scan"
        assert inp.damage is None
        _check_seeks(inp, packets)


def test_seek_with_corrupted_index_falls_back_to_scan():
    data, packets = _seek_file()
    at = data.rindex(b"indx") + 10
    bad = data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :]
    with container.open(io.BytesIO(bad)) as inp:
        assert len(inp.index) == 24 and inp.index_source == "scan"
        assert "trailing index unusable" in inp.damage
        _check_seeks(inp, packets)
        with pytest.raises(ChecksumError, match="indx"):  # damage, though ancillary
            list(inp.demux())


def test_seek_in_truncated_file_uses_the_intact_part():
    data, packets = _seek_file()
    cut = data[: len(data) // 2]
    with container.open(io.BytesIO(cut)) as inp:
        entries = inp.index
        assert inp.index_source == "scan" and "needs" in inp.damage
        assert 0 < len(entries) < 24
        assert [inp.read_packet_at(e) for e in entries] == [p for p in packets if p.keyframe][
            : len(entries)
        ]


def test_index_larger_than_the_limit_is_left_out():
    packets = [Packet(0, b"x", pts=i, keyframe=True) for i in range(10)]
    data = write(packets, limits=Limits(max_index_size=20))
    assert b"indx" not in data
    with container.open(io.BytesIO(data)) as inp:
        assert len(inp.index) == 10 and inp.index_source == "scan" and inp.damage is None


def test_read_packet_at_checks_the_entry():
    data, _ = _seek_file()
    with container.open(io.BytesIO(data)) as inp:
        e = inp.index[1]
        for bad in [
            IndexEntry(e.stream_index, 999, e.offset),
            IndexEntry(0, 0, e.offset + 1),
            IndexEntry(0, 0, 3),
            IndexEntry(0, 0, len(data) + 10),
        ]:
            with pytest.raises(OdcFormatError):
                inp.read_packet_at(bad)


def _with_index(data: bytes, entries: list[IndexEntry]) -> bytes:
    """*data* (written without an index) with a hand-made trailing index: intact CRC,
    valid offsets, whatever they point at."""
    body = bodies.uvarint(len(entries))
    prev = 0
    for e in entries:
        body += bodies.encode_index_entry(e, prev)
        prev = e.offset
    head = data[:-28]
    end = bodies.encode_end(len(head), int.from_bytes(data[-16:-4], "big") & ((1 << 64) - 1))
    return head + golden.chunk(b"indx", body) + golden.chunk(b"OEND", end)


def test_index_pointing_into_a_payload_is_damage():
    # A packet whose payload is a whole .odc file holds a valid PCKT chunk; an index
    # entry pointing at it passes the CRC and the entry checks, but that packet is not
    # in the file: seeking must not hand it out.
    inner = write([Packet(0, b"EVIL", pts=10, keyframe=True)], write_index=False)
    data = write(
        [Packet(0, inner, pts=0, keyframe=True), Packet(0, b"good", pts=10, keyframe=True)],
        write_index=False,
    )
    first = data.index(b"PCKT") - 4
    embedded = data.index(b"PCKT", first + 8) - 4
    bad = _with_index(data, [IndexEntry(0, 0, first), IndexEntry(0, 10, embedded)])
    with container.open(io.BytesIO(bad)) as inp:
        assert len(inp.index) == 2 and inp.index_source == "trailing"
        with pytest.raises(OdcFormatError, match="chunk sequence"):
            inp.read_packet_at(IndexEntry(0, 10, embedded))
        inp.seek(0, 10)
        assert [p.data for p in inp.demux()] == [b"good"]
        assert "trailing index unusable" in inp.damage and inp.index_source == "scan"


def test_index_pointing_at_a_non_keyframe_is_damage():
    packets = [Packet(0, b"k", pts=0, keyframe=True), Packet(0, b"p", pts=1)]
    data = write(packets, write_index=False)
    second = data.rindex(b"PCKT") - 4
    bad = _with_index(data, [IndexEntry(0, 1, second)])
    with container.open(io.BytesIO(bad)) as inp:
        inp.seek(0, 1)
        assert list(inp.demux()) == packets  # from the start: no keyframe <= 1 but pts 0
        assert "does not match its index entry" in inp.damage


def test_a_checked_seek_reads_one_packet_once_the_heads_were_walked():
    data, packets = _seek_file()
    with container.open(io.BytesIO(data)) as inp:
        _check_seeks(inp, packets)
        assert inp.damage is None and inp.index_source == "trailing"
        reads = []
        real = inp._src.read
        inp._src.read = lambda n: reads.append(n) or real(n)
        inp.seek(0, 1000)  # walked there before: only the target packet is read
        assert reads == [8, reads[1], 4] and reads[1] > 8


def test_pipe_has_no_index():
    data, packets = _seek_file()
    with container.open(NonSeekable(data)) as inp:
        with pytest.raises(io.UnsupportedOperation):
            _ = inp.index
        with pytest.raises(io.UnsupportedOperation):
            inp.read_packet_at(IndexEntry(0, 0, 100))
        assert list(inp.demux()) == packets


# -- damage ---------------------------------------------------------------------------


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x55]) + data[at + 1 :]


@pytest.mark.parametrize("pipe", [False, True])
def test_on_damage_modes(pipe):
    data, packets = _seek_file()
    starts = [i for i in range(len(data)) if data.startswith(b"PCKT", i)]
    bad = _flip(data, starts[8] + 6)  # inside packet 8's body
    source = (lambda: NonSeekable(bad)) if pipe else (lambda: io.BytesIO(bad))
    with container.open(source()) as inp:
        got = []
        with pytest.raises(ChecksumError):
            for p in inp.demux():
                got.append(p)
        assert got == packets[:8] and "bad CRC in the PCKT chunk" in inp.damage
    with container.open(source()) as inp:
        assert list(inp.demux(on_damage="stop")) == packets[:8]
        assert inp.damage
    with container.open(source()) as inp:
        got = list(inp.demux(on_damage="resync"))
        assert got[:8] == packets[:8] and got[8:] == packets[12:]  # next sync before 12
        assert "bad CRC" in inp.damage


@pytest.mark.parametrize("pipe", [False, True])
def test_resync_after_a_damaged_length(pipe):
    data, packets = _seek_file()
    starts = [i for i in range(len(data)) if data.startswith(b"PCKT", i)]
    at = starts[2] - 3  # the length field of packet 2 now claims ~5 MiB
    bad = data[:at] + b"\x50" + data[at + 1 :]
    with container.open(NonSeekable(bad) if pipe else io.BytesIO(bad)) as inp:
        got = list(inp.demux(on_damage="resync"))
    assert got == packets[:2] + packets[6:]
    assert "2 left" not in inp.damage


def test_dropped_chunks_are_detected_by_the_packet_count():
    data, _ = _seek_file()
    starts = [i for i in range(len(data)) if data.startswith(b"PCKT", i)]
    a, b = starts[1] - 4, starts[2] - 4  # packet 1 becomes an ancillary chunk, same size
    filler = golden.chunk(b"fill", bytes(b - a - 12))
    with pytest.raises(OdcFormatError, match="chunks are missing"):
        read_all(data[:a] + filler + data[b:])
    with pytest.raises(OdcFormatError, match="bad marker or offset"):
        read_all(data[:a] + data[b:])  # removed: the next sync point is misplaced


def test_not_odc_and_empty_inputs(tmp_path):
    with pytest.raises(OdcFormatError, match="bad magic"):
        container.open(io.BytesIO(b"\x89PNG\r\n\x1a\n" + bytes(100)))
    for prefix in [b"", container.MAGIC[:5], container.MAGIC]:
        with pytest.raises(TruncatedError):
            container.open(io.BytesIO(prefix))
    path = tmp_path / "e.odc"
    path.write_bytes(b"")
    with pytest.raises(TruncatedError) as err:
        container.open(path)
    assert err.value.filename == str(path) and str(path) in str(err.value)
    with pytest.raises(FileNotFoundError):
        container.open(tmp_path / "missing.odc")
    with pytest.raises(TypeError):
        container.open(io.StringIO("text"))


def _rechunk(data: bytes, ctype: bytes, new_body: bytes, new_type: bytes | None = None) -> bytes:
    """Replace the first chunk of *ctype* with a new, correctly framed one."""
    at = data.index(ctype) - 4
    (length,) = struct.unpack(">I", data[at : at + 4])
    return data[:at] + golden.chunk(new_type or ctype, new_body) + data[at + 12 + length :]


def test_versions():
    data = write([Packet(0, b"x")])
    body = data[16 : 16 + struct.unpack(">I", data[8:12])[0]]
    with pytest.raises(UnsupportedVersionError, match="upgrade"):
        container.open(io.BytesIO(_rechunk(data, b"OHDR", b"\x00\x02\x00\x02" + body[4:])))
    newer = _rechunk(data, b"OHDR", b"\x00\x07\x00\x01" + body[4:])
    with container.open(io.BytesIO(newer)) as inp:  # a newer minor version: readable
        assert inp.format_version == 7 and inp.min_reader_version == 1
        assert len(list(inp.demux())) == 1
    with pytest.raises(OdcFormatError):
        container.open(io.BytesIO(_rechunk(data, b"OHDR", b"\x00\x01\x00\x02" + body[4:])))


def test_unknown_chunks():
    data = write([Packet(0, b"x"), Packet(0, b"y")])
    pkt = data.index(b"PCKT") - 4
    extra = golden.chunk(b"xtRa", b"new ancillary")
    assert read_all(data[:pkt] + extra + data[pkt:]) == read_all(data)
    crit = golden.chunk(b"XTRA", b"new critical")
    with pytest.raises(OdcFormatError, match="critical chunk b'XTRA'"):
        read_all(data[:pkt] + crit + data[pkt:])
    with pytest.raises(OdcFormatError, match="bad chunk type"):
        read_all(data[:pkt] + golden.chunk(b"PK T", b"") + data[pkt:])
    newer_stream = json.dumps({"codec": "x", "index": 0, "media_type": "image", "hdr10": 1})
    changed = _rechunk(data, b"STRM", newer_stream.encode())
    assert container.open(io.BytesIO(changed)).streams[0] == StreamHeader("image", "x", index=0)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        b'{"codec":"x","index":0}',
        b'{"codec":"x","index":1,"media_type":"image"}',
        b'{"codec":"x","index":0,"media_type":"image","codec":"y"}',
        b'{"codec":"x","index":0,"media_type":"image","width":1.5}',
        b'{"codec":"x","index":0,"media_type":"image","width":true}',
        b'{"codec":"x","index":0,"media_type":"image","time_base":[1,0]}',
        b'{"codec":"x","index":0,"media_type":"image","extradata":"***"}',
        b'{"codec":"x","index":0,"media_type":"image","model":{"name":"m"}}',
        b'{"codec":"x","index":0,"media_type":"image","codec_params":{"a":NaN}}',
        b'{"codec":"x","index":0,"media_type":"image","codec_params":{"a":1e999}}',
        b'{"codec":"x","index":0,"media_type":"image","metadata":{"a":1}}',
        b"[" * 100000,
        b"\xff\xfe",
    ],
)
def test_bad_stream_headers_are_format_errors(body):
    data = write([Packet(0, b"x")])
    with pytest.raises(OdcFormatError):
        container.open(io.BytesIO(_rechunk(data, b"STRM", body)))


# -- limits and allocation ------------------------------------------------------------


def _hostile(length: int) -> bytes:
    """A valid header, then a packet chunk that claims *length* bytes and ends."""
    data = write([])
    return data[: data.index(b"indx") - 4] + struct.pack(">I", length) + b"PCKT" + b"tiny"


@pytest.mark.parametrize("pipe", [False, True])
def test_huge_declared_lengths_allocate_nothing(pipe):
    data = _hostile(200 << 20)
    tracemalloc.start()
    try:
        with container.open(NonSeekable(data, 1 << 20) if pipe else io.BytesIO(data)) as inp:
            with pytest.raises(TruncatedError):
                list(inp.demux())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (2 << 20)


class _ZerosInside(io.RawIOBase):
    """A pipe over *head*, then *zeros* zero bytes made on demand, then *tail*: a large
    chunk that never sits in this process's memory as a whole."""

    def __init__(self, head: bytes, zeros: int, tail: bytes) -> None:
        self._parts = [head, zeros, tail]

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while self._parts:
            part = self._parts[0]
            if isinstance(part, int):
                n = min(len(b), part, 1 << 16)
                b[:n] = bytes(n)
                self._parts[0] = part - n
            else:
                n = min(len(b), len(part))
                b[:n] = part[:n]
                self._parts[0] = part[n:]
            if n:
                return n
            self._parts.pop(0)
        return 0


def _with_big_ancillary(size: int, damaged: bool = False) -> tuple[bytes, bytes, list[Packet]]:
    """(bytes before the body, bytes after it, packets): packet 0, an unknown ancillary
    chunk with a *size*-byte zero body, a sync point, packets 1 to 3, no index."""
    packets = [Packet(0, bytes([i]) * 5, pts=i, keyframe=True) for i in range(4)]
    head = write(packets[:1], write_index=False)[:-28]  # without OEND
    crc = zlib.crc32(b"junk")
    block = bytes(1 << 20)
    for _ in range(size >> 20):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(bytes(size & ((1 << 20) - 1)), crc) ^ damaged
    sync_at = len(head) + 12 + size
    sync = golden.chunk(b"sync", bodies.SYNC_MARKER + struct.pack(">QQ", sync_at, 1))
    rest = b"".join(
        golden.chunk(b"PCKT", bodies.encode_packet_header(p) + p.data) for p in packets[1:]
    )
    end = golden.chunk(b"OEND", struct.pack(">QQ", 0, len(packets)))
    return (
        head + struct.pack(">I", size) + b"junk",
        struct.pack(">I", crc) + sync + rest + end,
        packets,
    )


@pytest.mark.parametrize("damaged", [False, True])
def test_skipped_chunk_on_a_pipe_is_not_kept(damaged):
    # The reader keeps the bytes of the chunk it reads on a pipe, to search inside it
    # after damage, but never those of a body it skips: a hostile 48 MiB ancillary
    # chunk costs no more memory than a small one.
    head, tail, packets = _with_big_ancillary(48 << 20, damaged)
    tracemalloc.start()
    try:
        with container.open(_ZerosInside(head, 48 << 20, tail)) as inp:
            got = list(inp.demux(on_damage="resync"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (6 << 20)
    if damaged:  # searched forward from the end of the bad chunk: the sync after it
        assert got == packets and "bad CRC in the junk chunk" in inp.damage
    else:
        assert got == packets and inp.damage is None


def test_limits():
    with pytest.raises(LimitExceededError):
        read_all(_hostile(300 << 20))
    with pytest.raises(OdcFormatError, match="declares"):
        read_all(_hostile(1 << 31))
    data = write([Packet(0, b"x" * 100)])
    with pytest.raises(LimitExceededError):
        list(container.open(io.BytesIO(data), limits=Limits(max_packet_size=10)).demux())
    with pytest.raises(LimitExceededError):
        container.open(io.BytesIO(data), limits=Limits(max_header_size=20))
    three = write([], streams=[StreamHeader("data", "x")] * 3)
    with pytest.raises(LimitExceededError):
        container.open(io.BytesIO(three), limits=Limits(max_streams=2))


# -- the info command ---------------------------------------------------------------


def test_info_text_and_json(capsys):
    path = str(GOLDEN / "image_single.odc")
    assert cli_main(["info", path]) == 0
    out = capsys.readouterr().out
    assert "onedc" in out and "768x512" in out and golden._MODEL.sha256 in out
    assert "bpp" in out and "file bytes" in out
    assert cli_main(["info", "--json", path]) == 0
    info = json.loads(capsys.readouterr().out)
    size = (GOLDEN / "image_single.odc").stat().st_size
    assert info["file_bytes"] == size
    assert info["packets"] == 1 and info["payload_bytes"] == 300
    assert info["framing_bytes"] == size - 300
    s = info["streams"][0]
    assert s["model"]["sha256"] == golden._MODEL.sha256
    assert s["bpp"] == pytest.approx(size * 8 / (768 * 512))
    assert s["bpp_basis"] == "file"


def test_info_multi_stream_uses_payload_bpp(capsys):
    assert cli_main(["info", "--json", str(GOLDEN / "av_passthrough.odc")]) == 0
    info = json.loads(capsys.readouterr().out)
    video, audio, _ = info["streams"]
    assert video["bpp_basis"] == "payload" and video["packets"] == 7
    assert video["bpp"] == pytest.approx(video["payload_bytes"] * 8 / (320 * 240 * 7))
    assert audio["bpp"] is None and audio["passthrough"] and audio["extradata_bytes"] == 2
    assert info["metadata"]["title"] == "golden clip"
    assert info["packets"] == 15


@pytest.mark.parametrize("name", ["truncated.odc", "garbage"])
def test_info_bad_file_is_one_line_exit_1(tmp_path, capsys, name):
    path = GOLDEN / name
    if name == "garbage":
        path = tmp_path / name
        path.write_bytes(b"garbage" * 10)
    assert cli_main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("onedc-media: error:")


def test_info_does_not_import_torch():
    code = (
        "import sys; from onedc_media.cli.main import main; "
        f"rc = main(['info', {str(GOLDEN / 'av_passthrough.odc')!r}]); "
        "assert rc == 0; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_import_is_light():
    code = "import sys, onedc_media.container; assert not {'torch', 'av'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
