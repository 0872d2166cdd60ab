"""The classic codecs plugin: round trips, quality, odd sizes, hostile packets."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

import onedc_media_plugins.classic as classic
from onedc_media import Codec, ModelRef, load_plugins
from onedc_media.codec.contract import MAX_FRAME_PIXELS
from onedc_media.errors import (
    BitstreamError,
    CodecOptionError,
    InvalidImageError,
    ModelMismatchError,
)

LOSSY = ("jpeg", "webp", "avif", "hevc-intra")
ALL = (*LOSSY, "png")

#: PSNR floors (dB) on the sample photo at the default options, and at quality 90.
DEFAULT_PSNR = {"jpeg": 36.0, "webp": 33.0, "avif": 32.0, "hevc-intra": 36.0}
HIGH_QUALITY_PSNR = 36.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def registry():
    return load_plugins(entry_points=False, plugins=[classic], blocked=[]).codecs


@pytest.fixture(scope="module")
def codecs(registry) -> dict[str, Codec]:
    return {name: registry.create(name) for name in ALL}


def roundtrip(codec: Codec, frames: list[np.ndarray], **options) -> tuple[list[bytes], list]:
    encoder = codec.encoder(codec.info.resolve_options(options))
    packets = encoder.encode(frames)
    decoded = codec.decoder(encoder.params).decode(packets)
    return packets, decoded


def test_declarations(registry):
    assert registry.names() == sorted(ALL)
    for info in registry:
        assert info.plugin == classic.__name__
        assert info.factory.startswith("onedc_media_plugins.classic.")
        assert not info.capabilities.batch and not info.capabilities.cuda
        assert info.capabilities.lossless == (not info.lossy) == (info.name == "png")
        assert issubclass(info.load(), Codec)
        info.resolve_options({})  # every default is valid
    assert registry.get("hevc-intra").kind == "intra-video"
    assert registry.get("avif").kind == "image"
    assert registry.get("png").quality_option is None
    for name in LOSSY:
        opt = registry.get(name).option("quality")
        assert (opt.min, opt.max) == (1, 100)


@pytest.mark.parametrize("name", LOSSY)
def test_round_trip_psnr(codecs, photo, name):
    (packet,), (out,) = roundtrip(codecs[name], [photo])
    assert out.shape == photo.shape and out.dtype == np.uint8
    bpp = len(packet) * 8 / (photo.shape[0] * photo.shape[1])
    assert 0.05 < bpp < 8
    assert psnr(photo, out) > DEFAULT_PSNR[name]
    (_,), (hq,) = roundtrip(codecs[name], [photo], quality=90)
    assert psnr(photo, hq) > HIGH_QUALITY_PSNR


def test_yuv_conversions_do_not_cap_quality(codecs, photo):
    """4:2:0 with matched, accurate conversions allows ~47 dB; sloppy ones cap it at ~43."""
    (_,), (out,) = roundtrip(codecs["hevc-intra"], [photo], quality=95)
    assert psnr(photo, out) > 45.0


def test_png_is_exact(codecs, photo):
    noise = np.random.default_rng(3).integers(0, 256, (31, 17, 3), dtype=np.uint8)
    for level in (0, 9):
        _, out = roundtrip(codecs["png"], [photo, noise], compression=level)
        assert np.array_equal(out[0], photo) and np.array_equal(out[1], noise)
    small, _ = roundtrip(codecs["png"], [photo], compression=9)
    large, _ = roundtrip(codecs["png"], [photo], compression=0)
    assert len(small[0]) < len(large[0])


@pytest.mark.parametrize("name", LOSSY)
def test_bytes_grow_with_quality(codecs, photo, name):
    crop = np.ascontiguousarray(photo[100:228, 100:228])
    sizes, errors = [], []
    for quality in (10, 50, 90):
        (packet,), (out,) = roundtrip(codecs[name], [crop], quality=quality)
        sizes.append(len(packet))
        errors.append(psnr(crop, out))
    assert sizes == sorted(sizes) and len(set(sizes)) == 3, sizes
    assert errors == sorted(errors), errors


def test_jpeg_subsampling(codecs, photo):
    sizes = [
        len(roundtrip(codecs["jpeg"], [photo], quality=90, subsampling=s)[0][0])
        for s in ("420", "422", "444")
    ]
    assert sizes == sorted(sizes)


@pytest.mark.parametrize("name", ALL)
def test_odd_sizes_in_one_batch(codecs, photo, name):
    shapes = [(23, 37), (37, 23), (1, 1), (1, 17), (17, 1), (3, 2)]
    frames = [np.ascontiguousarray(photo[200 : 200 + h, 150 : 150 + w]) for h, w in shapes]
    options = {} if name == "png" else {"quality": 90}
    packets, out = roundtrip(codecs[name], frames, **options)
    assert len(packets) == len(out) == len(frames)
    for frame, decoded in zip(frames, out):
        assert decoded.shape == frame.shape and decoded.dtype == np.uint8
        if name == "png":
            assert np.array_equal(decoded, frame)
        else:
            assert np.abs(decoded.astype(int) - frame).mean() < 12


@pytest.mark.parametrize("name", ALL)
def test_batch_is_per_frame_and_deterministic(codecs, photo, name):
    frames = [
        np.ascontiguousarray(photo[:96, :128]),
        np.ascontiguousarray(photo[300:364, 200:300]),
        np.ascontiguousarray(photo[::-1][:80, :80]),
    ]
    codec = codecs[name]
    batch, decoded = roundtrip(codec, frames)
    singles = [roundtrip(codec, [f])[0][0] for f in frames]
    assert batch == singles  # every packet is self-contained and reproducible
    assert [d.shape for d in decoded] == [f.shape for f in frames]
    # any packet decodes alone, in any order
    alone = codec.decoder({}).decode([batch[2], batch[0]])
    assert np.array_equal(alone[0], decoded[2]) and np.array_equal(alone[1], decoded[0])
    assert codec.encoder(codec.info.resolve_options({})).encode([]) == []


# --- hostile packets ----------------------------------------------------------------


@pytest.fixture(scope="module")
def packets(codecs, photo) -> dict[str, bytes]:
    crop = np.ascontiguousarray(photo[:64, :80])
    return {name: roundtrip(codecs[name], [crop])[0][0] for name in ALL}


def _bad_packets(good: bytes) -> dict[str, object]:
    rng = np.random.default_rng(7)
    return {
        "empty": b"",
        "one byte": good[:1],
        "random": rng.integers(0, 256, 500, dtype=np.uint8).tobytes(),
        "zeros": bytes(200),
        "header only": good[:16],
        "truncated half": good[: len(good) // 2],
        "truncated by one": good[:-1],
        "not bytes": None,
    }


@pytest.mark.parametrize("name", ALL)
def test_bad_packets_raise_bitstream_error(codecs, packets, name):
    decoder = codecs[name].decoder({})
    good = packets[name]
    for label, bad in _bad_packets(good).items():
        with pytest.raises(BitstreamError):
            decoder.decode([bad])
            pytest.fail(f"{name}: {label} packet decoded")
    for other, packet in packets.items():
        if other != name:
            with pytest.raises(BitstreamError):
                decoder.decode([packet])
    with pytest.raises(BitstreamError, match="packet 1"):
        decoder.decode([good, good[:-3]])
    assert decoder.decode([bytearray(good)])[0].shape == (64, 80, 3)


@pytest.mark.parametrize("name", ("avif", "hevc-intra"))
def test_intra_packet_header_is_checked(codecs, packets, name):
    from onedc_media_plugins.classic import av_codecs

    spec = codecs[name].spec
    good = packets[name]
    payload = good[av_codecs.HEADER.size :]
    assert av_codecs.unpack_packet(spec, 0, good)[:3] == (80, 64, True)

    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0x40
    lie_small = av_codecs.pack_packet(spec, 16, 16, payload)  # real picture is 80x64
    lie_big = av_codecs.pack_packet(spec, 4000, 3000, payload)
    huge = av_codecs.pack_packet(spec, 65536, 65536, payload)
    bad_version = good[:4] + b"\x02" + good[5:]
    reserved_flag = good[:5] + b"\x03" + good[6:]
    for bad in (bytes(damaged), lie_small, lie_big, huge, bad_version, reserved_flag):
        with pytest.raises(BitstreamError):
            codecs[name].decoder({}).decode([bad])
    # A forged packet (payload cut, CRC recomputed) cannot always be told from a valid
    # one; it must still give a typed error or a picture of the declared size.
    for cut in (1, 7, len(payload) // 2, len(payload) - 1):
        forged = av_codecs.pack_packet(spec, 80, 64, payload[:cut])
        try:
            (out,) = codecs[name].decoder({}).decode([forged])
        except BitstreamError:
            continue
        assert out.shape == (64, 80, 3)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_declared_sizes_are_bounded_before_decoding(codecs):
    side = 1 << 15  # 2**30 pixels > MAX_FRAME_PIXELS
    assert side * side > MAX_FRAME_PIXELS
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(b"\x00"))
        + _png_chunk(b"IEND", b"")
    )
    jpeg = (
        b"\xff\xd8"
        + b"\xff\xc0"
        + struct.pack(">HBHHB", 11, 8, side, side, 1)
        + b"\x01\x11\x00"
        + b"\xff\xd9"
    )
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (side - 1).to_bytes(3, "little") * 2
    webp = b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x
    for name, packet in (("png", png), ("jpeg", jpeg), ("webp", webp)):
        with pytest.raises(BitstreamError, match="above the supported maximum"):
            codecs[name].decoder({}).decode([packet])


def test_header_parsers_read_real_files(packets):
    from onedc_media_plugins.classic import opencv_codecs as oc

    assert oc.jpeg_size(packets["jpeg"]) == (80, 64)
    assert oc.webp_size(packets["webp"]) == (80, 64)
    assert oc.png_size(packets["png"]) == (80, 64)


# --- options, devices, frames ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("jpeg", {"quality": 0}),
        ("jpeg", {"quality": 101}),
        ("jpeg", {"quality": "high"}),
        ("jpeg", {"quality": 7.5}),
        ("jpeg", {"subsampling": "411"}),
        ("webp", {"qualty": 50}),
        ("png", {"compression": 10}),
        ("png", {"quality": 90}),
        ("avif", {"preset": 14}),
        ("hevc-intra", {"preset": "fastest"}),
    ],
)
def test_bad_options(codecs, name, options):
    with pytest.raises(CodecOptionError):
        codecs[name].encoder(options)


def test_options_from_strings(codecs):
    info = codecs["jpeg"].info
    assert info.resolve_options({"quality": "90"}) == {"quality": 90, "subsampling": "420"}


def test_quality_to_crf_mapping():
    from onedc_media_plugins.classic.av_codecs import avif_crf, hevc_crf

    assert (avif_crf(1), avif_crf(100)) == (63, 1)
    assert (hevc_crf(1), hevc_crf(100)) == (50.49, 0)
    crfs = [avif_crf(q) for q in range(1, 101)]
    assert crfs == sorted(crfs, reverse=True)


@pytest.mark.parametrize("name", ALL)
def test_cpu_only_and_no_model(codecs, name):
    codec = codecs[name]
    with pytest.raises(CodecOptionError, match="CPU"):
        codec.encoder({}, device="cuda")
    with pytest.raises(ModelMismatchError):
        codec.decoder({}, model=ModelRef(name="onedc-tiny", sha256="0" * 64))
    codec.decoder({}, device="cpu")


@pytest.mark.parametrize("name", ALL)
def test_invalid_frames(codecs, name):
    encoder = codecs[name].encoder({})
    for bad in (
        np.zeros((8, 8), np.uint8),
        np.zeros((8, 8, 4), np.uint8),
        np.zeros((8, 8, 3), np.float32),
        np.zeros((0, 8, 3), np.uint8),
        [[1, 2, 3]],
    ):
        with pytest.raises(InvalidImageError):
            encoder.encode([bad])


def test_format_size_limits(codecs):
    with pytest.raises(InvalidImageError, match="16383"):
        codecs["webp"].encoder({}).encode([np.zeros((1, 16384, 3), np.uint8)])
