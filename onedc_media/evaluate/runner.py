"""The evaluation loop: every image x codec x quality through the real codec.

For each point the image is encoded and decoded by the codec the registry names (its
real encoder and decoder, as ``onedc-media encode`` would run them), and one row goes
to ``results.csv``:

* ``bytes`` / ``bpp``: the packet the encoder returned (``bytes * 8 / pixels``). A packet
  is self-contained and carries the codec's own headers (a JPEG packet is a whole JFIF
  file; AVIF / HEVC packets have a 14-byte header);
* ``odc_bytes`` / ``odc_bpp``: a whole ``.odc`` file holding that one picture (the still
  form: codec, size, model id and CRC around the packet, what ``onedc-media encode``
  writes for one picture), measured by writing it to memory;
* ``psnr_rgb``, ``psnr_y`` (BT.601 luma), ``ms_ssim``, ``ms_ssim_db``, the colour error
  ``ciede2000`` (mean over pixels) and ``ciede2000_worst_block`` (the 16x16 block whose
  mean colour moved most), and ``lpips`` / ``dists`` where available
  (:mod:`onedc_media.evaluate.metrics`);
* ``scale``: a curve with ``scale`` > 1 is the codec run below its own floor as a user
  would: the picture downscaled by that factor (OpenCV area filter), encoded, decoded and
  upscaled back (Lanczos). Its bits are the small file's bytes over the *original*
  pixel count, so it compares with every other curve at equal real bits;
* ``encode_ms_per_mp`` / ``decode_ms_per_mp``: wall time of one ``encode`` / ``decode``
  call per megapixel, without creating the encoder (model loading is not counted).

Rows are appended and flushed as they are measured, so a killed run resumes where it
stopped: points already in ``results.csv`` (same image, codec label and quality) are
skipped. Codecs without ``batch`` or ``cuda`` capabilities (the classic ones, which
release the GIL) run on a thread pool across images; the others run one image at a
time in the calling thread, where the model stays loaded.

Nothing here prints: the progress bar (tqdm, on stderr) is optional and warnings are
returned in :class:`EvalRun`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onedc_media.codec import Codec, CodecInfo, CodecRegistry, Decoder, Encoder
from onedc_media.errors import CodecOptionError, InvalidImageError, MediaError, OdcError
from onedc_media.evaluate import metrics
from onedc_media.imageio import IMAGE_SUFFIXES, read_image

__all__ = [
    "RESULT_FIELDS",
    "CodecSpec",
    "EvalRun",
    "find_images",
    "odc_file_size",
    "parse_qualities",
    "read_results",
    "resolve_specs",
    "run_evaluation",
]

RESULT_FIELDS: tuple[str, ...] = (
    "image",
    "width",
    "height",
    "codec",
    "label",
    "quality",
    "options",
    "bytes",
    "bpp",
    "odc_bytes",
    "odc_bpp",
    "psnr_rgb",
    "psnr_y",
    "ms_ssim",
    "ms_ssim_db",
    "lpips",
    "dists",
    "encode_ms_per_mp",
    "decode_ms_per_mp",
    "jobs",
    "device",
    "ciede2000",
    "ciede2000_worst_block",
    "scale",
)
#: Columns that results.csv files written before them lack; read as missing values.
_LATER_FIELDS = frozenset({"ciede2000", "ciede2000_worst_block", "scale"})

_FLOAT_FIELDS = frozenset(
    {
        "bpp",
        "odc_bpp",
        "psnr_rgb",
        "psnr_y",
        "ms_ssim",
        "ms_ssim_db",
        "lpips",
        "dists",
        "encode_ms_per_mp",
        "decode_ms_per_mp",
        "ciede2000",
        "ciede2000_worst_block",
        "scale",
    }
)
_INT_FIELDS = frozenset({"width", "height", "bytes", "odc_bytes", "jobs"})


# -- what to run ----------------------------------------------------------------------


@dataclass(frozen=True)
class CodecSpec:
    """One RD curve to measure: a codec, its quality ladder and fixed other options.

    :param qualities: values of the codec's quality option; ``(None,)`` for a codec
        without one (run once, at its defaults).
    :param options: other options, the same at every point (e.g. ``{"preset": 4}``);
        they become part of :attr:`label`, so two variants of a codec are two curves.
    """

    name: str
    qualities: tuple[Any, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    scale: float = 1.0  #: downscale factor before encoding (see :func:`resampled`)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and 1.0 <= self.scale <= MAX_SCALE):
            raise CodecOptionError(f"scale must lie in [1, {MAX_SCALE:g}], got {self.scale!r}")

    @property
    def label(self) -> str:
        shown = dict(self.options)
        if self.scale != 1.0:
            shown["scale"] = self.scale
        if not shown:
            return self.name
        return self.name + "[" + ",".join(f"{k}={_option_text(v)}" for k, v in sorted(shown.items())) + "]"


#: The largest resampling factor ``scale`` accepts.
MAX_SCALE = 16.0


def resampled(
    rgb: np.ndarray, scale: float, code: Callable[[np.ndarray], tuple[bytes, np.ndarray]]
) -> tuple[bytes, np.ndarray]:
    """Run ``code`` (encode + decode) on *rgb* downscaled by *scale*, upscale its output.

    Downscaling uses OpenCV's area filter (an average over each source window, the filter
    for reduction), upscaling Lanczos (8x8 taps); the returned packet is the small
    picture's, so its bytes count against the original picture's pixels. ``scale`` 1 calls
    ``code`` on *rgb* itself.
    """
    if scale == 1.0:
        return code(rgb)
    import cv2

    height, width = rgb.shape[:2]
    small = (max(1, round(width / scale)), max(1, round(height / scale)))
    down = cv2.resize(rgb, small, interpolation=cv2.INTER_AREA)
    packet, out = code(np.ascontiguousarray(down))
    up = cv2.resize(out, (width, height), interpolation=cv2.INTER_LANCZOS4)
    return packet, np.ascontiguousarray(up)


def _option_text(value: Any) -> str:
    """An option's value as a label shows it: a whole float as an integer (``enhance=1``,
    however the option's type stores it), other values as written."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_qualities(text: str | None, codecs: Sequence[str]) -> dict[str, list[str]]:
    """Parse ``-q``: ``"jpeg=5,10,20;onedc=1,2,3"`` per codec, or ``"10,20,30"`` for all.

    Returns the raw strings per codec; :func:`resolve_specs` validates them.
    """
    out: dict[str, list[str]] = {}
    if not text or not text.strip():
        return out
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, values = part.rpartition("=")
        names = [name.strip()] if sep else list(codecs)
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not items or (sep and not name.strip()):
            raise CodecOptionError(
                f"bad --quality part {part!r}: expected CODEC=Q1,Q2,... or Q1,Q2,..."
            )
        for n in names:
            if n not in codecs:
                raise CodecOptionError(
                    f"--quality names codec {n!r}, which is not in --codecs ({', '.join(codecs)})"
                )
            out[n] = items
    return out


