"""``gpu_pack.py revive``: a trainable Stage I checkpoint from the shipped export alone."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


def _gpu_pack():
    spec = importlib.util.spec_from_file_location("gpu_pack", ROOT / "scripts" / "gpu_pack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_revive_recovers_the_parsing_network_exactly(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    from onedc_media.model.loading import build_model, embedded_model_dir

    gpu_pack = _gpu_pack()
    out = tmp_path / "init"
    assert gpu_pack.main(["revive", "-o", str(out)]) == 0
    ckpt = out / "model.safetensors"
    state = load_file(str(ckpt))
    shipped_dir = embedded_model_dir("onedc-tiny")
    shipped = load_file(str(shipped_dir / "model.safetensors"))
    for k, v in shipped.items():  # the shipped float weights, as they are
        assert torch.equal(state[k], v.float()), k
    model = build_model(str(ROOT / "configs" / "models" / "onedc-tiny.yaml"))
    model.load_state_dict(state)  # strict: a complete checkpoint
    ints = load_file(str(shipped_dir / "parsing.safetensors"))
    again = model.parsing.export()
    for k, v in ints.items():
        assert torch.equal(again[k].to(v.dtype), v), k

    # an export whose gains contradict their logarithms is refused, nothing written
    bad = tmp_path / "bad-model"
    shutil.copytree(shipped_dir, bad)
    ints["gain"] = ints["gain"].clone()
    ints["gain"][0, 0] += 3
    save_file(ints, str(bad / "parsing.safetensors"))
    assert gpu_pack.main(["revive", "--model", str(bad), "-o", str(tmp_path / "no")]) == 1
    assert "gpu_pack revive:" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
