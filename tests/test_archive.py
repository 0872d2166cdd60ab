"""Archive jobs: manifest, exactly-once under SIGKILL, bad inputs, verify, restore, CLI.

The kill tests use JPEG (fast, deterministic); OneDC is exercised once on tiny pictures.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from onedc_media.archive import (
    STATE_DIR,
    EncodeSettings,
    Layout,
    Manifest,
    ManifestError,
    archive,
    archive_status,
    format_status,
    restore_archive,
    verify_archive,
)
from onedc_media.archive.job import plan_batches
from onedc_media.archive.restore import restore_names
from onedc_media.cli.main import main

JPEG = EncodeSettings(codec="jpeg", options={"quality": 80})
REPO = Path(__file__).resolve().parents[1]


# -- helpers -------------------------------------------------------------------------------


def picture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack(
        [128 + 90 * np.sin(x / (7 + seed % 5)), 128 + 80 * np.cos(y / 9.0), 100 + 0.5 * x], axis=-1
    )
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def write_picture(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])
    return path


def make_tree(root: Path, n: int, sizes=((96, 128), (64, 64), (128, 96))) -> list[str]:
    """*n* pictures under *root* (PNG and JPEG, in sub-folders); returns their paths."""
    names = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        rel = f"d{i % 3}/{'sub/' if i % 4 == 0 else ''}p{i:03d}.{'jpg' if i % 5 == 0 else 'png'}"
        write_picture(root / rel, picture(h, w, i))
        names.append(rel)
    return sorted(names)


def add_bad_inputs(root: Path) -> dict[str, str]:
    """Bad sources and (a word of) the reason each must fail with."""
    (root / "bad").mkdir(parents=True, exist_ok=True)
    (root / "bad/empty.png").write_bytes(b"")
    (root / "bad/text.jpg").write_text("not a picture at all\n")
    (root / "bad/notes.txt").write_text("a readme\n")
    (root / "bad/truncated.png").write_bytes(
        cv2.imencode(".png", picture(64, 64, 1))[1][:40].tobytes()
    )
    os.symlink("/nonexistent/onedc-archive-test", root / "bad/dangling.jpg")
    os.mkfifo(root / "bad/pipe.png")
    return {
        "bad/empty.png": "empty",
        "bad/text.jpg": "not a readable image",
        "bad/notes.txt": "unsupported file type",
        "bad/truncated.png": "not a readable image",
        "bad/dangling.jpg": "cannot read",
        "bad/pipe.png": "not a regular file",
    }


def archive_cmd(*args: object) -> list[str]:
    """The command line of ``onedc-media archive ARGS`` in a fresh interpreter."""
    return [sys.executable, "-m", "onedc_media.cli.main", "archive", *map(str, args)]


def rows(dest: Path) -> dict[str, sqlite3.Row]:
    with Manifest(Layout.at(dest).manifest, readonly=True) as m:
        return {r["source"]: r for r in m.items()}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_under(dest: Path) -> set[str]:
    return {
        p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file() or p.is_symlink()
    }


def assert_consistent(dest: Path, good: list[str], *, statuses=("verified",)) -> None:
    """Every good source has exactly one output whose size and SHA-256 the manifest
    records; DEST holds nothing else but the manifest and lock; no temporary files."""
    r = rows(dest)
    for source in good:
        row = r[source]
        assert row["status"] in statuses, (source, row["status"], row["error"])
        out = dest / row["output"]
        assert out.stat().st_size == row["out_size"]
        assert sha(out) == row["out_sha256"]
    outputs = {r[s]["output"] for s in good}
    allowed = {
        f"{STATE_DIR}/{n}"
        for n in ("manifest.sqlite", "manifest.sqlite-wal", "manifest.sqlite-shm", "lock")
    }
    assert files_under(dest) - allowed == outputs
    assert not (dest / STATE_DIR / "spool").exists()


# -- the job -------------------------------------------------------------------------------


def test_archive_jpeg_bad_inputs_verify_status(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    good = make_tree(src, 9)
    bad = add_bad_inputs(src)
    write_picture(src / "big/large.png", picture(200, 300, 3))  # over --max-pixels
    res = archive(
        src,
        dest,
        EncodeSettings(codec="jpeg", options={"quality": 80}, max_pixels=200 * 200),
        verify=True,
        batch_size=3,
    )
    assert res.scan.sources == len(good) + len(bad) + 1
    assert res.counts["verified"] == len(good)
    assert res.counts["failed"] == len(bad) + 1
    assert res.verify.verified == len(good) and not res.verify.failures
    r = rows(dest)
    for source, word in bad.items():
        assert r[source]["status"] == "failed" and word in r[source]["error"], r[source]["error"]
    assert "larger than the limit" in r["big/large.png"]["error"]
    assert_consistent(dest, good)
    for source in good:
        row = r[source]
        data = (src / source).read_bytes()
        assert row["src_sha256"] == hashlib.sha256(data).hexdigest()
        assert row["src_size"] == len(data)
        assert row["codec"] == "jpeg" and row["quality"] == 80 and row["frames"] == 1
        assert row["bpp"] == pytest.approx(row["out_size"] * 8 / (row["width"] * row["height"]))
        assert 20 < row["psnr"] < 60
        assert row["encoded_at"] and row["verified_at"]
        assert row["output"] == source + ".odc"
    st = archive_status(dest)
    assert st.counts["verified"] == len(good) and st.bytes_out == sum(
        r[s]["out_size"] for s in good
    )
    text = format_status(st)
    assert "bpp histogram" in text and "empty file" in text


def test_rerun_redoes_nothing_and_changes_are_reencoded(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    good = make_tree(src, 6)
    archive(src, dest, JPEG)
    before = rows(dest)
    again = archive(src, dest, JPEG)
    assert again.scan.pending == 0 and again.progress.total == 0
    assert {s: r["encoded_at"] for s, r in rows(dest).items()} == {
        s: r["encoded_at"] for s, r in before.items()
    }

    # a new picture, a changed one (size + mtime), a deleted output
    write_picture(src / "new.png", picture(64, 64, 99))
    write_picture(src / good[0], picture(64, 64, 123))
    (dest / before[good[1]]["output"]).unlink()
    res = archive(src, dest, JPEG)
    assert (res.scan.new, res.scan.changed, res.scan.resettled, res.progress.done) == (1, 1, 1, 3)
    after = rows(dest)
    assert after[good[0]]["src_sha256"] == sha(src / good[0]) != before[good[0]]["src_sha256"]
    for s in good[2:]:
        assert after[s]["encoded_at"] == before[s]["encoded_at"]

    # same size and mtime, other content: only --checksum sees it
    path = src / good[3]
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # inside the last IDAT/ECS bytes; still decodes or fails: either is fine
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert archive(src, dest, JPEG).progress.total == 0
    res = archive(src, dest, JPEG, checksum=True)
    assert res.scan.changed == 1 and res.progress.total == 1
    assert rows(dest)[good[3]]["src_sha256"] == sha(path)

    # new settings: everything again
    res = archive(src, dest, EncodeSettings(codec="jpeg", options={"quality": 60}))
    assert res.progress.total == len(good) + 1


def test_scan_lists_the_manifest_once(tmp_path, monkeypatch):
    # One SELECT over the whole manifest per source made scanning quadratic
    # (4000 sources: 16 s).
    from onedc_media.archive import job

    calls = []
    real = job._known
    monkeypatch.setattr(job, "_known", lambda *a, **k: calls.append(k) or real(*a, **k))
    src = tmp_path / "src"
    make_tree(src, 6)
    archive(src, tmp_path / "dest", JPEG)
    assert len(calls) == 2  # the sources, then the full rows


def test_ray_engine_gets_the_plugins_archive_was_given(tmp_path, monkeypatch):
    from onedc_media_plugins import classic, policies

    from onedc_media import load_plugins
    from onedc_media.archive import local, ray_engine

    plugins = load_plugins(entry_points=False, plugins=[classic, policies], blocked=[])
    seen = {}

    def fake_run_ray(batches, settings, committer, **kwargs):
        seen.update(kwargs)
        local.run_local(batches, settings, committer, plugins=kwargs["plugins"])

    monkeypatch.setattr(ray_engine, "run_ray", fake_run_ray)
    src = tmp_path / "src"
    make_tree(src, 2)
    archive(src, tmp_path / "dest", JPEG, engine="ray", plugins=plugins)
    assert seen["plugins"] is plugins
    # and the actors build their encoders with them
    assert ray_engine._ArchiveActor(JPEG.to_dict(), None, plugins).encoder.plugins is plugins


def test_failed_items_retried_only_when_asked_or_changed(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, 2)
    (src / "empty.png").write_bytes(b"")
    archive(src, dest, JPEG)
    assert archive(src, dest, JPEG).progress.total == 0
    assert archive(src, dest, JPEG, retry_failed=True).progress.total == 1
    write_picture(src / "empty.png", picture(64, 64, 5))
    res = archive(src, dest, JPEG)
    assert res.progress.done == 1 and rows(dest)["empty.png"]["status"] == "done"


def _png_bomb(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG whose header declares *width* x *height* pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_huge_inputs_fail_before_they_are_decoded(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, 2)
    (src / "bomb.png").write_bytes(_png_bomb(12000, 12000))  # 144 Mpixels in 300 bytes
    (src / "bomb2.png").write_bytes(_png_bomb(1 << 20, 1 << 20))  # beyond Pillow's bound
    archive(src, dest, EncodeSettings(codec="jpeg", max_pixels=100_000_000))
    r = rows(dest)
    assert "12000x12000 is larger than the limit" in r["bomb.png"]["error"]
    assert "larger than the limit" in r["bomb2.png"]["error"]
    res = archive(src, tmp_path / "d2", EncodeSettings(codec="jpeg", max_image_bytes=1000))
    assert res.counts["failed"] == 4  # the pictures by size; the bombs as before
    assert "larger than the limit of 1000 bytes" in rows(tmp_path / "d2")["d1/p001.png"]["error"]


def test_plan_batches_group_equal_sizes(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, 11, sizes=((64, 64), (64, 96)))
    archive(src, dest, JPEG, batch_size=1)  # creates the manifest
    with Manifest(Layout.at(dest).manifest) as m:
        m.db.execute("UPDATE items SET status = 'pending'")
        batches = list(plan_batches(m, str(src), 4))
    sizes = [
        {(rows(dest)[i.source]["width"], rows(dest)[i.source]["height"]) for i in b}
        for b in batches
    ]
    assert all(len(s) == 1 for s in sizes)  # one size per batch
    assert [len(b) for b in batches] == [4, 2, 4, 1]  # 6 x 64x64, then 5 x 96x64
    assert sorted(i.source for b in batches for i in b) == sorted(rows(dest))


def test_verify_catches_damaged_outputs_and_rerun_repairs(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    good = make_tree(src, 4)
    archive(src, dest, EncodeSettings(codec="png"), verify=True)
    r = rows(dest)
    assert all(r[s]["status"] == "verified" and r[s]["psnr"] is None for s in good)  # exact
    out = dest / r[good[0]]["output"]
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x01
    out.write_bytes(bytes(data))
    v = verify_archive(dest, recheck=True)
    assert v.verified == 3 and [s for s, _ in v.failures] == [good[0]]
    assert "SHA-256" in v.failures[0][1]
    assert rows(dest)[good[0]]["status"] == "pending"
    res = archive(src, dest, EncodeSettings(codec="png"), verify=True)
    assert res.progress.done == 1 and res.verify.verified == 1
    assert_consistent(dest, good)


def test_lossless_verify_compares_pixels(tmp_path, monkeypatch):
    """A PNG output that decodes to other pixels than the source fails verification."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, 1)
    archive(src, dest, EncodeSettings(codec="png"))
    import onedc_media.archive.verify as verify_mod

    real = verify_mod.decode_pictures

    def off_by_one(header, packets, **kw):
        for p in real(header, packets, **kw):
            yield np.clip(p.astype(int) + 1, 0, 255).astype(np.uint8)

    monkeypatch.setattr(verify_mod, "decode_pictures", off_by_one)
    v = verify_archive(dest)
    assert v.failed == 1 and "source pixels" in v.failures[0][1]


