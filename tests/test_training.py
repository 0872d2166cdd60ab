"""Training smoke tests on a micro model: every stage runs, losses are finite and fall,
checkpoints resume to exactly the step an uninterrupted run computes, export loads."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from onedc_media.imageio import read_image, write_image

DATA = Path(__file__).parent / "data"
MICRO = DATA / "onedc-micro.yaml"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    img = read_image(DATA / "astronaut.png")
    write_image(root / "a.png", np.ascontiguousarray(img[64:192, 64:192]))
    write_image(root / "b.png", np.ascontiguousarray(img[:128, 128:]))
    return root


def _config(tmp: Path, corpus: Path, stage: str, name: str, **extra) -> Path:
    cfg = {"stage": stage, "model": str(MICRO), "run_dir": str(tmp / name), "train_data": str(corpus),
           "crop": 64, "batch_size": 2, "steps": 6, "lr": 0.003, "warmup": 1, "ckpt_every": 1,
           "log_every": 1, "val_every": 1000, "threads": 1, **extra}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _losses(run: Path) -> list[float]:
    with open(run / "metrics.csv") as fh:
        return [float(r["loss"]) for r in csv.DictReader(fh)]


def test_stage1_loss_falls_and_resume_is_exact(tmp_path, corpus):
    from onedc_media.train.run import train

    loss = {"l1": 1.0, "mse": 1.0, "msssim": 0.0, "latent_l1": 0.1, "ce": 0.05}
    a = train(_config(tmp_path, corpus, "stage1", "a", loss=loss), progress=False)
    la = _losses(tmp_path / "a")
    assert len(la) == 6 and all(np.isfinite(la))
    assert np.mean(la[-2:]) < np.mean(la[:2])
    # Interrupted after 4 steps, then resumed: steps 5 and 6 are bit-for-bit those of run a.
    train(_config(tmp_path, corpus, "stage1", "b", loss=loss), max_steps=4, progress=False)
    b = train(_config(tmp_path, corpus, "stage1", "b", loss=loss), progress=False)
    assert _losses(tmp_path / "b") == la
    sa, sb = a.stage.model.state_dict(), b.stage.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_init_gain_shift_extends_the_ladder_downwards(tmp_path, corpus):
    from onedc_media.errors import ModelError
    from onedc_media.train.config import load_train_config
    from onedc_media.train.run import prepare, train

    loss = {"l1": 1.0, "mse": 1.0, "msssim": 0.0, "latent_l1": 0.1, "ce": 0.05}
    src = train(_config(tmp_path, corpus, "stage1", "src", loss=loss, steps=2), progress=False)
    old = src.stage.model.parsing.log_gain.detach().clone()
    init = {"init": str(tmp_path / "src"), "loss": loss}
    moved = prepare(load_train_config(_config(tmp_path, corpus, "stage1", "moved", init_gain_shift=1, **init)),
                    progress=False)
    new = moved.stage.model.parsing.log_gain.detach()
    assert torch.equal(new[1], old[0])  # old q1 is the new q2
    assert torch.allclose(new[0], 2 * old[0] - old[1])  # one log-gain step below it
    assert (new[0] < old[0]).all()
    with pytest.raises(ModelError, match="init_gain_shift"):  # micro has two rate points
        prepare(load_train_config(_config(tmp_path, corpus, "stage1", "far", init_gain_shift=2, **init)),
                progress=False)
    with pytest.raises(ModelError, match="needs init"):
        load_train_config(_config(tmp_path, corpus, "stage1", "noinit", init_gain_shift=1))
    with pytest.raises(ModelError, match="integer"):
        load_train_config(_config(tmp_path, corpus, "stage1", "half", init_gain_shift=1.5, **init))
    flat = moved.stage.model.parsing
    flat.log_gain.data[1, 0] = flat.log_gain.data[0, 0]  # one channel does not rise from q1 to q2
    with pytest.raises(ValueError, match="do not rise"):
        flat.shift_gain_ladder(1)
    flat.log_gain.data[1] = flat.log_gain.data[0] + 20.0  # a step that takes the new q1 below 2**-12
    with pytest.raises(ValueError, match="below"):
        flat.shift_gain_ladder(1)


def test_lr_scale_gives_prefixes_their_own_pace(tmp_path, corpus):
    from onedc_media.errors import ModelError
    from onedc_media.train.config import load_train_config
    from onedc_media.train.run import train

    loss = {"l1": 1.0, "mse": 1.0, "msssim": 0.0, "latent_l1": 0.1, "ce": 0.0}
    t = train(_config(tmp_path, corpus, "stage1", "scaled", loss=loss, steps=2,
                      lr_scale={"parsing.log_gain": 1000.0}), progress=False)
    gain = t.stage.model.parsing.log_gain
    groups = t.optimizers["main"].param_groups
    assert len(groups[0]["params"]) == 1 and groups[0]["params"][0] is gain
    assert groups[0]["lr"] == pytest.approx(1000 * groups[1]["lr"])
    assert all(p is not gain for p in groups[1]["params"])
    for bad in ({"unet.": 0}, {"unet.": True}, ["unet."]):
        with pytest.raises(ModelError, match="lr_scale"):
            load_train_config(_config(tmp_path, corpus, "stage1", "bad", lr_scale=bad))
    with pytest.raises(ModelError, match="matches no parameter"):  # a typo must not be a no-op
        train(_config(tmp_path, corpus, "stage1", "typo", loss=loss, steps=1,
                      lr_scale={"parsing.log_gian": 10.0}), progress=False)
    # Interrupted and resumed: the same steps as one run; the multiplier is the config's.
    cfg = {"loss": loss, "steps": 3, "lr_scale": {"parsing.log_gain": 1000.0}}
    full = train(_config(tmp_path, corpus, "stage1", "full", **cfg), progress=False)
    train(_config(tmp_path, corpus, "stage1", "cut", **cfg), max_steps=2, progress=False)
    cut = train(_config(tmp_path, corpus, "stage1", "cut", **cfg), progress=False)
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "full")
    assert torch.equal(cut.stage.model.parsing.log_gain, full.stage.model.parsing.log_gain)
    from onedc_media.train.config import load_train_config as load
    from onedc_media.train.run import prepare

    slower = prepare(load(_config(tmp_path, corpus, "stage1", "cut", **{**cfg, "lr_scale": {"parsing.log_gain": 10.0}})),
                     progress=False)
    assert slower.optimizers["main"].param_groups[0]["lr_scale"] == 10.0
    with pytest.raises(ModelError, match="optimiser state does not fit"):  # groups changed
        prepare(load(_config(tmp_path, corpus, "stage1", "cut", **{**cfg, "lr_scale": {}})), progress=False)


def test_vae_teacher_stage2_and_export(tmp_path, corpus):
    from onedc_media.model.engine import OneDCEngine
    from onedc_media.train.export import export_checkpoint
    from onedc_media.train.run import train

    vae = train(_config(tmp_path, corpus, "vae", "vae", steps=3, loss={"mse": 1.0}), progress=False)
    assert all(np.isfinite(_losses(tmp_path / "vae")))
    s1 = train(_config(tmp_path, corpus, "stage1", "s1", steps=2, init=str(tmp_path / "vae"),
                       val_data=str(corpus), val_every=2, val_images=1, val_crop=64), progress=False)
    with open(tmp_path / "s1" / "val.csv") as fh:
        row = next(csv.DictReader(fh))
    assert float(row["q1_bpp"]) > 0 and float(row["q2_psnr"]) > 0  # real bits were coded
    train(_config(tmp_path, corpus, "teacher", "teacher", steps=2, init=str(tmp_path / "s1")), progress=False)
    assert all(np.isfinite(_losses(tmp_path / "teacher")))
    s2 = train(_config(tmp_path, corpus, "stage2", "s2", steps=2, lr=1e-4, init=str(tmp_path / "s1"),
                       teacher=str(tmp_path / "teacher")), progress=False)
    with open(tmp_path / "s2" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("dmd", "rec", "fake_loss", "disc_loss"))
    # Only the U-Net moved in Stage II.
    before = s1.stage.model.state_dict()
    after = s2.stage.model.codec.state_dict()
    moved = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert moved == {"unet"}
    out = export_checkpoint(tmp_path / "s1", tmp_path / "exported")
    engine = OneDCEngine.from_pretrained(out)
    # A file names its model by the SHA-256 of these files: the same weights, the same bytes.
    again = export_checkpoint(tmp_path / "s1", tmp_path / "exported-again")
    for name in ("model.safetensors", "parsing.safetensors", "config.json"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    img = read_image(corpus / "a.png")
    payload = engine.compress([img], 1)[0]
    assert engine.decompress([payload])[0].shape == img.shape
    # A Stage II checkpoint (a bundle: codec + fake score + discriminator) exports its codec.
    out2 = export_checkpoint(tmp_path / "s2", tmp_path / "exported2")
    engine2 = OneDCEngine.from_pretrained(out2)
    unet = engine2.model.unet.state_dict()
    trained = s2.stage.model.codec.unet.state_dict()  # exported as float16
    assert all(torch.equal(unet[k].float(), trained[k].half().float()) for k in trained)
    assert engine2.ref.sha256 != engine.ref.sha256
    from onedc_media.errors import ModelError

    with pytest.raises(ModelError, match="not a codec"):
        export_checkpoint(tmp_path / "teacher", tmp_path / "exported3")
    assert not (tmp_path / "exported3").exists()
    assert engine2.decompress(engine2.compress([img], 1))[0].shape == img.shape
    assert vae.step == 3


def test_save_canonical_writes_sorted_header(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    from onedc_media.train.export import save_canonical

    meta = {"zeta": "1", "alpha": "2", "mid": "3", "beta": "4"}
    tensors = {"b": torch.arange(3, dtype=torch.int32), "a": torch.ones(2, 2)}
    save_canonical(tensors, tmp_path / "t.safetensors", meta)
    raw = (tmp_path / "t.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0
    header = raw[8:8 + n].rstrip(b" ")
    assert header == json.dumps(json.loads(header), sort_keys=True, separators=(",", ":")).encode()
    loaded = load_file(str(tmp_path / "t.safetensors"))
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    with safe_open(str(tmp_path / "t.safetensors"), "pt") as fh:
        assert fh.metadata() == meta


def test_checkpoint_pruning_keeps_milestones(tmp_path):
    from onedc_media.train.checkpoint import latest_checkpoint, save_checkpoint

    net = torch.nn.Linear(2, 2)
    for step in range(50, 401, 50):
        save_checkpoint(tmp_path, step, net, {}, {}, keep=2, keep_every=200)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step_00000200", "step_00000350", "step_00000400"]
    assert latest_checkpoint(tmp_path).name == "step_00000400"


def _gpu_pack():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gpu_pack", Path(__file__).parents[1] / "scripts" / "gpu_pack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_pack_harvest_round_trip(tmp_path, corpus):
    """What comes back from a GPU lease (two float16 files) resumes as the same weights,
    with the run's config and wall time kept for the model card's training table."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    from onedc_media.train.run import train

    gpu_pack = _gpu_pack()

    cfg = _config(tmp_path, corpus, "stage1", "s1", steps=2, loss={"ce": 0.0})
    train(cfg, progress=False)
    run = tmp_path / "s1"
    assert gpu_pack.main(["harvest", str(run), str(tmp_path / "back" / "s1")]) == 0
    parts = sorted(p.name for p in (tmp_path / "back").iterdir())
    assert parts == ["s1-rest.safetensors", "s1-unet.safetensors"]
    assert gpu_pack.main(["unharvest", str(tmp_path / "back" / "s1"), str(tmp_path / "here")]) == 0
    ckpt = tmp_path / "here" / "checkpoints" / "step_00000002"
    got = load_file(str(ckpt / "model.safetensors"))
    want = load_file(str(run / "checkpoints" / "step_00000002" / "model.safetensors"))
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert torch.equal(got[k], v.half().float()), k
    info = json.loads((ckpt / "trainer.json").read_text())
    assert info["step"] == 2 and info["config"]["stage"] == "stage1" and info["wall_seconds"] > 0
    assert any(not torch.equal(got[k], v) for k, v in want.items())  # float16 lost bits
    # --base: tensors that did not train (equal to the base's float16) come back float32
    # bit for bit; one that differs (it trained) keeps the harvested value
    base = tmp_path / "base" / "checkpoints" / "step_00000002"
    shutil.copytree(run / "checkpoints" / "step_00000002", base)
    # (one tensor trained in its first element only, as a gain row of an untrained rate point)
    trained = next(k for k in want if want[k].is_floating_point() and want[k].numel() > 1)
    moved = want[trained].clone().flatten()
    moved[0] += 1
    save_file({**want, trained: moved.view_as(want[trained])}, str(base / "model.safetensors"))
    assert gpu_pack.main(["unharvest", str(tmp_path / "back" / "s1"), str(tmp_path / "exact"),
                          "--base", str(tmp_path / "base")]) == 0
    exact = load_file(str(tmp_path / "exact" / "checkpoints" / "step_00000002" / "model.safetensors"))
    for k, v in want.items():
        if k != trained:
            assert torch.equal(exact[k], v.float()), k
    got_t = exact[trained].flatten()
    assert got_t[0] == want[trained].flatten()[0].half().float()  # trained: the harvest's
    assert torch.equal(got_t[1:], want[trained].flatten()[1:].float())  # untrained: exact
    # a base that is not the harvest's init: refused, nothing written
    save_file({k: v + 1 for k, v in want.items()}, str(base / "model.safetensors"))
    assert gpu_pack.main(["unharvest", str(tmp_path / "back" / "s1"), str(tmp_path / "bad"),
                          "--base", str(tmp_path / "base")]) == 1
    assert not (tmp_path / "bad").exists()
    # and it starts a run (init) like any checkpoint
    cfg2 = _config(tmp_path, corpus, "stage1", "s2", steps=1, loss={"ce": 0.0},
                   init=str(tmp_path / "here"))
    assert train(cfg2, progress=False).step == 1


