"""Evaluation: metrics against known values, BD-rate against hand-computed cases, the
runner and report end to end on two small photos, resume, and ``bench``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from onedc_media_plugins import classic

from onedc_media import OdcError, load_plugins
from onedc_media.cli.main import main as cli_main
from onedc_media.errors import CodecOptionError
from onedc_media.evaluate import (
    BjontegaardError,
    CodecSpec,
    bd_quality,
    bd_rate,
    monotone_envelope,
    ms_ssim,
    ms_ssim_db,
    parse_qualities,
    psnr_rgb,
    psnr_y,
    read_results,
    resolve_specs,
    run_evaluation,
    write_report,
)
from onedc_media.evaluate.bench import bench_codecs, interleaved, synthetic_image
from onedc_media.imageio import read_image

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def registry():
    return load_plugins(entry_points=False, plugins=[classic], blocked=[]).codecs


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Two small real photos (crops of tests/data), just above MS-SSIM's 161 px."""
    import cv2

    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut.png", "coffee.jpg"):
        rgb = read_image(DATA / name)[:176, :200]
        cv2.imwrite(str(folder / (Path(name).stem + ".png")), rgb[:, :, ::-1])
    return folder


# -- metrics --------------------------------------------------------------------------


def test_psnr_of_a_uniform_error_of_one():
    ref = np.full((32, 48, 3), 100, np.uint8)
    expected = 20 * math.log10(255)  # MSE = 1
    assert psnr_rgb(ref, ref + 1) == pytest.approx(48.1308036, abs=1e-6)
    assert psnr_rgb(ref, ref + 1) == pytest.approx(expected, abs=1e-12)
    # +1 on R, G and B is +1 on luma, since the coefficients sum to 1
    assert psnr_y(ref, ref + 1) == pytest.approx(expected, abs=1e-9)
    assert psnr_rgb(ref, ref) == math.inf


def test_psnr_y_weights_channels_by_bt601_luma():
    ref = np.full((16, 16, 3), 100, np.uint8)
    test = ref.copy()
    test[..., 1] += 2  # error in green only: luma error 2 * 0.587
    assert psnr_y(ref, test) == pytest.approx(10 * math.log10(255**2 / (2 * 0.587) ** 2))
    assert psnr_y(ref, test, "bt709") == pytest.approx(10 * math.log10(255**2 / (2 * 0.7152) ** 2))
    # RGB PSNR: MSE = 4 / 3
    assert psnr_rgb(ref, test) == pytest.approx(10 * math.log10(255**2 * 3 / 4))


def test_ms_ssim_of_identical_images_is_one_and_drops_with_noise():
    img = synthetic_image(176, 192, seed=1)
    assert ms_ssim(img, img) == pytest.approx(1.0, abs=1e-6)
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 8, img.shape), 0, 255)
    value = ms_ssim(img, noisy.astype(np.uint8))
    assert 0.5 < value < 0.999
    assert ms_ssim_db(value) == pytest.approx(-10 * math.log10(1 - value))
    assert math.isnan(ms_ssim(img[:160], img[:160]))  # 5 scales need > 160 px


def test_metrics_reject_mismatched_images():
    a = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(OdcError, match="sizes differ"):
        psnr_rgb(a, np.zeros((8, 9, 3), np.uint8))


# -- Bjontegaard ----------------------------------------------------------------------

ANCHOR_BPP = [0.1, 0.2, 0.4, 0.8]
ANCHOR_PSNR = [28.0, 31.5, 34.0, 37.2]


def test_bd_rate_of_a_constant_rate_factor_is_that_factor():
    for factor in (0.8, 0.5, 1.25):
        test = [r * factor for r in ANCHOR_BPP]
        assert bd_rate(ANCHOR_BPP, ANCHOR_PSNR, test, ANCHOR_PSNR) == pytest.approx(
            (factor - 1) * 100, abs=1e-9
        )
    assert bd_rate(ANCHOR_BPP, ANCHOR_PSNR, ANCHOR_BPP, ANCHOR_PSNR) == pytest.approx(0, abs=1e-12)


