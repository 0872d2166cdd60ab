"""The Pillow and imageio plugins: real files of both forms, OneDC and classic codecs,
the embedded model and ``model=DIR``, damaged files."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence, UnidentifiedImageError

import onedc_media.pillow
from onedc_media import container
from onedc_media.codec import ModelRef
from onedc_media.errors import ChecksumError, ModelMismatchError, OdcError
from onedc_media.imageio import read_image
from onedc_media.model.loading import MODEL_PATH_ENV, embedded_model_dir
from onedc_media.stills import SRGB, PictureReader, encode_pictures

iio = pytest.importorskip("imageio.v3")
import onedc_media.imageio_plugin  # noqa: E402 - needs imageio

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden" / "onedc"


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    monkeypatch.setenv(MODEL_PATH_ENV, "")
    onedc_media.pillow.register()
    onedc_media.imageio_plugin.register()
    yield
    onedc_media.pillow.register()  # back to the defaults


@pytest.fixture(scope="module")
def pictures() -> list[np.ndarray]:
    img = read_image(DATA / "chelsea.png")
    return [img[:48, :64].copy(), img[48:96, 64:128].copy(), img[:48, 64:128].copy()]


@pytest.fixture(scope="module")
def onedc_still(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A real OneDC picture (a golden bitstream of the embedded model) in the still form,
    and the picture the decode path draws from it."""
    expected = json.loads((GOLDEN / "expected.json").read_text())
    ref = ModelRef(expected["model"], expected["sha256"], expected["parsing_sha256"])
    path = tmp_path_factory.mktemp("onedc") / "ramp.odc"
    header = container.StreamHeader("image", "onedc", width=96, height=80, color=SRGB, model=ref)
    container.write_still(path, header, (GOLDEN / "ramp_q3.bin").read_bytes())
    with PictureReader(path) as reader:
        return path, reader.picture(0)


