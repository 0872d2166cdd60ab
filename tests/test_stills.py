"""One picture per file: ``encode`` writes the still form, every reader opens it, and a
still's model id finds its weights or is refused (none, or several different ones)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import onedc_media
from onedc_media import container
from onedc_media.cli.main import main
from onedc_media.codec import ModelRef
from onedc_media.errors import ModelMismatchError
from onedc_media.imageio import read_image, write_image
from onedc_media.model import loading
from onedc_media.stills import SRGB, encode_pictures

DATA = Path(__file__).parent / "data"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    return read_image(DATA / "chelsea.png")[:96, :128].copy()


def fake_model(folder: Path, weights: bytes, parsing: bytes = b"parsing", name: str = "fake") -> Path:
    """A model folder as the search sees it: config, weights and parsing files."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"name": name}))
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "parsing.safetensors").write_bytes(parsing)
    return folder


def model_id(data: bytes) -> ModelRef:
    return ModelRef("", hashlib.sha256(data).hexdigest()[:16])


# -- encode / decode / info through the CLI ----------------------------------------------


def test_encode_writes_the_still_form_unless_asked(tmp_path, capsys, picture):
    write_image(tmp_path / "a.png", picture)
    code, out, _ = run(capsys, "encode", str(tmp_path / "a.png"), "-c", "jpeg", "-q", "80")
    assert code == 0 and "still form" in out
    code, out, _ = run(capsys, "encode", str(tmp_path / "a.png"), "-o", str(tmp_path / "s.odc"),
                       "-c", "jpeg", "-q", "80", "--stream-form")  # fmt: skip
    assert code == 0 and "stream form" in out
    still, stream = tmp_path / "a.odc", tmp_path / "s.odc"
    packets = {}
    for path, form in ((still, "still"), (stream, "stream")):
        with container.open(path) as inp:
            assert inp.form == form
            packets[form] = [p.data for p in inp.demux()]
    assert packets["still"] == packets["stream"]  # the same picture, other framing
    framing = still.stat().st_size - len(packets["still"][0])
    assert framing <= 32 < stream.stat().st_size - len(packets["stream"][0])

    code, out, _ = run(capsys, "info", str(still))
    assert code == 0 and "still form" in out and f"framing {framing}" in out
    code, out, _ = run(capsys, "info", "--json", str(stream))
    assert json.loads(out)["form"] == "stream"
    for path in (still, stream):  # both forms decode to the same pixels
        assert run(capsys, "decode", str(path), "-o", str(tmp_path / f"dec_{path.stem}.png"))[0] == 0
    assert np.array_equal(read_image(tmp_path / "dec_a.png"), read_image(tmp_path / "dec_s.png"))


def test_sequences_stay_in_the_stream_form(tmp_path, picture):
    res = encode_pictures([picture, picture[::-1].copy()], tmp_path / "two.odc", codec="png")
    assert res.form == "stream" and res.pictures == 2
    with pytest.raises(onedc_media.errors.InvalidImageError, match="one picture"):
        encode_pictures([picture, picture], tmp_path / "x.odc", codec="png", form="still")
    with pytest.raises(ValueError, match="form"):
        encode_pictures([picture], tmp_path / "x.odc", codec="png", form="compact")


