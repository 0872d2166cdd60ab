"""The still form of ``.odc``: layout, golden files, the codec table, damage and limits."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import sys
import zlib
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from onedc_media import container
from onedc_media.container import ColorInfo, Limits, ModelRef, StreamHeader, still
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

SRGB = still.STILL_COLOR
MODEL = ModelRef("onedc-tiny", hashlib.sha256(b"weights").hexdigest(), hashlib.sha256(b"p").hexdigest())


def onedc_header(**kw) -> StreamHeader:
    base = dict(width=768, height=512, color=SRGB, codec_params={"quality": 3}, model=MODEL)
    return StreamHeader("image", "onedc", **{**base, **kw})


def still_bytes(header: StreamHeader, payload: bytes) -> bytes:
    buf = io.BytesIO()
    n = container.write_still(buf, header, payload)
    assert n == len(buf.getvalue())
    return buf.getvalue()


def read(data: bytes, **kw) -> tuple[container.InputContainer, list[container.Packet]]:
    inp = container.open(io.BytesIO(data), **kw)
    return inp, list(inp.demux())


# -- layout ----------------------------------------------------------------------------


def test_the_codec_table_is_frozen():
    """Ids are on disk: a change here would make old stills name another codec."""
    assert dict(container.CODEC_IDS) == {
        "onedc": 1, "jpeg": 2, "webp": 3, "png": 4, "avif": 5, "hevc-intra": 6,
    }  # fmt: skip
    assert still.ESCAPE == 0 and still.MODEL_ID_BYTES == 8 and still.STILL_VERSION == 1


def test_every_bundled_codec_is_in_the_table():
    import onedc_media

    bundled = {c.name for c in onedc_media.default_plugins().codecs}
    assert bundled <= set(container.CODEC_IDS)


@pytest.mark.parametrize("codec,model,framing", [("onedc", True, 29), ("jpeg", False, 21)])
def test_framing_of_a_single_picture(codec, model, framing):
    """At most 32 bytes around the payload; the layout in docs/odc-format.md, byte for byte."""
    payload = golden.payload("p", 1500)
    header = StreamHeader("image", codec, width=768, height=512, color=SRGB,
                          model=MODEL if model else None)  # fmt: skip
    data = still_bytes(header, payload)
    assert len(data) - len(payload) == framing <= 32
    model_id = bytes.fromhex(MODEL.sha256[:16]) if model else b""
    head = (container.MAGIC + bytes((0x81, 1 if model else 0, container.CODEC_IDS[codec]))
            + b"\x80\x06\x80\x04" + model_id + b"\xdc\x0b")  # 768, 512, 1500 as uvarints
    assert data == head + payload + zlib.crc32(head + payload).to_bytes(4, "big")


def test_round_trip_through_a_path_and_a_pipe(tmp_path):
    header, payload = onedc_header(), golden.payload("x", 777)
    path = tmp_path / "a.odc"
    assert container.write_still(path, header, payload) == path.stat().st_size
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    want = still.still_header(header)
    assert want.codec_params == {} and want.model == ModelRef("", MODEL.sha256[:16])
    for source in (path, golden.NonSeekable(path.read_bytes(), piece=5)):
        with container.open(source) as inp:
            assert inp.form == "still" and inp.format_version == 1
            assert inp.streams == [want]
            assert container.is_model_id(inp.streams[0].model)
            assert inp.metadata == {}
            assert list(inp.demux()) == [container.Packet(0, payload, pts=0, duration=1, keyframe=True)]
            assert list(inp.demux(0)) == list(inp.demux())  # kept: a pipe is read once
            assert inp.damage is None


def test_index_seek_and_read_packet_at():
    data = still_bytes(onedc_header(), b"abc")
    inp, packets = read(data)
    assert inp.index == [container.IndexEntry(0, 0, 8)] and inp.index_source == "still"
    assert inp.read_packet_at(inp.index[0]) == packets[0]
    inp.seek(0, 10)
    assert list(inp.demux()) == packets
    with pytest.raises(OdcFormatError):
        inp.read_packet_at(container.IndexEntry(0, 0, 9))
    stats = container.measure(inp)
    assert stats.file_bytes == len(data) and stats.payload_bytes == 3 and stats.framing_bytes == len(data) - 3
    assert stats.streams[0].bpp == len(data) * 8 / (768 * 512)


def test_stream_form_files_are_told_apart():
    buf = io.BytesIO()
    with container.open(buf, "w") as out:
        out.add_stream(onedc_header())
        out.mux(container.Packet(0, b"x", pts=0, keyframe=True))
    with container.open(io.BytesIO(buf.getvalue())) as inp:
        assert inp.form == "stream" and inp.streams[0].model == MODEL


def test_a_third_party_codec_keeps_its_name_and_params():
    header = StreamHeader("image", "acme-wavelet", width=3, height=2, color=SRGB,
                          codec_params={"levels": [1, 2], "x": "é"})  # fmt: skip
    inp, _ = read(still_bytes(header, b"p"))
    assert inp.streams[0].codec == "acme-wavelet"
    assert inp.streams[0].codec_params == {"levels": [1, 2], "x": "é"}


def test_colour_other_than_srgb_is_stored_as_code_points():
    colour = ColorInfo("bt2020", "smpte2084", "bt2020nc", "limited")
    data = still_bytes(onedc_header(color=colour), b"p")
    assert bytes((9, 16, 9, 1)) in data[:40]
    inp, _ = read(data)
    assert inp.streams[0].color == colour
    with pytest.raises(ValueError, match="H.273"):
        still_bytes(onedc_header(color=ColorInfo("weird", "bt709", "bt709", "full")), b"p")


@pytest.mark.parametrize("change", [
    {"media_type": "video"}, {"pixel_format": "yuv420p"}, {"metadata": {"a": "b"}},
    {"time_base": Fraction(1, 25)}, {"frame_rate": Fraction(25)},
    {"width": 0}, {"codec": "bad name"}, {"model": ModelRef("x", "not hex")},
])  # fmt: skip
def test_what_a_still_cannot_hold_is_refused(change):
    with pytest.raises((ValueError, TypeError)):
        still_bytes(replace(onedc_header(), **change), b"p")


# -- golden files ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(golden.expected_still_files()))
def test_golden_still_files(name):
    expected = golden.expected_still_files()[name]
    path = GOLDEN / name
    assert golden.read_sums()[name] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.read_bytes() == expected
    base = name.removesuffix(".odc")
    case = golden.STILL_CASES[{"still_truncated": "still_onedc"}.get(base, base)]()
    with container.open(path) as inp:
        assert inp.form == "still"
        assert inp.streams == [still.still_header(case.header)]
        if base == "still_truncated":
            with pytest.raises(TruncatedError):
                list(inp.demux())
            assert "needs" in inp.damage
        else:
            assert [p.data for p in inp.demux()] == [case.payload]


def test_the_still_golden_file_is_smaller_than_the_stream_one():
    assert (GOLDEN / "still_onedc.odc").stat().st_size + 400 < (GOLDEN / "image_single.odc").stat().st_size


# -- damage and limits -------------------------------------------------------------------


def test_every_flipped_bit_is_detected():
    data = (GOLDEN / "still_third_party.odc").read_bytes()
    for i in range(8, len(data)):
        for bit in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= bit
            try:
                with container.open(io.BytesIO(bytes(bad))) as inp:
                    list(inp.demux())
            except OdcFormatError:
                continue
            pytest.fail(f"flipping bit {bit:#x} of byte {i} went unnoticed")


def test_every_truncation_is_a_typed_error():
    data = (GOLDEN / "still_jpeg_bt601.odc").read_bytes()
    for n in range(len(data)):
        for source in (io.BytesIO(data[:n]), golden.NonSeekable(data[:n], piece=3)):
            with pytest.raises(OdcFormatError):
                with container.open(source) as inp:
                    list(inp.demux())


def test_damage_modes():
    data = bytearray((GOLDEN / "still_onedc.odc").read_bytes())
    data[-10] ^= 0xFF
    for mode in ("stop", "resync"):
        inp = container.open(io.BytesIO(bytes(data)))
        assert list(inp.demux(on_damage=mode)) == []
        assert "CRC" in inp.damage
        with pytest.raises(ChecksumError):
            inp.read_packet_at(inp.index[0])


def test_declared_sizes_are_bounded_before_reading():
    header, payload = onedc_header(width=300), b"p" * 100
    data = still_bytes(header, payload)
    with pytest.raises(LimitExceededError, match="width"):
        container.open(io.BytesIO(data), limits=Limits(max_dimension=256))
    with pytest.raises(LimitExceededError, match="payload length"):
        container.open(io.BytesIO(data), limits=Limits(max_packet_size=99))
    # a payload length far beyond the file: truncation, found before any read
    assert data[23] == 100  # the payload length, after 8 + 3 + 2 + 2 + 8 bytes
    huge = data[:23] + b"\xff\xff\xff\x7f" + data[24:]
    with container.open(io.BytesIO(huge)) as inp, pytest.raises(TruncatedError, match="needs"):
        list(inp.demux())


def test_unknown_versions_codecs_and_flags():
    data = bytearray(still_bytes(onedc_header(), b"p"))
    newer = bytes(data[:8]) + b"\x82" + bytes(data[9:])
    with pytest.raises(UnsupportedVersionError, match="upgrade"):
        container.open(io.BytesIO(newer))
    unknown_codec = bytes(data[:10]) + b"\x63" + bytes(data[11:])
    with pytest.raises(UnsupportedVersionError, match="codec id 99"):
        container.open(io.BytesIO(unknown_codec))
    reserved = bytes(data[:9]) + b"\x09" + bytes(data[10:])
    with pytest.raises(OdcFormatError, match="reserved"):
        container.open(io.BytesIO(reserved))
