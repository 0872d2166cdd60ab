"""``onedc-media transcode`` and ``onedc-media decode``, run in-process: outputs that PyAV
and OpenCV play with the source's frames, timestamps and audio; picture outputs; help;
one-line errors with exit status 1 and nothing half-written."""

from __future__ import annotations

import json
import os
from fractions import Fraction

import cv2
import numpy as np
import pytest
from onedc_media_plugins import classic, policies
from test_pipeline import audio_packets, make_clip, psnr, read_source, scene

from onedc_media import load_plugins


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(entry_points=False, plugins=[classic, policies], blocked=[])


import onedc_media
from onedc_media import container
from onedc_media.cli.main import main
from onedc_media.container import Packet, StreamHeader


@pytest.fixture(autouse=True)
def installed_plugins(plugins, monkeypatch):
    """The CLI uses the installed plugins; pin them to the classic codecs + policies."""
    monkeypatch.setattr(onedc_media, "default_plugins", lambda: plugins)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("cli") / "clip.mp4", frames=20, gop=7)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_transcode_then_decode_to_mp4_and_mkv(clip, tmp_path, capsys):
    odc = tmp_path / "clip.odc"
    code, out, _ = run(capsys, "transcode", str(clip), "-o", str(odc), "-c", "jpeg", "-q", "90",
                       "--gop", "6", "--crf", "20", "--no-progress")  # fmt: skip
    assert code == 0, out
    assert "20 frames" in out and "4 x jpeg" in out and "not stored" in out
    times, ref = read_source(clip)
    for ext in ("mp4", "mkv"):
        video = tmp_path / f"clip.{ext}"
        code, out, _ = run(
            capsys, "decode", str(odc), "-o", str(video), "--crf", "12", "--no-progress"
        )
        assert code == 0 and f"wrote {video}: 20 frames" in out
        got_times, got = read_source(video)  # PyAV plays it ...
        assert got_times == pytest.approx(times, abs=1e-3)
        assert min(psnr(a, b) for a, b in zip(got, ref, strict=True)) > 28
        cap = cv2.VideoCapture(str(video))  # ... and so does OpenCV
        count = 0
        while cap.read()[0]:
            count += 1
        assert count == 20 and cap.get(cv2.CAP_PROP_FPS) == 25
        assert [d for d, _ in audio_packets(video)] == [d for d, _ in audio_packets(clip)]


def test_transcode_json_and_policies(clip, tmp_path, capsys):
    odc = tmp_path / "s.odc"
    code, out, _ = run(capsys, "transcode", str(clip), "-o", str(odc), "-c", "webp",
                       "--keyframes", "scene", "--policy-opt", "min_gop=4", "--inter-codec", "libx265",
                       "--preset", "ultrafast", "--max-frames", "12", "--no-audio", "--json")  # fmt: skip
    assert code == 0
    report = json.loads(out)
    assert report["frames"] == 12 and report["keyframes"] == 1 and report["audio_streams"] == 0
    assert report["inter"]["codec"] == "libx265" and report["intra_bytes_not_stored"] > 0
    with container.open(odc) as inp:
        assert len(inp.streams) == 1
    code, out, _ = run(
        capsys, "decode", str(odc), "-o", str(tmp_path / "s.mkv"), "--json", "--no-audio"
    )
    assert code == 0 and json.loads(out)["frames"] == 12


def test_decode_video_to_pictures_and_keyframes_only(clip, tmp_path, capsys):
    odc = tmp_path / "k.odc"
    assert run(capsys, "transcode", str(clip), "-o", str(odc), "-c", "png", "--gop", "8",
               "--no-progress")[0] == 0  # fmt: skip
    code, out, _ = run(capsys, "decode", str(odc), "--keyframes-only", "-o", f"{tmp_path}/stills/")
    assert code == 0 and "wrote 3 pictures" in out
    names = sorted(os.listdir(tmp_path / "stills"))
    assert names == ["k_000000.png", "k_000008.png", "k_000016.png"]
    _, ref = read_source(clip)
    assert np.array_equal(cv2.imread(str(tmp_path / "stills" / names[2]))[:, :, ::-1], ref[16])
    code, out, _ = run(capsys, "decode", str(odc), "-o", str(tmp_path / "f_%03d.jpg"))
    assert code == 0 and len(list(tmp_path.glob("f_*.jpg"))) == 20
    assert (tmp_path / "f_019.jpg").exists()


