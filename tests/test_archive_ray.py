"""The Ray engine on a real local Ray cluster (2 CPUs): same manifest, same bytes.

Skipped when Ray Data is not installed (``pip install "onedc-media[ray]"``).
"""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from test_archive import (
    add_bad_inputs,
    assert_consistent,
    make_tree,
    picture,
    rows,
    sha,
    write_picture,
)

from onedc_media.archive import EncodeSettings, archive

pytestmark = pytest.mark.slow

#: What must agree between the engines, item by item.
SAME = (
    "status",
    "error",
    "src_size",
    "src_sha256",
    "width",
    "height",
    "frames",
    "out_size",
    "out_sha256",
    "codec",
    "codec_params",
    "settings",
    "model_sha256",
    "quality",
    "bpp",
)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _same_manifests(a, b) -> None:
    ra, rb = rows(a), rows(b)
    assert ra.keys() == rb.keys()
    for source in ra:
        assert {c: ra[source][c] for c in SAME} == {c: rb[source][c] for c in SAME}, source


def test_ray_engine_gives_the_local_engines_manifest_and_bytes(cluster, tmp_path):
    src = tmp_path / "src"
    good = make_tree(src, 24)
    add_bad_inputs(src)
    settings = EncodeSettings(codec="jpeg", options={"quality": 80}, threads=1)
    local = archive(src, tmp_path / "local", settings, batch_size=4, verify=True)
    remote = archive(
        src, tmp_path / "ray", settings, engine="ray", jobs=2, batch_size=4, verify=True
    )
    assert remote.counts == local.counts and remote.verify.verified == len(good)
    _same_manifests(tmp_path / "local", tmp_path / "ray")
    assert_consistent(tmp_path / "ray", good)
    for source in good:
        out = rows(tmp_path / "ray")[source]["output"]
        assert sha(tmp_path / "ray" / out) == sha(tmp_path / "local" / out)
    # resume semantics are the driver's: nothing to redo, a changed source is redone
    assert archive(src, tmp_path / "ray", settings, engine="ray").progress.total == 0
    write_picture(src / good[0], picture(64, 64, 77))
    again = archive(src, tmp_path / "ray", settings, engine="ray", jobs=1)
    assert again.progress.done == 1 and again.scan.changed == 1


def test_ray_engine_onedc_bytes_equal_local(cluster, tmp_path):
    """OneDC (float analysis): same batches and one thread each -> the same bytes."""
    src = tmp_path / "src"
    for i in range(3):
        write_picture(src / f"p{i}.png", picture(64, 96 if i < 2 else 64, i))
    settings = EncodeSettings(codec="onedc", options={"quality": 2}, device="cpu", threads=1)
    archive(src, tmp_path / "local", settings, batch_size=2, verify=True, metrics=("psnr",))
    res = archive(
        src,
        tmp_path / "ray",
        settings,
        engine="ray",
        jobs=1,
        batch_size=2,
        verify=True,
        metrics=("psnr",),
    )
    assert res.counts["verified"] == 3
    _same_manifests(tmp_path / "local", tmp_path / "ray")
