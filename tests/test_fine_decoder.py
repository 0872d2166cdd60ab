"""The fine decoder: layered pictures name it, are drawn by it, and are refused without it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from onedc_media.errors import BitstreamError, ModelError, ModelMismatchError, OdcFormatError
from onedc_media.imageio import read_image

DATA = Path(__file__).parent / "data"


def _cfg(**kw):
    from onedc_media.model.residual import ResidualConfig

    return ResidualConfig(**{"step": 0.06, "lmbda": 0.1, "steps": 6, "lr": 0.1, **kw})


def _vae_checkpoint(root: Path, seed: int, *, encoder_noise: bool = False) -> Path:
    """A 'vae' run checkpoint: the embedded model with its VAE decoder (or encoder) moved."""
    from safetensors.torch import load_file, save_file

    from onedc_media.model.loading import embedded_model_dir

    sd = {k: v.float() for k, v in load_file(str(embedded_model_dir() / "model.safetensors")).items()}
    gen = torch.Generator().manual_seed(seed)
    part = "vae.model.encoder." if encoder_noise else "vae.model.decoder."
    for k, v in sd.items():
        if k.startswith(part) and v.ndim == 4:
            sd[k] = v + 0.02 * v.std() * torch.randn(v.shape, generator=gen)
    ckpt = root / "checkpoints" / "step_00000001"
    ckpt.mkdir(parents=True)
    save_file(sd, str(ckpt / "model.safetensors"))
    (ckpt / "trainer.json").write_text(json.dumps({"step": 1, "config": {"stage": "vae"}}))
    return root


#: The name the test folders (onedc-tiny's weights, other fine decoders) carry.
OWN_NAME = "onedc-tiny-fine-test"


def _rename(folder, name: str) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "name": name}))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two model folders: the embedded model with fine decoder A, and with fine decoder B."""
    from onedc_media.model.loading import embedded_model_dir
    from onedc_media.train.export import export_fine_decoder

    tmp = tmp_path_factory.mktemp("fine")
    out = []
    for name, seed in (("a", 1), ("b", 2)):
        d = tmp / name
        shutil.copytree(embedded_model_dir(), d)
        (d / "fine-decoder.safetensors").unlink(missing_ok=True)
        _rename(d, OWN_NAME)  # other fine decoders: not onedc-tiny's (weights/pins.py)
        export_fine_decoder(_vae_checkpoint(tmp / f"run-{name}", seed), d)
        out.append(d)
    return out


@pytest.fixture(scope="module")
def engines(folders):
    from onedc_media.model.engine import OneDCEngine

    return [OneDCEngine.from_pretrained(d) for d in folders]


@pytest.fixture(scope="module")
def plain_engine(tmp_path_factory):
    """The embedded model without any fine decoder."""
    from onedc_media.model.engine import OneDCEngine
    from onedc_media.model.loading import embedded_model_dir

    d = tmp_path_factory.mktemp("plain") / "m"
    shutil.copytree(embedded_model_dir(), d)
    (d / "fine-decoder.safetensors").unlink(missing_ok=True)
    _rename(d, OWN_NAME)
    return OneDCEngine.from_pretrained(d)


@pytest.fixture(scope="module")
def crop():
    return np.ascontiguousarray(read_image(DATA / "astronaut.png")[64:192, 64:192])


@pytest.fixture(scope="module")
def layered(engines, crop):
    return engines[0].compress([crop], 3, residual=_cfg(decoder="fine"))[0]


