"""The archive encoder: sources in, ``.odc`` bytes and manifest fields out.

Both engines use :class:`ArchiveEncoder`: the local engine in its process, the Ray
engine once per actor. It never touches the manifest or ``DEST``: it returns one
result (a plain dict, see :data:`RESULT_FIELDS`) per item, and whoever holds the
manifest writes the bytes (:func:`~onedc_media.archive.layout.commit_file`) and then
commits. Given the same items in the same batches and the same thread count, it
produces the same bytes wherever it runs.

Per image: open, ``fstat``, bounded read, SHA-256 of the bytes read, header probe
(bounds the pixel count before anything is decoded), decode to RGB from those same
bytes. Pictures of one size in a batch go to the codec in one ``encode`` call (the
OneDC codec's batch capability); each packet becomes its own one-picture ``.odc`` file,
as ``onedc-media encode`` writes it. Videos go through
:func:`onedc_media.pipeline.transcode.transcode` (``keyframes``: no inter codec).

A bad source becomes a ``failed`` result with a reason; nothing here raises for one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from onedc_media import container
from onedc_media.archive.paths import open_inside, resolve_inside
from onedc_media.codec.contract import MAX_FRAME_PIXELS
from onedc_media.digest import sha256_fileobj
from onedc_media.errors import CodecOptionError, InvalidImageError, InvalidVideoError, OdcError
from onedc_media.imageio import MAX_IMAGE_FILE_BYTES, decode_image
from onedc_media.stills import SRGB

__all__ = [
    "RESULT_FIELDS",
    "VIDEO_MODES",
    "ArchiveEncoder",
    "EncodeSettings",
    "Loaded",
    "WorkItem",
]

VIDEO_MODES = ("transcode", "keyframes", "skip")

#: Keys of a result dict besides ``data`` (the ``.odc`` bytes, ``None`` when failed).
RESULT_FIELDS = (
    "id", "source", "output", "status", "error", "src_size", "src_mtime_ns", "src_sha256",
    "width", "height", "frames", "out_size", "out_sha256", "codec", "codec_params", "settings",
    "model_name", "model_sha256", "model_parsing_sha256", "quality", "bpp", "seconds",
)  # fmt: skip

#: Options that change where a codec runs, not what it writes (not part of ``settings``).
_RUNTIME_OPTIONS = ("device",)


@dataclass(frozen=True)
class EncodeSettings:
    """What an archive job asks of the encoder.

    :param codec: a registered codec name.
    :param options: codec options as the user gave them (``quality`` included).
    :param videos: ``transcode`` (keyframe codec + inter codec), ``keyframes`` (keyframes
        only) or ``skip``.
    :param device: device for learned codecs (``None``: the codec's default).
    :param threads: intra-op threads of the codec (torch, OpenCV); ``None``: their
        defaults. Equal thread counts give equal bytes from learned codecs.
    :param max_image_bytes: larger image files fail without being read.
    :param max_pixels: images with more pixels fail before being decoded (so do images
        above Pillow's decompression-bomb bound, about 179 Mpixels, whose headers it reads).
    """

    codec: str = "onedc"
    options: Mapping[str, Any] = field(default_factory=dict)
    videos: str = "transcode"
    device: str | None = None
    threads: int | None = None
    max_image_bytes: int = MAX_IMAGE_FILE_BYTES
    max_pixels: int = MAX_FRAME_PIXELS

    def __post_init__(self) -> None:
        if self.videos not in VIDEO_MODES:
            raise CodecOptionError(
                f"videos must be one of {', '.join(VIDEO_MODES)}, got {self.videos!r}"
            )
        if self.threads is not None and self.threads < 1:
            raise CodecOptionError("threads must be at least 1")
        if self.max_image_bytes < 1 or self.max_pixels < 1:
            raise CodecOptionError("size limits must be positive")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EncodeSettings:
        return cls(**d)


@dataclass(frozen=True)
class WorkItem:
    """One source to archive: its manifest row id, paths and kind."""

    id: int
    source: str  #: under SRC, '/'-separated
    kind: str  #: image | video
    output: str  #: under DEST, '/'-separated
    path: str  #: absolute path of the source
    #: SRC: when set, the source is opened only if it lies inside it (folders on the way
    #: not symbolic links; :func:`~onedc_media.archive.paths.open_inside`)
    root: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Loaded:
    """A source image read and decoded (or the reason it could not be)."""

    item: WorkItem
    rgb: np.ndarray | None = None
    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None
    error: str | None = None
    seconds: float = 0.0


def settings_key(info: Any, options: Mapping[str, Any], kind: str, videos: str) -> str:
    """The JSON that says what an item was encoded with; a change means re-encoding."""
    key: dict[str, Any] = {
        "codec": info.name,
        "options": {k: v for k, v in sorted(options.items()) if k not in _RUNTIME_OPTIONS},
    }
    if kind == "video":
        key["videos"] = videos
    return json.dumps(key, sort_keys=True)


def _failure(item: WorkItem, error: str, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(RESULT_FIELDS)
    out.update(
        id=item.id, source=item.source, output=item.output, status="failed", error=error, data=None
    )
    out.update(fields)
    return out


def _open_source(item: WorkItem) -> int:
    """A read-only, non-blocking descriptor of the item's source (inside its SRC when
    the item names one)."""
    flags = os.O_RDONLY | os.O_NONBLOCK
    if item.root:
        return open_inside(item.root, item.source, flags, what="source", follow_last=True)
    return os.open(item.path, flags)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OdcError):
        exc.filename = None  # the manifest row names the file
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


class ArchiveEncoder:
    """Encodes archive items with one codec; creates the codec's encoder (loads the
    model) once, in the constructor.

    :param settings: the job's :class:`EncodeSettings`.
    :param plugins: loaded plugins (default: the installed ones).
    :param spool: a folder for temporary files (videos); it is created when needed.
    """

    def __init__(
        self, settings: EncodeSettings, *, plugins: Any = None, spool: str | None = None
    ) -> None:
        import onedc_media

        self.settings = settings
        self.plugins = plugins or onedc_media.default_plugins()
        self.info = self.plugins.codecs.get(settings.codec)
        if self.info.kind != "image":
            raise CodecOptionError(f"codec {self.info.name!r} is not an image codec")
        self.options = self.info.resolve_options(settings.options)
        self.spool = spool
        set_threads(
            settings.threads, learned=self.info.capabilities.batch or self.info.capabilities.cuda
        )
        self._codec = self.info.create()
        self._encoder = self._codec.encoder(self.options, device=settings.device)
        q = self.info.quality_option
        # What the encoder used: a codec may leave its default to the model (OneDC).
        used = self._encoder.params.get(q) if q else None
        used = self.options.get(q) if used is None and q else used
        self.quality = int(used) if isinstance(used, int) else None

    def close(self) -> None:
        self._encoder.close()

    def __enter__(self) -> ArchiveEncoder:  # noqa: PYI034 - as the rest of the project
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def model(self) -> Any:
        return self._encoder.model

    def settings_json(self, kind: str) -> str:
        return settings_key(self.info, self.options, kind, self.settings.videos)

    # -- the whole thing (Ray actors) -------------------------------------------------
    def process(self, items: Sequence[WorkItem]) -> list[dict[str, Any]]:
        """Load and encode *items* (one planned batch); results in item order."""
        images = [self.load(i) for i in items if i.kind == "image"]
        done = {r["id"]: r for r in self.encode_images(images)}
        for item in items:
            if item.kind != "image":
                done[item.id] = self.encode_video(item)
        return [done[i.id] for i in items]

    # -- images -----------------------------------------------------------------------
    def load(self, item: WorkItem) -> Loaded:
        """Read, hash and decode one source image (thread-safe)."""
        t0 = time.perf_counter()
        out = Loaded(item)
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer (fstat refuses it).
            fd = _open_source(item)
            try:
                st = os.fstat(fd)
                out.size, out.mtime_ns = st.st_size, st.st_mtime_ns
                if not stat.S_ISREG(st.st_mode):
                    raise InvalidImageError("not a regular file")
                if st.st_size == 0:
                    raise InvalidImageError("empty file")
                if st.st_size > self.settings.max_image_bytes:
                    raise InvalidImageError(
                        f"file is larger than the limit of {self.settings.max_image_bytes} bytes"
                    )
                with os.fdopen(os.dup(fd), "rb") as fh:
                    data = fh.read(self.settings.max_image_bytes + 1)
            finally:
                os.close(fd)
            if len(data) != st.st_size:
                raise InvalidImageError("the file changed while it was read")
            out.sha256 = hashlib.sha256(data).hexdigest()
            out.rgb = decode_image(data, self.settings.max_pixels)
        except Exception as exc:  # noqa: BLE001 - a bad source is a failed item, not a crash
            out.error = _describe(exc)
        out.seconds = time.perf_counter() - t0
        return out

    def encode_images(self, loaded: Sequence[Loaded]) -> list[dict[str, Any]]:
        """Encode loaded images: one ``encode`` call per picture size (first-seen order);
        results in the order of *loaded*."""
        results: dict[int, dict[str, Any]] = {}
        groups: dict[tuple[int, ...], list[Loaded]] = {}
        for ld in loaded:
            if ld.rgb is None:
                results[ld.item.id] = self._loaded_failure(ld, ld.error or "not loaded")
            else:
                groups.setdefault(ld.rgb.shape, []).append(ld)
        for group in groups.values():
            t0 = time.perf_counter()
            try:
                packets = self._encoder.encode([ld.rgb for ld in group])
                if len(packets) != len(group):
                    raise OdcError(
                        f"the encoder returned {len(packets)} packets for {len(group)} pictures"
                    )
            except Exception as exc:  # noqa: BLE001 - one bad picture must not sink a batch
                if len(group) == 1:
                    results[group[0].item.id] = self._loaded_failure(
                        group[0], f"encode failed: {_describe(exc)}"
                    )
                    continue
                for ld in group:  # find the bad one(s): same calls a batch of 1 makes
                    results.update((r["id"], r) for r in self.encode_images([ld]))
                continue
            share = (time.perf_counter() - t0) / len(group)
            for ld, packet in zip(group, packets):
                results[ld.item.id] = self._image_result(ld, packet, share)
        return [results[ld.item.id] for ld in loaded]

    def _loaded_failure(self, ld: Loaded, error: str) -> dict[str, Any]:
        return _failure(
            ld.item,
            error,
            src_size=ld.size,
            src_mtime_ns=ld.mtime_ns,
            src_sha256=ld.sha256,
            settings=self.settings_json("image"),
            seconds=ld.seconds,
        )

    def _image_result(self, ld: Loaded, packet: bytes, seconds: float) -> dict[str, Any]:
        assert ld.rgb is not None
        h, w = ld.rgb.shape[:2]
        header = container.StreamHeader(
            media_type="image",
            codec=self.info.name,
            width=w,
            height=h,
            pixel_format="rgb24",
            color=SRGB,
            time_base=Fraction(1, 1),
            codec_params=dict(self._encoder.params),
            model=self._encoder.model,
        )
        buf = io.BytesIO()
        with container.open(buf, "w") as out:
            s = out.add_stream(header)
            out.mux(
                container.Packet(
                    stream_index=s.index, data=packet, pts=0, duration=1, keyframe=True
                )
            )
        data = buf.getvalue()
        return self._result(
            ld.item,
            data,
            header,
            size=ld.size,
            mtime_ns=ld.mtime_ns,
            sha256=ld.sha256,
            frames=1,
            seconds=ld.seconds + seconds,
        )

    def _result(
        self,
        item: WorkItem,
        data: bytes,
        header: container.StreamHeader,
        *,
        size: int | None,
        mtime_ns: int | None,
        sha256: str | None,
        frames: int,
        seconds: float,
    ) -> dict[str, Any]:
        model = header.model
        pixels = header.width * header.height * frames
        out: dict[str, Any] = {
            "id": item.id, "source": item.source, "output": item.output, "status": "done",
            "error": None, "src_size": size, "src_mtime_ns": mtime_ns, "src_sha256": sha256,
            "width": header.width, "height": header.height, "frames": frames,
            "out_size": len(data), "out_sha256": hashlib.sha256(data).hexdigest(),
            "codec": header.codec,
            "codec_params": json.dumps(dict(header.codec_params), sort_keys=True),
            "settings": self.settings_json(item.kind),
            "model_name": model.name if model else None,
            "model_sha256": model.sha256 if model else None,
            "model_parsing_sha256": (model.parsing_sha256 or None) if model else None,
            "quality": self.quality,
            "bpp": len(data) * 8 / pixels if pixels else None,
            "seconds": seconds, "data": data,
        }  # fmt: skip
        return out

    # -- videos -----------------------------------------------------------------------
    def encode_video(self, item: WorkItem) -> dict[str, Any]:
        """Transcode one video into ``.odc`` bytes (through a spool file)."""
        from onedc_media.pipeline.hybrid import InterSettings
        from onedc_media.pipeline.transcode import transcode

        t0 = time.perf_counter()
        size = mtime = sha = None
        tmp = None
        try:
            if item.root:  # the transcoder opens the path: check where it leads first
                resolve_inside(item.root, item.source, what="source", follow_last=True)
            before = os.stat(item.path)
            size, mtime = before.st_size, before.st_mtime_ns
            if not stat.S_ISREG(before.st_mode):
                raise InvalidVideoError("not a regular file")
            if before.st_size == 0:
                raise InvalidVideoError("empty file")
            fd = _open_source(item)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise InvalidVideoError("not a regular file")
            with os.fdopen(fd, "rb") as fh:
                sha = sha256_fileobj(fh)
            import secrets
            import tempfile

            spool = self.spool or tempfile.gettempdir()
            os.makedirs(spool, exist_ok=True)
            tmp = os.path.join(spool, f"video-{secrets.token_hex(8)}.odc")
            inter = None if self.settings.videos == "keyframes" else InterSettings()
            result = transcode(
                item.path,
                tmp,
                keyframe_codec=self.info.name,
                codec_options=self.options,
                inter=inter,
                plugins=self.plugins,
                device=self.settings.device,
            )
            with open(tmp, "rb") as fh:
                data = fh.read()
            after = os.stat(item.path)
            if (after.st_size, after.st_mtime_ns) != (size, mtime):
                raise InvalidVideoError("the file changed while it was archived")
            with container.open(io.BytesIO(data)) as inp:
                header = next(s for s in inp.streams if s.media_type in ("video", "image"))
        except Exception as exc:  # noqa: BLE001 - a bad source is a failed item, not a crash
            return _failure(
                item,
                _describe(exc),
                src_size=size,
                src_mtime_ns=mtime,
                src_sha256=sha,
                settings=self.settings_json("video"),
                seconds=time.perf_counter() - t0,
            )
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
        return self._result(
            item,
            data,
            header,
            size=size,
            mtime_ns=mtime,
            sha256=sha,
            frames=result.video.keyframes + result.video.inter_frames,
            seconds=time.perf_counter() - t0,
        )


def set_threads(threads: int | None, *, learned: bool) -> None:
    """Set OpenCV's and (for learned codecs) torch's intra-op thread counts."""
    if threads is None:
        return
    import cv2

    cv2.setNumThreads(threads)
    if learned:
        import torch

        torch.set_num_threads(threads)
