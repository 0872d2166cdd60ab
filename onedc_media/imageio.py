"""Reading and writing still pictures as HxWx3 uint8 RGB arrays.

OpenCV does the work (it applies EXIF orientation and reads PNG/JPEG/WebP/AVIF/TIFF/...);
this module adds what a media tool needs around it: typed errors instead of ``None``,
bounded sizes, non-ASCII paths and atomic writes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from onedc_media.codec.contract import MAX_FRAME_PIXELS, check_frame
from onedc_media.errors import InvalidImageError

__all__ = ["read_image", "write_image", "IMAGE_SUFFIXES", "MAX_IMAGE_FILE_BYTES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm", ".avif")
#: Larger files are refused before they are read.
MAX_IMAGE_FILE_BYTES = 1 << 30


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 RGB; raise ``InvalidImageError`` if unusable."""
    import cv2

    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise InvalidImageError(f"cannot read: {exc.strerror}", filename=str(p)) from None
    if not p.is_file():
        raise InvalidImageError("not a file", filename=str(p))
    if size == 0:
        raise InvalidImageError("empty file", filename=str(p))
    if size > MAX_IMAGE_FILE_BYTES:
        raise InvalidImageError(f"file is larger than {MAX_IMAGE_FILE_BYTES} bytes", filename=str(p))
    data = np.fromfile(p, dtype=np.uint8)  # works for non-ASCII paths, unlike cv2.imread
    try:
        # IMREAD_COLOR: 8-bit BGR, EXIF orientation applied, grey expanded, alpha dropped.
        img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise InvalidImageError(f"cannot decode: {exc}", filename=str(p)) from None
    if img is None:
        raise InvalidImageError("not a readable image", filename=str(p))
    if img.shape[0] * img.shape[1] > MAX_FRAME_PIXELS:
        raise InvalidImageError(f"{img.shape[1]}x{img.shape[0]} is too large", filename=str(p))
    return np.ascontiguousarray(img[:, :, ::-1])


def write_image(path: str | os.PathLike, rgb: np.ndarray, params: list[int] | None = None) -> None:
    """Write an RGB picture; the format follows the suffix. Atomic: temp file + rename."""
    import cv2

    rgb = check_frame(rgb)
    p = Path(path)
    suffix = p.suffix.lower() or ".png"
    ok, buf = cv2.imencode(suffix, rgb[:, :, ::-1], params or [])
    if not ok:
        raise InvalidImageError(f"cannot encode as {suffix}", filename=str(p))
    fd, tmp = tempfile.mkstemp(dir=p.parent if str(p.parent) else ".", prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
