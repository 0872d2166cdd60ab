"""The video pipeline: keyframe policies, hybrid inter coding (intra regeneration and its
checksum), transcode -> .odc -> decode with timestamps, audio, rotation and colour, the
all-intra and keyframes-only modes, the keyframe-decode seam, and bad inputs.

Clips are made here with PyAV (no network, no files in the repository): small (64x48),
short, with a moving picture, an AAC tone, optional rotation and variable frame rate.
``make_clip`` and ``psnr`` are shared with ``test_cv.py`` and ``test_decode_cli.py``.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from onedc_media_plugins import classic, policies

from onedc_media import container, load_plugins
from onedc_media.container import Packet, StreamHeader
from onedc_media.errors import (
    BitstreamError,
    InvalidImageError,
    InvalidVideoError,
    MediaError,
    OdcError,
    OdcFormatError,
    TruncatedError,
)
from onedc_media.pipeline.decoder import VideoDecoder
from onedc_media.pipeline.export import export_pictures, export_video
from onedc_media.pipeline.hybrid import (
    InterDecoder,
    InterEncoder,
    InterSettings,
    intra_checksum,
    pack_inter,
    unpack_inter,
)
from onedc_media.pipeline.keyframes import PacketFeed, decode_keyframes
from onedc_media.pipeline.policies import GopPolicy, SceneCutPolicy, SourcePolicy
from onedc_media.pipeline.transcode import transcode

# -- shared helpers ---------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def scene(index: int, size: tuple[int, int], kind: int = 0) -> np.ndarray:
    """Frame *index* of a smooth moving scene (RGB); *kind* picks one of two scenes."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    t = index * 1.5
    if kind == 0:
        r = 128 + 80 * np.sin((x + t) / 9.0)
        g = 128 + 70 * np.cos((y - t) / 7.0)
        b = 60 + 2.0 * x
    else:
        r = 200 - 2.5 * y
        g = 60 + 50 * np.sin((x - 2 * t) / 5.0) * np.cos(y / 6.0)
        b = 180 + 40 * np.cos((x + y + t) / 11.0)
    frame = np.stack([r, g, b], axis=-1)
    cx, cy = (index * 2) % width, height // 2
    frame[(np.abs(x - cx) < 6) & (np.abs(y - cy) < 6)] = (
        (250, 250, 40) if kind == 0 else (20, 20, 20)
    )
    return np.clip(frame, 0, 255).astype(np.uint8)