def test_gpu_pack_bad_input_is_one_line(tmp_path, capsys):
    gpu_pack = _gpu_pack()
    for part in ("unet", "rest"):
        (tmp_path / f"x-{part}.safetensors").write_bytes(b"not safetensors")
    assert gpu_pack.main(["unharvest", str(tmp_path / "x"), str(tmp_path / "out")]) == 1
    assert gpu_pack.main(["assemble", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("gpu_pack unharvest:")
    assert not (tmp_path / "out").exists()


def test_an_exported_model_folder_starts_a_run(tmp_path, corpus):
    """``init`` takes an exported model (here the embedded one, by name): the fine decoder's
    config starts from the shipped weights, and its frozen VAE encoder stays them."""
    from safetensors.torch import load_file

    from onedc_media.model.loading import embedded_model_dir
    from onedc_media.train.run import train

    path = tmp_path / "fine.yaml"
    cfg = yaml.safe_load((Path(__file__).parents[1] / "configs/train/vae-dec-fine-tiny.yaml").read_text())
    cfg.update(run_dir=str(tmp_path / "fine"), train_data=str(corpus), val_data=None, crop=64, batch_size=2,
               steps=1, ckpt_every=1, threads=1, cache_images=False)
    path.write_text(yaml.safe_dump(cfg))
    train(path, progress=False)
    shipped = load_file(str(embedded_model_dir("onedc-tiny") / "model.safetensors"))
    after = load_file(str(tmp_path / "fine" / "checkpoints" / "step_00000001" / "model.safetensors"))
    enc = [k for k in shipped if k.startswith("vae.model.encoder.")]
    dec = [k for k in shipped if k.startswith("vae.model.decoder.") and shipped[k].ndim == 4]
    assert enc and all(torch.equal(after[k], shipped[k].float()) for k in enc)
    assert any(not torch.equal(after[k], shipped[k].float()) for k in dec)  # the decoder trained
