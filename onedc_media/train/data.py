"""Training data: a dataset over any folder tree of images, and a deterministic loader.

This module imports torch at import time; only training code imports it.

Behaviour, decided here once:

* **Files.** Every file under ``root`` (recursively, sorted) whose suffix is in
  ``extensions`` (case-insensitive) is used. At construction each one is opened with Pillow
  and its header checked (``Image.verify``); an unreadable file raises
  :class:`~onedc_media.errors.InvalidImageError` naming it, unless ``skip_invalid=True``,
  in which case it is left out with a logged warning. A file that passes the header check
  but fails to decode later raises ``InvalidImageError`` from ``__getitem__``.
* **Pictures.** Decoded by :func:`onedc_media.imageio.read_image`, as every picture the
  project reads (EXIF orientation applied, 16-bit scaled to 8, alpha dropped); values are
  float32 in ``[0, 1]``, shape ``(3, H, W)``.
* **Crops.** Training: a uniformly random ``crop_size`` crop and a horizontal flip with
  probability 1/2. Validation (``train=False``): the centre crop. ``crop_size=None``
  returns whole pictures (batch them one at a time or with equal sizes).
* **Small pictures.** A picture smaller than the crop in either dimension is padded up to
  it by reflection (numpy's ``"reflect"`` mode, repeated for very small pictures) before
  cropping: no resampling, so pixel statistics stay those of a real photo. Training pads
  at the bottom/right side; validation pads evenly on both sides.
* **Randomness** comes from torch's global generator, which :func:`make_loader` seeds
  per worker, so a seeded loader gives the same crops and flips on every run.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from onedc_media.errors import InvalidImageError
from onedc_media.imageio import IMAGE_SUFFIXES, read_image

__all__ = ["ImageFolderDataset", "make_loader", "seed_worker"]

log = logging.getLogger(__name__)

def _check_header(path: Path) -> None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
            if im.width <= 0 or im.height <= 0:
                raise ValueError("empty image")
    except Exception as exc:
        raise InvalidImageError(f"not a readable image: {exc}", filename=str(path)) from exc


def _pad_reflect(arr: np.ndarray, size: int, centred: bool) -> np.ndarray:
    """Pad ``(H, W, C)`` up to at least ``size`` in H and W by reflection."""
    h, w = arr.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph == 0 and pw == 0:
        return arr
    if centred:
        pads = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))
    else:
        pads = ((0, ph), (0, pw), (0, 0))
    # a 1-pixel dimension cannot be reflected: repeat it instead
    mode = "reflect" if min(h, w) > 1 else "edge"
    return np.pad(arr, pads, mode=mode)


class ImageFolderDataset(Dataset):
    """Pictures under ``root`` as float tensors ``(3, crop, crop)`` in ``[0, 1]``.

    :param root: folder searched recursively (a single image file also works).
    :param crop_size: side of the square crop, or ``None`` for whole pictures.
    :param train: random crop + horizontal flip (``True``) or centre crop (``False``).
    :param extensions: file suffixes to use (case-insensitive).
    :param skip_invalid: leave unreadable files out with a warning instead of raising.
    :param cache: keep every decoded picture in memory (uint8, 3 bytes a pixel). A training
        step draws a crop from a whole picture, so without it each crop decodes a full
        wallpaper-sized PNG; on a GPU that decode, not the model, sets the pace. Crops and
        flips are the same with and without it. The cache is per process: each
        ``DataLoader`` worker fills its own.
    :raises InvalidImageError: ``root`` holds no usable image, or a file is unreadable.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        crop_size: int | None,
        *,
        train: bool = True,
        extensions: Iterable[str] = IMAGE_SUFFIXES,
        skip_invalid: bool = False,
        cache: bool = False,
    ) -> None:
        if crop_size is not None and (not isinstance(crop_size, int) or crop_size < 1):
            raise ValueError(f"crop_size must be a positive int or None, not {crop_size!r}")
        self.root = Path(root)
        self.crop_size = crop_size
        self.train = train
        self.extensions = tuple(e.lower() if e.startswith(".") else f".{e.lower()}"
                                for e in extensions)
        if self.root.is_file():
            found = [self.root]
        elif self.root.is_dir():
            found = sorted(
                p for p in self.root.rglob("*")
                if p.is_file() and p.suffix.lower() in self.extensions
            )
        else:
            raise InvalidImageError("no such file or folder", filename=str(self.root))
        paths: list[Path] = []
        for p in found:
            try:
                _check_header(p)
            except InvalidImageError as exc:
                if not skip_invalid:
                    raise
                log.warning("skipping %s", exc)
                continue
            paths.append(p)
        if not paths:
            raise InvalidImageError(
                f"no readable image with suffix {', '.join(self.extensions)}",
                filename=str(self.root),
            )
        self.paths: list[Path] = paths
        self.cache = cache
        self._decoded: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def _picture(self, index: int) -> np.ndarray:
        if not self.cache:
            return read_image(self.paths[index])
        arr = self._decoded.get(index)
        if arr is None:
            arr = self._decoded[index] = read_image(self.paths[index])
            arr.flags.writeable = False  # crops are views: nothing may write into the cache
        return arr

    def __getitem__(self, index: int) -> torch.Tensor:
        arr = self._picture(index)
        size = self.crop_size
        if size is not None:
            arr = _pad_reflect(arr, size, centred=not self.train)
            h, w = arr.shape[:2]
            if self.train:
                top = int(torch.randint(0, h - size + 1, ()).item())
                left = int(torch.randint(0, w - size + 1, ()).item())
            else:
                top, left = (h - size) // 2, (w - size) // 2
            arr = arr[top : top + size, left : left + size]
        if self.train and bool(torch.rand(()) < 0.5):
            arr = arr[:, ::-1]
        arr = np.ascontiguousarray(arr)
        if not arr.flags.writeable:  # the cached picture itself (no crop, no flip)
            arr = arr.copy()
        t = torch.from_numpy(arr).permute(2, 0, 1)
        return t.to(torch.float32).div_(255.0)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, n={len(self)}, "
                f"crop_size={self.crop_size}, train={self.train})")


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed numpy and ``random`` from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    num_workers: int = 0,
    drop_last: bool | None = None,
    pin_memory: bool = False,
    collate_fn: Callable[[Sequence], object] | None = None,
) -> DataLoader:
    """A ``DataLoader`` whose order and augmentations depend only on ``seed``.

    Shuffling uses a generator seeded with ``seed``; each worker's torch seed derives
    from it (and :func:`seed_worker` seeds numpy / ``random``), so the same seed gives the
    same batches whatever the machine. ``drop_last`` defaults to ``shuffle`` (training).
    With ``num_workers=0`` the dataset draws from torch's global generator, which the
    caller seeds (``torch.manual_seed``).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=shuffle if drop_last is None else drop_last,
        pin_memory=pin_memory,
        worker_init_fn=seed_worker,
        generator=g,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )
