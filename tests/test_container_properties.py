"""Properties of the .odc container (hypothesis), and exhaustive damage sweeps.

- random packet streams and random stream headers round-trip, seekable or piped;
- every single-byte corruption of a small file is detected: the reader yields a prefix
  of the true packets and then raises an ``OdcFormatError`` - never a wrong packet;
- every truncation point yields the intact prefix and a ``TruncatedError``;
- declared lengths never make the reader allocate more than the file holds.
"""

from __future__ import annotations

import importlib.util
import io
import struct
import sys
import tracemalloc
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onedc_media import container
from onedc_media.codec import ModelRef
from onedc_media.container import ColorInfo, Packet, StreamHeader
from onedc_media.container.source import SAFEBLOCK
from onedc_media.errors import OdcFormatError, TruncatedError

GOLDEN = Path(__file__).parent / "golden"
_spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
golden = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("make_golden", golden)
_spec.loader.exec_module(golden)

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INT64 = st.integers(-(1 << 63), (1 << 63) - 1)


# -- strategies -----------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | INT64
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
short_text = st.text(max_size=12)
rationals = st.builds(Fraction, st.integers(1, (1 << 31) - 1), st.integers(1, 1000))

headers = st.builds(
    StreamHeader,
    media_type=st.sampled_from(["video", "image", "audio", "data"]),
    codec=st.text(min_size=1, max_size=12),
    width=st.integers(0, 1 << 16),
    height=st.integers(0, 1 << 16),
    pixel_format=short_text,
    color=st.builds(ColorInfo, short_text, short_text, short_text, short_text),
    time_base=rationals,
    frame_rate=st.none() | rationals,
    codec_params=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    model=st.none() | st.builds(ModelRef, short_text, short_text, short_text),
    passthrough=st.booleans(),
    extradata=st.binary(max_size=40),
    sample_rate=st.integers(0, 192000),
    channels=st.integers(0, 64),
    channel_layout=short_text,
    sample_format=short_text,
    metadata=st.dictionaries(short_text, short_text, max_size=3),
)


@st.composite
def packet_streams(draw):
    n_streams = draw(st.integers(1, 3))
    packet = st.builds(
        Packet,
        stream_index=st.integers(0, n_streams - 1),
        data=st.binary(max_size=64),
        pts=st.none() | INT64,
        dts=st.none() | INT64,
        duration=st.integers(0, (1 << 63) - 1),
        keyframe=st.booleans(),
    )
    packets = draw(st.lists(packet, max_size=25))
    options = {
        "sync_every_packets": draw(st.integers(1, 6)),
        "sync_every_bytes": draw(st.integers(1, 400)),
        "write_index": draw(st.booleans()),
    }
    return n_streams, packets, options


def _write(n_streams: int, packets: list[Packet], **options) -> bytes:
    buf = io.BytesIO()
    with container.open(buf, "w", **options) as out:
        for i in range(n_streams):
            out.add_stream(StreamHeader("video", f"c{i}"))
        for p in packets:
            out.mux(p)
    return buf.getvalue()


# -- round trips ----------------------------------------------------------------------


@SETTINGS
@given(packet_streams())
def test_random_packet_streams_round_trip(case):
    n_streams, packets, options = case
    data = _write(n_streams, packets, **options)
    assert data == _write(n_streams, packets, **options)  # deterministic
    with container.open(io.BytesIO(data)) as inp:
        assert list(inp.demux()) == packets and inp.damage is None
        keyframes = [p for p in packets if p.keyframe]
        entries = inp.index
        assert inp.index_source == ("trailing" if options["write_index"] else "scan")
        assert [inp.read_packet_at(e) for e in entries] == keyframes
    with container.open(golden.NonSeekable(data, piece=5)) as inp:
        assert list(inp.demux()) == packets


@SETTINGS
@given(st.lists(headers, min_size=1, max_size=3), st.dictionaries(short_text, short_text))
def test_random_stream_headers_round_trip(streams, metadata):
    buf = io.BytesIO()
    with container.open(buf, "w") as out:
        out.metadata = metadata
        written = [out.add_stream(h) for h in streams]
    with container.open(io.BytesIO(buf.getvalue())) as inp:
        assert inp.streams == written
        assert inp.metadata == metadata


# -- exhaustive damage sweeps over a small file ---------------------------------------

SMALL = (GOLDEN / "small_mixed.odc").read_bytes()
SMALL_PACKETS = golden.CASES["small_mixed"]().packets


def _chunk_ends(data: bytes) -> list[tuple[int, bytes]]:
    """(end offset, type) of every chunk, framed by hand."""
    out, pos = [], len(container.MAGIC)
    while pos < len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        pos += 12 + length
        out.append((pos, ctype))
    return out


