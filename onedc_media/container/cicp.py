"""Colour code points: FFmpeg's colour names and the numbers ITU-T H.273 gives them.

FFmpeg's ``AVCOL_PRI_*`` / ``AVCOL_TRC_*`` / ``AVCOL_SPC_*`` values are the H.273 code
points (the ones AVIF's ``nclx`` box and HEVC's VUI store), and ``av_color_*_name`` gives
the names :class:`~onedc_media.container.ColorInfo` records. The still form stores a
colour description as these four numbers; the PyAV pipeline reads them from frames.
The tables are frozen: a number stored in a file never changes meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["MATRIX", "PRIMARIES", "RANGE", "TRANSFER", "code_of", "name_of"]

#: Colour primaries (H.273 table 2).
PRIMARIES: Mapping[int, str] = MappingProxyType({
    1: "bt709", 2: "unknown", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
    8: "film", 9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213",
})  # fmt: skip
#: Transfer characteristics (H.273 table 3).
TRANSFER: Mapping[int, str] = MappingProxyType({
    1: "bt709", 2: "unknown", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
    8: "linear", 9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e",
    13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 17: "smpte428",
    18: "arib-std-b67",
})  # fmt: skip
#: Matrix coefficients (H.273 table 4; 0 = "gbr": the samples are R, G, B).
MATRIX: Mapping[int, str] = MappingProxyType({
    0: "gbr", 1: "bt709", 2: "unknown", 4: "fcc", 5: "bt470bg", 6: "smpte170m",
    7: "smpte240m", 8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 11: "smpte2085",
    12: "chroma-derived-nc", 13: "chroma-derived-c", 14: "ictcp",
})  # fmt: skip
#: Sample range, numbered as FFmpeg's ``AVCOL_RANGE_*`` (H.273 has only a full-range flag).
RANGE: Mapping[int, str] = MappingProxyType({0: "unknown", 1: "limited", 2: "full"})


def name_of(table: Mapping[int, str], code: int) -> str | None:
    """The name of *code* in *table*, or ``None`` when the table has no such code."""
    return table.get(code)


def code_of(table: Mapping[int, str], name: str) -> int | None:
    """The code point of *name* in *table*, or ``None`` when the table has no such name."""
    for code, known in table.items():
        if known == name:
            return code
    return None
