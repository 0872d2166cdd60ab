"""Shared fixtures. Keep this small: fixtures used by one module live in that module."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest


def _sample_photo_path() -> Path | None:
    """matplotlib (a dependency) ships a real photograph; find it without importing it."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0], "mpl-data", "sample_data", "grace_hopper.jpg")
    return path if path.is_file() else None


def synthetic_photo(height: int = 384, width: int = 320, seed: int = 0) -> np.ndarray:
    """A deterministic RGB picture with smooth areas, edges and fine texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack(
        [
            128 + 90 * np.sin(x / 37.0) * np.cos(y / 23.0),
            128 + 80 * np.cos((x + y) / 51.0),
            100 + 0.3 * x - 0.2 * y,
        ],
        axis=-1,
    )
    base[(x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 4) ** 2] += 60
    # texture in luma only, as in photographs (chroma is smooth)
    noise = rng.normal(0, 6, (height // 2, width // 2, 1))
    noise = np.repeat(np.repeat(noise, 2, axis=0), 2, axis=1)[:height, :width]
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photograph as HxWx3 uint8 RGB (600x512), or a synthetic stand-in."""
    path = _sample_photo_path()
    if path is not None:
        import cv2

        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            return np.ascontiguousarray(bgr[:, :, ::-1])
    return synthetic_photo()