def resolve_specs(
    names: Sequence[str],
    registry: CodecRegistry,
    qualities: Mapping[str, Sequence[Any]] | None = None,
) -> tuple[list[CodecSpec], list[tuple[str, str]]]:
    """Turn codec names into :class:`CodecSpec` s, skipping codecs that cannot run here.

    A codec is skipped (returned in the second list with the reason) when no plugin
    registers it or when its implementation cannot be loaded or cannot make an encoder
    (a missing library). Bad quality values raise ``CodecOptionError``.
    """
    qualities = qualities or {}
    specs: list[CodecSpec] = []
    skipped: list[tuple[str, str]] = []
    for name in dict.fromkeys(names):
        if name not in registry:
            skipped.append((name, f"no installed plugin provides codec {name!r}"))
            continue
        info = registry.get(name)
        if name in qualities:
            if info.quality_option is None:
                raise CodecOptionError(f"codec {name!r} has no quality option; drop it from -q")
            opt = info.option(info.quality_option)
            try:
                ladder = tuple(dict.fromkeys(opt.validate(v) for v in qualities[name]))
            except CodecOptionError as exc:
                raise CodecOptionError(f"codec {name!r}: {exc}") from None
        else:
            ladder = info.ladder()
        try:
            codec = info.create()
            probe = {} if ladder[0] is None else {info.quality_option: ladder[0]}
            codec.encoder(info.resolve_options(probe)).close()
        except OdcError as exc:
            skipped.append((name, str(exc)))
            continue
        specs.append(CodecSpec(name, ladder))
    return specs, skipped