def test_verify_isolates_an_undecodable_output_among_batched_ones(tmp_path):
    """An output whose bytes match the manifest but do not decode fails alone; the
    outputs decoded in the same sequence around it verify."""
    import dataclasses

    from onedc_media import container

    src, dest = tmp_path / "src", tmp_path / "dest"
    good = make_tree(src, 6, sizes=((64, 64),))
    archive(src, dest, JPEG)
    victim = rows(dest)[good[2]]
    path = dest / victim["output"]
    with container.open(path) as inp:
        header = dataclasses.replace(inp.streams[0], index=-1)
    with container.open(path, "w") as out:
        s = out.add_stream(header)
        out.mux(container.Packet(s.index, b"\xff\xd8\xff\xe0 not a jpeg", pts=0, keyframe=True))
    with sqlite3.connect(Layout.at(dest).manifest) as db:
        db.execute(
            "UPDATE items SET out_size = ?, out_sha256 = ? WHERE id = ?",
            (path.stat().st_size, sha(path), victim["id"]),
        )
    v = verify_archive(dest)
    assert [s for s, _ in v.failures] == [good[2]] and v.verified == 5
    r = rows(dest)
    assert r[good[2]]["status"] == "pending" and r[good[2]]["error"].startswith("verify: ")


class _Crash(BaseException):
    """Stands for a kill: nothing after it runs (not an Exception: nothing catches it)."""


