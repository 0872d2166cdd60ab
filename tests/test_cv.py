"""The OpenCV adapters (``onedc_media.cv``) against cv2's own behaviour on the same content."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
import pytest
from onedc_media_plugins import classic, policies
from test_pipeline import make_clip, psnr, scene

from onedc_media import load_plugins


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(entry_points=False, plugins=[classic, policies], blocked=[])


import onedc_media.cv as odc
from onedc_media.errors import CodecNotFoundError, CodecOptionError, InvalidImageError
from onedc_media.pipeline.export import export_video
from onedc_media.pipeline.transcode import transcode

# -- imencode / imdecode ----------------------------------------------------------------


def test_imencode_imdecode_round_trip_in_bgr(plugins):
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (33, 17, 3), dtype=np.uint8)
    ok, buf = odc.imencode(
        ".odc", bgr, [odc.IMWRITE_ODC_CODEC, odc.ODC_CODEC_PNG], codecs=plugins.codecs
    )
    assert ok and buf.dtype == np.uint8 and buf.ndim == 1
    assert np.array_equal(odc.imdecode(buf, cv2.IMREAD_COLOR, codecs=plugins.codecs), bgr)
    assert np.array_equal(
        odc.imdecode(buf.tobytes(), cv2.IMREAD_COLOR_RGB, codecs=plugins.codecs), bgr[:, :, ::-1]
    )
    gray = odc.imdecode(buf, cv2.IMREAD_GRAYSCALE, codecs=plugins.codecs)
    assert np.array_equal(gray, cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    assert odc.imdecode(buf, cv2.IMREAD_REDUCED_COLOR_2, codecs=plugins.codecs).shape == (17, 9, 3)

    # pure blue stays blue: BGR in, BGR out, through an RGB codec
    blue = np.zeros((16, 16, 3), np.uint8)
    blue[..., 0] = 255
    ok, buf = odc.imencode(".odc", blue, [odc.IMWRITE_ODC_CODEC, "jpeg", odc.IMWRITE_ODC_QUALITY, 95],
                           codecs=plugins.codecs)  # fmt: skip
    back = odc.imdecode(buf, cv2.IMREAD_COLOR, codecs=plugins.codecs)
    assert back[..., 0].min() > 240 and back[..., 2].max() < 15

    # grey and BGRA inputs, as cv2.imencode takes them
    for img in (bgr[..., 0], np.dstack([bgr, np.full(bgr.shape[:2], 7, np.uint8)])):
        _, buf = odc.imencode(
            ".odc", img, [odc.IMWRITE_ODC_CODEC, odc.ODC_CODEC_PNG], codecs=plugins.codecs
        )
        assert odc.imdecode(buf, cv2.IMREAD_COLOR, codecs=plugins.codecs).shape == (33, 17, 3)


def test_imencode_quality_and_the_stream_it_writes(plugins):
    from onedc_media import container

    img = scene(0, (64, 48))[:, :, ::-1].copy()
    sizes = []
    for q in (20, 90):
        _, buf = odc.imencode(".odc", img, [odc.IMWRITE_ODC_CODEC, odc.ODC_CODEC_WEBP,
                                             odc.IMWRITE_ODC_QUALITY, q], codecs=plugins.codecs)  # fmt: skip
        sizes.append(buf.size)
    assert sizes[0] < sizes[1]
    import io

    with container.open(io.BytesIO(buf.tobytes())) as inp:
        (stream,) = inp.streams
        assert (stream.media_type, stream.codec, stream.width, stream.height) == (
            "image",
            "webp",
            64,
            48,
        )
        assert stream.codec_params["quality"] == 90
        assert len(list(inp.demux())) == 1


def test_image_adapter_errors_like_cv2(plugins):
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(CodecNotFoundError):
        odc.imencode(".jpg", img, codecs=plugins.codecs)
    with pytest.raises(CodecOptionError):
        odc.imencode(".odc", img, [odc.IMWRITE_ODC_CODEC], codecs=plugins.codecs)
    with pytest.raises(CodecOptionError):
        odc.imencode(".odc", img, [12345, 1], codecs=plugins.codecs)
    with pytest.raises(InvalidImageError):
        odc.imencode(".odc", img.astype(np.float32), codecs=plugins.codecs)
    with pytest.raises(CodecNotFoundError):
        odc.imencode(".odc", img, [odc.IMWRITE_ODC_CODEC, "no-such-codec"], codecs=plugins.codecs)
    # undecodable data: None, as cv2.imdecode
    assert odc.imdecode(b"garbage", cv2.IMREAD_COLOR, codecs=plugins.codecs) is None
    assert cv2.imdecode(np.frombuffer(b"garbage", np.uint8), cv2.IMREAD_COLOR) is None
    _, buf = odc.imencode(
        ".odc", img, [odc.IMWRITE_ODC_CODEC, odc.ODC_CODEC_PNG], codecs=plugins.codecs
    )
    assert odc.imdecode(buf[: buf.size // 2], cv2.IMREAD_COLOR, codecs=plugins.codecs) is None
    with pytest.raises(TypeError):
        odc.imdecode(12, cv2.IMREAD_COLOR)


# -- VideoCapture / VideoWriter against cv2 ----------------------------------------------


@pytest.fixture(scope="module")
def hybrid_pair(tmp_path_factory, plugins):
    d = tmp_path_factory.mktemp("cvhybrid")
    src = make_clip(d / "src.mp4", frames=30, gop=8, rotation=90, audio=False)
    odc_path = d / "clip.odc"
    transcode(
        src,
        odc_path,
        keyframe_codec="png",
        plugins=plugins,
        policy="gop",
        policy_options={"size": 8},
    )
    mp4 = d / "decoded.mp4"
    export_video(odc_path, mp4, crf=0, codecs=plugins.codecs)
    return odc_path, mp4


PROPS = (cv2.CAP_PROP_FPS, cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FRAME_WIDTH,
         cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_ORIENTATION_META, cv2.CAP_PROP_ORIENTATION_AUTO)  # fmt: skip


def _positions(cap) -> list[tuple[float, float]]:
    return [(cap.get(cv2.CAP_PROP_POS_FRAMES), cap.get(cv2.CAP_PROP_POS_MSEC))]


def test_video_capture_matches_cv2(hybrid_pair, plugins):
    odc_path, mp4 = hybrid_pair
    ours = odc.VideoCapture(str(odc_path), codecs=plugins.codecs)
    theirs = cv2.VideoCapture(str(mp4))
    assert ours.isOpened() and theirs.isOpened()
    assert [ours.get(p) for p in PROPS] == [theirs.get(p) for p in PROPS]
    assert ours.get(cv2.CAP_PROP_BRIGHTNESS) == theirs.get(cv2.CAP_PROP_BRIGHTNESS)
    assert ours.get(cv2.CAP_PROP_FRAME_WIDTH) == 48  # upright: rotated by 270 clockwise

    def step(cap):
        ok, frame = cap.read()
        return ok, frame, cap.get(cv2.CAP_PROP_POS_FRAMES), cap.get(cv2.CAP_PROP_POS_MSEC)

    for _ in range(5):
        a, b = step(ours), step(theirs)
        assert a[0] and b[0] and a[2:] == b[2:]
        assert a[1].shape == b[1].shape == (64, 48, 3)
        assert psnr(a[1], b[1]) > 32  # the same frames (the mp4 went through 4:2:0)

    for prop, value in ((cv2.CAP_PROP_POS_FRAMES, 19), (cv2.CAP_PROP_POS_MSEC, 200),
                        (cv2.CAP_PROP_POS_FRAMES, 0), (cv2.CAP_PROP_POS_FRAMES, 8)):  # fmt: skip
        assert ours.set(prop, value) and theirs.set(prop, value)
        assert _positions(ours) == _positions(theirs)
        a, b = step(ours), step(theirs)
        assert a[2:] == b[2:] and psnr(a[1], b[1]) > 32

    # seeking lands on the same frame as decoding from the start
    ours.set(cv2.CAP_PROP_POS_FRAMES, 0)
    everything = list(ours)
    assert len(everything) == 30
    ours.set(cv2.CAP_PROP_POS_FRAMES, 21)
    assert np.array_equal(ours.read()[1], everything[21])

    # past the end
    assert ours.set(cv2.CAP_PROP_POS_FRAMES, 1000) and theirs.set(cv2.CAP_PROP_POS_FRAMES, 1000)
    assert _positions(ours) == _positions(theirs)
    assert ours.read()[0] is False and theirs.read()[0] is False
    assert ours.retrieve() == (False, None)

    # orientation off: the stored (sideways) picture
    ours.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    ours.set(cv2.CAP_PROP_POS_FRAMES, 0)
    assert ours.read()[1].shape == (48, 64, 3) and ours.get(cv2.CAP_PROP_FRAME_WIDTH) == 64

    ours.release()
    theirs.release()
    assert not ours.isOpened() and ours.read() == (False, None)
    assert ours.get(cv2.CAP_PROP_FPS) == theirs.get(cv2.CAP_PROP_FPS)


def test_video_capture_seeks_in_a_file_without_timestamps(tmp_path, hybrid_pair, plugins):
    from onedc_media import container
    from onedc_media.container import Packet

    path = tmp_path / "nopts.odc"
    with container.open(hybrid_pair[0]) as inp, container.open(path, "w") as out:
        for s in inp.streams:
            out.add_stream(s)
        for p in inp.demux():
            out.mux(Packet(p.stream_index, p.data, None, None, p.duration, p.keyframe))
    with odc.VideoCapture(str(path), codecs=plugins.codecs) as cap:
        everything = list(cap)
        assert len(everything) == 30
        assert cap.set(cv2.CAP_PROP_POS_FRAMES, 19)  # after the keyframe at 16 (no pts)
        ok, frame = cap.read()
        assert ok and np.array_equal(frame, everything[19])


def test_video_capture_bad_files(tmp_path, hybrid_pair, plugins):
    missing = odc.VideoCapture(str(tmp_path / "missing.odc"), codecs=plugins.codecs)
    assert not missing.isOpened() and not cv2.VideoCapture(str(tmp_path / "missing.odc")).isOpened()
    assert isinstance(missing.error, OSError)
    junk = tmp_path / "junk.odc"
    junk.write_bytes(b"\x8aODC\r\n\x1a\nnonsense")
    assert not odc.VideoCapture(str(junk), codecs=plugins.codecs).isOpened()

    data = hybrid_pair[0].read_bytes()
    cut = tmp_path / "cut.odc"
    cut.write_bytes(data[: len(data) // 2])
    with odc.VideoCapture(str(cut), codecs=plugins.codecs) as cap:
        assert cap.isOpened()
        frames = list(cap)  # the intact part, then a clean stop
        assert 0 < len(frames) < 30 and cap.error is not None


def test_video_writer_round_trip_and_params(tmp_path, plugins):
    path = tmp_path / "w.odc"
    size = (40, 24)
    params = [
        cv2.VIDEOWRITER_PROP_QUALITY,
        90,
        cv2.VIDEOWRITER_PROP_KEY_INTERVAL,
        5,
        odc.VIDEOWRITER_PROP_ODC_INTER_CRF,
        14,
    ]
    frames = [scene(i, size)[:, :, ::-1].copy() for i in range(12)]
    with odc.VideoWriter(str(path), odc.VideoWriter.fourcc(*"MJPG"), 30000 / 1001, size, params,
                         plugins=plugins) as writer:  # fmt: skip
        assert writer.isOpened() and writer.get(cv2.VIDEOWRITER_PROP_QUALITY) == 90
        assert not path.exists()  # written to a temporary file until release()
        for f in frames:
            writer.write(f)
        with pytest.raises(InvalidImageError):
            writer.write(np.zeros((10, 10, 3), np.uint8))
    assert path.exists()
    with odc.VideoCapture(str(path), codecs=plugins.codecs) as cap:
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(29.97, abs=0.01)
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 12
        assert cap.get(cv2.CAP_PROP_FOURCC) == cv2.VideoWriter_fourcc(*"MJPG")
        got = list(cap)
    assert len(got) == 12 and min(psnr(a, b) for a, b in zip(got, frames, strict=True)) > 26
    from onedc_media import container

    with container.open(path) as inp:
        (video,) = inp.streams
        assert video.codec == "jpeg" and video.codec_params["quality"] == 90
        assert video.codec_params["inter"] == {
            "codec": "libx264",
            "crf": 14,
            "preset": "medium",
            "settings": 1,
        }
        assert video.frame_rate == Fraction(30000, 1001)
        assert [p.keyframe for p in inp.demux()].count(True) == 3  # key interval 5

    # keyframes only, grey input, the apiPreference overload
    path2 = tmp_path / "g.odc"
    w = odc.VideoWriter(str(path2), cv2.CAP_ANY, odc.fourcc(*"PNG "), 10, size,
                        [odc.VIDEOWRITER_PROP_ODC_INTER_CODEC, odc.ODC_INTER_NONE,
                         cv2.VIDEOWRITER_PROP_IS_COLOR, 0], plugins=plugins)  # fmt: skip
    assert w.isOpened()
    for f in frames:
        w.write(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
    w.release()
    with odc.VideoCapture(str(path2), codecs=plugins.codecs) as cap:
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 1  # one GOP of 12 < 250: one still

    bad = odc.VideoWriter(str(tmp_path / "b.odc"), odc.fourcc(*"ZZZZ"), 25, size, plugins=plugins)
    assert not bad.isOpened() and isinstance(bad.error, CodecOptionError)
    assert not (tmp_path / "b.odc").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        ((7, 25.0, (64, 48)), (7, 25.0, (64, 48), True, [])),
        ((7, 25.0, (64, 48), False), (7, 25.0, (64, 48), False, [])),
        ((7, 25.0, (64, 48), [1, 90]), (7, 25.0, (64, 48), True, [1, 90])),  # one pair
        ((7, 25.0, (64, 48), (1, 90, 10, 5)), (7, 25.0, (64, 48), True, [1, 90, 10, 5])),
        ((0, 7, 25.0, (64, 48)), (7, 25.0, (64, 48), True, [])),
        ((0, 7, 25.0, (64, 48), [1, 90]), (7, 25.0, (64, 48), True, [1, 90])),
        ((0, 7, 25.0, (64, 48), False), (7, 25.0, (64, 48), False, [])),
    ],
)
def test_video_writer_overloads(args, expected):
    from onedc_media.cv.video import _parse_writer_args

    assert _parse_writer_args(args) == expected


def test_video_writer_with_one_param_pair(tmp_path, plugins):
    path = tmp_path / "one.odc"
    params = [odc.VIDEOWRITER_PROP_ODC_INTER_CODEC, odc.ODC_INTER_NONE]
    w = odc.VideoWriter(str(path), odc.fourcc(*"JPEG"), 25.0, (64, 48), params, plugins=plugins)
    assert w.isOpened(), w.error
    for i in range(3):
        w.write(scene(i, (64, 48)))
    w.release()
    from onedc_media import container

    with container.open(path) as inp:
        assert "inter" not in inp.streams[0].codec_params
        assert [p.keyframe for p in inp.demux()] == [True]  # keyframes only: one GOP


def test_opencv_pipeline_example_runs(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "opencv_pipeline.py"
    spec = importlib.util.spec_from_file_location("opencv_pipeline_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    clip = make_clip(tmp_path / "clip.mp4", frames=12, size=(96, 64), audio=False)
    out = tmp_path / "out.odc"
    assert example.main([str(clip), "-o", str(out), "--fourcc", "MJPG", "--gop", "5"]) == 0
    text = capsys.readouterr().out
    assert "12 frames" in text and "identical" in text and out.exists()
