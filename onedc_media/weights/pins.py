"""The SHA-256 of every release of each embedded model: a name is a promise about bytes.

A stream header names its model, and a decoder elsewhere trusts that name. A folder whose
``config.json`` says ``onedc-tiny`` but whose weights are other bytes would write files
that every real ``onedc-tiny`` refuses, so loading refuses such a folder
(:func:`onedc_media.model.loading.check_pinned`). Earlier releases stay listed: the model
card tells users to keep them in a folder to decode old files. Models of your own keep
working under a name of their own.

The first release of each name is the one this package embeds (a test checks the shipped
files against it). Shipping new weights under an embedded name means adding their release
at the top; :func:`release_of` gives it for a folder::

    python -c "from onedc_media.weights.pins import release_of; print(release_of('DIR'))"
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PINS", "Release", "release_of"]


@dataclass(frozen=True)
class Release:
    """One release of an embedded model: SHA-256 of its files."""

    model: str  #: ``model.safetensors``
    parsing: str  #: ``parsing.safetensors``
    #: ``fine-decoder.safetensors`` files released with these weights (any one of them)
    fine_decoders: tuple[str, ...] = ()


PINS: dict[str, tuple[Release, ...]] = {
    "onedc-tiny": (
        Release(
            "eba9924a288f12e0974ab9bececa540a2e464a7bb188ebb30ab59480545e0a83",
            "8b8e167ec73d2944b3ee9aca766cce9f9f37340f3cc9bd606fea04b44934b894",
            (
                "3176553b464a3f1b8346593a82c3df263c98b4eb59f3d460dd221783996c0990",
                "c75b31e59eb8689e8504b21eabaa52e5a06b79f3b58c3ff7e36d0c5823acee83",
            ),
        ),
        Release(
            "7bb100054bd71a2778cd78276d249898fc5492bc92b4cc7a3c16a068c7347c3c",
            "8b8e167ec73d2944b3ee9aca766cce9f9f37340f3cc9bd606fea04b44934b894",
        ),
        Release(
            "128e83f6c251c65e584bc9679304526b11a2d827df0f063256e90106ef9ae3c5",
            "47833a6debf1e409802daa02489599669ddace9145e6554774432314c509a5e6",
        ),
        Release(
            "6addbbdaf5e4c950acf705597f8ce0e340e54dab031dcaebca121aa4dea0e8a5",
            "35e7a1dec33d88b1f36fe0efa2557363cc835da911072f325ca492cf5b6ea31c",
        ),
        Release(
            "3c1af0214a055c4a45f4b7fbce12cae4189247084867a63e2848689400f2f358",
            "f1b3bdb8761ebcef108f3a982221868e6f4d3b43ce40623991b89b68d239e27e",
        ),
        Release(
            "44f7ebd5e6bd304c9f96598b3977b675b0c021240babad738c4beb5cad094aa2",
            "a3f3d9aa007c25838dd1bf9f94a893604fe9bbf14a837acf3ae2a0d14e05480e",
        ),
        Release(
            "a85854083d225a32c534b5b1092e96acdfdbbf27398ed96243c8ac871f6a15ef",
            "923d38b97745359e3c5d413e750528b140df33d326ce88b56c1a1bc72c3def57",
        ),
        Release(
            "59b9dc4656681b66418d855911bbbe015ea6ca8d8efff30454bba8a1c95e1cf1",
            "8b5016e83cb2e93a0abee3fdd83475dded9ddf276b606071f6393f41699cb456",
        ),
        Release(
            "59b9dc4656681b66418d855911bbbe015ea6ca8d8efff30454bba8a1c95e1cf1",
            "70fc88f20d40c1d608ebdcfedb5c1b1079ddf965799c51cdbd8ccaaed8fd5de2",
        ),
        Release(
            "46c50f71fb3cc441f5cf3c2d93841fda94e17a77136cb583b2f572050a3bc50c",
            "540c4b6e0669fc18a4d162e7ddbb9e304c9ef7a0f56e8c44a30c115431ce894f",
        ),
        Release(
            "460f71cf77b1ca5fb6c549f83446b49cfedf4393d7404dfc19c00175a167de27",
            "631fb3079a007e36d764dce8038df1511fade39331522cfc98291bbe0bacc6f1",
        ),
    ),
}


def release_of(folder: str | Path) -> Release:
    """The :class:`Release` the files of a model *folder* make up."""
    folder = Path(folder)

    def sha(name: str) -> str:
        return hashlib.sha256((folder / name).read_bytes()).hexdigest()

    fine = folder / "fine-decoder.safetensors"
    return Release(sha("model.safetensors"), sha("parsing.safetensors"),
                   (sha(fine.name),) if fine.is_file() else ())  # fmt: skip

