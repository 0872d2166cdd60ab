"""Manifest paths stay inside their folders: restore, verify, status and the job refuse
absolute paths, ``..``, empty and NUL components, and symbolic links that lead out."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from test_archive import make_tree, rows

from onedc_media.archive import (
    EncodeSettings,
    Layout,
    archive,
    archive_status,
    format_status,
    restore_archive,
    verify_archive,
)
from onedc_media.archive.paths import (
    UnsafePathError,
    open_inside,
    path_problem,
    resolve_inside,
    split_relative,
)
from onedc_media.cli.main import main

PNG = EncodeSettings(codec="png")


@pytest.mark.parametrize(
    "path, problem",
    [
        ("../../victim/x.png", ".."),
        ("a/../../x.png", ".."),
        ("..", ".."),
        ("/etc/passwd", "absolute"),
        ("a//b.png", "empty"),
        ("a/b.png/", "empty"),
        ("./a.png", "'.'"),
        ("", "empty"),
        ("a\x00b.png", "NUL"),
        (None, "not a text path"),
    ],
)
def test_unsafe_paths_are_named(path, problem):
    assert problem in path_problem(path)
    with pytest.raises(UnsafePathError, match="unsafe source"):
        split_relative(path, "source")


@pytest.mark.parametrize("path", ["a.png", "a/b/c.jpg.odc", "..a/b..", "a b/.hidden", "a\\b"])
def test_plain_relative_paths_pass(path):
    assert path_problem(path) is None
    assert split_relative(path) == path.split("/")


def test_symbolic_links_do_not_lead_outside(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "real").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.odc").write_bytes(b"secret")
    (root / "real" / "in.odc").write_bytes(b"inside")
    os.symlink(outside, root / "linkdir")
    os.symlink(outside / "secret.odc", root / "real" / "out.odc")
    os.symlink(root / "real" / "in.odc", root / "real" / "alias.odc")

    assert resolve_inside(str(root), "real/in.odc") == str(root / "real" / "in.odc")
    assert resolve_inside(str(root), "real/alias.odc")  # a link that stays inside
    assert resolve_inside(str(root), "new/folder/x.png")  # not there yet: can be made
    for rel in ("linkdir/secret.odc", "linkdir/new.png", "real/out.odc"):
        with pytest.raises(UnsafePathError, match="outside"):
            resolve_inside(str(root), rel)
    # a symlinked file is followed on request (sources), a symlinked folder never
    assert resolve_inside(str(root), "real/out.odc", follow_last=True)
    with pytest.raises(UnsafePathError):
        resolve_inside(str(root), "linkdir/secret.odc", follow_last=True)

    fd = open_inside(str(root), "real/in.odc")
    with os.fdopen(fd, "rb") as fh:
        assert fh.read() == b"inside"
    with pytest.raises(UnsafePathError, match="symbolic link"):
        open_inside(str(root), "linkdir/secret.odc")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        open_inside(str(root), "real/out.odc")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        open_inside(str(root), "linkdir/secret.odc", follow_last=True)
    fd = open_inside(str(root), "real/out.odc", follow_last=True)
    os.close(fd)
    with pytest.raises(FileNotFoundError):
        open_inside(str(root), "real/missing.odc")
    with pytest.raises(UnsafePathError, match=r"\.\."):
        open_inside(str(root), "../outside/secret.odc")


def _tamper(dest: Path, which: str, **columns: str) -> None:
    db = sqlite3.connect(Layout.at(dest).manifest)
    with db:
        sets = ", ".join(f"{c} = ?" for c in columns)
        db.execute(f"UPDATE items SET {sets} WHERE source = ?", (*columns.values(), which))
    db.close()


@pytest.fixture
def hostile(tmp_path):
    """An archive of 4 pictures whose manifest was edited: one source escapes OUT, one
    output lies outside DEST (a file is waiting there), one output is absolute."""
    src, dest = tmp_path / "src", tmp_path / "arch" / "dest"
    good = make_tree(src, 4)
    archive(src, dest, PNG)
    bait = tmp_path / "arch" / "outside.odc"
    shutil.copy(dest / rows(dest)[good[1]]["output"], bait)
    _tamper(dest, good[0], source="../../victim/x.png")
    _tamper(dest, good[1], output="../outside.odc")
    _tamper(dest, good[2], output=str(dest / rows(dest)[good[2]]["output"]))
    return src, dest, good, tmp_path


def test_restore_refuses_manifest_paths_that_escape(hostile):
    src, dest, good, tmp_path = hostile
    out = tmp_path / "arch" / "out"
    res = restore_archive(dest, out)
    assert res.restored == 1 and res.failed == 3
    reasons = dict(res.failures)
    assert "unsafe source" in reasons["../../victim/x.png"] and ".." in reasons["../../victim/x.png"]
    assert "unsafe output" in reasons[good[1]] and "'..'" in reasons[good[1]]
    assert "absolute path" in reasons[good[2]]
    assert not (tmp_path / "victim").exists()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [good[3]]


def test_verify_and_status_report_unsafe_paths_as_damage(hostile, capsys):
    src, dest, good, tmp_path = hostile
    st = archive_status(dest)
    assert len(st.unsafe_paths) == 3
    assert "damaged: 3 unsafe manifest path(s)" in format_status(st)
    assert main(["archive", "--status", str(dest)]) == 0
    assert "damaged: 3" in capsys.readouterr().out

    res = verify_archive(dest)
    assert res.verified == 1 and res.failed == 3
    assert all("unsafe" in why for _, why in res.failures)
    after = rows(dest)
    assert after[good[3]]["status"] == "verified"
    assert after[good[1]]["status"] == "pending" and "unsafe output" in after[good[1]]["error"]


def test_a_job_never_reads_or_writes_unsafe_rows(hostile):
    src, dest, good, tmp_path = hostile
    _tamper(dest, good[3], status="pending", output="../../escaped.odc")
    archive(src, dest, PNG)
    r = rows(dest)
    for source in ("../../victim/x.png", good[1], good[2], good[3]):
        assert r[source]["status"] == "failed" and "unsafe" in r[source]["error"], source
    assert not (tmp_path / "escaped.odc").exists()
    assert r[good[0]]["status"] == "done"  # the walk found it again under its real name


def test_symlinks_inside_out_and_dest_cannot_lead_outside(tmp_path):
    src, dest, out, victim = (tmp_path / n for n in ("src", "dest", "out", "victim"))
    good = make_tree(src, 3)  # d0/sub/p000.jpg, d1/p001.png, d2/p002.png
    archive(src, dest, PNG)
    victim.mkdir()
    out.mkdir()
    os.symlink(victim, out / "d1")  # restoring d1/p001.png would write into victim/
    res = restore_archive(dest, out)
    assert res.restored == 2 and [s for s, _ in res.failures] == ["d1/p001.png"]
    assert "symbolic link" in res.failures[0][1]
    assert list(victim.iterdir()) == []

    # an output folder in DEST swapped for a link to a copy elsewhere: not read
    elsewhere = tmp_path / "elsewhere"
    shutil.move(dest / "d2", elsewhere)
    os.symlink(elsewhere, dest / "d2")
    v = verify_archive(dest)
    assert v.verified == 2 and [s for s, _ in v.failures] == ["d2/p002.png"]
    assert "symbolic link" in v.failures[0][1]

    # a source folder swapped for a link elsewhere: the pending item is not read
    shutil.move(src / "d1", tmp_path / "moved")
    os.symlink(tmp_path / "moved", src / "d1")
    _tamper(dest, "d1/p001.png", status="pending")
    archive(src, dest, PNG)
    row = rows(dest)["d1/p001.png"]
    assert row["status"] == "failed" and "symbolic link" in row["error"], row["error"]
