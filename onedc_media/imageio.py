"""Reading and writing still pictures as HxWx3 uint8 RGB arrays.

OpenCV does the work (it applies EXIF orientation and reads PNG/JPEG/WebP/AVIF/TIFF/...);
this module adds what a media tool needs around it: typed errors instead of ``None``,
bounded sizes, non-ASCII paths and atomic writes.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np

from onedc_media.codec.contract import MAX_FRAME_PIXELS, check_frame
from onedc_media.errors import InvalidImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_FILE_BYTES",
    "WRITE_SUFFIXES",
    "decode_image",
    "read_image",
    "write_image",
]

#: Suffixes of the picture files :func:`read_image` reads (folders are searched for these).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm", ".avif")
#: Suffixes of the picture files :func:`write_image` writes for export.
WRITE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: Larger files are refused before they are read.
MAX_IMAGE_FILE_BYTES = 1 << 30


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 RGB; raise ``InvalidImageError`` if unusable."""

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
        return decode_image(data.tobytes())
    except InvalidImageError as exc:
        exc.filename = str(p)
        raise


def decode_image(data: bytes, max_pixels: int = MAX_FRAME_PIXELS) -> np.ndarray:
    """Decode an encoded picture (the bytes of an image file) to HxWx3 uint8 RGB, refusing
    more than *max_pixels* before decoding where the header says the size.

    :raises InvalidImageError: not an image, or too large.
    """
    import cv2

    dims = _header_size(data)
    if dims is not None and dims[0] * dims[1] > max_pixels:
        raise InvalidImageError(
            f"{dims[0]}x{dims[1]} is larger than the limit of {max_pixels} pixels"
        )
    try:
        # IMREAD_COLOR: 8-bit BGR, EXIF orientation applied, grey expanded, alpha dropped.
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise InvalidImageError(f"cannot decode: {exc}") from None
    if img is None:
        raise InvalidImageError("not a readable image")
    h, w = img.shape[:2]
    if h * w > max_pixels:
        raise InvalidImageError(f"{w}x{h} is larger than the limit of {max_pixels} pixels")
    return np.ascontiguousarray(img[:, :, ::-1])


def _header_size(data: bytes) -> tuple[int, int] | None:
    """The (width, height) a picture's header declares, where Pillow can read it."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        with im:
            return im.size
    except Image.DecompressionBombError as exc:  # PIL's own bound (~179 Mpixels)
        raise InvalidImageError(f"larger than the limit: {exc}") from None
    except (OSError, UnidentifiedImageError, ValueError):
        return None  # PIL does not know it; OpenCV may (it bounds sizes itself)


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