def test_a_layered_picture_names_its_fine_decoder_and_is_drawn_by_it(engines, plain_engine, crop, layered):
    from onedc_media.model.bitstream import FINE_ID_BYTES, FLAG_FINE_DECODER, unpack_picture

    a = engines[0]
    assert a.ref == plain_engine.ref  # the model's identity does not include the fine decoder
    header, chunks = unpack_picture(layered, num_rates=a.num_rates)
    assert header.residual and header.fine_decoder and layered[5] & FLAG_FINE_DECODER
    assert chunks[-1][:FINE_ID_BYTES] == a.fine_decoder.id == bytes.fromhex(a.fine_decoder.sha256)[:8]
    dec = a.entropy_decode(layered)
    assert dec.fine and dec.residual is not None and dec.residual.abs().sum() > 0
    out = a.synthesize([dec])[0]
    # by hand: the U-Net's latent plus the layer, through the fine decoder, not the model's
    with torch.no_grad():
        lat = a.base_latent(dec) + dec.residual[None]
        by_fine = a.fine_decoder.vae.decode(lat)
        by_model = a.model.vae.decode(lat)
    assert np.array_equal(out, _u8(by_fine)[: crop.shape[0], : crop.shape[1]])
    assert not np.array_equal(out, _u8(by_model)[: crop.shape[0], : crop.shape[1]])


def _u8(x: torch.Tensor) -> np.ndarray:
    """Decoder output [1, 3, H, W] in [-1, 1] -> HxWx3 uint8, as the engine converts it."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


def test_the_layer_is_fitted_through_the_fine_decoder(engines, crop, layered):
    """The same fit through the model's decoder writes other symbols (and the old layout)."""
    a = engines[0]
    old = a.compress([crop], 3, residual=_cfg(decoder="model"))[0]
    assert not a.entropy_decode(old).fine and old[5] == 0x01
    assert a.entropy_decode(old).residual.ne(a.entropy_decode(layered).residual).any()


def test_old_layered_pictures_decode_as_before(engines, plain_engine, crop):
    """A layered picture without the fine-decoder flag (written before it existed) is drawn
    by the model's VAE decoder, whether or not the model now has a fine decoder."""
    old = plain_engine.compress([crop], 3, residual=_cfg())[0]  # no fine decoder: old layout
    assert old[5] == 0x01
    assert np.array_equal(engines[0].decompress([old])[0], plain_engine.decompress([old])[0])


def test_earlier_fine_decoders_kept_in_the_folder_still_draw_their_pictures(folders, engines, crop,
                                                                          layered, tmp_path):
    """A folder whose fine decoder was replaced keeps the old one as fine-decoder.<id>: the
    encoder uses the new one, pictures that name the old one decode as they did."""
    from onedc_media.model.engine import OneDCEngine
    from onedc_media.model.fine_decoder import FINE_DECODER_FILE, earlier_fine_decoder_name

    a, b = engines
    d = tmp_path / "m"
    shutil.copytree(folders[1], d)  # current: B
    shutil.copy(folders[0] / FINE_DECODER_FILE, d / earlier_fine_decoder_name(a.fine_decoder.sha256))
    eng = OneDCEngine.from_pretrained(d)
    assert eng.fine_decoder.id == b.fine_decoder.id
    dec = eng.entropy_decode(layered)  # written through A
    assert dec.fine_id == a.fine_decoder.id
    assert np.array_equal(eng.decompress([layered])[0], a.decompress([layered])[0])
    new = eng.compress([crop], 3, residual=_cfg(decoder="fine"))[0]
    assert eng.entropy_decode(new).fine_id == b.fine_decoder.id
    # the bytes decide, not the name: a file named for A that holds B draws nothing of A's
    shutil.copy(folders[1] / FINE_DECODER_FILE, d / earlier_fine_decoder_name(a.fine_decoder.sha256))
    with pytest.raises(ModelMismatchError, match=a.fine_decoder.id.hex()):
        OneDCEngine.from_pretrained(d).entropy_decode(layered)