# -- images ---------------------------------------------------------------------------


def find_images(path: str | os.PathLike[str], max_images: int | None = None) -> list[Path]:
    """The image files in *path* (a folder, searched recursively, or one file), sorted."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(2, "no such file or folder", str(root))
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if max_images is not None:
        files = files[: max(0, max_images)]
    return files


# -- results.csv ----------------------------------------------------------------------


def _key(row: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(row["image"]), str(row["label"]), str(row["quality"]))


def _parse_row(raw: Mapping[str, str]) -> dict[str, Any] | None:
    row: dict[str, Any] = {}
    try:
        for name in RESULT_FIELDS:
            value = raw.get(name)
            if value is None and name in _LATER_FIELDS:
                value = ""
            if value is None:
                return None
            if name in _FLOAT_FIELDS:
                row[name] = float(value) if value != "" else math.nan
            elif name in _INT_FIELDS:
                row[name] = int(value) if value != "" else None
            else:
                row[name] = value
    except ValueError:
        return None
    return row if row["image"] and row["label"] else None


def read_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The complete rows of a ``results.csv`` (a torn last line is ignored)."""
    try:
        with open(path, newline="", encoding="utf-8") as fp:
            rows = [_parse_row(r) for r in csv.DictReader(fp)]
    except FileNotFoundError:
        return []
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        if row is not None:
            seen[_key(row)] = row  # a re-measured point replaces the older row
    return list(seen.values())


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


class _ResultsWriter:
    """Appends rows durably: each is flushed and fsync'ed before it counts as done."""

    def __init__(self, path: Path, existing: list[dict[str, Any]]) -> None:
        # Rewrite what is there (dropping a torn line, upgrading the columns) through a
        # temporary file, then append.
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fp:
            writer = csv.writer(fp)
            writer.writerow(RESULT_FIELDS)
            for row in existing:
                writer.writerow([_format(row.get(k)) for k in RESULT_FIELDS])
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(tmp, path)
        self._fp = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.writer(self._fp)
        self._lock = threading.Lock()

    def append(self, row: Mapping[str, Any]) -> None:
        with self._lock:
            self._writer.writerow([_format(row.get(k)) for k in RESULT_FIELDS])
            self._fp.flush()
            os.fsync(self._fp.fileno())

    def close(self) -> None:
        self._fp.close()


# -- one measurement ------------------------------------------------------------------


def odc_file_size(info: CodecInfo, encoder: Encoder, packet: bytes, width: int, height: int) -> int:
    """Bytes of the ``.odc`` file ``onedc-media encode`` writes for *packet*: one picture
    in the still form."""
    from onedc_media import container
    from onedc_media.stills import SRGB

    header = container.StreamHeader(
        "image", info.name, width=width, height=height, color=SRGB,
        codec_params=dict(getattr(encoder, "params", None) or {}), model=encoder.model,
    )  # fmt: skip
    return container.write_still(io.BytesIO(), header, packet)


class _Session:
    """A codec's encoders and decoders, kept per quality for one thread."""

    def __init__(self, info: CodecInfo, codec: Codec, device: str | None) -> None:
        self.info, self.codec, self.device = info, codec, device
        self._encoders: dict[str, Encoder] = {}
        self._decoders: dict[str, Decoder] = {}

    def encoder(self, options: Mapping[str, Any]) -> Encoder:
        key = json.dumps(options, sort_keys=True, default=str)
        if key not in self._encoders:
            self._encoders[key] = self.codec.encoder(options, device=self.device)
        return self._encoders[key]

    def decoder(self, encoder: Encoder, options: Mapping[str, Any] | None = None) -> Decoder:
        """A decoder for *encoder*'s stream; *options* are the user's (``model=DIR``
        makes the decoder load the weights the encoder used, not the embedded model of
        the same name)."""
        params = dict(getattr(encoder, "params", None) or {})
        opts = dict(options or {})
        key = json.dumps([params, repr(encoder.model), opts], sort_keys=True, default=str)
        if key not in self._decoders:
            self._decoders[key] = self.codec.decoder(
                params, model=encoder.model, device=self.device, options=opts
            )
        return self._decoders[key]

    def close(self) -> None:
        for obj in [*self._encoders.values(), *self._decoders.values()]:
            obj.close()


