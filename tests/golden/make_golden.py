"""Golden ``.odc`` files: what each holds, how it is written, and helpers for the tests.

Each case is plain data (file metadata, stream headers, packets, writer options; for the
still form, one stream header and one payload: ``STILL_CASES``). The tests check that today's reader reads every committed file back to exactly that data,
and that today's writer, given the same calls, writes the committed bytes again.

Regenerate (only after a deliberate format change, with a version bump per
``docs/odc-format.md``)::

    GENERATE_EXPECTED=1 pytest tests/test_container.py -k golden
    # or
    python tests/golden/make_golden.py

``SHA256SUMS`` records the digest of every file, as CompressAI's md5 files do.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from onedc_media import container
from onedc_media.codec import ModelRef
from onedc_media.container import ColorInfo, Packet, StreamHeader

HERE = Path(__file__).resolve().parent
SUMS = HERE / "SHA256SUMS"


@dataclass(frozen=True)
class Case:
    streams: list[StreamHeader]
    packets: list[Packet]
    metadata: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


def payload(tag: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes."""
    blocks = -(-size // 32)
    return b"".join(hashlib.sha256(f"{tag}/{i}".encode()).digest() for i in range(blocks))[:size]


_MODEL = ModelRef(
    "onedc-sd15-q3",
    hashlib.sha256(b"synthesis weights").hexdigest(),
    hashlib.sha256(b"parsing weights").hexdigest(),
)


def _image_single() -> Case:
    stream = StreamHeader(
        "image",
        "onedc",
        width=768,
        height=512,
        codec_params={"quality": 3, "fsq_levels": [4] * 7, "pad": 64},
        model=_MODEL,
    )
    return Case([stream], [Packet(0, payload("image", 300), pts=0, keyframe=True)])


def _av_passthrough() -> Case:
    video = StreamHeader(
        "video",
        "onedc",
        width=320,
        height=240,
        pixel_format="yuv420p",
        color=ColorInfo("bt709", "bt709", "bt709", "limited"),
        time_base=Fraction(1, 90000),
        frame_rate=Fraction(30000, 1001),
        codec_params={"quality": 1, "inter": {"codec": "hevc", "gop": 4}, "scale": 0.5},
        model=_MODEL,
        metadata={"rotate": "90"},
    )
    audio = StreamHeader(
        "audio",
        "aac",
        time_base=Fraction(1, 48000),
        passthrough=True,
        extradata=bytes.fromhex("1190"),
        sample_rate=48000,
        channels=2,
        channel_layout="stereo",
        sample_format="fltp",
        codec_params={"profile": "LC", "bit_rate": 128000},
        metadata={"language": "eng"},
    )
    data = StreamHeader("data", "onedc-keyframe-checksum", metadata={"note": "crc per gop"})
    packets = []
    for i in range(6):
        pts = i * 3003
        packets.append(Packet(0, payload(f"v{i}", 40 if i % 3 else 90), pts, pts, 3003, i % 3 == 0))
        packets.append(Packet(1, payload(f"a{i}", 24), i * 1024, i * 1024, 1024, True))
        if i % 3 == 2:
            packets.append(Packet(2, b"", None, None, 0, False))
    packets.append(Packet(0, payload("b-frame", 30), 18018, 15015, 3003, False))
    return Case(
        [video, audio, data],
        packets,
        metadata={"title": "golden clip", "encoder": "onedc-media golden"},
        options={"sync_every_packets": 4},
    )


def _no_index() -> Case:
    stream = StreamHeader("image", "png", width=16, height=16, codec_params={"compression": 9})
    packets = [Packet(0, payload(f"p{i}", 20 + i), pts=i, keyframe=True) for i in range(3)]
    return Case([stream], packets, options={"write_index": False, "sync_every_bytes": 60})


def _small_mixed() -> Case:
    """Small but complete (2 streams, sync points, index): the file the exhaustive
    corruption and truncation tests run over."""
    video = StreamHeader("video", "jpeg", width=8, height=8, time_base=Fraction(1, 25))
    audio = StreamHeader("audio", "opus", passthrough=True, extradata=b"OpusHead", channels=1)
    packets = []
    for i in range(5):
        packets.append(Packet(0, payload(f"sv{i}", 12), i, i, 1, i % 2 == 0))
        packets.append(Packet(1, payload(f"sa{i}", 5), i * 960, None, 960, True))
    return Case([video, audio], packets, options={"sync_every_packets": 3})


CASES = {
    "image_single": _image_single,
    "av_passthrough": _av_passthrough,
    "no_index": _no_index,
    "small_mixed": _small_mixed,
}


@dataclass(frozen=True)
class StillCase:
    """One picture in the still form: the stream header given to the writer, the payload."""

    header: StreamHeader
    payload: bytes


_SRGB = ColorInfo("bt709", "iec61966-2-1", "gbr", "full")


def _still_onedc() -> StillCase:
    """``image_single``'s picture in the still form (model id, no params: onedc is in the table)."""
    single = _image_single()
    return StillCase(replace(single.streams[0], color=_SRGB), single.packets[0].data)


def _still_jpeg_bt601() -> StillCase:
    """A table codec without a model, with a colour other than the still default."""
    colour = ColorInfo("smpte170m", "smpte170m", "smpte170m", "limited")
    header = StreamHeader("image", "jpeg", width=16, height=9, color=colour, codec_params={"quality": 75})
    return StillCase(header, payload("jpeg", 40))


def _still_third_party() -> StillCase:
    """A codec outside the table: its name and its parameters are stored."""
    header = StreamHeader(
        "image", "acme-wavelet", width=33, height=17, color=_SRGB,
        codec_params={"levels": 5, "filter": "9/7"}, model=_MODEL,
    )  # fmt: skip
    return StillCase(header, payload("acme", 25))


STILL_CASES = {
    "still_onedc": _still_onedc,
    "still_jpeg_bt601": _still_jpeg_bt601,
    "still_third_party": _still_third_party,
}


def build_still(case: StillCase) -> bytes:
    buf = io.BytesIO()
    container.write_still(buf, case.header, case.payload)
    return buf.getvalue()


def expected_still_files() -> dict[str, bytes]:
    """The still-form conformance files; ``still_truncated`` is ``still_onedc`` cut short."""
    files = {f"{name}.odc": build_still(make()) for name, make in STILL_CASES.items()}
    files["still_truncated.odc"] = files["still_onedc.odc"][:-40]
    return files


def build(case: Case) -> bytes:
    """Write *case* with today's writer."""
    buf = io.BytesIO()
    with container.open(buf, "w", **case.options) as out:
        out.metadata.update(case.metadata)
        for header in case.streams:
            out.add_stream(header)
        for packet in case.packets:
            out.mux(packet)
    return buf.getvalue()


def chunk(ctype: bytes, body: bytes) -> bytes:
    """One chunk, framed independently of the library (for hand-made files)."""
    return (
        struct.pack(">I4s", len(body), ctype) + body + struct.pack(">I", zlib.crc32(ctype + body))
    )


class _InjectingWriter(container.OutputContainer):
    """Adds unknown ancillary chunks (which readers must skip) after OHDR, after the
    first packet and before the index, with every offset in the file still right."""

    def _write(self, data: Any) -> None:
        if self._pos == 0:  # the magic, OHDR and the STRM chunks, in one piece
            cut = 8 + 12 + struct.unpack(">I", bytes(data[8:12]))[0]
            super()._write(data[:cut])
            super()._write(chunk(b"zzZz", b"private, skippable"))
            data = data[cut:]
        super()._write(data)

    def mux(self, packet: Packet) -> None:
        super().mux(packet)
        if self.packet_count == 1:
            super()._write(chunk(b"teXt", b"between packets"))

    def close(self) -> None:
        if not self._closed:
            super()._write(chunk(b"fUTR", b"\x00" * 5))
        super().close()


def build_with_unknown_ancillary(case: Case) -> bytes:
    buf = io.BytesIO()
    with _InjectingWriter(buf, **case.options) as out:
        for header in case.streams:
            out.add_stream(header)
        for packet in case.packets:
            out.mux(packet)
    return buf.getvalue()


def expected_files() -> dict[str, bytes]:
    files = {f"{name}.odc": build(make()) for name, make in CASES.items()}
    files["unknown_ancillary.odc"] = build_with_unknown_ancillary(_small_mixed())
    full = files["av_passthrough.odc"]
    files["truncated.odc"] = full[: len(full) * 2 // 3]
    return files


def write_all(folder: Path = HERE) -> None:
    files = {**expected_files(), **expected_still_files()}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    lines = [f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(files.items())]
    (folder / SUMS.name).write_text("".join(lines))


def read_sums() -> dict[str, str]:
    out = {}
    for line in SUMS.read_text().splitlines():
        digest, name = line.split()
        out[name] = digest
    return out


class NonSeekable(io.RawIOBase):
    """A pipe stand-in over bytes: reads in small pieces, cannot seek or tell."""

    def __init__(self, data: bytes, piece: int = 7) -> None:
        self._buf = io.BytesIO(data)
        self._piece = piece

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b: Any) -> int:
        data = self._buf.read(min(len(b), self._piece))
        b[: len(data)] = data
        return len(data)


if __name__ == "__main__":
    write_all()
    count = len(expected_files()) + len(expected_still_files())
    print(f"wrote {count} files and {SUMS.name} to {HERE}")
