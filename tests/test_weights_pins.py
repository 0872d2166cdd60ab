"""An embedded model's name promises its bytes: the package pins their SHA-256, a folder that
claims the name with other bytes is refused at load, models of your own keep working."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from onedc_media.errors import ModelError
from onedc_media.model.loading import check_pinned, embedded_model_dir
from onedc_media.weights.pins import PINS, Release, release_of

WEIGHTS = Path(embedded_model_dir()).parent


def test_every_embedded_model_is_its_first_pinned_release():
    embedded = sorted(p.name for p in WEIGHTS.iterdir() if (p / "model.safetensors").is_file())
    assert embedded and set(embedded) <= set(PINS)
    for name in embedded:
        shipped, pinned = release_of(WEIGHTS / name), PINS[name][0]
        assert (shipped.model, shipped.parsing) == (pinned.model, pinned.parsing), name
        assert set(shipped.fine_decoders) <= set(pinned.fine_decoders), name
        assert json.loads((WEIGHTS / name / "config.json").read_text())["name"] == name


def _folder(root: Path, model: bytes, parsing: bytes, fine: bytes | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "model.safetensors").write_bytes(model)
    (root / "parsing.safetensors").write_bytes(parsing)
    if fine is not None:
        (root / "fine-decoder.safetensors").write_bytes(fine)
    return root


def test_check_pinned_names_the_file_and_both_hashes(tmp_path, monkeypatch):
    good = release_of(_folder(tmp_path / "good", b"model", b"parsing", b"fine"))
    monkeypatch.setitem(PINS, "pinned-test", (Release("1" * 64, "2" * 64), good))
    check_pinned(tmp_path / "good", "pinned-test", good.model)  # an earlier release: fine
    check_pinned(tmp_path / "good", "my-own-model", "f" * 64)  # not an embedded name
    cases = {
        "model": (_folder(tmp_path / "m", b"other", b"parsing"), "model.safetensors", "1" * 64),
        "parsing": (_folder(tmp_path / "p", b"model", b"other"), "parsing.safetensors",
                    good.parsing),
        "fine": (_folder(tmp_path / "f", b"model", b"parsing", b"other"),
                 "fine-decoder.safetensors", good.fine_decoders[0]),
    }  # fmt: skip
    for what, (folder, file, want) in cases.items():
        got = release_of(folder)
        with pytest.raises(ModelError) as err:
            check_pinned(folder, "pinned-test", got.model)
        msg = str(err.value)
        assert "\n" not in msg and f"claims the embedded model 'pinned-test'" in msg, what
        assert str(folder / file) in msg and want in msg, (what, msg)
        have = {"model": got.model, "parsing": got.parsing}.get(what) or got.fine_decoders[0]
        assert have in msg, (what, msg)


@pytest.fixture(scope="module")
def changed(tmp_path_factory) -> Path:
    """A copy of onedc-tiny whose weights were changed and whose config still says so."""
    d = tmp_path_factory.mktemp("pins") / "changed"
    shutil.copytree(embedded_model_dir(), d)
    sd = load_file(str(d / "model.safetensors"))
    key = next(k for k in sorted(sd) if k.startswith("vae.") and sd[k].is_floating_point())
    save_file({**sd, key: sd[key] * 0.5}, str(d / "model.safetensors"))
    return d


def test_a_folder_claiming_an_embedded_name_with_other_weights_is_refused(changed, tmp_path,
                                                                          capsys):
    from onedc_media.cli.main import main
    from onedc_media.model.engine import OneDCEngine

    with pytest.raises(ModelError, match="claims the embedded model 'onedc-tiny'") as err:
        OneDCEngine.from_pretrained(changed)
    assert release_of(changed).model in str(err.value)
    assert PINS["onedc-tiny"][0].model in str(err.value)
    picture = tmp_path / "p.png"
    shutil.copy(Path(__file__).parent / "data" / "chelsea.png", picture)
    code = main(["encode", str(picture), "-c", "onedc", "-o", str(tmp_path / "p.odc"),
                 "--opt", f"model={changed}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "claims the embedded model" in err, err
    assert not (tmp_path / "p.odc").exists()


def test_the_same_weights_under_a_name_of_their_own_load(changed, tmp_path):
    from onedc_media.model.engine import OneDCEngine

    own = tmp_path / "own"
    shutil.copytree(changed, own)
    cfg = json.loads((own / "config.json").read_text())
    (own / "config.json").write_text(json.dumps({**cfg, "name": "my-onedc"}))
    ref = OneDCEngine.from_pretrained(own).ref
    assert ref.name == "my-onedc" and ref.sha256 == release_of(own).model