def test_export_keeps_the_fine_decoder_it_replaces(folders, engines, tmp_path):
    from onedc_media.model.fine_decoder import FINE_DECODER_FILE, earlier_fine_decoder_name
    from onedc_media.train.export import export_fine_decoder

    a, b = engines
    d = tmp_path / "m"
    shutil.copytree(folders[0], d)  # current: A
    before = {p.name for p in d.glob("fine-decoder*")}
    run_b = _vae_checkpoint(tmp_path / "run-b", 2)  # seed 2: B's tensors, as the fixture made them
    _, sha = export_fine_decoder(run_b, d)
    assert sha == b.fine_decoder.sha256
    kept = d / earlier_fine_decoder_name(a.fine_decoder.sha256)
    assert kept.read_bytes() == (folders[0] / FINE_DECODER_FILE).read_bytes()
    export_fine_decoder(run_b, d)  # the same decoder again: nothing more is kept
    assert {p.name for p in d.glob("fine-decoder*")} == before | {kept.name}


def test_the_shipped_model_keeps_its_earlier_fine_decoder(crop):
    """Pictures written with the fine decoder onedc-tiny shipped first (c75b31e5...) decode
    with the package as it is now, drawn by that decoder."""
    from onedc_media.model.engine import OneDCEngine
    from onedc_media.model.fine_decoder import load_fine_decoder
    from onedc_media.model.loading import embedded_model_dir

    d = embedded_model_dir()
    current = OneDCEngine.from_pretrained("onedc-tiny")
    old_file = d / "fine-decoder.c75b31e59eb8689e.safetensors"
    old = load_fine_decoder(d, current.model, current.ref.sha256, old_file)
    assert old is not None and old.sha256.startswith("c75b31e59eb8689e")
    assert current.fine_decoder.id != old.id
    writer = OneDCEngine.from_pretrained("onedc-tiny", fine_decoder=old)  # as that version encoded
    packet = writer.compress([crop], 3, residual=_cfg(decoder="fine"))[0]
    dec = current.entropy_decode(packet)
    assert dec.fine_id == old.id
    assert np.array_equal(current.decompress([packet])[0], writer.decompress([packet])[0])


def test_pictures_drawn_by_a_missing_or_other_fine_decoder_are_refused(engines, plain_engine, layered):
    with pytest.raises(ModelMismatchError, match="has none"):
        plain_engine.entropy_decode(layered)
    with pytest.raises(ModelMismatchError, match=f"holds {engines[1].fine_decoder.id.hex()}"):
        engines[1].entropy_decode(layered)


def test_fine_decoder_flag_needs_a_layer_and_an_id(engines):
    from onedc_media.model.bitstream import PictureHeader, add_residual

    with pytest.raises(ValueError, match="needs a residual layer"):
        PictureHeader(q=0, width=64, height=64, band_rows=32, fine_decoder=True)
    plain = engines[0].compress([np.zeros((64, 64, 3), np.uint8)], 0)[0]
    with pytest.raises(ValueError, match="8 bytes"):
        add_residual(plain, b"\x01\x00", num_rates=engines[0].num_rates, fine_id=b"\x00" * 4)
    short = add_residual(plain, b"", num_rates=engines[0].num_rates, fine_id=b"\x00" * 8)
    with pytest.raises(ModelMismatchError):  # an id that is not this model's
        engines[0].entropy_decode(short)
    head = add_residual(plain, b"", num_rates=engines[0].num_rates, fine_id=engines[0].fine_decoder.id)
    with pytest.raises(BitstreamError, match="too short"):  # the id, then nothing
        engines[0].entropy_decode(head)