@dataclass
class _Measure:
    """What every point needs besides the codec: the metric functions."""

    perceptual: dict[str, Callable[[np.ndarray, np.ndarray], float]]
    jobs: int
    device: str

    def point(
        self, session: _Session, spec: CodecSpec, quality: Any, name: str, rgb: np.ndarray
    ) -> dict[str, Any]:
        info = session.info
        given = dict(spec.options)
        if quality is not None:
            given[info.quality_option] = quality
        options = info.resolve_options(given)
        encoder = session.encoder(options)
        height, width = rgb.shape[:2]
        times: list[float] = []

        def code(picture: np.ndarray) -> tuple[bytes, np.ndarray]:
            t0 = time.perf_counter()
            packets = encoder.encode([picture])
            t1 = time.perf_counter()
            decoder = session.decoder(encoder, spec.options)
            t2 = time.perf_counter()
            frames = decoder.decode(packets)
            t3 = time.perf_counter()
            times.extend((t1 - t0, t3 - t2))
            if len(packets) != 1 or len(frames) != 1:
                raise MediaError(
                    f"{info.name} returned {len(packets)} packets / {len(frames)} frames"
                )
            if frames[0].shape != picture.shape or frames[0].dtype != np.uint8:
                raise MediaError(
                    f"{info.name} decoded a {frames[0].shape} {frames[0].dtype} picture "
                    f"for a {picture.shape} input"
                )
            return bytes(packets[0]), frames[0]

        packet, out = resampled(rgb, spec.scale, code)
        pixels = width * height
        try:
            odc_bytes: int | None = odc_file_size(info, encoder, packet, width, height)
        except (OdcError, TypeError, ValueError):
            odc_bytes = None
        mp = pixels / 1e6
        ssim = metrics.ms_ssim(rgb, out)
        colour = metrics.colour_error(rgb, out)
        row: dict[str, Any] = {
            "image": name,
            "width": width,
            "height": height,
            "codec": info.name,
            "label": spec.label,
            "quality": "" if quality is None else str(quality),
            "options": json.dumps(options, sort_keys=True, default=str),
            "bytes": len(packet),
            "bpp": len(packet) * 8 / pixels,
            "odc_bytes": odc_bytes,
            "odc_bpp": math.nan if odc_bytes is None else odc_bytes * 8 / pixels,
            "psnr_rgb": metrics.psnr_rgb(rgb, out),
            "psnr_y": metrics.psnr_y(rgb, out),
            "ms_ssim": ssim,
            "ms_ssim_db": metrics.ms_ssim_db(ssim),
            "lpips": math.nan,
            "dists": math.nan,
            "encode_ms_per_mp": times[0] * 1e3 / mp,
            "decode_ms_per_mp": times[1] * 1e3 / mp,
            "jobs": self.jobs,
            "device": self.device,
            "ciede2000": colour.mean,
            "ciede2000_worst_block": colour.worst_block,
            "scale": spec.scale,
        }
        for metric_name, fn in self.perceptual.items():
            row[metric_name] = fn(rgb, out)
        return row


# -- the loop -------------------------------------------------------------------------


@dataclass
class EvalRun:
    """What :func:`run_evaluation` did."""

    out_dir: Path
    results_csv: Path
    rows: list[dict[str, Any]]  #: every row of results.csv after the run
    images: dict[str, Path]  #: image name (as in the rows) -> file
    specs: list[CodecSpec]
    measured: int = 0  #: rows added by this run
    reused: int = 0  #: rows found in results.csv and skipped
    errors: list[str] = field(default_factory=list)  #: points that failed, with reasons
    perceptual: list[metrics.PerceptualStatus] = field(default_factory=list)
    jobs: int = 1


def _image_names(files: Sequence[Path], root: Path) -> dict[str, Path]:
    base = root if root.is_dir() else root.parent
    return {p.relative_to(base).as_posix(): p for p in files}


