"""Every bundled codec codes every small and odd size at every quality of its ladder.

Native encoders have minimum sizes and some builds corrupt their heap below them, which
aborts the whole process (SIGABRT) instead of raising. So the matrix runs in a child
process per codec: an abort fails that codec's test, names the case it died on, and the
rest of the suite goes on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest

from onedc_media import load_plugins

#: The child: encode and decode each ``(width, height, quality)`` case, one JSON line
#: before each attempt so the parent can name the case a native abort killed.
_CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from onedc_media import load_plugins
    from onedc_media_plugins import classic, onedc

    name, cases = sys.argv[1], json.loads(sys.argv[2])
    plugins = load_plugins(entry_points=False, plugins=[classic, onedc], blocked=[])
    info = plugins.codecs.get(name)
    codec = info.create()
    rng = np.random.default_rng(0)
    encoders = {}
    for width, height, quality in cases:
        print(json.dumps([width, height, quality]), flush=True)
        if quality not in encoders:
            given = {} if quality is None else {info.quality_option: quality}
            encoders[quality] = codec.encoder(info.resolve_options(given))
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        (packet,) = encoders[quality].encode([frame])
        params = encoders[quality].params
        model = encoders[quality].model
        with codec.decoder(params, model=model) as decoder:
            (out,) = decoder.decode([packet])
        if out.shape != frame.shape or out.dtype != np.uint8:
            sys.exit(f"{width}x{height} q={quality}: decoded {out.shape} {out.dtype}")
        if not info.lossy and not np.array_equal(out, frame):
            sys.exit(f"{width}x{height}: a lossless codec changed the picture")
    print("done", flush=True)
    """
)

CODECS = ("jpeg", "webp", "png", "avif", "hevc-intra", "onedc")

#: Shapes that are odd, thin or one pixel wide on either side.
ODD_SHAPES = ((1, 17), (17, 1), (1, 2), (2, 1), (3, 5), (5, 3), (7, 13), (13, 7), (9, 16),
              (16, 9), (15, 17), (17, 15), (33, 1), (1, 33), (65, 63), (63, 65))


def run_matrix(name: str, sizes: list[tuple[int, int]], timeout: float) -> None:
    from onedc_media_plugins import classic, onedc

    info = load_plugins(entry_points=False, plugins=[classic, onedc], blocked=[]).codecs.get(name)
    cases = [(w, h, q) for q in info.ladder() for (w, h) in sizes]
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, name, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = proc.stdout.splitlines()
    last = lines[-1] if lines else "(nothing)"
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        pytest.fail(
            f"{name}: the process died of {sig} while coding case (width, height, quality) "
            f"{last}; stderr: {proc.stderr.strip()[-400:]}"
        )
    assert proc.returncode == 0, f"{name}: case {last} failed: {proc.stderr.strip()[-800:]}"
    assert last == "done" and len(lines) == len(cases) + 1


@pytest.mark.parametrize("name", CODECS)
def test_small_and_odd_sizes_at_every_ladder_quality(name):
    """Squares 1x1..17x17 and odd shapes, every quality of the codec's ladder."""
    sizes = [(s, s) for s in range(1, 18)] + list(ODD_SHAPES)
    run_matrix(name, sizes, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("name", CODECS)
def test_every_size_up_to_17x17(name):
    """The whole grid: every width and height from 1 to 17 at every ladder quality."""
    sizes = [(w, h) for w in range(1, 18) for h in range(1, 18)]
    run_matrix(name, sizes, timeout=3600)


def test_matrix_reports_a_native_abort(tmp_path, monkeypatch):
    """The harness itself: a child killed by a signal fails with the case it died on."""
    import subprocess as sp

    real_run = sp.run

    def aborting_run(cmd, **kw):
        cmd = [cmd[0], "-c", "import os, sys; print('[8, 8, 1]', flush=True); os.abort()"]
        return real_run(cmd, **kw)

    monkeypatch.setattr(subprocess, "run", aborting_run)
    with pytest.raises(pytest.fail.Exception, match=r"SIGABRT.*\[8, 8, 1\]"):
        run_matrix("jpeg", [(8, 8)], timeout=60)