def test_bd_rate_hand_computed_two_point_curves():
    # Two points: PCHIP is the straight line. ln r = t on the anchor and 2t on the test,
    # with t = (PSNR - 30) / 10 over 30..40 dB. Mean of 2t - t over t in [0, 1] is 1/2,
    # so BD-rate = e^(1/2) - 1.
    anchor = ([1.0, math.e], [30.0, 40.0])
    test = ([1.0, math.e**2], [30.0, 40.0])
    assert bd_rate(*anchor, *test) == pytest.approx((math.exp(0.5) - 1) * 100, abs=1e-9)
    # Only part of the range overlaps: the test covers 35..45 dB with ln r = (PSNR - 15) / 10;
    # over the shared 35..40 dB the anchor's ln r is (PSNR - 30) / 10: a gap of 1.5.
    shifted = ([math.e**2, math.e**3], [35.0, 45.0])
    assert bd_rate(*anchor, *shifted) == pytest.approx((math.exp(1.5) - 1) * 100, abs=1e-9)


def test_bd_matches_an_independent_implementation_on_measured_curves():
    # jpeg vs avif, mean over the 16 held-out photos (PSNR RGB). Expected values from the
    # `bjontegaard` package (PyPI, 1.3.0, method="pchip"), computed once, not at test time.
    jpeg = (
        [0.1655, 0.1985, 0.2689, 0.3877, 0.4934, 0.6776, 1.0002],
        [22.67, 25.37, 28.5, 31.24, 32.68, 34.32, 37.87],
    )
    avif = (
        [0.0185, 0.0343, 0.0487, 0.0954, 0.161, 0.2521, 0.3926, 0.544],
        [25.03, 27.01, 28.02, 30.1, 31.94, 33.73, 35.69, 37.18],
    )
    assert bd_rate(*jpeg, *avif) == pytest.approx(-71.50939117995784, abs=1e-9)
    assert bd_quality(*jpeg, *avif) == pytest.approx(5.568117605909818, abs=1e-9)


def test_bd_quality_of_a_constant_psnr_shift():
    better = [p + 1.5 for p in ANCHOR_PSNR]
    assert bd_quality(ANCHOR_BPP, ANCHOR_PSNR, ANCHOR_BPP, better) == pytest.approx(1.5)
    # BD-rate of the same curves is negative (fewer bits for the same PSNR)
    assert bd_rate(ANCHOR_BPP, ANCHOR_PSNR, ANCHOR_BPP, better) < 0


def test_bd_refuses_curves_that_do_not_overlap():
    low = ([0.1, 0.2, 0.3], [25.0, 27.0, 28.0])
    high = ([0.5, 1.0, 2.0], [30.0, 33.0, 36.0])
    with pytest.raises(BjontegaardError, match="do not overlap"):
        bd_rate(*low, *high)
    with pytest.raises(BjontegaardError, match="rate ranges do not overlap"):
        bd_quality(*low, *high)
    with pytest.raises(ValueError):  # BjontegaardError is also a ValueError
        bd_rate([0.1], [30.0], *high)


def test_bd_needs_monotonic_curves_and_the_envelope_makes_them():
    rates, quality = [0.1, 0.2, 0.4, 0.8], [30.0, 32.0, 31.9, 35.0]
    with pytest.raises(BjontegaardError, match="increase"):
        bd_rate(rates, quality, rates, quality)
    r, q, dropped = monotone_envelope(rates, quality)
    assert (r, q, dropped) == ([0.1, 0.2, 0.8], [30.0, 32.0, 35.0], 1)


def test_parse_qualities():
    codecs = ["jpeg", "onedc"]
    assert parse_qualities("jpeg=5,10;onedc=1,2", codecs) == {
        "jpeg": ["5", "10"],
        "onedc": ["1", "2"],
    }
    assert parse_qualities("10,20", codecs) == {"jpeg": ["10", "20"], "onedc": ["10", "20"]}
    assert parse_qualities(None, codecs) == {}
    with pytest.raises(CodecOptionError, match="not in --codecs"):
        parse_qualities("webp=5", codecs)
    with pytest.raises(CodecOptionError):
        parse_qualities("jpeg=", codecs)


