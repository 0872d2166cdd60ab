"""The latent residual layer: more quality for more bits, exact symbols, refusals."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from onedc_media.errors import BitstreamError, OdcFormatError
from onedc_media.imageio import read_image

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def engine():
    from onedc_media.model.engine import OneDCEngine

    return OneDCEngine.from_pretrained("onedc-tiny")


@pytest.fixture(scope="module")
def crop():
    return np.ascontiguousarray(read_image(DATA / "astronaut.png")[32:224, 32:224])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2))


def _cfg(**kw):
    from onedc_media.model.residual import ResidualConfig

    return ResidualConfig(**{"step": 0.06, "lmbda": 0.1, "steps": 15, "lr": 0.1, **kw})


def test_layer_buys_quality_with_bits_and_decodes_as_encoded(engine, crop):
    from onedc_media.model.bitstream import unpack_picture

    q = 3
    base = engine.compress([crop], q)[0]
    steps: list[int] = []
    enhanced = engine.compress([crop], q, residual=_cfg(), progress=steps.append)[0]
    header, chunks = unpack_picture(enhanced, num_rates=engine.num_rates)
    assert header.residual and not unpack_picture(base, num_rates=engine.num_rates)[0].residual
    # the base layer is untouched: the same chunks, one more at the end
    assert chunks[:-1] == unpack_picture(base, num_rates=engine.num_rates)[1]
    assert steps == list(range(1, engine.encode_steps(*crop.shape[:2], None, _cfg()) + 1))
    dec = engine.entropy_decode(enhanced)
    assert dec.residual is not None and dec.residual.shape == (16, 24, 24)
    assert dec.residual.abs().sum() > 0
    out = engine.synthesize([dec])[0]
    gain = _psnr(out, crop) - _psnr(engine.decompress([base])[0], crop)
    assert gain > 0.5, f"the residual layer gained only {gain:.2f} dB"
    assert len(enhanced) > len(base)
    # what the decoder adds is what the encoder fitted: without it, the base picture
    dec.residual = None
    assert np.array_equal(engine.synthesize([dec])[0], engine.decompress([base])[0])


def test_decoder_adds_what_the_encoder_fitted(engine, crop):
    """The fitted symbols survive the chunk exactly; ``compress`` is that path, repeatably
    (through the model's decoder, from the U-Net's latent: the fine decoder and the clean
    start have tests of their own)."""
    from onedc_media.model.bitstream import add_residual
    from onedc_media.model.onedc import pad_to_multiple
    from onedc_media.model.residual import STEP_DENOMINATOR, fit_residual, pack_residual

    q, cfg = 3, _cfg(decoder="model", start="base")
    enc = engine.analyse([crop])[0]
    _, plain = engine.entropy_encode(enc, q, reconstruct=True)
    with torch.no_grad():
        base = engine.base_latent(plain)
    x = pad_to_multiple(engine._to_tensor([crop]))
    sym = fit_residual(engine.model.vae.requires_grad_(False).decode, x, base, *crop.shape[:2], cfg)
    assert sym.dtype == torch.int64 and sym.abs().sum() > 0
    chunk = pack_residual(sym, cfg.step_code, engine.coder, engine.parsing.freqs.numpy())
    payload = add_residual(engine.entropy_encode(enc, q), chunk, num_rates=engine.num_rates)
    dec = engine.entropy_decode(payload)
    assert torch.equal(dec.residual, sym.float() * (cfg.step_code / STEP_DENOMINATOR))
    with pytest.raises(ValueError, match="already"):
        add_residual(payload, chunk, num_rates=engine.num_rates)
    assert payload == engine.compress([crop], q, residual=cfg)[0] == engine.compress([crop], q, residual=cfg)[0]


def test_a_float16_engine_fits_a_sane_layer(crop):
    """The search runs in float32 whatever the decoder's precision (in float16, Adam's
    epsilon underflows and masked entries became 0/0: every symbol -255)."""
    from onedc_media.model.engine import OneDCEngine

    eng = OneDCEngine.from_pretrained("onedc-tiny", dtype=torch.float16)
    img = crop[:128, :128].copy()
    dec = eng.entropy_decode(eng.compress([img], 3, residual=_cfg(steps=8, lmbda=0.03))[0])
    e = dec.residual / 0.06
    assert e.abs().max() < 50 and e.abs().sum() > 0


def test_lower_lambda_spends_more_bits_for_more_quality(engine, crop):
    q = 3
    cheap = engine.compress([crop], q, residual=_cfg(lmbda=0.3))[0]
    rich = engine.compress([crop], q, residual=_cfg(lmbda=0.01))[0]
    assert len(rich) > len(cheap)
    assert _psnr(engine.decompress([rich])[0], crop) > _psnr(engine.decompress([cheap])[0], crop)


def test_with_refinement_and_in_tiles(crop):
    """A picture larger than a tile: the encoder fits the latent the tiled decoder blends."""
    from onedc_media.model.engine import OneDCEngine
    from onedc_media.model.refine import RefineConfig

    eng = OneDCEngine.from_pretrained("onedc-tiny", tile=256)
    img = read_image(DATA / "chelsea.png")  # 200 x 301: pads to 256 x 320, two tiles wide
    base = eng.compress([img], 3, refine=RefineConfig(steps=2))[0]
    enhanced = eng.compress([img], 3, refine=RefineConfig(steps=2), residual=_cfg(window=128))[0]
    decoded = eng.entropy_decode(enhanced)
    with torch.no_grad():  # the blend is in effect: the encoder fitted the tiled latent
        tiled = eng.base_latent(decoded)
        whole = eng.model.synthesize_latent(decoded.y_hat[None], decoded.z_int[None].float())[0]
    assert tiled.shape == whole.shape and not torch.allclose(tiled, whole, atol=1e-4)
    out = eng.decompress([enhanced])[0]
    assert out.shape == img.shape
    assert _psnr(out, img) > _psnr(eng.decompress([base])[0], img) + 0.3


def test_batched_decode_groups_layered_and_plain_pictures(engine, crop):
    q = 2
    plain = engine.compress([crop], q)[0]
    layered = engine.compress([crop], q, residual=_cfg(steps=8, lmbda=0.03))[0]
    alone = engine.decompress([plain, layered])
    assert np.array_equal(alone[0], engine.decompress([plain])[0])
    assert np.abs(alone[1].astype(int) - engine.decompress([layered])[0]).max() <= 1
    assert not np.array_equal(alone[0], alone[1])


def test_chunk_round_trip_is_exact(engine):
    from onedc_media.model.residual import pack_residual, unpack_residual

    rng = np.random.default_rng(0)
    sym = np.round(rng.laplace(0, 0.7, (16, 12, 20))).astype(np.int64)
    sym[3] = 0  # an all-zero channel costs one byte
    sym[5, 0, 0] = 300  # beyond the tables' support: clamped
    body = pack_residual(sym, 246, engine.coder, engine.parsing.freqs.numpy())
    assert body[2 + 3] == 255
    got = unpack_residual(body, engine.coder, 16, 12, 20)
    want = np.clip(sym, -255, 255) * (246 / 4096)
    assert torch.equal(got, torch.from_numpy(want).float())
    empty = pack_residual(np.zeros((16, 4, 4), dtype=np.int64), 1, engine.coder, engine.parsing.freqs.numpy())
    assert len(empty) == 2 + 16 and not unpack_residual(empty, engine.coder, 16, 4, 4).any()


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda b: b[:10], "too short"),
        (lambda b: b"\0\0" + b[2:], "step is zero"),
        (lambda b: b[:2] + b"\x40" + b[3:], "table index out of range"),
        (lambda b: b[:-4], "entropy"),
        (lambda b: b + b"\x01", "multiple of 4"),
        (lambda b: b[:2] + b"\xff" * 16 + b[18:], "no coded channel"),
    ],
)
def test_damaged_chunks_are_bitstream_errors(engine, damage, match):
    from onedc_media.model.residual import pack_residual, unpack_residual

    sym = np.round(np.random.default_rng(1).laplace(0, 1.0, (16, 8, 8))).astype(np.int64)
    body = pack_residual(sym, 246, engine.coder, engine.parsing.freqs.numpy())
    with pytest.raises(BitstreamError, match=match):
        unpack_residual(damage(body), engine.coder, 16, 8, 8)


def test_packets_with_a_bad_layer_or_unknown_flags_are_refused(engine, crop):
    from onedc_media.model.bitstream import PictureHeader, pack_picture, unpack_picture

    plain = engine.compress([crop[:64, :64]], 1)[0]
    header, chunks = unpack_picture(plain, num_rates=engine.num_rates)
    flagged = PictureHeader(header.q, header.width, header.height, header.band_rows, residual=True)
    with pytest.raises(OdcFormatError, match="chunks, expected"):  # flag set, layer missing
        engine.entropy_decode(_with_flags(plain, 0x01))
    with pytest.raises(OdcFormatError, match="too short"):
        engine.entropy_decode(pack_picture(flagged, chunks + [b"\x01"]))
    with pytest.raises(OdcFormatError, match="names a fine decoder but has no residual layer"):
        engine.entropy_decode(_with_flags(plain, 0x02))
    with pytest.raises(OdcFormatError, match="unknown OneDC picture flags 0x4"):
        engine.entropy_decode(_with_flags(plain, 0x04))
    assert engine.entropy_decode(plain).residual is None


def _with_flags(packet: bytes, flags: int) -> bytes:
    """*packet* with its flags byte set and the header checksum made good again."""
    from onedc_media.model.bitstream import crc32c

    n = struct.unpack_from("<H", packet, 16)[0]
    head_len = 18 + 8 * n
    head = packet[:5] + bytes([flags]) + packet[6:head_len]
    return head + struct.pack("<I", crc32c(head)) + packet[head_len + 4 :]


def test_config_refuses_nonsense():
    from onedc_media.model.residual import ResidualConfig

    for bad in ({"step": 0.0}, {"step": 20.0}, {"lmbda": -1}, {"steps": 0}, {"window": 100},
                {"start": "middle"}):
        with pytest.raises(ValueError):
            ResidualConfig(**bad)


def test_clean_start_is_the_vae_latent_in_tiles_too():
    """The fit's starting point on a picture larger than the tile is the VAE encoder's
    latent of the whole picture (the tiles keep interiors wider than its reach)."""
    from onedc_media.model.engine import OneDCEngine
    from onedc_media.model.onedc import pad_to_multiple

    tiled = OneDCEngine.from_pretrained("onedc-tiny", tile=256)
    im = np.ascontiguousarray(np.tile(read_image(DATA / "astronaut.png"), (2, 2, 1))[:320, :448])
    x = pad_to_multiple(tiled._to_tensor([im]))
    with torch.no_grad():
        got, want = tiled._clean_latent(x), tiled.model.vae.encode(x)
    assert got.shape == want.shape == (1, 16, 40, 56)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("tile", [256, 320])
def test_tiled_analysis_covers_the_picture(tile):
    """Every tile size keeps interiors that meet: the smallest (256) once left rows of y
    at zero between its tiles."""
    from onedc_media.model.engine import OneDCEngine
    from onedc_media.model.onedc import pad_to_multiple

    whole = OneDCEngine.from_pretrained("onedc-tiny")
    tiled = OneDCEngine.from_pretrained("onedc-tiny", tile=tile)
    im = np.ascontiguousarray(np.tile(read_image(DATA / "astronaut.png"), (2, 2, 1))[:320, :448])
    x = pad_to_multiple(whole._to_tensor([im]))
    with torch.no_grad():
        want, _ = whole._analyse_tiled(x)
        got, _ = tiled._analyse_tiled(x)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=0)


def test_the_fit_starts_where_it_is_told(engine, crop):
    """One step from the clean latent lands near it; from the base, near the base."""
    from onedc_media.model.onedc import pad_to_multiple
    from onedc_media.model.residual import STEP_DENOMINATOR, fit_residual

    cfg = _cfg(steps=1, lr=1e-4, lmbda=0.0)
    enc = engine.analyse([crop])[0]
    _, plain = engine.entropy_encode(enc, 3, reconstruct=True)
    x = pad_to_multiple(engine._to_tensor([crop]))
    with torch.no_grad():
        base, clean = engine.base_latent(plain), engine.model.vae.encode(x)
    decode = engine.model.vae.requires_grad_(False).decode
    step = cfg.step_code / STEP_DENOMINATOR
    from_clean = fit_residual(decode, x, base, *crop.shape[:2], cfg, start=clean)
    from_base = fit_residual(decode, x, base, *crop.shape[:2], cfg)
    assert not from_base.any()
    want = torch.round(((clean - base) / step).clamp(-64, 64))[0].to(torch.int64)
    assert (from_clean - want).abs().le(1).all() and from_clean.ne(0).float().mean() > 0.5


def test_codec_option_writes_layered_packets(tmp_path, crop):
    """``--opt enhance=N`` through the codec registry into a file, and back."""
    import onedc_media
    from onedc_media import container
    from onedc_media.stills import encode_pictures

    plugins = onedc_media.load_plugins(blocked=[])
    info = plugins.codecs.get("onedc")
    img = crop[:64, :64].copy()
    encode_pictures([img], tmp_path / "a.odc", codec="onedc", options={"quality": 3, "enhance": 1},
                    plugins=plugins)
    with container.open(tmp_path / "a.odc") as inp:
        stream = inp.streams[0]
        packets = [p.data for p in inp.demux()]
    # the picture header's flags: the residual layer (0x01), drawn by the shipped fine
    # decoder (0x02) or the model's, whichever the encoder found cheaper for this picture
    assert packets[0][5] in (0x01, 0x03)
    out = info.create().decoder(stream.codec_params, model=stream.model).decode(packets)
    assert out[0].shape == (64, 64, 3)


def test_enhance_levels_follow_the_rate_point():
    """``enhance=N`` weighs bits by a fraction of the rate point's own trade-off: the same
    level spends relatively more at a higher rate point, a higher level more at any."""
    from onedc_media.model.refine import RATE_SCALE
    from onedc_media.model.residual import ENHANCE_LEVELS, enhance_config

    low, high = enhance_config(1, 4.0), enhance_config(1, 1.0)
    assert low.lmbda == pytest.approx(ENHANCE_LEVELS[1] * RATE_SCALE * 4.0)
    assert high.lmbda < low.lmbda
    assert enhance_config(3, 4.0).lmbda < enhance_config(1, 4.0).lmbda
    assert low.step == high.step
    with pytest.raises(ValueError, match="does not exist"):
        enhance_config(9, 1.0)
    # Fractional levels lie between their neighbours, geometrically: 1.5 is the mean of
    # 1 and 2 in log weight.
    mid = enhance_config(1.5, 4.0).lmbda
    assert enhance_config(2, 4.0).lmbda < mid < low.lmbda
    assert mid == pytest.approx((enhance_config(1, 4.0).lmbda * enhance_config(2, 4.0).lmbda) ** 0.5)
    for level in (0.5, 3.5):
        with pytest.raises(ValueError, match="does not exist"):
            enhance_config(level, 1.0)


def test_enhance_option_takes_fractions_and_refuses_below_one():
    """``--opt enhance=1.4`` sets the layer between levels; 0 < enhance < 1 is refused with
    the option's name (it is neither off nor a level)."""
    import onedc_media
    from onedc_media.errors import CodecOptionError
    from onedc_media.model.residual import enhance_config

    info = onedc_media.load_plugins(blocked=[]).codecs.get("onedc")
    enc = info.create().encoder(info.resolve_options({"quality": 5, "enhance": "1.4"}))
    point = enc.engine.model.config.rate_points[enc.q]
    assert enc.residual == enhance_config(1.4, float(point["lmbda"]))
    with pytest.raises(CodecOptionError, match="enhance"):
        info.create().encoder(info.resolve_options({"quality": 5, "enhance": "0.5"}))