def other_model(folder: Path) -> Path:
    """A model folder whose weights differ from the embedded ones."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(embedded_model_dir(), folder)
    sd = load_file(str(folder / "model.safetensors"))
    name = next(k for k in sorted(sd) if k.startswith("vae.") and sd[k].is_floating_point())
    save_file({**sd, name: sd[name] * 0.5}, str(folder / "model.safetensors"))
    return folder


# -- Pillow ------------------------------------------------------------------------------


def test_pillow_opens_both_forms_by_magic(tmp_path, pictures):
    one = pictures[0]
    encode_pictures([one], tmp_path / "still.odc", codec="png")
    encode_pictures([one], tmp_path / "stream.odc", codec="png", form="stream")
    shutil.copy(tmp_path / "still.odc", tmp_path / "no_extension")
    for name, form in (("still.odc", "still"), ("stream.odc", "stream"), ("no_extension", "still")):
        with Image.open(tmp_path / name) as im:
            assert im.format == "ODC" and im.mode == "RGB" and im.size == (64, 48)
            assert im.info["odc_form"] == form and im.info["codec"] == "png"
            assert getattr(im, "n_frames", 1) == 1 and not im.is_animated
            assert np.array_equal(np.asarray(im), one)


def test_pillow_reads_the_header_without_decoding(tmp_path, pictures, monkeypatch):
    encode_pictures([pictures[0]], tmp_path / "a.odc", codec="png")
    calls = []
    real = PictureReader.picture
    monkeypatch.setattr(PictureReader, "picture", lambda self, i: calls.append(i) or real(self, i))
    im = Image.open(tmp_path / "a.odc")
    assert im.size == (64, 48) and calls == []
    im.load()
    im.load()
    assert calls == [0]


def test_pillow_iterates_the_pictures_of_a_file(tmp_path, pictures):
    encode_pictures(pictures, tmp_path / "three.odc", codec="png")
    with Image.open(tmp_path / "three.odc") as im:
        assert im.n_frames == 3 and im.is_animated and im.info["odc_form"] == "stream"
        got = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(im)]
        assert all(np.array_equal(a, b) for a, b in zip(got, pictures)) and len(got) == 3
        im.seek(1)
        assert im.tell() == 1 and np.array_equal(np.asarray(im), pictures[1])
        with pytest.raises(EOFError):
            im.seek(3)


def test_pillow_saves_with_any_codec_and_its_options(tmp_path, pictures):
    im = Image.fromarray(pictures[0])
    im.save(tmp_path / "a.odc", codec="png")
    with container.open(tmp_path / "a.odc") as inp:
        assert inp.form == "still" and inp.streams[0].codec == "png"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.odc")), pictures[0])
    sizes = {}
    for q in (20, 95):
        buf = io.BytesIO()
        im.save(buf, format="ODC", codec="jpeg", quality=q)
        sizes[q] = len(buf.getvalue())
        assert np.asarray(Image.open(buf)).shape == (48, 64, 3)
    assert sizes[20] < sizes[95]
    im.save(tmp_path / "s.odc", codec="png", stream_form=True)
    assert Image.open(tmp_path / "s.odc").info["odc_form"] == "stream"
    frames = [Image.fromarray(p) for p in pictures]
    frames[0].save(tmp_path / "all.odc", codec="png", save_all=True, append_images=frames[1:])
    assert Image.open(tmp_path / "all.odc").n_frames == 3
    Image.fromarray(pictures[0]).convert("L").save(tmp_path / "grey.odc", codec="png")
    assert Image.open(tmp_path / "grey.odc").mode == "RGB"
    with pytest.raises(OSError, match="quality"):
        im.save(tmp_path / "bad.odc", codec="jpeg", quality=500)
    with pytest.raises(OSError, match="nope"):
        im.save(tmp_path / "bad.odc", codec="nope")


def test_pillow_errors_carry_the_one_line_message(tmp_path, pictures):
    encode_pictures([pictures[0]], tmp_path / "a.odc", codec="png")
    data = bytearray((tmp_path / "a.odc").read_bytes())
    data[len(data) // 2] ^= 0x40
    (tmp_path / "bad.odc").write_bytes(bytes(data))
    (tmp_path / "cut.odc").write_bytes(bytes(data[:11]))
    with Image.open(tmp_path / "bad.odc") as im, pytest.raises(OSError) as err:
        im.load()
    assert "bad CRC" in str(err.value) and "bad.odc" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UnidentifiedImageError, match="data ends"):
        Image.open(tmp_path / "cut.odc")
    (tmp_path / "text.odc").write_bytes(b"not an odc file at all")
    with pytest.raises(UnidentifiedImageError):  # not ours: Pillow's own message
        Image.open(tmp_path / "text.odc")


def test_pillow_onedc_with_the_embedded_model_and_a_folder(tmp_path, onedc_still):
    path, drawn = onedc_still
    with Image.open(path) as im:
        assert im.size == (96, 80) and im.info["codec"] == "onedc"
        assert len(im.info["model_sha256"]) == 16
        assert np.array_equal(np.asarray(im), drawn)
    onedc_media.pillow.register(model=embedded_model_dir())  # an explicit folder: used
    assert np.array_equal(np.asarray(Image.open(path)), drawn)
    onedc_media.pillow.register(model=other_model(tmp_path / "other"))  # other weights: refused
    with Image.open(path) as im, pytest.raises(OSError, match="model id|eba9924a288f12e0"):
        im.load()


def test_pillow_refuses_a_still_of_unknown_weights(tmp_path, onedc_still):
    data = bytearray(onedc_still[0].read_bytes())
    header = container.StreamHeader("image", "onedc", width=96, height=80, color=SRGB,
                                    model=ModelRef("x", "00" * 32))  # fmt: skip
    container.write_still(tmp_path / "lost.odc", header, (GOLDEN / "ramp_q3.bin").read_bytes())
    assert len(data) == (tmp_path / "lost.odc").stat().st_size
    with Image.open(tmp_path / "lost.odc") as im, pytest.raises(OSError) as err:
        im.load()
    assert "0000000000000000" in str(err.value) and "looked in" in str(err.value)


# -- imageio ------------------------------------------------------------------------------


def test_imageio_reads_and_writes(tmp_path, pictures):
    one = pictures[0]
    iio.imwrite(tmp_path / "a.odc", one, codec="png")
    assert np.array_equal(iio.imread(tmp_path / "a.odc"), one)
    props = iio.improps(tmp_path / "a.odc")
    assert props.shape == (48, 64, 3) and props.dtype == np.uint8 and not props.is_batch
    meta = iio.immeta(tmp_path / "a.odc")
    assert meta["form"] == "still" and meta["codec"] == "png" and meta["n_images"] == 1

    iio.imwrite(tmp_path / "three.odc", np.stack(pictures), codec="png")
    assert iio.immeta(tmp_path / "three.odc")["form"] == "stream"
    got = list(iio.imiter(tmp_path / "three.odc"))
    assert len(got) == 3 and all(np.array_equal(a, b) for a, b in zip(got, pictures))
    assert np.array_equal(iio.imread(tmp_path / "three.odc", index=2), pictures[2])
    assert iio.imread(tmp_path / "three.odc", index=...).shape == (3, 48, 64, 3)
    assert iio.improps(tmp_path / "three.odc", index=...).n_images == 3

    data = iio.imwrite("<bytes>", one, extension=".odc", codec="jpeg", quality=90)
    assert container.is_odc(data)
    assert iio.imread(data, extension=".odc").shape == (48, 64, 3)
    iio.imwrite(tmp_path / "s.odc", one, codec="png", stream_form=True)
    assert iio.immeta(tmp_path / "s.odc")["form"] == "stream"
    assert np.array_equal(iio.imread(tmp_path / "s.odc", plugin=onedc_media.imageio_plugin.OdcPlugin), one)


def test_imageio_register_is_idempotent():
    import imageio.config as config

    onedc_media.imageio_plugin.register()
    onedc_media.imageio_plugin.register()
    assert sum("ODC" in f.priority for f in config.known_extensions[".odc"]) == 1
    assert config.known_plugins["ODC"].plugin_class is onedc_media.imageio_plugin.OdcPlugin


def test_imageio_errors_are_typed_one_liners(tmp_path, pictures):
    iio.imwrite(tmp_path / "a.odc", pictures[0], codec="png")
    data = bytearray((tmp_path / "a.odc").read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / "bad.odc").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="bad CRC"):
        iio.imread(tmp_path / "bad.odc")
    (tmp_path / "cut.odc").write_bytes(bytes(data[:-20]))
    with pytest.raises(OdcError, match="needs"):
        iio.imread(tmp_path / "cut.odc")
    with pytest.raises(ValueError, match="HxWx3"):
        iio.imwrite(tmp_path / "x.odc", pictures[0][:, :, 0], codec="png")
    assert not (tmp_path / "x.odc").exists()  # nothing left behind


def test_imageio_onedc_with_the_embedded_model_and_a_folder(tmp_path, onedc_still):
    path, drawn = onedc_still
    assert np.array_equal(iio.imread(path), drawn)
    assert iio.immeta(path)["model"]["sha256"] == "eba9924a288f12e0"
    assert np.array_equal(iio.imread(path, plugin="ODC", model=embedded_model_dir()), drawn)
    with pytest.raises(ModelMismatchError):
        iio.imread(path, plugin="ODC", model=other_model(tmp_path / "other"))


def test_the_example_runs(capsys):
    import runpy

    example = Path(__file__).resolve().parents[1] / "examples" / "pillow_imageio.py"
    main = runpy.run_path(str(example))["main"]
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "still form" in out and "3 pictures through imageio, 3 through Pillow" in out
    assert "Pillow:  OSError" in out and "imageio: ChecksumError" in out


@pytest.mark.slow
def test_pillow_saves_onedc_and_both_plugins_read_it(tmp_path, pictures):
    """``im.save(..., codec="onedc", quality=1)`` with the embedded model, read back by
    Pillow and imageio alike; the file is a still of at most 32 bytes of framing."""
    Image.fromarray(pictures[0]).save(tmp_path / "a.odc", codec="onedc", quality=1)
    with container.open(tmp_path / "a.odc") as inp:
        assert inp.form == "still" and inp.streams[0].codec == "onedc"
        assert (tmp_path / "a.odc").stat().st_size - len(next(inp.demux()).data) <= 32
    drawn = np.asarray(Image.open(tmp_path / "a.odc"))
    assert drawn.shape == (48, 64, 3)
    assert np.array_equal(iio.imread(tmp_path / "a.odc"), drawn)
