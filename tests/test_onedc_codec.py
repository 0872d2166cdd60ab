"""The OneDC codec end to end: real bytes, golden bitstreams, refusal, damage, sizes.

Golden packets in ``tests/golden/onedc/`` were encoded with the embedded model; their
decoded symbols must hash to the committed values on any machine, thread count and
convolution backend. Regenerate (after retraining the embedded model) with
``GENERATE_EXPECTED=1 pytest tests/test_onedc_codec.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from onedc_media.codec.contract import ModelRef
from onedc_media.errors import ModelMismatchError, OdcFormatError
from onedc_media.imageio import read_image

GOLDEN = Path(__file__).parent / "golden" / "onedc"
DATA = Path(__file__).parent / "data"
REGENERATE = os.environ.get("GENERATE_EXPECTED") == "1"


@pytest.fixture(scope="module")
def engine():
    from onedc_media.model.engine import OneDCEngine

    return OneDCEngine.from_pretrained("onedc-tiny")


@pytest.fixture(scope="module")
def chelsea():
    return read_image(DATA / "chelsea.png")


def symbol_hash(dec) -> str:
    h = hashlib.sha256()
    h.update(dec.z_int.numpy().astype("<i8").tobytes())
    for s in dec.symbols:
        h.update(np.asarray(s).astype("<i8").tobytes())
    h.update(dec.y_hat.numpy().astype("<f4").tobytes())
    return h.hexdigest()


def _golden_cases(chelsea):
    gray = np.tile(np.linspace(0, 255, 96, dtype=np.uint8)[None, :, None], (80, 1, 3))
    return {"chelsea_q1": (chelsea, 0), "chelsea_q6": (chelsea, 5), "ramp_q3": (gray, 2)}


def test_golden_bitstreams(engine, chelsea):
    expected_file = GOLDEN / "expected.json"
    if REGENERATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        expected = {"model": engine.ref.name, "sha256": engine.ref.sha256,
                    "parsing_sha256": engine.ref.parsing_sha256, "cases": {}}
        for name, (img, q) in _golden_cases(chelsea).items():
            payload = engine.compress([img], q)[0]
            (GOLDEN / f"{name}.bin").write_bytes(payload)
            dec = engine.entropy_decode(payload, keep_symbols=True)
            expected["cases"][name] = {"symbols": symbol_hash(dec), "bytes": len(payload)}
        expected_file.write_text(json.dumps(expected, indent=2) + "\n")
    expected = json.loads(expected_file.read_text())
    if expected["parsing_sha256"] != engine.ref.parsing_sha256:
        pytest.fail("the embedded model changed since the golden bitstreams were made: "
                    "regenerate them with GENERATE_EXPECTED=1 (and review the diff)")
    threads = torch.get_num_threads()
    try:
        for name, case in expected["cases"].items():
            payload = (GOLDEN / f"{name}.bin").read_bytes()
            assert len(payload) == case["bytes"]
            variants = []
            for n in (1, 2):
                torch.set_num_threads(n)
                variants.append(symbol_hash(engine.entropy_decode(payload, keep_symbols=True)))
            with torch.backends.mkldnn.flags(enabled=False):
                variants.append(symbol_hash(engine.entropy_decode(payload, keep_symbols=True)))
            assert set(variants) == {case["symbols"]}, name
    finally:
        torch.set_num_threads(threads)


def test_symbols_do_not_depend_on_synthesis_dtype():
    """A bfloat16 synthesis engine parses the golden packets to the same symbols."""
    from onedc_media.model.engine import OneDCEngine

    expected = json.loads((GOLDEN / "expected.json").read_text())
    eng = OneDCEngine.from_pretrained("onedc-tiny", dtype=torch.bfloat16)
    if expected["parsing_sha256"] != eng.ref.parsing_sha256:
        pytest.fail("golden bitstreams are stale: regenerate with GENERATE_EXPECTED=1")
    payload = (GOLDEN / "chelsea_q6.bin").read_bytes()
    dec = eng.entropy_decode(payload, keep_symbols=True)
    assert symbol_hash(dec) == expected["cases"]["chelsea_q6"]["symbols"]
    assert eng.synthesize([dec])[0].shape == (200, 301, 3)


def test_symbols_do_not_depend_on_float_weights(engine, chelsea):
    """Noise in the synthesis/analysis floats never reaches the parsing path."""
    payload = (GOLDEN / "chelsea_q1.bin").read_bytes()
    before = symbol_hash(engine.entropy_decode(payload, keep_symbols=True))
    saved = {k: v.clone() for k, v in engine.model.state_dict().items()}
    try:
        with torch.no_grad():
            for p in engine.model.parameters():
                p.add_(torch.randn_like(p) * 1e-3)
        assert symbol_hash(engine.entropy_decode(payload, keep_symbols=True)) == before
    finally:
        engine.model.load_state_dict(saved)


def test_round_trip_matches_encoder_reconstruction(engine, chelsea):
    enc = engine.analyse([chelsea])[0]
    for q in (0, engine.num_rates - 1):
        payload, rec = engine.entropy_encode(enc, q, reconstruct=True)
        dec = engine.entropy_decode(payload)
        assert torch.equal(rec.y_hat, dec.y_hat) and torch.equal(rec.z_int, dec.z_int)
        out = engine.synthesize([dec])[0]
        assert out.shape == chelsea.shape and out.dtype == np.uint8


def test_batched_decode_equals_single(engine, chelsea):
    payload = (GOLDEN / "chelsea_q6.bin").read_bytes()
    single = engine.decompress([payload])[0]
    batch = engine.decompress([payload] * 4)
    for b in batch:
        assert np.abs(b.astype(int) - single.astype(int)).max() <= 2


@pytest.mark.parametrize("shape", [(1, 1), (23, 37), (65, 129), (64, 64)])
def test_odd_sizes(engine, shape):
    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    payload = engine.compress([img], 2)[0]
    out = engine.decompress([payload])[0]
    assert out.shape == img.shape


def test_tiled_coding_bounds_memory_and_keeps_shape():
    from onedc_media.model.engine import OneDCEngine, tile_spans

    assert tile_spans(10, 4, 1, 1)[0] == (0, 4) and tile_spans(10, 4, 1, 1)[-1][1] == 10
    for n, tile, ov, al in [(37, 16, 4, 4), (100, 64, 8, 4), (64, 64, 8, 4)]:
        spans = tile_spans(n, tile, ov, al)
        covered = np.zeros(n, bool)
        for a, b in spans:
            assert b - a <= tile and a % al == 0
            covered[a:b] = True
        assert covered.all()
    eng = OneDCEngine.from_pretrained("onedc-tiny", tile=256)
    img = read_image(DATA / "coffee.jpg")  # 512x341 -> 2x2 tiles of 256
    payload = eng.compress([img], 3)[0]
    out = eng.decompress([payload])[0]
    assert out.shape == img.shape
    # Seams are blended: no column/row jump at tile borders larger than the picture's own.
    jumps = np.abs(np.diff(out.astype(float), axis=1)).mean(axis=(0, 2))
    assert jumps[250:262].max() < 4 * np.median(jumps) + 8


def test_model_mismatch_is_refused(engine):
    engine.check_model(engine.ref)
    other = ModelRef(engine.ref.name, "0" * 64, engine.ref.parsing_sha256)
    with pytest.raises(ModelMismatchError, match="0000000000000000"):
        engine.check_model(other)
    other = ModelRef(engine.ref.name, engine.ref.sha256, "f" * 64)
    with pytest.raises(ModelMismatchError, match="parsing"):
        engine.check_model(other)
    with pytest.raises(ModelMismatchError):
        engine.check_model(None)


def test_corrupted_and_truncated_packets_raise(engine):
    payload = (GOLDEN / "ramp_q3.bin").read_bytes()
    rng = np.random.default_rng(0)
    for pos in list(range(0, len(payload), max(1, len(payload) // 60))) + [len(payload) - 1]:
        bad = bytearray(payload)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(OdcFormatError):
            engine.entropy_decode(bytes(bad))
    for cut in range(0, len(payload), max(1, len(payload) // 40)):
        with pytest.raises(OdcFormatError):
            engine.entropy_decode(payload[:cut])
    for n in (0, 1, 21, 22, 100, 5000):
        with pytest.raises(OdcFormatError):
            engine.entropy_decode(rng.integers(0, 256, n, dtype=np.uint8).tobytes())


def test_plugin_codec_through_registry(tmp_path):
    import onedc_media
    from onedc_media.stills import encode_pictures

    plugins = onedc_media.load_plugins(blocked=[])
    info = plugins.codecs.get("onedc")
    assert info.capabilities.batch and info.plugin == "onedc"
    img = read_image(DATA / "astronaut.png")
    res = encode_pictures([img, img[::-1].copy()], tmp_path / "a.odc", codec="onedc",
                          options={"quality": 2}, plugins=plugins)
    assert res.pictures == 2 and res.file_bytes == (tmp_path / "a.odc").stat().st_size
    from onedc_media import container

    with container.open(tmp_path / "a.odc") as inp:
        stream = inp.streams[0]
        packets = [p.data for p in inp.demux()]
    dec = info.create().decoder(stream.codec_params, model=stream.model)
    out = dec.decode(packets)
    assert [o.shape for o in out] == [img.shape, img.shape]
    forged = ModelRef(stream.model.name, "1" * 64, stream.model.parsing_sha256)
    with pytest.raises(ModelMismatchError):
        info.create().decoder(stream.codec_params, model=forged)


def _pin_as_earlier_release(monkeypatch, folder) -> None:
    """Let *folder* (onedc-tiny with changed weights) pass as an earlier onedc-tiny release."""
    from onedc_media.weights.pins import PINS, release_of

    monkeypatch.setitem(PINS, "onedc-tiny", (*PINS["onedc-tiny"], release_of(folder)))


def test_earlier_weights_decode_from_the_model_path(tmp_path, monkeypatch, capsys):
    """A file written with other weights than the embedded ones (an earlier release's):
    refused with a message that says how, then decoded with `decode --model DIR` or
    ONEDC_MEDIA_MODEL_PATH, which are searched by SHA-256."""
    import shutil

    from safetensors.torch import load_file, save_file

    from onedc_media.cli.main import main
    from onedc_media.model.loading import MODEL_PATH_ENV, embedded_model_dir, find_model
    from onedc_media.stills import encode_pictures

    monkeypatch.setenv(MODEL_PATH_ENV, "")  # restored (or removed) after the test
    old = tmp_path / "models" / "older"
    shutil.copytree(embedded_model_dir(), old)
    sd = load_file(str(old / "model.safetensors"))
    name = next(k for k in sorted(sd) if k.startswith("vae.") and sd[k].is_floating_point())
    save_file({**sd, name: sd[name] * 0.5}, str(old / "model.safetensors"))
    _pin_as_earlier_release(monkeypatch, old)
    img = read_image(DATA / "astronaut.png")[:64, :96].copy()
    res = encode_pictures([img], tmp_path / "old.odc", codec="onedc", options={"model": str(old)},
                          form="stream")  # the stream form names the weights by their whole hash
    assert res.pictures == 1

    assert main(["decode", str(tmp_path / "old.odc"), "-o", str(tmp_path / "a.png")]) == 1
    err = capsys.readouterr().err
    assert "--model DIR" in err and MODEL_PATH_ENV in err
    for extra in (["--model", str(old)], ["--model", str(old.parent)]):  # a folder of models too
        out = tmp_path / f"b{len(extra[1])}.png"
        assert main(["decode", str(tmp_path / "old.odc"), "-o", str(out), *extra]) == 0
        assert read_image(out).shape == img.shape
    monkeypatch.setenv(MODEL_PATH_ENV, os.pathsep.join([str(tmp_path / "nowhere"), str(old.parent)]))
    assert main(["decode", str(tmp_path / "old.odc"), "-o", str(tmp_path / "c.png")]) == 0
    from onedc_media import container

    with container.open(tmp_path / "old.odc") as inp:
        ref = inp.streams[0].model
    assert find_model(ref) == str(old)
    assert find_model(ModelRef(ref.name, "0" * 64, ref.parsing_sha256)) is None
    assert main(["decode", str(tmp_path / "old.odc"), "--model", str(tmp_path / "none")]) == 1
    # --model lasts for its decode only
    monkeypatch.setenv(MODEL_PATH_ENV, "")
    assert main(["decode", str(tmp_path / "old.odc"), "-o", str(tmp_path / "d.png"),
                 "--model", str(old)]) == 0
    assert os.environ[MODEL_PATH_ENV] == ""
    # an incomplete copy that sorts first, and an unreadable entry, do not stop the search
    (tmp_path / "models" / "aaa").mkdir()
    shutil.copy(old / "model.safetensors", tmp_path / "models" / "aaa")
    search = os.pathsep.join(["x" * 5000, str(old.parent)])
    assert find_model(ref, search) == str(old)
    # an explicit model option is used or refused, never replaced by the search path
    import onedc_media

    monkeypatch.setenv(MODEL_PATH_ENV, str(old.parent))
    codec = onedc_media.default_plugins().codecs.create("onedc")
    with pytest.raises(ModelMismatchError):
        codec.decoder({"quality": 5}, model=ref, options={"model": "onedc-tiny"})
    assert codec.decoder({"quality": 5}, model=ref).engine.ref.sha256 == ref.sha256


def test_default_quality_is_the_models(tmp_path, engine):
    """No quality given: the rate point the model marks as its default, recorded in the stream."""
    from onedc_media import container, load_plugins
    from onedc_media.stills import encode_pictures

    marked = [i + 1 for i, r in enumerate(engine.model.config.rate_points) if r.get("default")]
    assert marked == [engine.default_quality]
    img = read_image(DATA / "astronaut.png")[:128, :128].copy()
    encode_pictures([img], tmp_path / "d.odc", codec="onedc", plugins=load_plugins(blocked=[]),
                    form="stream")  # the still form keeps the rate point in the packet only
    with container.open(tmp_path / "d.odc") as inp:
        assert inp.streams[0].codec_params["quality"] == engine.default_quality


def test_default_quality_without_a_mark_is_the_middle():
    from onedc_media.errors import ModelError
    from onedc_media.model.engine import OneDCEngine
    from onedc_media.model.loading import build_model, model_config

    micro = DATA / "onedc-micro.yaml"  # two rate points, none marked
    assert OneDCEngine.from_training(build_model(micro)).default_quality == 1
    cfg = model_config(micro)
    cfg["rate_points"] = [{**r, "default": True} for r in cfg["rate_points"]]
    from onedc_media.model.onedc import OneDCModel

    with pytest.raises(ModelError, match="at most one"):
        OneDCModel(**cfg)


def test_quality_ceiling_benchmark(tmp_path, capsys):
    """benchmarks/quality_ceiling.py: the VAE round trip bounds the codec; junk is skipped."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "quality_ceiling", Path(__file__).parents[1] / "benchmarks" / "quality_ceiling.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import cv2

    img = read_image(DATA / "astronaut.png")
    cv2.imwrite(str(tmp_path / "a.png"), img[:, :, ::-1])
    (tmp_path / "b.png").write_bytes(b"not a picture")
    assert mod.main([str(tmp_path), "--crop", "128"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("a.png")).split()
    vae, codec = float(row[1]), float(row[2])
    assert 15 < codec < 60 and 15 < vae < 60
    assert "b.png" in out and "skipped" in out and "the latent path loses" in out
    # the two ceiling columns: an optimised latent decodes at least as well as the encoder's
    assert mod.main([str(tmp_path), "--crop", "64", "--latent-steps", "15", "--refine", "3"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("a.png")).split()
    vae, latent, codec, refined = map(float, row[1:5])
    assert latent > vae + 0.2 and 10 < codec < 60 and 10 < refined < 60
    assert mod.main([str(tmp_path), "--refine", "-1"]) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert mod.main([str(empty)]) == 1
    assert mod.main([str(tmp_path / "missing")]) == 1  # one line, no traceback
    assert mod.main([str(tmp_path), "-q", "0"]) == 1
    (empty / "junk.png").write_bytes(b"junk")
    assert mod.main([str(empty)]) == 1
    assert "no usable picture" in capsys.readouterr().err


def test_latent_skip_starts_as_the_model_without_it(tmp_path):
    """A model grown with the skip (configs/models/onedc-tiny-skip.yaml) begins exactly where
    the one without it stopped, and once the skip has weights they reach the decode."""
    import torch

    from onedc_media.model.engine import OneDCEngine
    from onedc_media.model.loading import model_config
    from onedc_media.model.onedc import OneDCModel

    cfg = model_config(DATA / "onedc-micro.yaml")
    torch.manual_seed(0)
    plain = OneDCModel(**cfg).eval()
    grown = OneDCModel(**{**cfg, "latent_skip": True}).eval()
    missing, unexpected = grown.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["skip.conv.bias", "skip.conv.weight"] and not unexpected
    img = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    before = OneDCEngine.from_training(plain)
    after = OneDCEngine.from_training(grown)
    packet = before.compress([img], 1)[0]
    assert after.compress([img], 1)[0] == packet  # the encoder side is untouched
    np.testing.assert_array_equal(after.decompress([packet])[0], before.decompress([packet])[0])
    with torch.no_grad():
        after.model.skip.conv.bias.fill_(0.5)  # the engine holds its own copy
    assert not np.array_equal(after.decompress([packet])[0], before.decompress([packet])[0])
    assert "skip.conv.weight" in grown.inference_state_dict()