def test_resolve_specs_validates_and_skips(registry):
    specs, skipped = resolve_specs(["jpeg", "nope"], registry, {"jpeg": ["10", "5", "10"]})
    assert [(s.name, s.qualities) for s in specs] == [("jpeg", (10, 5))]
    assert skipped[0][0] == "nope" and "no installed plugin" in skipped[0][1]
    with pytest.raises(CodecOptionError):
        resolve_specs(["jpeg"], registry, {"jpeg": ["500"]})


# -- runner and report ----------------------------------------------------------------

SPECS = [CodecSpec("jpeg", (10, 40)), CodecSpec("webp", (10, 40))]


def test_runner_and_report_end_to_end_then_resume(registry, photos, tmp_path):
    out = tmp_path / "report"
    run = run_evaluation(photos, SPECS, out, registry=registry, jobs=2)
    assert run.errors == [] and run.measured == 8 and run.reused == 0
    rows = read_results(out / "results.csv")
    assert len(rows) == 8
    for row in rows:
        pixels = row["width"] * row["height"]
        assert row["bpp"] == pytest.approx(row["bytes"] * 8 / pixels)
        assert row["odc_bytes"] > row["bytes"]  # container headers on top of the packet
        assert 20 < row["psnr_rgb"] < 60 and 0.5 < row["ms_ssim"] <= 1
        assert row["encode_ms_per_mp"] > 0 and row["decode_ms_per_mp"] > 0
    report = write_report(
        out,
        run.rows,
        anchor="jpeg",
        images=run.images,
        registry=registry,
        settings={"images": str(photos)},
    )
    for name in (
        "summary.json",
        "report.md",
        "rd.png",
        "rd_psnr_rgb.png",
        "rd_psnr_y.png",
        "rd_ms_ssim.png",
        "rd_ms_ssim_db.png",
        "sheet.png",
    ):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bd"]["jpeg"]["psnr_rgb"] == pytest.approx(0, abs=1e-9)
    assert set(summary["curves"]) == {"jpeg", "webp"} and len(summary["images"]) == 2
    assert len(summary["sheet"]) == 4  # 2 images x 2 codecs
    assert "BD-rate" in (out / "report.md").read_text()
    assert report.bd["webp"]["psnr_rgb"] == summary["bd"]["webp"]["psnr_rgb"]

    # resume: nothing left to do
    again = run_evaluation(photos, SPECS, out, registry=registry)
    assert (again.measured, again.reused) == (0, 8)

    # a killed run: one row missing and a torn last line -> exactly that point is redone
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:-1]) + lines[-1][:25])
    redo = run_evaluation(photos, SPECS, out, registry=registry)
    assert (redo.measured, redo.reused) == (1, 7)
    with open(out / "results.csv", newline="") as fp:
        assert len(list(csv.DictReader(fp))) == 8


def test_report_rejects_an_anchor_without_results(registry, photos, tmp_path):
    run = run_evaluation(
        photos, [CodecSpec("jpeg", (20, 50))], tmp_path, registry=registry, max_images=1
    )
    with pytest.raises(BjontegaardError, match="anchor"):
        write_report(tmp_path, run.rows, anchor="webp")


def test_eval_cli(photos, tmp_path, capsys):
    out = tmp_path / "r"
    argv = [
        "eval",
        str(photos),
        "--codecs",
        "jpeg,webp,nope",
        "-q",
        "jpeg=10,40;webp=10,40",
        "--max-images",
        "1",
        "--sheet-images",
        "1",
        "--quiet",
        "-o",
        str(out),
    ]
    assert cli_main(argv) == 0
    captured = capsys.readouterr()
    assert "skipping codec 'nope'" in captured.err
    assert "webp" in captured.out and (out / "sheet.png").exists()
    assert cli_main([*argv, "--report-only"]) == 0
    assert cli_main(["eval", str(photos), "--codecs", "jpeg", "--anchor", "webp"]) == 1
    assert "--anchor" in capsys.readouterr().err