def run_evaluation(
    images: str | os.PathLike[str],
    specs: Sequence[CodecSpec],
    out_dir: str | os.PathLike[str],
    *,
    registry: CodecRegistry,
    max_images: int | None = None,
    jobs: int = 1,
    device: str | None = None,
    perceptual: bool = True,
    progress: bool = False,
    resume: bool = True,
) -> EvalRun:
    """Measure every image x spec x quality; append the rows to ``out_dir/results.csv``.

    :param images: a folder of images (searched recursively) or one image file.
    :param jobs: threads across images, for codecs without ``batch`` / ``cuda``
        capabilities. Timings are per call, so more jobs make them noisier.
    :param perceptual: compute LPIPS / DISTS where :func:`metrics.perceptual_status`
        says they are available.
    :param resume: keep the rows already in ``results.csv`` and skip their points;
        ``False`` starts the file afresh.
    """
    root = Path(images)
    files = find_images(root, max_images)
    if not files:
        raise InvalidImageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    names = _image_names(files, root)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "results.csv"
    existing = read_results(csv_path) if resume else []
    done = {_key(r) for r in existing}
    jobs = max(1, int(jobs))
    status = metrics.perceptual_status() if perceptual else []
    measure = _Measure(
        {s.name: metrics.load_perceptual(s.name) for s in status if s.available},
        jobs,
        device or "auto",
    )
    run = EvalRun(out, csv_path, [], names, list(specs), jobs=jobs, perceptual=status)

    def pending(spec: CodecSpec, name: str) -> list[Any]:
        return [
            q for q in spec.qualities if (name, spec.label, "" if q is None else str(q)) not in done
        ]

    todo = sum(len(pending(s, n)) for s in specs for n in names)
    run.reused = sum(len(s.qualities) for s in specs) * len(names) - todo
    infos = {s.name: registry.get(s.name) for s in specs}
    threaded = [
        s
        for s in specs
        if not (infos[s.name].capabilities.batch or infos[s.name].capabilities.cuda)
    ]
    inline = [s for s in specs if s not in threaded]

    writer = _ResultsWriter(csv_path, existing)
    bar = _progress(todo, progress)
    local = threading.local()
    lock = threading.Lock()
    all_sessions: list[_Session] = []

    def session_for(spec: CodecSpec) -> _Session:
        cache = local.__dict__.setdefault("sessions", {})
        if spec.name not in cache:
            info = infos[spec.name]
            cache[spec.name] = _Session(info, info.create(), device)
            with lock:
                all_sessions.append(cache[spec.name])
        return cache[spec.name]

    def do_image(name: str, group: Sequence[CodecSpec]) -> None:
        points = [(s, q) for s in group for q in pending(s, name)]
        if not points:
            return
        try:
            rgb = read_image(names[name])
        except OdcError as exc:
            with lock:
                run.errors.append(f"{name}: {exc}")
            bar.update(len(points))
            return
        for spec, quality in points:
            try:
                row = measure.point(session_for(spec), spec, quality, name, rgb)
            except OdcError as exc:
                with lock:
                    run.errors.append(f"{name} {spec.label} q={quality}: {exc}")
            else:
                writer.append(row)
                with lock:
                    run.measured += 1
            bar.update(1)

    threads_before = _limit_torch_threads(jobs)
    try:
        if threaded:
            if jobs == 1:
                for name in names:
                    do_image(name, threaded)
            else:
                with ThreadPoolExecutor(jobs, thread_name_prefix="onedc-eval") as pool:
                    for fut in [pool.submit(do_image, n, threaded) for n in names]:
                        fut.result()
        for name in names:
            do_image(name, inline)
    finally:
        bar.close()
        writer.close()
        for s in all_sessions:
            s.close()
        _restore_torch_threads(threads_before)
    run.rows = read_results(csv_path)
    return run


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):  # -> tqdm | _NoBar
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="pt", desc="eval", dynamic_ncols=True, leave=False)


def _limit_torch_threads(jobs: int) -> int | None:
    """With several jobs, MS-SSIM runs one torch thread per job (no oversubscription)."""
    if jobs <= 1:
        return None
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return before


def _restore_torch_threads(before: int | None) -> None:
    if before is not None:
        import torch

        torch.set_num_threads(before)