def make_clip(
    path: Path,
    *,
    frames: int = 24,
    size: tuple[int, int] = (64, 48),
    rate: int = 25,
    gop: int = 10,
    audio: bool = True,
    rotation: int = 0,
    pts: list[int] | None = None,
    cut_at: int | None = None,
) -> Path:
    """Write a small H.264 clip (+ AAC tone) with PyAV; return *path*.

    :param pts: explicit timestamps in milliseconds (variable frame rate; use .mkv).
    :param rotation: display rotation, counter-clockwise degrees (PyAV's convention).
    :param cut_at: switch to another scene from this frame on (a scene cut).
    """
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=rate)
    vs.width, vs.height = size
    vs.pix_fmt = "yuv420p" if size[0] % 2 == 0 and size[1] % 2 == 0 else "yuv444p"
    vs.codec_context.options = {"preset": "ultrafast", "crf": "12", "g": str(gop),
                                "x264-params": f"keyint={gop}:scenecut=0"}  # fmt: skip
    ctx = vs.codec_context
    ctx.color_primaries = ctx.color_trc = ctx.colorspace = 1  # BT.709
    ctx.color_range = 1  # limited
    if pts is not None:
        vs.time_base = Fraction(1, 1000)
        ctx.time_base = Fraction(1, 1000)
    if rotation:
        vs.set_display_rotation(rotation)
    aus = None
    if audio:
        aus = out.add_stream("aac", rate=44100)
        aus.layout = "stereo"
    for i in range(frames):
        kind = 1 if cut_at is not None and i >= cut_at else 0
        frame = av.VideoFrame.from_ndarray(scene(i, size, kind), format="rgb24")
        frame = frame.reformat(format=vs.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
        if pts is not None:
            frame.pts = pts[i]
            frame.time_base = Fraction(1, 1000)
        else:
            frame.pts = i
            frame.time_base = Fraction(1, rate)
        for p in vs.encode(frame):
            out.mux(p)
    for p in vs.encode(None):
        out.mux(p)
    if aus is not None:
        seconds = (pts[-1] / 1000 if pts else frames / rate) + 0.05
        samples = int(seconds * 44100)
        t = np.arange(samples) / 44100
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        done = 0
        while done < samples:
            n = min(1024, samples - done)
            chunk = np.stack([tone[done : done + n]] * 2)
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            af.sample_rate = 44100
            af.pts = done
            af.time_base = Fraction(1, 44100)
            for p in aus.encode(af):
                out.mux(p)
            done += n
        for p in aus.encode(None):
            out.mux(p)
    out.close()
    return path


def read_source(path: Path) -> tuple[list[float], list[np.ndarray]]:
    """Timestamps (seconds) and RGB frames of a video, as PyAV decodes it."""
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
        return [float(f.pts * f.time_base) for f in frames], [
            f.to_ndarray(format="rgb24") for f in frames
        ]


def audio_packets(path: Path) -> list[tuple[bytes, float]]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        stream = c.streams.audio[0]
        return [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(stream) if p.size]


@pytest.fixture(scope="session")
def plugins():
    return load_plugins(entry_points=False, plugins=[classic, policies], blocked=[])


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    vfr = [0, 40, 120, 160, 280, 320, 360, 480, 520, 560, 640, 680, 800, 840, 880, 1000]
    return {
        "plain": make_clip(d / "plain.mp4", rotation=90),
        "vfr": make_clip(d / "vfr.mkv", frames=len(vfr), pts=vfr, gop=5),
        "cut": make_clip(d / "cut.mp4", frames=30, cut_at=17, audio=False, gop=100),
        "odd": make_clip(d / "odd.mkv", frames=8, size=(33, 17), audio=False),
    }


def decode_all(path: Path, plugins) -> tuple[list, VideoDecoder]:
    with container.open(path) as inp:
        decoder = VideoDecoder(inp, codecs=plugins.codecs)
        frames = list(decoder.frames())
    return frames, decoder


# -- keyframe policies ------------------------------------------------------------------


def test_policies_are_registered_by_the_bundled_plugin(plugins):
    assert {"source", "gop", "scene"} <= set(plugins.policies.names())
    assert plugins.policies.get("gop").plugin == policies.__name__
    assert isinstance(plugins.policies.get("scene").create({"threshold": "12"}), SceneCutPolicy)


def test_gop_and_source_policies():
    frame = np.zeros((4, 4, 3), np.uint8)
    gop = GopPolicy(size=4)
    assert [gop.is_keyframe(i, frame, source_keyframe=False) for i in range(9)] == [
        True, False, False, False, True, False, False, False, True
    ]  # fmt: skip
    flags = [True, False, False, True, False, False, False, False]
    src = SourcePolicy()
    assert [src.is_keyframe(i, frame, source_keyframe=f) for i, f in enumerate(flags)] == flags
    capped = SourcePolicy(max_gop=3)
    got = [capped.is_keyframe(i, frame, source_keyframe=f) for i, f in enumerate(flags)]
    assert got == [True, False, False, True, False, False, True, False]


def test_scene_policy_finds_the_cut_and_not_the_motion():
    policy = SceneCutPolicy(threshold=10, min_gop=4, max_gop=0)
    keys = [
        i
        for i in range(30)
        if policy.is_keyframe(i, scene(i, (64, 48), int(i >= 17)), source_keyframe=False)
    ]
    assert keys == [0, 17]
    # min_gop: a second cut right after the first is not a keyframe
    policy = SceneCutPolicy(threshold=10, min_gop=8, max_gop=12)
    kinds = [0] * 5 + [1] * 3 + [0] * 20
    keys = [
        i
        for i, k in enumerate(kinds)
        if policy.is_keyframe(i, scene(i, (64, 48), k), source_keyframe=False)
    ]
    assert keys == [0, 8, 20]  # the cuts at 5 and 8 are within min_gop of 0; 20 = max_gop


# -- hybrid inter coding ----------------------------------------------------------------


@pytest.mark.parametrize("codec", ["libx264", "libx265", "libsvtav1"])
def test_intra_packet_regenerates_bit_for_bit(codec):
    frames = [scene(i, (64, 48)) for i in range(6)]
    enc = InterEncoder(InterSettings(codec), 64, 48)
    recon = frames[0]
    # the GOP's own intra picture (encoded with the following frames) ...
    ctx = enc.open_encoder()
    from onedc_media.pipeline.hybrid import _to_yuv

    packets = []
    for i, f in enumerate(frames):
        packets += ctx.encode(_to_yuv(f, enc.size, i))
    packets += ctx.encode(None)
    in_gop = bytes(packets[0])
    # ... equals the one made from the reconstruction alone, twice
    assert enc.regenerate(recon) == in_gop
    assert enc.regenerate(recon) == in_gop
    assert intra_checksum(enc.settings.spec.vcl, in_gop) == intra_checksum(
        enc.settings.spec.vcl, enc.regenerate(recon)
    )


def _code_gop(settings: InterSettings, frames: list[np.ndarray]) -> list[bytes]:
    enc = InterEncoder(settings, frames[0].shape[1], frames[0].shape[0])
    enc.start_gop(frames[0])
    stored = []
    for f in frames[1:]:
        stored += enc.encode(f)
    stored += enc.finish_gop()
    assert len(stored) == len(frames) - 1
    assert enc.intra_bytes_not_stored > 0
    return stored


def test_hybrid_gop_decodes_and_checks_the_intra_checksum(caplog):
    frames = [scene(i, (64, 48)) for i in range(8)]
    settings = InterSettings("libx264", crf=18)
    stored = _code_gop(settings, frames)
    crc, _ = unpack_inter(stored[0])
    assert crc is not None and all(unpack_inter(p)[0] is None for p in stored[1:])

    dec = InterDecoder(settings, 64, 48)
    dec.start_gop(frames[0])
    out = [f for p in stored for f in dec.decode(p)] + dec.finish_gop()
    assert len(out) == 7 and dec.mismatches == 0 and dec.regenerated == 1
    assert min(psnr(a, b) for a, b in zip(out, frames[1:], strict=True)) > 30

    # another encoder build: the stored checksum does not match the regenerated picture
    _, payload = unpack_inter(stored[0])
    tampered = [pack_inter(payload, crc ^ 1), *stored[1:]]
    dec = InterDecoder(settings, 64, 48)
    dec.start_gop(frames[0])
    with caplog.at_level(logging.WARNING, logger="onedc_media.pipeline.hybrid"):
        out2 = [f for p in tampered for f in dec.decode(p)] + dec.finish_gop()
    assert dec.mismatches == 1
    assert "does not match the stored checksum" in caplog.text
    assert all(np.array_equal(a, b) for a, b in zip(out, out2, strict=True))  # still decodes


def _x264_idr(pix_fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """An x264 IDR packet in *pix_fmt*, with its SPS / PPS in band."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height = size
    ctx.pix_fmt = pix_fmt
    ctx.time_base = Fraction(1, 25)
    black = np.zeros((size[1], size[0], 3), np.uint8)
    frame = av.VideoFrame.from_ndarray(black, format="rgb24").reformat(format=pix_fmt)
    frame.pts = 0
    return b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None))


@pytest.mark.parametrize("pix_fmt", ["yuv444p", "yuv420p10le", "yuv422p"])
def test_inter_packet_in_another_pixel_format_is_a_bitstream_error(pix_fmt):
    # An inter packet may carry its own parameter sets; the decoder follows them, so a
    # hostile one gives pictures in a format the settings do not allow.
    frames = [scene(i, (64, 48)) for i in range(3)]
    settings = InterSettings("libx264")
    stored = _code_gop(settings, frames)
    crc, _ = unpack_inter(stored[0])
    dec = InterDecoder(settings, 64, 48)
    dec.start_gop(frames[0])
    hostile = _x264_idr(pix_fmt)
    with pytest.raises(BitstreamError, match="inter picture: 64x48 .*, expected 64x48 yuv420p"):
        for p in [pack_inter(hostile, crc), pack_inter(hostile)]:
            dec.decode(p)
        dec.finish_gop()


def test_keyframe_of_another_size_than_the_inter_layer_is_a_bitstream_error(plugins, tmp_path):
    # A stream header without a size lets any keyframe through decode_keyframes; the
    # inter layer (coding 16x16 at the least) must refuse it, not fail in numpy.
    from onedc_media.pipeline.encoder import VideoEncoder

    good = tmp_path / "good.odc"
    with container.open(good, "w") as out:
        enc = VideoEncoder(
            out, width=32, height=24, time_base=Fraction(1, 25), keyframe_codec="png",
            inter=InterSettings(), codecs=plugins.codecs,
        )  # fmt: skip
        for i in range(3):
            enc.write(scene(i, (32, 24)), i)
        enc.close()
    bad = tmp_path / "sizeless.odc"
    with container.open(good) as inp, container.open(bad, "w") as out:
        out.add_stream(StreamHeader(**{**_fields(inp.streams[0]), "width": 0, "height": 0}))
        for p in inp.demux():
            out.mux(p)
    with pytest.raises(BitstreamError, match="keyframe of 32x24 in a hybrid stream of 0x0"):
        decode_all(bad, plugins)


def test_intra_checksum_ignores_sei_only():
    frames = [scene(i, (64, 48)) for i in range(2)]
    enc = InterEncoder(InterSettings("libx264"), 64, 48)
    intra = enc.regenerate(frames[0])
    sei = b"\x00\x00\x01\x06\x05\x04abcd\x80"  # another x264 version string, say
    assert intra_checksum("h264", sei + intra) == intra_checksum("h264", intra)
    flipped = bytearray(intra)
    flipped[-3] ^= 0x10
    assert intra_checksum("h264", bytes(flipped)) != intra_checksum("h264", intra)


def test_inter_settings_are_validated_and_never_taken_as_free_text():
    with pytest.raises(OdcError, match="crf"):
        InterSettings("libx264", crf=80)
    with pytest.raises(OdcError, match="preset"):
        InterSettings("libx264", preset="x; rm -rf")
    with pytest.raises(OdcError, match="inter codec"):
        InterSettings("mpeg4")
    params = InterSettings("libx265", 30, "fast").to_params()
    assert InterSettings.from_params(params) == InterSettings("libx265", 30, "fast")
    for bad in ({**params, "settings": 2}, {**params, "crf": "30"}, {**params, "codec": "x"}, [1]):
        with pytest.raises(OdcFormatError):
            InterSettings.from_params(bad)
    with pytest.raises(BitstreamError):
        unpack_inter(b"\x07abc")
    with pytest.raises(BitstreamError):
        unpack_inter(b"\x01ab")


# -- the keyframe-decode seam -----------------------------------------------------------


def test_decode_keyframes_is_lazy_and_takes_a_feed(plugins):
    codec = plugins.codecs.get("png")
    enc = codec.create().encoder(codec.resolve_options({}))
    frames = [scene(i, (20, 10)) for i in range(3)]
    packets = enc.encode(frames)
    header = StreamHeader(
        "video", "png", width=20, height=10, codec_params={**enc.params, "inter": {}}
    )
    feed = PacketFeed()
    it = decode_keyframes(header, feed, codecs=plugins.codecs)
    for packet, frame in zip(packets, frames, strict=True):
        feed.put(packet)  # one packet at a time: frame i never waits for packet i + 1
        assert np.array_equal(next(it), frame)
    feed.close()
    assert next(it, None) is None
    bad = decode_keyframes(header, [packets[0], b"junk"], codecs=plugins.codecs)
    assert np.array_equal(next(bad), frames[0])
    with pytest.raises(BitstreamError):
        next(bad)


def test_a_feed_decodes_on_one_worker(plugins, monkeypatch):
    """A feed hands over one packet and waits: the runtime gets one synthesis worker (with
    every thread), lists and other sources the default."""
    import onedc_media.runtime as runtime

    seen = []
    real = runtime.decode_frames

    def recording(decoder, packets, **options):
        seen.append(options)
        return real(decoder, packets, **options)

    monkeypatch.setattr(runtime, "decode_frames", recording)
    codec = plugins.codecs.get("png")
    enc = codec.create().encoder(codec.resolve_options({}))
    packets = enc.encode([scene(0, (20, 10))])
    header = StreamHeader("video", "png", width=20, height=10, codec_params=enc.params)
    feed = PacketFeed()
    it = decode_keyframes(header, feed, codecs=plugins.codecs)
    feed.put(packets[0])
    next(it)
    feed.close()
    list(decode_keyframes(header, packets, codecs=plugins.codecs))
    assert seen == [{"cpu_workers": 1}, {}]


# -- transcode and decode ---------------------------------------------------------------


def test_onedc_hybrid_keyframes_decode_as_the_encoder_made_them(tmp_path):
    """The inter layer predicts from OneDC's float reconstructions: the decoder must make
    them exactly as the encoder did (one picture per batch, one synthesis worker with the
    process's threads), or regenerated intra pictures miss their checksums."""
    from onedc_media_plugins import onedc

    plugins = load_plugins(entry_points=False, plugins=[classic, policies, onedc], blocked=[])
    src = make_clip(tmp_path / "k.mp4", frames=12, size=(640, 272), gop=4, audio=False)
    out = tmp_path / "k.odc"
    transcode(src, out, keyframe_codec="onedc", codec_options={"quality": 1}, plugins=plugins)
    frames, decoder = decode_all(out, plugins)
    assert len(frames) == 12 and sum(f.keyframe for f in frames) == 3
    assert decoder.mismatches == 0


def test_hybrid_transcode_with_weights_of_its_own(tmp_path, monkeypatch):
    """A hybrid transcode with a local model folder (``model=DIR``) decodes its keyframes for
    the inter layer with those weights, not the embedded ones the stream's model name
    resolves to (it stopped with a model mismatch); the file then decodes with the folder
    on the model path."""
    import shutil

    from onedc_media_plugins import onedc
    from safetensors.torch import load_file, save_file

    from onedc_media.errors import ModelMismatchError
    from onedc_media.model.loading import MODEL_PATH_ENV, embedded_model_dir

    own = tmp_path / "models" / "own"
    shutil.copytree(embedded_model_dir(), own)
    sd = load_file(str(own / "model.safetensors"))
    name = next(k for k in sorted(sd) if k.startswith("vae.") and sd[k].is_floating_point())
    save_file({**sd, name: sd[name] * 0.5}, str(own / "model.safetensors"))
    from onedc_media.weights.pins import PINS, release_of  # passes as an earlier onedc-tiny

    monkeypatch.setitem(PINS, "onedc-tiny", (*PINS["onedc-tiny"], release_of(own)))
    plugins = load_plugins(entry_points=False, plugins=[classic, policies, onedc], blocked=[])
    src = make_clip(tmp_path / "k.mp4", frames=6, size=(96, 64), gop=3, audio=False)
    out = tmp_path / "k.odc"
    monkeypatch.setenv(MODEL_PATH_ENV, "")
    transcode(src, out, keyframe_codec="onedc", codec_options={"quality": 1, "model": str(own)},
              plugins=plugins)
    with pytest.raises(ModelMismatchError):
        decode_all(out, plugins)
    monkeypatch.setenv(MODEL_PATH_ENV, str(own.parent))
    frames, decoder = decode_all(out, plugins)
    assert len(frames) == 6 and decoder.mismatches == 0


def test_transcode_round_trip_keeps_frames_times_audio_rotation_and_colour(
    plugins, clips, tmp_path
):
    src = clips["plain"]
    out = tmp_path / "plain.odc"
    seen = []
    result = transcode(
        src, out, keyframe_codec="jpeg", codec_options={"quality": 92},
        plugins=plugins, progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    times, ref = read_source(src)
    assert result.frames == len(ref) == 24 and seen[-1][0] == 24
    assert result.video.keyframes == 3  # the source's own keyframes (gop 10)
    with container.open(out) as inp:
        video, audio = inp.streams
        assert (video.media_type, video.codec, video.width, video.height) == (
            "video",
            "jpeg",
            64,
            48,
        )
        assert video.metadata["rotate"] == "270"  # 90 counter-clockwise = 270 clockwise
        assert (video.color.primaries, video.color.matrix, video.color.range) == (
            "bt709",
            "bt709",
            "limited",
        )
        assert video.frame_rate == 25
        assert audio.passthrough and audio.codec == "aac" and audio.sample_rate == 44100
        assert audio.channels == 2 and audio.channel_layout == "stereo" and audio.extradata
        # keyframes are the jpeg codec's own packets: stored once, nothing else beside them
        keys = [p for p in inp.demux(video.index) if p.keyframe]
        assert all(p.data[:3] == b"\xff\xd8\xff" for p in keys)
    assert result.video.intra_bytes_not_stored > 0

    frames, decoder = decode_all(out, plugins)
    assert decoder.mismatches == 0
    # from a file object (no path: keyframes are fed as the demuxer reaches them)
    import io

    with container.open(io.BytesIO(out.read_bytes())) as inp:
        piped = list(VideoDecoder(inp, codecs=plugins.codecs).frames())
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(frames, piped, strict=True))
    assert [float(f.pts * Fraction(1, 12800)) for f in frames] == pytest.approx(times)
    assert min(psnr(f.rgb, r) for f, r in zip(frames, ref, strict=True)) > 30

    mp4 = tmp_path / "plain.mp4"
    export_video(out, mp4, crf=10, codecs=plugins.codecs)
    got_times, _ = read_source(mp4)
    assert got_times == pytest.approx(times, abs=1e-3)
    with av.open(str(mp4)) as c:
        assert next(c.decode(video=0)).rotation == 90
    assert [d for d, _ in audio_packets(mp4)] == [d for d, _ in audio_packets(src)]
    assert [t for _, t in audio_packets(mp4)] == pytest.approx([t for _, t in audio_packets(src)])


def test_variable_frame_rate_is_preserved(plugins, clips, tmp_path):
    src = clips["vfr"]
    out = tmp_path / "vfr.odc"
    transcode(
        src, out, keyframe_codec="webp", plugins=plugins, policy="gop", policy_options={"size": 4}
    )
    times, _ = read_source(src)
    frames, _ = decode_all(out, plugins)
    assert [float(f.pts * Fraction(1, 1000)) for f in frames] == pytest.approx(times)
    for ext in ("mkv", "mp4"):
        export_video(out, tmp_path / f"vfr.{ext}", codecs=plugins.codecs)
        assert read_source(tmp_path / f"vfr.{ext}")[0] == pytest.approx(times, abs=1e-3)


def test_all_intra_and_keyframes_only(plugins, clips, tmp_path, monkeypatch):
    from onedc_media.pipeline import encoder

    decoded = []  # all intra: no GOP has inter frames, so no reconstruction is decoded

    def counting(stream, packets, **kw):
        for frame in decode_keyframes(stream, packets, **kw):
            decoded.append(1)
            yield frame

    monkeypatch.setattr(encoder, "decode_keyframes", counting)
    src = clips["plain"]
    intra = tmp_path / "intra.odc"
    r = transcode(
        src, intra, keyframe_codec="jpeg", policy="gop", policy_options={"size": 1}, plugins=plugins
    )
    assert r.video.keyframes == 24 and r.video.inter_bytes == 0 and decoded == []
    frames, _ = decode_all(intra, plugins)
    assert len(frames) == 24 and all(f.keyframe for f in frames)

    stills = tmp_path / "stills.odc"
    r = transcode(src, stills, keyframe_codec="png", inter=None, plugins=plugins,
                  policy="gop", policy_options={"size": 8})  # fmt: skip
    assert (r.video.keyframes, r.video.dropped_frames, r.video.inter_bytes) == (3, 21, 0)
    with container.open(stills) as inp:
        packets = list(inp.demux(0))
        assert "inter" not in inp.streams[0].codec_params
    assert [p.keyframe for p in packets] == [True] * 3
    assert [p.duration for p in packets] == [8 * 512] * 3  # each still lasts its GOP
    _, ref = read_source(src)
    paths = export_pictures(stills, f"{tmp_path}/png/", codecs=plugins.codecs).paths
    assert [Path(p).name for p in paths] == [f"stills_{i:06d}.png" for i in range(3)]

    hybrid = tmp_path / "hybrid.odc"
    transcode(
        src, hybrid, keyframe_codec="png", plugins=plugins, policy="gop", policy_options={"size": 8}
    )
    paths = export_pictures(
        hybrid, f"{tmp_path}/k/", keyframes_only=True, codecs=plugins.codecs
    ).paths
    assert [Path(p).name for p in paths] == [
        "hybrid_000000.png",
        "hybrid_000008.png",
        "hybrid_000016.png",
    ]
    import cv2

    key8 = cv2.imread(paths[1])[:, :, ::-1]
    assert np.array_equal(key8, ref[8])  # png keyframes are lossless


def test_range_selection(plugins, clips, tmp_path):
    src = clips["plain"]
    times, _ = read_source(src)
    out = tmp_path / "part.odc"
    r = transcode(src, out, keyframe_codec="jpeg", plugins=plugins, start=0.2, duration=0.4)
    assert r.frames == 10  # frames 5..14
    frames, _ = decode_all(out, plugins)
    assert [float(f.pts / 12800) for f in frames] == pytest.approx([t - 0.2 for t in times[5:15]])
    assert frames[0].keyframe  # the first frame is always a keyframe
    with container.open(out) as inp:
        audio = [p for p in inp.demux(1)]
    assert audio and min(p.pts for p in audio) >= 0
    assert max(p.pts for p in audio) / 44100 < 0.45
    r = transcode(src, out, keyframe_codec="jpeg", plugins=plugins, max_frames=5)
    assert r.frames == 5


def test_odd_size_and_threads(plugins, clips, tmp_path):
    out = tmp_path / "odd.odc"
    r = transcode(clips["odd"], out, keyframe_codec="webp", plugins=plugins, threads=1,
                  policy="gop", policy_options={"size": 4})  # fmt: skip
    assert (r.width, r.height, r.frames) == (33, 17, 8)
    frames, _ = decode_all(out, plugins)
    assert [f.rgb.shape for f in frames] == [(17, 33, 3)] * 8
    export_video(out, tmp_path / "odd.mp4", codecs=plugins.codecs)
    _, got = read_source(tmp_path / "odd.mp4")
    assert len(got) == 8 and got[0].shape == (17, 33, 3)


# -- bad inputs -------------------------------------------------------------------------


def _mux_silence(out) -> None:
    """Add an AAC stream with one frame of silence to an open PyAV output."""
    stream = out.add_stream("aac", rate=8000)
    frame = av.AudioFrame.from_ndarray(
        np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
    )
    frame.sample_rate, frame.pts = 8000, 0
    for p in [*stream.encode(frame), *stream.encode(None)]:
        out.mux(p)


def test_bad_inputs_are_typed_errors(plugins, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 100)
    with pytest.raises(InvalidVideoError):
        transcode(garbage, tmp_path / "x.odc", keyframe_codec="jpeg", plugins=plugins)
    with pytest.raises(FileNotFoundError):
        transcode(
            tmp_path / "missing.mp4", tmp_path / "x.odc", keyframe_codec="jpeg", plugins=plugins
        )

    audio_only = tmp_path / "audio.m4a"
    with av.open(str(audio_only), "w") as out:
        _mux_silence(out)
    with pytest.raises(InvalidVideoError, match="no video stream"):
        transcode(audio_only, tmp_path / "x.odc", keyframe_codec="jpeg", plugins=plugins)

    empty = tmp_path / "empty.mkv"  # a video stream without a single frame (and some audio)
    with av.open(str(empty), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        _mux_silence(out)
    with pytest.raises(InvalidVideoError, match="no decodable video frames"):
        transcode(empty, tmp_path / "x.odc", keyframe_codec="jpeg", plugins=plugins)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(make_clip(tmp_path / "whole.mp4", audio=False).read_bytes()[:3000])
    with pytest.raises(InvalidVideoError):
        transcode(truncated, tmp_path / "x.odc", keyframe_codec="jpeg", plugins=plugins)
    assert not (tmp_path / "x.odc").exists()  # nothing half-written
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    with pytest.raises(InvalidVideoError):
        transcode(garbage, tmp_path / "x.odc", keyframe_codec="jpeg", plugins=plugins, start=-1)
    with pytest.raises(OdcError):
        transcode(garbage, tmp_path / "x.odc", keyframe_codec="nope", plugins=plugins)


def test_decoding_a_seekable_file_object_never_reopens_it_by_name(plugins, clips, tmp_path):
    # sys.stdin.buffer redirected from a file is seekable and named '<stdin>'; a file
    # object's name may also be another file's path. Neither may be opened again.
    real, other = tmp_path / "real.odc", tmp_path / "other.odc"
    transcode(clips["plain"], real, keyframe_codec="jpeg", plugins=plugins)
    transcode(clips["cut"], other, keyframe_codec="png", plugins=plugins)
    expected, _ = decode_all(real, plugins)
    for name in ("<stdin>", str(other)):
        with open(real, "rb") as f:
            f.raw.name = name
            with container.open(f) as inp:
                assert inp.name == name and inp.path is None and inp.file_size
                frames = list(VideoDecoder(inp, codecs=plugins.codecs).frames())
        assert len(frames) == len(expected)
        assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(frames, expected, strict=True))


def test_damaged_odc_files_are_typed_errors(plugins, clips, tmp_path):
    good = tmp_path / "good.odc"
    transcode(clips["plain"], good, keyframe_codec="jpeg", plugins=plugins)
    data = good.read_bytes()
    cut = tmp_path / "cut.odc"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(TruncatedError):
        decode_all(cut, plugins)
    with pytest.raises(OdcError):
        export_video(cut, tmp_path / "cut.mp4", codecs=plugins.codecs)
    assert not (tmp_path / "cut.mp4").exists()

    # a hostile header: inter settings from the future / free text
    with container.open(good) as inp:
        video, audio = inp.streams
        packets = list(inp.demux())
    for inter in ({"codec": "libx264", "crf": 23, "preset": "medium", "settings": 9},
                  {"codec": "libx264", "crf": 23, "preset": "dump-yuv=/tmp/x", "settings": 1}):  # fmt: skip
        bad = tmp_path / "bad.odc"
        with container.open(bad, "w") as out:
            out.add_stream(StreamHeader(**{**_fields(video), "codec_params": {"inter": inter}}))
            out.add_stream(audio)
            for p in packets:
                out.mux(p)
        with pytest.raises(OdcFormatError):
            decode_all(bad, plugins)

    # an inter packet with damaged flags (CRC-valid at the container level)
    bad = tmp_path / "flags.odc"
    with container.open(bad, "w") as out:
        out.add_stream(video)
        out.add_stream(audio)
        for p in packets:
            if p.stream_index == 0 and not p.keyframe:
                p = Packet(0, b"\x09" + p.data[1:], p.pts, p.dts, p.duration, False)
            out.mux(p)
    with pytest.raises(BitstreamError):
        decode_all(bad, plugins)


def _fields(h: StreamHeader) -> dict:
    from dataclasses import fields

    return {f.name: getattr(h, f.name) for f in fields(h) if f.name != "index"}


def test_video_encoder_refuses_bad_frames(plugins, tmp_path):
    from onedc_media.pipeline.encoder import VideoEncoder

    with container.open(tmp_path / "w.odc", "w") as out:
        enc = VideoEncoder(out, width=16, height=8, time_base=Fraction(1, 25), keyframe_codec="png",
                           inter=InterSettings(), codecs=plugins.codecs)  # fmt: skip
        enc.write(np.zeros((8, 16, 3), np.uint8), 0)
        with pytest.raises(InvalidImageError):
            enc.write(np.zeros((9, 16, 3), np.uint8), 1)
        with pytest.raises(InvalidVideoError, match="not after"):
            enc.write(np.zeros((8, 16, 3), np.uint8), 0)
        enc.write(np.zeros((8, 16, 3), np.uint8), 1)
        enc.close()
    frames, _ = decode_all(tmp_path / "w.odc", plugins)
    assert [f.pts for f in frames] == [0, 1]


def test_video_encoder_closes_the_keyframe_encoder_when_it_fails_to_start(
    plugins, tmp_path, monkeypatch
):
    from onedc_media.pipeline import hybrid
    from onedc_media.pipeline.encoder import VideoEncoder

    info = plugins.codecs.get("png")
    encoder_class = type(info.create().encoder(info.resolve_options({})))
    closed = []
    close = encoder_class.close
    monkeypatch.setattr(encoder_class, "close", lambda self: closed.append(self) or close(self))
    monkeypatch.setattr(hybrid, "_check_available", lambda name, mode: (_ for _ in ()).throw(
        MediaError(f"no {name}")))  # fmt: skip
    with container.open(tmp_path / "w.odc", "w") as out, pytest.raises(MediaError, match="no"):
        VideoEncoder(out, width=16, height=8, time_base=Fraction(1, 25), keyframe_codec="png",
                     inter=InterSettings(), codecs=plugins.codecs)  # fmt: skip
    assert len(closed) == 1


def test_atomic_path_fsyncs_the_folder_after_the_rename(tmp_path, monkeypatch):
    import os
    import stat

    from onedc_media.pipeline.media import atomic_path

    events = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd):
        events.append("fsync " + ("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("rename") or replace(a, b))
    with atomic_path(tmp_path / "out.mp4") as tmp:
        Path(tmp).write_bytes(b"data")
    assert events == ["fsync file", "rename", "fsync folder"]
    assert (tmp_path / "out.mp4").read_bytes() == b"data"


def test_inter_codec_failures_are_media_errors(monkeypatch):
    from onedc_media.pipeline import hybrid

    monkeypatch.setattr(hybrid, "_check_available", lambda name, mode: (_ for _ in ()).throw(
        MediaError(f"no {name}")))  # fmt: skip
    with pytest.raises(MediaError):
        InterEncoder(InterSettings(), 16, 16)


def test_hybrid_bench_runs(plugins, clips, monkeypatch, capsys):
    """benchmarks/hybrid_bench.py: (b) stores no x264 intra picture and says so."""
    import importlib.util

    import onedc_media

    monkeypatch.setattr(onedc_media, "default_plugins", lambda: plugins)
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "hybrid_bench.py"
    spec = importlib.util.spec_from_file_location("hybrid_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "default_plugins", lambda: plugins)
    assert bench.main([str(clips["plain"]), "-c", "jpeg", "-q", "90"]) == 0
    out = capsys.readouterr().out
    assert "(a)  libx264 alone" in out and "(b)  hybrid: jpeg + libx264" in out
    assert "intra pictures, regenerated" in out and "checksums matched: True" in out


def _lavfi_clip(path: Path) -> Path:
    """FFmpeg's own test sources through PyAV: testsrc video + sine audio, muxed to mkv."""
    try:
        video = av.open("testsrc=size=64x48:rate=25:duration=0.8", format="lavfi")
        sine = av.open("sine=frequency=440:sample_rate=48000:duration=0.8", format="lavfi")
    except (av.FFmpegError, ValueError) as exc:
        pytest.skip(f"this PyAV build has no lavfi input ({exc})")
    with video, sine, av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        vs.codec_context.options = {"preset": "ultrafast", "g": "8"}
        aus = out.add_stream("libopus" if "libopus" in av.codecs_available else "aac", rate=48000)
        for frame in video.decode(video=0):
            for p in vs.encode(frame.reformat(format="yuv420p")):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        for frame in sine.decode(audio=0):
            frame.pts = None
            for p in aus.encode(frame):
                out.mux(p)
        for p in aus.encode(None):
            out.mux(p)
    return path


def test_lavfi_testsrc_and_sine_round_trip(plugins, tmp_path):
    src = _lavfi_clip(tmp_path / "lavfi.mkv")
    out = tmp_path / "lavfi.odc"
    r = transcode(src, out, keyframe_codec="webp", plugins=plugins)
    times, _ = read_source(src)
    assert r.frames == len(times) == 20 and r.audio_streams == 1
    back = tmp_path / "back.mkv"
    export_video(out, back, codecs=plugins.codecs)
    assert read_source(back)[0] == pytest.approx(times, abs=1e-3)
    assert [d for d, _ in audio_packets(back)] == [d for d, _ in audio_packets(src)]