@pytest.mark.parametrize("where", ["before-rename", "after-rename"])
def test_crash_windows_between_write_rename_and_commit(tmp_path, monkeypatch, where):
    """Crash exactly in the windows that matter, then resume."""
    import onedc_media.archive.job as job_mod
    import onedc_media.archive.layout as layout_mod

    src, dest = tmp_path / "src", tmp_path / "dest"
    good = make_tree(src, 8)
    calls = {"n": 0}
    if where == "before-rename":  # the spool file is written and fsynced; no rename
        real_replace = os.replace

        def replace(a, b):
            calls["n"] += 1
            if calls["n"] == 5:
                raise _Crash
            return real_replace(a, b)

        monkeypatch.setattr(layout_mod.os, "replace", replace)
        monkeypatch.setattr(layout_mod.os, "unlink", lambda p: None)  # a kill cleans nothing
    else:  # outputs renamed into place; the manifest never hears of them

        def commit_results(self, results):
            raise _Crash

        monkeypatch.setattr(job_mod.Manifest, "commit_results", commit_results)
    with pytest.raises(_Crash):
        archive(src, dest, JPEG, batch_size=2, jobs=1)
    monkeypatch.undo()
    spool = dest / STATE_DIR / "spool"
    if where == "before-rename":
        assert len(list(spool.iterdir())) == 1  # the orphaned temporary file
    else:
        assert not any(r["status"] == "done" for r in rows(dest).values())
        assert any(p.suffix == ".odc" for p in dest.rglob("*.odc"))  # renamed, uncommitted
    res = archive(src, dest, JPEG, batch_size=2, verify=True)
    assert res.cleaned == (1 if where == "before-rename" else 0)
    assert_consistent(dest, good)


