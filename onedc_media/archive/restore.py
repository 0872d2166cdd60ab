"""``onedc-media archive --restore DEST OUT``: decode an archive back to files.

Images come back as PNG (lossless, whatever the source format was): ``a/b.png`` keeps
its name, ``a/b.jpg`` becomes ``a/b.png``, or ``a/b.jpg.png`` when ``a/b.png`` is also
a source or was given to another source (``a/b.jpeg``), then ``a/b.jpg.2.png``... so no
two sources share a name (ignoring case). Videos come back as MP4 (H.264) by the same
rule (``a/c.mov`` -> ``a/c.mp4``). Every file is written atomically; files already
there are kept, so an interrupted restore resumes where it stopped.

Manifest paths that are absolute or hold ``..`` (and outputs or restored files that a
symbolic link would lead outside DEST or OUT) fail their item; nothing is read or
written for it (:mod:`~onedc_media.archive.paths`).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from onedc_media.archive.layout import Layout
from onedc_media.archive.manifest import Manifest
from onedc_media.archive.paths import resolve_inside, split_relative
from onedc_media.errors import OdcError

__all__ = ["RestoreResult", "restore_archive", "restore_names"]


@dataclass
class RestoreResult:
    restored: int = 0
    kept: int = 0  #: already present in OUT
    failures: list[tuple[str, str]] = field(default_factory=list)  #: (source, reason)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)


def restore_names(sources: list[tuple[str, str]]) -> dict[str, str]:
    """``{source: restored path}`` for ``(source, kind)`` pairs (see the module docstring).

    Names are unique, ignoring case (case-insensitive file systems): a name is given
    only when no source has it and no earlier source was given it, so two sources never
    restore to one file (``a/b.jpg`` -> ``a/b.png``, then ``a/b.jpeg`` -> ``a/b.jpeg.png``;
    after that ``a/b.jpeg.2.png``...). The result depends on the order of *sources*.
    """
    sources_taken = {s.lower() for s, _ in sources}
    given: set[str] = set()
    out = {}
    for source, kind in sources:
        ext = ".png" if kind == "image" else ".mp4"
        stem, old = os.path.splitext(source)
        first = [source] if old.lower() == ext else [stem + ext, source + ext]
        numbered = (f"{source}.{n}{ext}" for n in itertools.count(2))
        for name in itertools.chain(first, numbered):
            key = name.lower()
            if key not in given and (name == source or key not in sources_taken):
                break
        given.add(key)
        out[source] = name
    return out


def restore_archive(
    dest: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    plugins: Any = None,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RestoreResult:
    """Decode every done / verified output of the archive *dest* into the folder *out*."""
    import onedc_media
    from onedc_media.archive.verify import decode_output
    from onedc_media.imageio import write_image

    plugins = plugins or onedc_media.default_plugins()
    layout = Layout.at(dest)
    out = os.path.abspath(os.fspath(out))
    t0 = time.perf_counter()
    with Manifest(layout.manifest, readonly=True) as m:
        rows = m.items("status IN ('done', 'verified')")
        names = restore_names([(r["source"], r["kind"]) for r in m.items()])
    result = RestoreResult()
    for n, row in enumerate(rows, 1):
        try:
            # manifest paths are data: both must stay inside their folders
            split_relative(row["source"], "source")
            path = layout.output_path(row["output"])
            target = resolve_inside(out, names[row["source"]], what="restored file")
            if os.path.exists(target):
                result.kept += 1
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                _remove_partials(target)
                if row["kind"] == "image":
                    data = layout.read_output(row["output"])
                    _, pictures = decode_output(data, plugins=plugins, device=device)
                    write_image(target, pictures[0])
                else:
                    from onedc_media.pipeline.export import export_video

                    export_video(path, target, codecs=plugins.codecs, device=device)
                result.restored += 1
        except (OdcError, OSError, ValueError) as exc:
            result.failures.append((row["source"], str(exc)))
        if progress is not None:
            progress(n, len(rows))
    result.seconds = time.perf_counter() - t0
    return result


def _remove_partials(target: str) -> None:
    """Remove what an interrupted restore left beside *target* (the temporary files of
    ``write_image`` and ``export_video``)."""
    folder, base = os.path.split(target)
    stem, ext = os.path.splitext(base)
    for pattern in (f".{glob.escape(base)}.*.tmp", f".{glob.escape(stem)}.*.partial{ext}"):
        for path in glob.glob(os.path.join(folder, pattern)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