def test_a_percent_sign_in_a_folder_name_is_not_a_pattern(clip, tmp_path, capsys):
    odc = tmp_path / "p.odc"
    assert (
        run(capsys, "transcode", str(clip), "-o", str(odc), "-c", "jpeg", "--no-progress")[0] == 0
    )
    folder = tmp_path / "100%"
    folder.mkdir()
    code, out, err = run(capsys, "decode", str(odc), "-o", f"{folder}/clip.mp4", "--no-progress")
    assert code == 0, err
    assert f"wrote {folder}/clip.mp4: 20 frames" in out
    code, out, _ = run(capsys, "decode", str(odc), "-o", f"{folder}/f_%02d.png")
    assert code == 0 and len(list(folder.glob("f_*.png"))) == 20


def test_decode_to_a_video_creates_missing_folders(clip, tmp_path, capsys):
    odc = tmp_path / "v.odc"
    assert run(capsys, "transcode", str(clip), "-o", str(odc), "-c", "jpeg", "--max-frames", "4",
               "--no-audio", "--no-progress")[0] == 0  # fmt: skip
    video = tmp_path / "new" / "deeper" / "v.mp4"
    code, out, err = run(capsys, "decode", str(odc), "-o", str(video), "--no-progress")
    assert code == 0, err
    assert f"wrote {video}: 4 frames" in out
    assert len(read_source(video)[1]) == 4


def test_decode_to_pictures_reports_intra_mismatches(clip, tmp_path, capsys):
    from onedc_media.pipeline.hybrid import pack_inter, unpack_inter

    good, bad = tmp_path / "m.odc", tmp_path / "bad.odc"
    assert run(capsys, "transcode", str(clip), "-o", str(good), "-c", "png", "--gop", "8",
               "--no-audio", "--no-progress")[0] == 0  # fmt: skip
    with container.open(good) as inp, container.open(bad, "w") as out:
        for stream in inp.streams:
            out.add_stream(stream)
        for p in inp.demux():
            crc, packet = (None, b"") if p.keyframe else unpack_inter(p.data)
            if crc is not None:  # another encoder build, as far as the checksum says
                p = Packet(p.stream_index, pack_inter(packet, crc ^ 1), p.pts, p.dts,
                           p.duration, p.keyframe)  # fmt: skip
            out.mux(p)
    for output in (f"{tmp_path}/frames/", str(tmp_path / "clip.mp4")):
        code, out, _ = run(capsys, "decode", str(bad), "-o", output, "--json")
        assert code == 0 and json.loads(out)["intra_mismatches"] == 3  # GOPs 0, 8, 16


def _image_odc(path, pictures, plugins) -> None:
    """An image .odc file as `onedc-media encode` writes it: one stream, one packet each."""
    info = plugins.codecs.get("png")
    enc = info.create().encoder(info.resolve_options({}))
    h, w = pictures[0].shape[:2]
    with container.open(path, "w") as out:
        s = out.add_stream(StreamHeader("image", "png", width=w, height=h, time_base=Fraction(1, 1),
                                        codec_params=dict(enc.params)))  # fmt: skip
        for i, packet in enumerate(enc.encode(pictures)):
            out.mux(Packet(s.index, packet, pts=i, duration=1, keyframe=True))