def _packet_offsets(data: bytes) -> dict[int, Packet]:
    offsets = {}
    pos, k = len(container.MAGIC), 0
    for end, ctype in _chunk_ends(data):
        if ctype == b"PCKT":
            offsets[pos] = SMALL_PACKETS[k]
            k += 1
        pos = end
    return offsets


def _is_subsequence(got: list[Packet], full: list[Packet]) -> bool:
    it = iter(full)
    return all(any(p == q for q in it) for p in got)


def _read_damaged(data: bytes, by_offset: dict[int, Packet]) -> bool:
    """Read *data* every way; check nothing wrong comes out. True if damage was seen."""
    try:
        inp = container.open(io.BytesIO(data))
    except OdcFormatError:
        return True
    with inp:
        got: list[Packet] = []
        try:
            for p in inp.demux():
                got.append(p)
            raised = False
        except OdcFormatError:
            raised = True
        assert got == SMALL_PACKETS[: len(got)]
        for entry in inp.index:
            try:
                packet = inp.read_packet_at(entry)
            except OdcFormatError:
                continue
            assert packet == by_offset[entry.offset]
        assert _is_subsequence(list(inp.demux(on_damage="resync")), SMALL_PACKETS)
        assert list(inp.demux(on_damage="stop")) == got
    with container.open(golden.NonSeekable(data, piece=64)) as pipe:
        assert _is_subsequence(list(pipe.demux(on_damage="resync")), SMALL_PACKETS)
    return raised


def test_every_single_byte_corruption_is_detected():
    by_offset = _packet_offsets(SMALL)
    assert len(by_offset) == len(SMALL_PACKETS)
    assert not _read_damaged(SMALL, by_offset)
    missed = []
    for at in range(len(SMALL)):
        for mask in (0x01, 0x80, 0xFF):
            bad = SMALL[:at] + bytes([SMALL[at] ^ mask]) + SMALL[at + 1 :]
            if not _read_damaged(bad, by_offset):
                missed.append((at, mask))
    assert missed == []


@pytest.mark.parametrize("pipe", [False, True])
def test_every_truncation_yields_the_intact_prefix(pipe):
    ends = _chunk_ends(SMALL)
    for n in range(len(SMALL)):
        cut = SMALL[:n]
        intact = sum(1 for end, ctype in ends if ctype == b"PCKT" and end <= n)
        source = golden.NonSeekable(cut, piece=11) if pipe else io.BytesIO(cut)
        try:
            inp = container.open(source)
        except TruncatedError:
            assert intact == 0
            continue
        with inp:
            got = []
            with pytest.raises(TruncatedError):
                for p in inp.demux():
                    got.append(p)
            assert got == SMALL_PACKETS[:intact], n
            assert "ends" in inp.damage or "needs" in inp.damage
            if not pipe:
                entries = inp.index
                assert inp.index_source == "scan"
                assert [inp.read_packet_at(e) for e in entries] == [
                    p for p in SMALL_PACKETS[:intact] if p.keyframe
                ]
                assert list(inp.demux(on_damage="resync")) == got


# -- random damage --------------------------------------------------------------------


@SETTINGS
@given(
    st.lists(
        st.tuples(st.integers(0, len(SMALL) - 1), st.binary(min_size=1, max_size=6)),
        min_size=1,
        max_size=4,
    )
)
def test_random_overwrites_never_yield_a_wrong_packet(edits):
    data = bytearray(SMALL)
    for at, junk in edits:
        data[at : at + len(junk)] = junk
    data = bytes(data[: len(SMALL)])
    for mode in ("raise", "stop", "resync"):
        for source in (io.BytesIO(data), golden.NonSeekable(data, piece=13)):
            try:
                with container.open(source) as inp:
                    got = []
                    try:
                        for p in inp.demux(on_damage=mode):
                            got.append(p)
                    except OdcFormatError:
                        assert mode == "raise"
            except OdcFormatError:
                continue
            assert _is_subsequence(got, SMALL_PACKETS)
            if mode != "resync":
                assert got == SMALL_PACKETS[: len(got)]


@SETTINGS
@given(st.data())
def test_declared_lengths_never_allocate_beyond_the_file(data):
    ends = _chunk_ends(SMALL)
    starts = [len(container.MAGIC)] + [end for end, _ in ends[:-1]]
    at = data.draw(st.sampled_from(starts))
    length = data.draw(st.integers(0, (1 << 32) - 1))
    bad = SMALL[:at] + struct.pack(">I", length) + SMALL[at + 4 :]
    for pipe in (False, True):
        source = golden.NonSeekable(bad, piece=1 << 20) if pipe else io.BytesIO(bad)
        tracemalloc.start()
        try:
            try:
                with container.open(source) as inp:
                    list(inp.demux(on_damage="resync"))
            except OdcFormatError:
                pass
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < len(bad) + (SAFEBLOCK if pipe else 0) + (256 << 10)