def test_eval_cli_with_fixed_options(photos, tmp_path, capsys):
    """``--opt`` names the curve after the option ("jpeg[subsampling=444]"); it is still the
    requested codec's curve, the anchor included, and the sheet decodes it."""
    out = tmp_path / "r"
    argv = ["eval", str(photos), "--codecs", "jpeg,webp", "--opt", "jpeg:subsampling=444",
            "-q", "jpeg=10,40;webp=10,40", "--max-images", "1", "--sheet-images", "1",
            "--quiet", "-o", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    captured = capsys.readouterr().out
    assert "BD-rate vs jpeg[subsampling=444]" in captured and "webp" in captured
    assert (out / "sheet.png").exists()


# -- bench ----------------------------------------------------------------------------


def test_bench_codecs_reports_medians_and_ratios(registry):
    img = synthetic_image(64, 96)
    result = bench_codecs(
        registry, ["jpeg", "webp", "nope"], [img], repeats=2, warmup=0, reference="jpeg"
    )
    stages = {(r.subject, r.stage) for r in result.rows}
    assert stages == {
        ("jpeg", "encode"),
        ("jpeg", "decode"),
        ("webp", "encode"),
        ("webp", "decode"),
    }
    jpeg_enc = next(r for r in result.rows if r.subject == "jpeg" and r.stage == "encode")
    assert result.ratio(jpeg_enc) == pytest.approx(1.0)
    assert len(jpeg_enc.samples) == 2 and jpeg_enc.ms_per_mp > 0
    assert any("nope" in n for n in result.notes)
    assert json.loads(json.dumps(result.to_json()))["reference"] == "jpeg"


def test_interleaved_runs_round_robin_and_survives_errors():
    order: list[str] = []

    def fail():
        raise CodecOptionError("boom")

    times = interleaved(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b"), "c": fail},
        repeats=2,
        warmup=1,
    )
    assert order == ["a", "b"] * 3
    assert len(times["a"]) == 2 and isinstance(times["c"], CodecOptionError)


def test_bench_cli(capsys):
    assert (
        cli_main(
            [
                "bench",
                "codecs",
                "--codecs",
                "jpeg,webp",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--json",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert {r["subject"] for r in data["rows"]} == {"jpeg", "webp"}


def test_curve_labels_show_whole_floats_as_integers():
    """``--opt onedc:enhance=1`` is stored as a float option; its curve keeps the label the
    integer option had (``enhance=1``), and fractions show as written."""
    assert CodecSpec("onedc", (5,), {"enhance": 1.0, "refine": 30}).label == "onedc[enhance=1,refine=30]"
    assert CodecSpec("onedc", (5,), {"enhance": 1.4}).label == "onedc[enhance=1.4]"
    assert CodecSpec("jpeg", (10,)).label == "jpeg"


# -- colour error and resampled anchors -----------------------------------------------


def test_ciede2000_agrees_with_a_published_pair_and_sees_a_colour_shift():
    from onedc_media.evaluate.metrics import ciede2000, colour_error

    rgb = read_image(DATA / "coffee.jpg")[:96, :128]
    assert ciede2000(rgb, rgb).max() == 0
    same = colour_error(rgb, rgb)
    assert same.mean == 0 and same.worst_block == 0 and same.blocks.shape == (6, 8)
    # a yellow-green patch turned salmon-orange (the shift onedc-tiny showed) in one block
    shifted = rgb.copy()
    shifted[32:48, 64:80] = (250, 140, 110)
    original = rgb.copy()
    original[32:48, 64:80] = (160, 200, 60)
    err = colour_error(original, shifted)
    assert err.worst == (2, 4) and err.worst_block > 30
    assert err.mean == pytest.approx(err.worst_block * 256 / rgb[..., 0].size, rel=0.2)
    # blur moves the mean per-pixel error, barely the block-mean colours
    import cv2

    blurred = cv2.GaussianBlur(rgb, (0, 0), 2.0)
    blur = colour_error(rgb, blurred)
    assert blur.mean > 1 and blur.worst_block < blur.mean * 3 < err.worst_block
    # uneven sizes: edge blocks are partial and still count
    assert colour_error(rgb[:40, :50], shifted[:40, :50]).blocks.shape == (3, 4)


def test_resampled_codes_a_small_picture_and_upscales_its_output():
    from onedc_media.evaluate.runner import resampled

    rgb = read_image(DATA / "coffee.jpg")[:171, :200]
    seen = []

    def code(picture):
        seen.append(picture.shape)
        return b"x" * 10, picture

    packet, out = resampled(rgb, 3.0, code)
    assert seen == [(57, 67, 3)] and out.shape == rgb.shape and out.dtype == np.uint8
    assert 25 < psnr_rgb(rgb, out) < 60  # a faithful but blurred copy
    assert resampled(rgb, 1.0, code)[1] is rgb
    with pytest.raises(CodecOptionError):
        CodecSpec("jpeg", (10,), scale=0.5)


def test_resampled_curve_counts_bits_over_the_original_pixels(registry, photos, tmp_path):
    specs = [CodecSpec("webp", (30,)), CodecSpec("webp", (30,), scale=2.0)]
    assert [s.label for s in specs] == ["webp", "webp[scale=2]"]
    run = run_evaluation(photos, specs, tmp_path, registry=registry, max_images=1)
    assert run.errors == []
    plain, small = sorted(run.rows, key=lambda r: r["scale"])
    assert small["label"] == "webp[scale=2]" and small["scale"] == 2.0
    assert (small["width"], small["height"]) == (plain["width"], plain["height"])
    assert small["bpp"] == pytest.approx(small["bytes"] * 8 / (plain["width"] * plain["height"]))
    assert small["bytes"] < plain["bytes"] * 0.6 and small["psnr_rgb"] < plain["psnr_rgb"]
    for row in (plain, small):
        assert 0 < row["ciede2000"] < 40 and 0 < row["ciede2000_worst_block"] < 40


def test_eval_cli_reports_colour_and_resampled_curves(photos, tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["eval", str(photos), "--codecs", "jpeg,webp", "--opt", "webp:scale=1,2",
            "-q", "jpeg=10,40;webp=10,40", "--max-images", "1", "--sheet-images", "1",
            "--quiet", "-o", str(out)]  # fmt: skip
    assert cli_main(argv) == 0
    captured = capsys.readouterr().out
    assert "webp[scale=2]" in captured
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["curves"]) == {"jpeg", "webp", "webp[scale=2]"}
    assert "webp[scale=2]" in summary["bd"]
    point = summary["curves"]["webp[scale=2]"][0]
    assert point["ciede2000_worst_block"] > 0 and point["ciede2000"] > 0
    assert {t["label"] for t in summary["sheet"]} == {"jpeg", "webp", "webp[scale=2]"}
    assert all(t["ciede2000_worst_block"] > 0 for t in summary["sheet"])
    assert (out / "rd_colour.png").stat().st_size > 0
    assert "worst block" in (out / "report.md").read_text()
    for bad in ("webp:scale=0.5", "webp:scale=x"):
        assert cli_main(["eval", str(photos), "-c", "webp", "--opt", bad, "-o", str(out)]) == 1


def test_results_written_before_the_colour_columns_still_read(tmp_path):
    from onedc_media.evaluate.runner import RESULT_FIELDS

    old = [f for f in RESULT_FIELDS if f not in ("ciede2000", "ciede2000_worst_block", "scale")]
    row = {f: "1" for f in old} | {"image": "a.png", "label": "jpeg", "codec": "jpeg"}
    with open(tmp_path / "results.csv", "w", newline="") as fp:
        writer = csv.DictWriter(fp, fieldnames=old)
        writer.writeheader()
        writer.writerow(row)
    (got,) = read_results(tmp_path / "results.csv")
    assert math.isnan(got["ciede2000"]) and math.isnan(got["scale"]) and got["bpp"] == 1.0