def test_decode_image_files(tmp_path, capsys, plugins):
    pics = [scene(i, (30, 20), i % 2) for i in range(3)]
    one, three = tmp_path / "one.odc", tmp_path / "three.odc"
    _image_odc(one, pics[:1], plugins)
    _image_odc(three, pics, plugins)

    code, out, _ = run(capsys, "decode", str(one), "-o", str(tmp_path / "one.png"))
    assert code == 0 and "1 picture" in out
    assert np.array_equal(cv2.imread(str(tmp_path / "one.png"))[:, :, ::-1], pics[0])
    (tmp_path / "one.png").unlink()
    code, _, _ = run(capsys, "decode", str(one))  # default name: beside the input ...
    assert code == 0 and (tmp_path / "one.png").exists()
    code, _, err = run(capsys, "decode", str(one))  # ... but never over an existing file
    assert code == 1 and "exists" in err

    code, out, _ = run(capsys, "decode", str(three), "-o", f"{tmp_path}/many/")
    assert code == 0 and sorted(os.listdir(tmp_path / "many")) == [
        f"three_{i:06d}.png" for i in range(3)
    ]
    code, _, _ = run(capsys, "decode", str(three), "-o", str(tmp_path / "p_%d.png"))
    assert code == 0
    for i in range(3):
        assert np.array_equal(cv2.imread(str(tmp_path / f"p_{i}.png"))[:, :, ::-1], pics[i])

    # several pictures, one file name: a one-line error, nothing written
    code, out, err = run(capsys, "decode", str(three), "-o", str(tmp_path / "single.png"))
    assert code == 1 and err.count("\n") == 1 and "more than one picture" in err
    assert not (tmp_path / "single.png").exists()
    code, _, err = run(capsys, "decode", str(three), "-o", str(tmp_path / "x.mp4"))
    assert code == 1 and "still images" in err


def test_one_line_errors(clip, tmp_path, capsys):
    odc = tmp_path / "e.odc"
    assert (
        run(capsys, "transcode", str(clip), "-o", str(odc), "-c", "jpeg", "--no-progress")[0] == 0
    )
    data = odc.read_bytes()
    cut = tmp_path / "cut.odc"
    cut.write_bytes(data[: len(data) // 2])
    bad_video = tmp_path / "bad.mp4"
    bad_video.write_bytes(b"not a video at all" * 50)
    cases = [
        ("decode", str(cut), "-o", str(tmp_path / "cut.mp4")),
        ("decode", str(tmp_path / "missing.odc"), "-o", str(tmp_path / "m.mp4")),
        ("decode", str(bad_video), "-o", str(tmp_path / "b.mp4")),
        ("decode", str(odc), "-o", str(tmp_path / "out.xyz")),
        ("decode", str(odc), "--keyframes-only", "-o", str(tmp_path / "k.mp4")),
        ("transcode", str(bad_video), "-o", str(tmp_path / "b.odc"), "-c", "jpeg"),
        ("transcode", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "b.odc"), "-c", "jpeg"),
        ("transcode", str(clip), "-o", str(tmp_path / "b.odc"), "-c", "nope"),
        ("transcode", str(clip), "-o", str(tmp_path / "b.odc"), "-c", "jpeg", "-q", "500"),
        (
            "transcode",
            str(clip),
            "-o",
            str(tmp_path / "b.odc"),
            "-c",
            "jpeg",
            "--keyframes",
            "scene",
            "--gop",
            "3",
        ),
        ("transcode", str(clip), "-o", str(tmp_path / "b.odc"), "-c", "jpeg", "--crf", "99"),
        (
            "transcode",
            str(clip),
            "-o",
            str(tmp_path / "b.odc"),
            "-c",
            "jpeg",
            "--inter-codec",
            "mpeg2",
        ),
        (
            "transcode",
            str(clip),
            "-o",
            str(tmp_path / "b.odc"),
            "-c",
            "jpeg",
            "--keyframes",
            "nope",
        ),
        ("transcode", str(clip), "-o", str(clip), "-c", "jpeg"),
    ]
    for argv in cases:
        code, _, err = run(capsys, *argv)
        assert code == 1, argv
        assert err.startswith("onedc-media: error: ") and err.count("\n") == 1, (argv, err)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["bad.mp4", "cut.odc", "e.odc"]  # no partial outputs, no temporary files


def test_help_teaches(capsys):
    for command in ("transcode", "decode"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out
    assert "--keyframes-only" in out and "out_%04d" in out
