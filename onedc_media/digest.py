"""SHA-256 digests of files: how weights, archive sources and outputs are identified."""

from __future__ import annotations

import hashlib
import os
from typing import BinaryIO

__all__ = ["sha256_file", "sha256_fileobj"]

_BLOCK = 1 << 20


def sha256_fileobj(fh: BinaryIO) -> str:
    """Hex SHA-256 of what is left to read in *fh*, read in blocks (bounded memory)."""
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(_BLOCK), b""):
        h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file at *path*."""
    with open(path, "rb") as fh:
        return sha256_fileobj(fh)