def test_damaged_fine_decoder_files_are_refused(folders, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    from onedc_media.model.engine import OneDCEngine

    d = tmp_path / "m"
    shutil.copytree(folders[0], d)
    f = d / "fine-decoder.safetensors"
    tensors = load_file(str(f))
    # another version's fine decoder (the folder's model.safetensors was swapped): the
    # model loads without it, and says so
    save_file(tensors, str(f), metadata={"format": "onedc-fine-decoder/1", "model_sha256": "0" * 64})
    with caplog.at_level("WARNING", logger="onedc_media.model.fine_decoder"):
        assert OneDCEngine.from_pretrained(d).fine_decoder is None
    assert "belongs to the model with weights sha256 0000" in caplog.text
    save_file(tensors, str(f), metadata={"format": "something-else"})
    with pytest.raises(ModelError, match="not a OneDC fine decoder"):
        OneDCEngine.from_pretrained(d)
    ref = OneDCEngine.from_pretrained(folders[0]).ref
    save_file(dict(list(tensors.items())[1:]), str(f),
              metadata={"format": "onedc-fine-decoder/1", "model_sha256": ref.sha256})
    with pytest.raises(ModelError, match="does not match the model's VAE decoder"):
        OneDCEngine.from_pretrained(d)
    f.write_bytes(b"\x00" * 20)
    with pytest.raises(ModelError, match="cannot read"):
        OneDCEngine.from_pretrained(d)


def test_export_refuses_a_decoder_trained_on_another_encoder(folders, tmp_path):
    from onedc_media.train.export import export_fine_decoder

    run = _vae_checkpoint(tmp_path / "run", 3, encoder_noise=True)
    with pytest.raises(ModelError, match="another VAE encoder"):
        export_fine_decoder(run, folders[0])
    with pytest.raises(ModelError, match="no checkpoint"):
        export_fine_decoder(tmp_path / "nothing", folders[0])


def test_export_is_deterministic_and_the_cli_says_what_it_wrote(folders, tmp_path, capsys):
    from onedc_media.cli.main import main

    d = tmp_path / "m"
    shutil.copytree(folders[0], d)
    before = (d / "fine-decoder.safetensors").read_bytes()
    run = _vae_checkpoint(tmp_path / "run", 1)  # the same weights as folder a's
    assert main(["export", str(run), "--fine-decoder", "-o", str(d)]) == 0
    assert (d / "fine-decoder.safetensors").read_bytes() == before
    assert "sha256" in capsys.readouterr().out


def test_fit_through_the_fine_decoder_buys_quality(engines, crop):
    """The layer does for the fine decoder what it does for the model's (a sanity check of
    the fit's direction, not of the trained decoder's worth: that is the model card's)."""
    a = engines[0]

    def psnr(x):
        return 10 * np.log10(255**2 / np.mean((x.astype(np.float64) - crop) ** 2))

    dec = a.entropy_decode(a.compress([crop], 3)[0])
    with torch.no_grad():
        base_fine = a.fine_decoder.vae.decode(a.base_latent(dec))
    base_fine = _u8(base_fine)
    layered = a.decompress(a.compress([crop], 3, residual=_cfg(steps=15, decoder="fine"))[0:1])[0]
    assert psnr(layered) > psnr(base_fine[: crop.shape[0], : crop.shape[1]]) + 0.5


def test_damaged_layers_of_fine_pictures_are_format_errors(engines, layered):
    from onedc_media.model.bitstream import pack_picture, unpack_picture

    a = engines[0]
    header, chunks = unpack_picture(layered, num_rates=a.num_rates)
    with pytest.raises(OdcFormatError):
        a.entropy_decode(pack_picture(header, [*chunks[:-1], chunks[-1][:5]]))


def test_replicas_keep_the_fine_decoder(engines, layered):
    """Decoders run on replicas of the engine (another device, channels_last on CPU): a
    replica without the fine decoder could entropy-decode a layered picture but not draw it."""
    from onedc_media.runtime.decoder import engine_on

    a = engines[0]
    replica = engine_on(a, "cpu", channels_last=True)
    assert replica is not a and replica.fine_decoder.id == a.fine_decoder.id
    got, want = replica.decompress([layered])[0], a.decompress([layered])[0]
    assert np.abs(got.astype(np.int16) - want).max() <= 2


def test_the_cli_round_trip_draws_with_the_shipped_fine_decoder(tmp_path, crop):
    """``encode --opt enhance=1`` then ``decode``, as a user runs them, with the embedded
    model (its fine decoder is part of the package)."""
    from onedc_media.cli.main import main
    from onedc_media.imageio import write_image
    from onedc_media.model.engine import OneDCEngine

    write_image(tmp_path / "a.png", crop)
    assert OneDCEngine.from_pretrained("onedc-tiny").fine_decoder is not None
    psnr = {}
    for name, opts in (("plain", []), ("layered", ["--opt", "enhance=1"])):
        odc, png = tmp_path / f"{name}.odc", tmp_path / f"{name}.png"
        assert main(["encode", str(tmp_path / "a.png"), "-o", str(odc), "-q", "4", *opts]) == 0
        assert main(["decode", str(odc), "-o", str(png)]) == 0
        out = read_image(png)
        assert out.shape == crop.shape
        psnr[name] = 10 * np.log10(255**2 / np.mean((out.astype(np.float64) - crop) ** 2))
    assert psnr["layered"] > psnr["plain"] + 0.5, psnr


def test_best_keeps_the_decoder_with_the_lower_cost(engines, crop, monkeypatch):
    """``decoder="best"`` fits through both decoders and writes the cheaper picture, which
    is byte for byte the one that decoder alone writes; the progress bar counts both fits."""
    a = engines[0]
    fine = a.compress([crop], 3, residual=_cfg(decoder="fine"))[0]
    model = a.compress([crop], 3, residual=_cfg(decoder="model"))[0]
    costs: list[float] = []
    real = type(a)._layer_cost

    def spy(self, *args):
        costs.append(real(self, *args))
        return costs[-1]

    monkeypatch.setattr(type(a), "_layer_cost", spy)
    steps: list[int] = []
    best = a.compress([crop], 3, residual=_cfg(), progress=steps.append)[0]
    assert len(costs) == 2  # fine first, then the model's
    assert best == (fine if costs[0] <= costs[1] else model)
    assert steps == list(range(1, a.encode_steps(*crop.shape[:2], None, _cfg()) + 1))
    assert a.encode_steps(*crop.shape[:2], None, _cfg()) == 2 * a.encode_steps(*crop.shape[:2], None,
                                                                                _cfg(decoder="fine"))
    # either way round: make the fine decoder's cost the higher one
    monkeypatch.setattr(type(a), "_layer_cost", lambda self, vae, *args: 1.0 if vae is a.fine_decoder.vae else 0.0)
    assert a.compress([crop], 3, residual=_cfg())[0] == model
    monkeypatch.setattr(type(a), "_layer_cost", lambda self, vae, *args: 0.0 if vae is a.fine_decoder.vae else 1.0)
    assert a.compress([crop], 3, residual=_cfg())[0] == fine


def test_the_cost_is_what_the_decoder_draws_plus_the_bits(engines, crop):
    """``_layer_cost`` on a picture's own layer = 4 MSE + L1 of its decoded pixels (in
    [-1, 1], before rounding to 8 bits) + lmbda x the chunk's bits per pixel."""
    from onedc_media.model.bitstream import unpack_picture

    a = engines[0]
    cfg = _cfg(decoder="fine")
    packet = a.compress([crop], 3, residual=cfg)[0]
    dec = a.entropy_decode(packet)
    chunk = unpack_picture(packet, num_rates=a.num_rates)[1][-1]
    sym = torch.round(dec.residual / (cfg.step_code / 4096)).to(torch.int64)
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1
    enc = a.analyse([crop])[0]
    with torch.no_grad():
        base = a.base_latent(dec)
        got = a._layer_cost(a.fine_decoder.vae, x, base, sym, 8 * len(chunk), enc, cfg)
        d = (a.fine_decoder.vae.decode(base + dec.residual[None]).clamp(-1, 1) - x)
    want = float(4 * d.square().mean() + d.abs().mean()) + cfg.lmbda * 8 * len(chunk) / crop.shape[0] / crop.shape[1]
    assert got == pytest.approx(want, rel=1e-5)