def test_damaged_still_is_a_one_line_error(tmp_path, capsys, picture):
    encode_pictures([picture], tmp_path / "a.odc", codec="png")
    data = bytearray((tmp_path / "a.odc").read_bytes())
    data[len(data) // 2] ^= 0x10
    (tmp_path / "bad.odc").write_bytes(bytes(data))
    (tmp_path / "cut.odc").write_bytes(bytes(data[:-9]))
    for name in ("bad.odc", "cut.odc"):
        for argv in (("info", str(tmp_path / name)),
                     ("decode", str(tmp_path / name), "-o", str(tmp_path / f"{name}.png"))):
            code, _, err = run(capsys, *argv)
            assert code == 1 and err.startswith("onedc-media: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "bad.odc.png").exists()


def test_opencv_adapters_and_archive_read_stills(tmp_path, picture):
    from onedc_media import cv
    from onedc_media.archive.verify import decode_output

    encode_pictures([picture], tmp_path / "a.odc", codec="png")
    data = (tmp_path / "a.odc").read_bytes()
    bgr = cv.imdecode(np.frombuffer(data, np.uint8))
    assert np.array_equal(bgr[:, :, ::-1], picture)
    cap = cv.VideoCapture(str(tmp_path / "a.odc"))
    ok, frame = cap.read()
    assert ok and np.array_equal(frame[:, :, ::-1], picture)
    assert not cap.read()[0]
    cap.release()
    header, pictures = decode_output(data)
    assert header.codec == "png" and np.array_equal(pictures[0], picture)


# -- model identity ----------------------------------------------------------------------


def test_a_model_id_finds_the_embedded_weights(monkeypatch):
    monkeypatch.setenv(loading.MODEL_PATH_ENV, "")
    embedded = loading._ref_of(loading.embedded_model_dir())
    found = loading.resolve_model_id(ModelRef("", embedded.sha256[:16]))
    assert found == embedded and found.name == "onedc-tiny" and len(found.sha256) == 64
    assert loading.resolve_model_id(ModelRef("", embedded.sha256[:16]), "onedc-tiny") == embedded


def test_a_model_id_on_the_search_path_and_explicit_folders(tmp_path, monkeypatch):
    a = fake_model(tmp_path / "models" / "a", b"weights a", name="alpha")
    monkeypatch.setenv(loading.MODEL_PATH_ENV, str(tmp_path / "models"))
    got = loading.resolve_model_id(model_id(b"weights a"))
    assert got.name == "alpha" and got.sha256 == hashlib.sha256(b"weights a").hexdigest()
    assert loading.resolve_model_id(model_id(b"weights a"), str(a)) == got
    # a copy of the same weights is the same model, not an ambiguity
    shutil.copytree(a, tmp_path / "copy")
    assert loading.resolve_model_id(model_id(b"weights a"), search=f"{tmp_path / 'models'}:{tmp_path / 'copy'}") == got
    with pytest.raises(ModelMismatchError, match=str(tmp_path / "copy")):  # explicit: that one or none
        loading.resolve_model_id(model_id(b"weights b"), str(tmp_path / "copy"))


def test_no_match_names_what_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv(loading.MODEL_PATH_ENV, str(tmp_path / "nowhere"))
    want = model_id(b"lost weights")
    with pytest.raises(ModelMismatchError) as err:
        loading.resolve_model_id(want)
    msg = str(err.value)
    assert want.sha256 in msg and "embedded" in msg and str(tmp_path / "nowhere") in msg
    assert "--model DIR" in msg and loading.MODEL_PATH_ENV in msg


def test_different_weights_sharing_a_prefix_are_ambiguous(tmp_path, monkeypatch):
    """A 64-bit collision cannot be made for a test; the hash of two files is forged so
    that their SHA-256 start alike."""
    fake_model(tmp_path / "m" / "one", b"one")
    fake_model(tmp_path / "m" / "two", b"two")
    real = loading._file_sha256

    def forged(path: Path) -> str:
        if path.name == "model.safetensors" and path.parent.parent == tmp_path / "m":
            return "ab" * 8 + hashlib.sha256(path.read_bytes()).hexdigest()[16:]
        return real(path)

    monkeypatch.setattr(loading, "_file_sha256", forged)
    with pytest.raises(ModelMismatchError, match="ambiguous") as err:
        loading.resolve_model_id(ModelRef("", "ab" * 8), search=str(tmp_path / "m"))
    assert "one" in str(err.value) and "two" in str(err.value)
    # the same weights with another parsing model are another model too
    monkeypatch.setattr(loading, "_file_sha256", real)
    fake_model(tmp_path / "p" / "x", b"same", b"parsing 1")
    fake_model(tmp_path / "p" / "y", b"same", b"parsing 2")
    with pytest.raises(ModelMismatchError, match="ambiguous"):
        loading.resolve_model_id(model_id(b"same"), search=str(tmp_path / "p"))


def test_decode_refuses_a_still_of_unknown_weights(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(loading.MODEL_PATH_ENV, "")
    header = container.StreamHeader("image", "onedc", width=64, height=64, color=SRGB,
                                    model=ModelRef("gone", hashlib.sha256(b"gone").hexdigest()))
    container.write_still(tmp_path / "gone.odc", header, b"ODCP not decoded")
    code, _, err = run(capsys, "decode", str(tmp_path / "gone.odc"), "-o", str(tmp_path / "g.png"),
                       "--model", str(tmp_path))  # fmt: skip
    assert code == 1 and err.count("\n") == 1
    assert hashlib.sha256(b"gone").hexdigest()[:16] in err and str(tmp_path) in err
    assert not (tmp_path / "g.png").exists()


@pytest.mark.slow
def test_onedc_still_and_stream_decode_alike(tmp_path, capsys, picture):
    """The embedded model through the CLI: the still is smaller and draws the same pixels."""
    write_image(tmp_path / "a.png", picture)
    for name, extra in (("still", []), ("stream", ["--stream-form"])):
        assert run(capsys, "encode", str(tmp_path / "a.png"), "-o", str(tmp_path / f"{name}.odc"),
                   "-q", "2", *extra)[0] == 0  # fmt: skip
        assert run(capsys, "decode", str(tmp_path / f"{name}.odc"), "-o", str(tmp_path / f"{name}.png"))[0] == 0
    assert np.array_equal(read_image(tmp_path / "still.png"), read_image(tmp_path / "stream.png"))
    sizes = {n: (tmp_path / f"{n}.odc").stat().st_size for n in ("still", "stream")}
    assert sizes["stream"] - sizes["still"] > 300
    with container.open(tmp_path / "still.odc") as inp:
        assert inp.form == "still" and container.is_model_id(inp.streams[0].model)
        framing = sizes["still"] - len(next(inp.demux()).data)
    assert framing <= 32
    from onedc_media import cv

    assert np.array_equal(cv.imdecode((tmp_path / "still.odc").read_bytes())[:, :, ::-1],
                          read_image(tmp_path / "still.png"))
