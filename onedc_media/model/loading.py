"""Finding model configs and building models: by name, from YAML, or from a folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from onedc_media.digest import sha256_file
from onedc_media.errors import ModelError, ModelMismatchError

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_PATH_ENV",
    "build_model",
    "check_pinned",
    "embedded_model_dir",
    "find_model",
    "model_config",
    "repo_configs_dir",
    "resolve_model_id",
]

#: Folders searched for the weights a stream names, ``os.pathsep``-separated: each an
#: exported model folder or a folder of them. A file outlives the weights a release
#: embeds; ``onedc-media decode --model DIR`` extends this path.
MODEL_PATH_ENV = "ONEDC_MEDIA_MODEL_PATH"
_hashes: dict[tuple[str, int, int, int, int], str] = {}  # (path, size, mtime, inode, ctime) -> sha256

DEFAULT_MODEL = "onedc-tiny"


def embedded_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """The folder of an embedded model inside the installed package."""
    return Path(__file__).resolve().parent.parent / "weights" / name


def repo_configs_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "configs" / "models"


def model_config(spec: str | os.PathLike) -> dict[str, Any]:
    """Config dict for *spec*: a YAML file, a model folder (config.json) or a model name."""
    p = Path(spec)
    if p.is_dir():
        p = p / "config.json"
    if not p.exists() and not p.suffix:
        for candidate in (repo_configs_dir() / f"{spec}.yaml", embedded_model_dir(str(spec)) / "config.json"):
            if candidate.exists():
                p = candidate
                break
    if not p.exists():
        raise ModelError(f"no model config named or at {spec!r}")
    try:
        text = p.read_text()
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ModelError(f"cannot read model config {p}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"model config {p} is not a mapping")
    return {k: v for k, v in data.items() if not k.startswith("_")}


def build_model(spec: str | os.PathLike):  # -> OneDCModel (lazy import keeps this light)
    """A freshly initialised :class:`OneDCModel` with the config of *spec*."""
    from onedc_media.model.onedc import OneDCModel

    cfg = model_config(spec)
    try:
        return OneDCModel(**cfg)
    except TypeError as exc:
        raise ModelError(f"bad model config {spec}: {exc}") from None


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    if key not in _hashes:
        _hashes[key] = sha256_file(path)
    return _hashes[key]


def check_pinned(folder: str | os.PathLike, name: str, model_sha256: str) -> None:
    """Refuse a model *folder* that claims an embedded model's *name* with other bytes.

    An embedded name is a promise about bytes (:mod:`onedc_media.weights.pins`): its
    ``model.safetensors`` must be one of the name's releases, and its
    ``parsing.safetensors`` and ``fine-decoder.safetensors`` (if any) that release's.
    Other names are not checked: models of your own carry their own name and hashes.

    :param model_sha256: the SHA-256 of the folder's ``model.safetensors`` (the caller
        has it already).
    :raises ModelError: one line naming the file and both hashes.
    """
    from onedc_media.weights.pins import PINS

    releases = PINS.get(name)
    if not releases:
        return
    folder = Path(folder)
    hint = (f"(give weights of your own another name in {folder / 'config.json'}; "
            "new releases of an embedded model are pinned in onedc_media/weights/pins.py)")
    matching = [r for r in releases if r.model == model_sha256]
    if not matching:
        raise ModelError(
            f"{folder / 'model.safetensors'} claims the embedded model {name!r} but has "
            f"sha256 {model_sha256}; {name}'s is {releases[0].model} {hint}"
        )
    parsing = _file_sha256(folder / "parsing.safetensors")
    if not any(r.parsing == parsing for r in matching):
        raise ModelError(
            f"{folder / 'parsing.safetensors'} claims the embedded model {name!r} but has "
            f"sha256 {parsing}; {name}'s is {matching[0].parsing} {hint}"
        )
    fine = folder / "fine-decoder.safetensors"
    if fine.is_file():
        allowed = [f for r in matching for f in r.fine_decoders]
        got = _file_sha256(fine)
        if got not in allowed:
            want = allowed[0] if allowed else "none (this release has no fine decoder)"
            raise ModelError(
                f"{fine} claims the embedded model {name!r} but has sha256 {got}; "
                f"{name}'s is {want} {hint}"
            )


def _holds(folder: Path, ref: Any) -> bool:
    """Whether *folder* is a complete model folder with the weights (and parsing model)
    *ref* names. Unreadable entries are not it."""
    from onedc_media.model.engine import parsing_hash

    try:
        if not all((folder / f).is_file() for f in ("config.json", "model.safetensors",
                                                      "parsing.safetensors")):
            return False
        if _file_sha256(folder / "model.safetensors") != ref.sha256:
            return False
        want = getattr(ref, "parsing_sha256", "")
        return not want or parsing_hash(_file_sha256(folder / "parsing.safetensors")) == want
    except OSError:
        return False


def find_model(ref: Any, search: str | None = None) -> str | None:
    """The first complete model folder on *search* (default: ``$ONEDC_MEDIA_MODEL_PATH``)
    holding the weights *ref* (a ``ModelRef``) names by SHA-256, or None. An entry that
    cannot be read is skipped: one bad folder on the path does not stop the search."""
    search = os.environ.get(MODEL_PATH_ENV, "") if search is None else search
    for root in (Path(r) for r in search.split(os.pathsep) if r):
        for folder in _folders(root):
            if _holds(folder, ref):
                return str(folder)
    return None


def _folders(root: Path) -> list[Path]:
    """*root* and the folders in it (a model folder, or a folder of them); none if unreadable."""
    try:
        if not root.is_dir():
            return []
        return [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    except OSError:
        return []


def _ref_of(folder: Path) -> Any | None:
    """The ``ModelRef`` of a complete model folder (as its engine states it), or None."""
    from onedc_media.codec.contract import ModelRef
    from onedc_media.model.engine import parsing_hash

    try:
        if not all((folder / f).is_file() for f in ("config.json", "model.safetensors",
                                                      "parsing.safetensors")):
            return None
        name = json.loads((folder / "config.json").read_text()).get("name", folder.name)
        return ModelRef(str(name), _file_sha256(folder / "model.safetensors"),
                        parsing_hash(_file_sha256(folder / "parsing.safetensors")))
    except (OSError, ValueError, AttributeError):
        return None


def resolve_model_id(ref: Any, folder: str | os.PathLike | None = None,
                     search: str | None = None) -> Any:
    """The full ``ModelRef`` of the weights a still's model id (the first 16 hex digits of
    their SHA-256, :func:`onedc_media.container.is_model_id`) names.

    With *folder* (a model folder or an embedded model's name: the caller's explicit
    choice) only that model is considered. Otherwise the embedded models and the folders
    of *search* (default ``$ONEDC_MEDIA_MODEL_PATH``; ``decode --model DIR`` extends it)
    are. Copies of the same weights are one model; two different models whose SHA-256
    start alike are ambiguous and refused rather than guessed between.

    :raises ModelMismatchError: no weights match (naming where it looked), or several do.
    """
    prefix = ref.sha256
    if folder is not None:
        path = Path(folder) if Path(folder).is_dir() else embedded_model_dir(str(folder))
        places, candidates = [str(folder)], [path]
    else:
        search = os.environ.get(MODEL_PATH_ENV, "") if search is None else search
        embedded = embedded_model_dir().parent
        roots = [r for r in search.split(os.pathsep) if r]
        places = [f"the embedded models ({embedded})", *roots]
        candidates = [p for root in [embedded, *map(Path, roots)] for p in _folders(root)]
    found: dict[tuple[str, str], tuple[Any, Path]] = {}
    for candidate in candidates:
        got = _ref_of(candidate)
        if got is not None and got.sha256.startswith(prefix):
            found.setdefault((got.sha256, got.parsing_sha256), (got, candidate))
    if not found:
        where = "; ".join(places)
        hint = "" if folder is not None else (
            f" (decode --model DIR, or {MODEL_PATH_ENV}, with a folder holding them)")
        raise ModelMismatchError(
            f"no model weights whose SHA-256 starts with {prefix} (the picture's model id): "
            f"looked in {where}{hint}")
    if len(found) > 1:
        which = ", ".join(f"{r.name} sha256 {r.sha256[:24]}... in {p}" for r, p in found.values())
        raise ModelMismatchError(
            f"model id {prefix} is ambiguous: {len(found)} different weights start with it "
            f"({which}); keep only the right one on the search path")
    return next(iter(found.values()))[0]
