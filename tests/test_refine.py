"""Encoder-side refinement: better pictures at about the same bits, and ordinary packets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from onedc_media.imageio import read_image

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def engine():
    from onedc_media.model.engine import OneDCEngine

    return OneDCEngine.from_pretrained("onedc-tiny")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2))


def test_refined_packets_decode_better_at_about_the_same_bits(engine):
    from onedc_media.model.refine import RefineConfig

    img = np.ascontiguousarray(read_image(DATA / "astronaut.png")[128:384, 128:384])
    q = 4
    base = engine.compress([img], q)[0]
    refined = engine.compress([img], q, refine=RefineConfig(steps=20))[0]
    # an ordinary packet: the plain decoder reads it, to the encoder's own reconstruction
    enc_rec = engine.synthesize([engine.entropy_encode(
        _refined_latents(engine, img, q, 20), q, reconstruct=True)[1]])[0]
    dec = engine.decompress([refined])[0]
    assert np.array_equal(dec, enc_rec)
    gain = _psnr(dec, img) - _psnr(engine.decompress([base])[0], img)
    assert gain > 0.5, f"refinement gained only {gain:.2f} dB"
    assert len(refined) < 1.15 * len(base), (len(refined), len(base))


def _refined_latents(engine, img, q, steps):
    from onedc_media.model.refine import RefineConfig, refine_latents

    return refine_latents(engine, img, engine.analyse([img])[0], q, RefineConfig(steps=steps))


def test_windows_cover_the_picture_and_leave_padding_alone(engine):
    """A picture larger than the window is refined window by window; y cells that hold
    only padding are not touched, z never is."""
    from onedc_media.model.refine import RefineConfig, refine_latents

    img = np.ascontiguousarray(read_image(DATA / "chelsea.png")[:200, :300])  # pads to 256 x 320
    enc = engine.analyse([img])[0]
    steps = []
    out = refine_latents(engine, img, enc, 3, RefineConfig(steps=3, window=128, halo=64),
                         progress=steps.append)
    # 13 x 19 picture cells in windows of 8 cells: 2 x 3 windows of 3 steps each
    assert steps == list(range(1, 19))
    assert torch.equal(out.z_idx, enc.z_idx)
    changed = (out.y != enc.y).any(0)
    assert changed[:13, :19].float().mean() > 0.5
    assert not changed[13:].any() and not changed[:, 19:].any()
    rec = engine.decompress([engine.entropy_encode(out, 3)])[0]
    assert rec.shape == img.shape


def test_zero_steps_is_the_plain_encoder(engine):
    from onedc_media.model.refine import RefineConfig, refine_latents

    img = read_image(DATA / "chelsea.png")[:64, :64]
    enc = engine.analyse([img])[0]
    assert refine_latents(engine, img, enc, 2, RefineConfig(steps=0)) is enc
    assert engine.compress([img], 2, refine=RefineConfig(steps=0)) == engine.compress([img], 2)
    with pytest.raises(ValueError):
        RefineConfig(steps=-1)
    with pytest.raises(ValueError):
        RefineConfig(window=100)


def test_refine_option_through_the_codec(tmp_path):
    import onedc_media
    from onedc_media import container
    from onedc_media.errors import CodecOptionError
    from onedc_media.stills import encode_pictures

    plugins = onedc_media.load_plugins(blocked=[])
    img = np.ascontiguousarray(read_image(DATA / "astronaut.png")[:128, :192])
    encode_pictures([img], tmp_path / "p.odc", codec="onedc", options={"quality": 5}, plugins=plugins)
    res = encode_pictures([img], tmp_path / "r.odc", codec="onedc",
                          options={"quality": 5, "refine": 10}, plugins=plugins,
                          form="stream")  # the stream form records the codec's parameters
    assert res.pictures == 1
    assert (tmp_path / "r.odc").read_bytes() != (tmp_path / "p.odc").read_bytes()
    with container.open(tmp_path / "r.odc") as inp:
        stream = inp.streams[0]
        packets = [p.data for p in inp.demux()]
    assert stream.codec_params == {"quality": 5}  # nothing a decoder needs to know
    out = plugins.codecs.get("onedc").create().decoder(stream.codec_params, model=stream.model).decode(packets)
    assert out[0].shape == img.shape
    with pytest.raises(CodecOptionError):
        encode_pictures([img], tmp_path / "x.odc", codec="onedc", options={"refine": -1}, plugins=plugins)


def test_progress_counts_every_step_of_every_picture(engine, tmp_path):
    """What a progress bar sees: steps counted across pictures and windows, ending at the
    total the encoder announced; plain encoding never reports."""
    import onedc_media
    from onedc_media.model.refine import RefineConfig, refine_steps
    from onedc_media.stills import encode_pictures

    cfg = RefineConfig(steps=2, window=64, halo=0)
    pics = [np.ascontiguousarray(read_image(DATA / "astronaut.png")[:70, :130])] * 2
    assert refine_steps(70, 130, cfg) == 2 * 2 * 3  # 2 x 3 windows of 64 pixels
    seen: list[int] = []
    engine.compress(pics, 2, refine=cfg, progress=seen.append)
    assert seen == list(range(1, 2 * refine_steps(70, 130, cfg) + 1))

    plugins = onedc_media.load_plugins(blocked=[])
    calls: list[tuple[int, int]] = []
    encode_pictures(pics, tmp_path / "r.odc", codec="onedc", options={"quality": 3, "refine": 1},
                    plugins=plugins, progress=lambda d, t: calls.append((d, t)))
    total = 2 * refine_steps(70, 130, RefineConfig(steps=1))
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    calls.clear()
    encode_pictures(pics, tmp_path / "p.odc", codec="onedc", options={"quality": 3},
                    plugins=plugins, progress=lambda d, t: calls.append((d, t)))
    assert calls == []


@pytest.mark.parametrize("autocast", [False, True])
def test_refinement_in_either_precision(engine, autocast):
    """The bfloat16 search (the default where a device computes it natively) and the
    float32 one both find better latents; what they code is exact either way."""
    from onedc_media.model.refine import RefineConfig, _Refiner, bf16_native

    assert _Refiner(engine, 4, RefineConfig(autocast=autocast), None).autocast is autocast
    assert _Refiner(engine, 4, RefineConfig(), None).autocast is bf16_native(torch.device("cpu"))
    img = np.ascontiguousarray(read_image(DATA / "astronaut.png")[192:320, 192:320])
    base = engine.compress([img], 4)[0]
    refined = engine.compress([img], 4, refine=RefineConfig(steps=15, autocast=autocast))[0]
    gain = _psnr(engine.decompress([refined])[0], img) - _psnr(engine.decompress([base])[0], img)
    assert gain > 0.5 and len(refined) < 1.15 * len(base)


def test_progress_bar_spans_the_file(monkeypatch, tmp_path):
    """The CLI's bar: drawn at the first report with its total, never for an encoder that
    does not report, and one bar over a file of several batches."""
    import sys
    import types

    import onedc_media
    from onedc_media.cli.progress import progress_bar
    from onedc_media.stills import encode_pictures

    made: list = []

    class FakeTqdm:
        def __init__(self, total=None, **kw):
            self.total, self.n, self.resets = total, 0, 0
            made.append(self)

        def update(self, k):
            self.n += k

        def refresh(self):
            pass

        def reset(self, total=None):
            self.n, self.total, self.resets = 0, total, self.resets + 1

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeTqdm))
    plugins = onedc_media.load_plugins(blocked=[])
    pics = [np.ascontiguousarray(read_image(DATA / "astronaut.png")[:64, :64])] * 3
    bar = progress_bar(False, unit="step")
    encode_pictures(pics, tmp_path / "p.odc", codec="onedc", options={"quality": 3}, plugins=plugins,
                    progress=bar.update)
    bar.close()
    assert made == []  # plain encoding never reports: no bar
    bar = progress_bar(False, unit="step")
    encode_pictures(pics, tmp_path / "r.odc", codec="onedc", options={"quality": 3, "refine": 2},
                    plugins=plugins, batch_size=2, progress=bar.update)
    bar.close()
    assert len(made) == 1 and made[0].total == 6 and made[0].n == 6 and made[0].resets == 0