KILL_SCRIPT_ENV = {"PYTHONUNBUFFERED": "1"}


def _count(db_path: Path, status_sql: str) -> int:
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute(f"SELECT COUNT(*) FROM items WHERE {status_sql}").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_sigkill_at_random_points_then_resume(tmp_path):
    """Kill the CLI job (SIGKILL) several times at random points of the encode and verify
    phases; after each kill the manifest never claims an output that is not on disk;
    the final run leaves every source with exactly one verified output, nothing that
    was committed is redone, no temporary files remain."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    good = make_tree(src, 160, sizes=((192, 256), (256, 192), (160, 160)))
    bad = add_bad_inputs(src)
    db_path = dest / STATE_DIR / "manifest.sqlite"
    cmd = archive_cmd(src, dest, "-c", "jpeg", "-q", "85", "--verify", "--metrics", "psnr",
                      "--batch-size", "4", "--jobs", "2", "--no-progress")  # fmt: skip
    env = {**os.environ, **KILL_SCRIPT_ENV}
    rng = random.Random(8)
    committed: dict[str, tuple[str, float]] = {}
    kills = []
    for attempt in range(6):  # 4 kills while encoding, then 2 while verifying
        phase = "encode" if attempt < 4 else "verify"
        sql = "status IN ('done', 'verified')" if phase == "encode" else "status = 'verified'"
        target = min(_count(db_path, sql) + rng.randint(5, 30), len(good) - 1)
        proc = subprocess.Popen(
            cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 120
        while proc.poll() is None and _count(db_path, sql) < target:
            assert time.monotonic() < deadline, "the job hung"
            time.sleep(0.005)
        time.sleep(rng.random() * 0.05)  # land anywhere: read, encode, write, commit
        was_running = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append((phase, _count(db_path, sql), was_running))
        r = rows(dest)
        for source, row in r.items():  # the manifest never runs ahead of the disk
            if row["status"] in ("done", "verified"):
                out = dest / row["output"]
                assert out.stat().st_size == row["out_size"] and sha(out) == row["out_sha256"]
                committed.setdefault(source, (row["out_sha256"], row["encoded_at"]))
    assert all(running for _, _, running in kills), kills  # every kill hit a running job

    proc = subprocess.run(
        cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 3, proc.stderr  # 3: finished, some sources failed (the bad ones)
    assert_consistent(dest, good)
    r = rows(dest)
    for source, (digest, encoded_at) in committed.items():  # nothing finished was redone
        assert (r[source]["out_sha256"], r[source]["encoded_at"]) == (digest, encoded_at)
    for source, word in bad.items():
        assert r[source]["status"] == "failed" and word in r[source]["error"]
    assert all(r[s]["attempts"] == 1 for s in good)  # every item encoded exactly once


def test_second_job_on_the_same_archive_is_refused(tmp_path):
    from onedc_media.archive.layout import job_lock

    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, 1)
    with job_lock(Layout.at(dest)):
        code = subprocess.run(
            archive_cmd(src, dest, "-c", "jpeg"),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert code.returncode == 1 and "another archive job" in code.stderr


def test_archive_refuses_another_source_and_nested_folders(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, 1)
    archive(src, dest, JPEG)
    other = tmp_path / "other"
    make_tree(other, 1)
    with pytest.raises(ManifestError, match="holds"):
        archive(other, dest, JPEG)
    inner = src / "archive"  # DEST inside SRC: the archive is not archived
    res = archive(src, inner, JPEG)
    assert res.scan.sources == 1
    with pytest.raises(Exception, match="inside the archive"):
        archive(inner, inner.parent, JPEG)


# -- restore, CLI -------------------------------------------------------------------------


def test_restore_png_is_exact_and_resumable(tmp_path):
    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "out"
    good = make_tree(src, 5)
    write_picture(src / "d0/sub/p000.png", picture(64, 64, 7))  # beside d0/sub/p000.jpg
    archive(src, dest, EncodeSettings(codec="png"))
    res = restore_archive(dest, out)
    assert res.restored == 6 and not res.failures
    names = restore_names([(s, "image") for s in rows(dest)])
    assert names["d0/sub/p000.jpg"] == "d0/sub/p000.jpg.png"
    assert names["d0/sub/p000.png"] == "d0/sub/p000.png"
    assert names["d1/p001.png"] == "d1/p001.png"
    assert restore_names([("a/b.jpg", "image"), ("a/c.MOV", "video")]) == {
        "a/b.jpg": "a/b.png",
        "a/c.MOV": "a/c.mp4",
    }
    for source in [*good, "d0/sub/p000.png"]:
        want = cv2.imread(str(src / source))
        got = cv2.imread(str(out / names[source]))
        assert np.array_equal(want, got), source
    assert restore_archive(dest, out).kept == 6


def test_restore_names_are_unique(tmp_path):
    images = ["b.jpg", "b.jpeg", "B.JPG", "b.png", "B.PNG", "b.jpeg.png"]
    sources = [(s, "image") for s in images] + [("v.mov", "video"), ("v.MKV", "video")]
    names = restore_names(sources)
    assert names == {
        "b.jpg": "b.jpg.png",  # b.png is a source
        "b.jpeg": "b.jpeg.2.png",  # b.jpeg.png is a source too
        "B.JPG": "B.JPG.2.png",  # b.jpg.png, ignoring case, was given to b.jpg
        "b.png": "b.png",
        "B.PNG": "B.PNG.2.png",
        "b.jpeg.png": "b.jpeg.png",
        "v.mov": "v.mp4",
        "v.MKV": "v.MKV.mp4",
    }
    assert len({n.lower() for n in names.values()}) == len(sources)

    # b.jpg and b.jpeg both became b.png, and the second was reported "kept"
    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "out"
    write_picture(src / "b.jpg", picture(64, 64, 1))
    write_picture(src / "b.jpeg", picture(64, 64, 2))
    archive(src, dest, EncodeSettings(codec="png"))
    res = restore_archive(dest, out)
    assert (res.restored, res.kept, res.failures) == (2, 0, [])
    names = restore_names([(s, "image") for s in rows(dest)])
    assert sorted(p.name for p in out.iterdir()) == sorted(names.values())
    assert names["b.jpeg"] == "b.png" and names["b.jpg"] == "b.jpg.png"  # manifest order
    for source, name in names.items():
        assert np.array_equal(cv2.imread(str(src / source)), cv2.imread(str(out / name)))


def test_cli_archive_status_verify_restore(tmp_path, capsys):
    src, dest, out = tmp_path / "src", tmp_path / "dest", tmp_path / "out"
    make_tree(src, 3)
    assert main(["archive", str(src), str(dest), "-c", "jpeg", "-q", "70", "--no-progress"]) == 0
    assert "3 to encode" in capsys.readouterr().out
    assert main(["archive", "--verify", str(dest), "--no-progress"]) == 0
    assert "verified 3 of 3" in capsys.readouterr().out
    assert main(["archive", "--status", str(dest), "--json"]) == 0
    import json

    st = json.loads(capsys.readouterr().out)
    assert st["counts"]["verified"] == 3 and st["bytes_out"] > 0
    assert main(["archive", "--restore", str(dest), str(out), "--no-progress"]) == 0
    assert len(list(out.rglob("*.png"))) == 3
    assert main(["archive", str(src)]) == 1
    assert "expects SRC DEST" in capsys.readouterr().err
    assert main(["archive", "--status", str(tmp_path / "nothing")]) == 1
    assert "no archive manifest" in capsys.readouterr().err
    assert main(["archive", str(src), str(dest), "-c", "nope"]) == 1
    assert main(["archive", str(src), str(dest), "-c", "jpeg", "--metrics", "lpips"]) == 1


# -- videos --------------------------------------------------------------------------------


def _clip(path: Path, frames: int = 12, size=(64, 48)) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=10)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        vs.codec_context.options = {"preset": "ultrafast", "g": "4"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(picture(size[1], size[0], i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            for p in vs.encode(frame.reformat(format="yuv420p")):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
    return path


@pytest.mark.parametrize("mode", ["transcode", "keyframes", "skip"])
def test_videos(tmp_path, mode):
    src, dest = tmp_path / "src", tmp_path / "dest"
    make_tree(src, 1)
    _clip(src / "clips/a.mp4")
    (src / "clips/b.mov").write_bytes(b"\x00" * 100)  # not a video
    res = archive(
        src, dest, EncodeSettings(codec="jpeg", options={"quality": 80}, videos=mode), verify=True
    )
    r = rows(dest)
    if mode == "skip":
        assert r["clips/a.mp4"]["status"] == r["clips/b.mov"]["status"] == "skipped"
        return
    assert r["clips/b.mov"]["status"] == "failed"
    a = r["clips/a.mp4"]
    assert a["status"] == "verified", a["error"]
    assert (a["width"], a["height"]) == (64, 48)
    assert a["frames"] == (12 if mode == "transcode" else 3)  # keyframes every 4 frames
    assert res.verify.verified == 2
    if mode == "transcode":
        out = tmp_path / "out"
        assert restore_archive(dest, out).restored == 2
        assert (out / "clips/a.mp4").stat().st_size > 0


# -- OneDC ---------------------------------------------------------------------------------


def test_onedc_tiny_pictures_batched_equal_to_single_encodes(tmp_path):
    """Two equal-sized pictures share one batch; each output equals what
    ``onedc-media encode`` writes for the picture alone."""
    from onedc_media.stills import encode_pictures

    src, dest = tmp_path / "src", tmp_path / "dest"
    for i in range(2):
        write_picture(src / f"p{i}.png", picture(64, 96, i))
    settings = EncodeSettings(codec="onedc", options={"quality": 1}, device="cpu", threads=1)
    res = archive(src, dest, settings, verify=True, metrics=("psnr",), batch_size=2)
    assert res.counts["verified"] == 2, rows(dest)
    r = rows(dest)
    for i in range(2):
        row = r[f"p{i}.png"]
        assert row["model_name"] == "onedc-tiny" and len(row["model_sha256"]) == 64
        assert row["model_parsing_sha256"] and row["quality"] == 1
        assert row["psnr"] is not None and np.isfinite(row["psnr"])
        single = tmp_path / f"single{i}.odc"
        encode_pictures(
            [picture(64, 96, i)], single, codec="onedc", options={"quality": 1}, device="cpu",
            form="stream",  # archive jobs write the stream form
        )
        assert sha(single) == row["out_sha256"]


def test_fifo_is_never_opened_blocking(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    os.mkfifo(src / "p.png")
    assert stat.S_ISFIFO((src / "p.png").stat().st_mode)
    archive(src, dest, JPEG)  # would hang if the FIFO were opened for reading
    assert rows(dest)["p.png"]["error"] == "not a regular file"


def test_onedc_archive_records_the_model_default_quality(tmp_path):
    """No quality given: the manifest records the rate point the encoder used (the model's)."""
    from onedc_media.model.engine import OneDCEngine

    src, dest = tmp_path / "src", tmp_path / "dest"
    write_picture(src / "a.png", picture(64, 64, 1))
    res = archive(src, dest, EncodeSettings(codec="onedc"))
    assert res.counts["done"] == 1
    assert rows(dest)["a.png"]["quality"] == OneDCEngine.from_pretrained("onedc-tiny").default_quality
