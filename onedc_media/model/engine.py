"""OneDC inference: pictures <-> bytes, split into the stages the runtime schedules.

Encode::

    RGB uint8 -> pad to x64 -> analyse (float, batched, tiled)        -> y, z indices
    y * gain[q], z -> entropy_encode (integer parsing + rANS, CPU)    -> packet bytes

Decode::

    packet bytes -> entropy_decode (CRC, integer parsing + rANS, CPU)  -> DecodedLatents
    DecodedLatents (batched by shape) -> synthesize (float, any device) -> RGB uint8

Only the entropy stages decide symbols; they run in integer arithmetic on the CPU, so a
packet decodes to the same ``y_hat`` everywhere. Synthesis may differ by float noise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from onedc_media.codec.contract import ModelRef, check_frames
from onedc_media.digest import sha256_file
from onedc_media.entropy.coder import CODER_ID, TableCoder
from onedc_media.entropy.fsq import bits_per_token, pack_tokens, unpack_tokens
from onedc_media.entropy.parsing import IntParsing, ParsingConfig, stage_positions
from onedc_media.errors import BitstreamError, ModelError, ModelMismatchError
from onedc_media.model.bitstream import (
    FINE_ID_BYTES,
    PictureHeader,
    add_residual,
    band_count,
    pack_picture,
    unpack_picture,
)

if TYPE_CHECKING:
    from onedc_media.model.fine_decoder import FineDecoder
    from onedc_media.model.refine import RefineConfig
    from onedc_media.model.residual import ResidualConfig

__all__ = ["DecodedLatents", "EncodedLatents", "OneDCEngine", "encode_steps", "tile_spans"]

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
PARSING_FILE = "parsing.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class EncodedLatents:
    """Output of the float analysis for one picture (input of entropy encoding)."""

    y: Tensor  #: float32 [M, H/16, W/16] (un-gained), CPU
    z_idx: Tensor  #: int64 [Cz, H/64, W/64] FSQ level indices, CPU
    width: int
    height: int


@dataclass
class DecodedLatents:
    """Output of entropy decoding for one picture (input of synthesis)."""

    y_hat: Tensor  #: float32 [M, H/16, W/16] (un-gained reconstruction), CPU
    z_int: Tensor  #: int64 [Cz, H/64, W/64] symmetric FSQ integers, CPU
    q: int
    width: int
    height: int
    symbols: list[np.ndarray] | None = None  #: per chunk, when asked for (tests, hashing)
    #: float32 [C, H/8, W/8] added to the latent before the VAE decoder (the residual layer)
    residual: Tensor | None = None
    #: the id of the fine decoder that draws the residual layer (``None``: the model's decoder)
    fine_id: bytes | None = None

    @property
    def fine(self) -> bool:
        """The residual layer is drawn by a fine decoder."""
        return self.fine_id is not None

    @property
    def shape_key(self) -> tuple[int, ...]:
        return (*self.y_hat.shape, self.residual is not None, self.fine_id or b"")


def tile_spans(n: int, tile: int, overlap: int, align: int) -> list[tuple[int, int]]:
    """Cover ``[0, n)`` with spans of at most ``tile`` overlapping by ``>= overlap``.

    Span starts are multiples of ``align``; the last span ends at ``n``.
    """
    if n <= tile:
        return [(0, n)]
    step = max(align, ((tile - overlap) // align) * align)
    starts = [0]
    while starts[-1] + tile < n:
        nxt = starts[-1] + step
        last = -(-(n - tile) // align) * align  # aligned, and no longer than `tile`
        starts.append(min(nxt, last))
    return [(s, min(n, s + tile)) for s in starts]


def parsing_hash(parsing_sha: str) -> str:
    """The parsing model's identity: its integer weights and tables plus the coder."""
    return hashlib.sha256(f"{parsing_sha}|{CODER_ID}".encode()).hexdigest()


class OneDCEngine:
    """Compress and decompress pictures with one OneDC model.

    :param model: the float networks (:class:`~onedc_media.model.onedc.OneDCModel`).
    :param parsing: the exported integer parsing model.
    :param ref: the model's identity, written into stream headers.
    :param tile: pictures larger than ``tile`` pixels on a side are analysed and
        synthesised in overlapping tiles (bounded memory, blended seams).
    :param fine_decoder: the model's fine decoder, if it has one
        (:mod:`~onedc_media.model.fine_decoder`): residual layers are fitted through it
        and pictures that name it are drawn by it.
    :param fine_dir: the model folder, searched for the earlier fine decoder a picture
        names (loaded when first needed).
    """

    band_rows = 32

    def __init__(self, model, parsing: IntParsing, ref: ModelRef, *, device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.float32, tile: int = 1024,
                 fine_decoder: FineDecoder | None = None, fine_dir: str | os.PathLike | None = None) -> None:
        if tile % 64 or tile < 256:
            raise ValueError("tile must be a multiple of 64 and at least 256")
        self.model = model.eval()
        self.parsing = parsing
        self.ref = ref
        self.device = torch.device(device or "cpu")
        self.dtype = dtype
        self.tile = tile
        torch.nn.Module.to(self.model, self.device, dtype)  # ModelMixin.to warns on dtype
        self.fine_decoder = fine_decoder
        if fine_decoder is not None:
            torch.nn.Module.to(fine_decoder.vae, self.device, dtype)
        self.fine_dir = None if fine_dir is None else Path(fine_dir)
        self._earlier_fine: dict[bytes, FineDecoder] = {}
        self._fine_lock = threading.Lock()
        self.coder = TableCoder(parsing.freqs.numpy(), parsing.config.table.precision)
        self.levels = tuple(parsing.config.z_levels)
        lv = torch.tensor(self.levels, dtype=torch.int64)
        self._z_offset = (lv - 1).view(-1, 1, 1)

    # -- construction --------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, spec: str | os.PathLike = "onedc-tiny", **kwargs) -> OneDCEngine:
        """Load an exported model folder (or an embedded model by name)."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        from onedc_media.model.loading import check_pinned, embedded_model_dir
        from onedc_media.model.onedc import OneDCModel

        d = Path(spec)
        if not d.is_dir():
            d = embedded_model_dir(str(spec))
        for f in (CONFIG_FILE, MODEL_FILE, PARSING_FILE):
            if not (d / f).is_file():
                raise ModelError(f"model folder {d} lacks {f} (is {spec!r} an exported OneDC model?)")
        try:
            cfg = json.loads((d / CONFIG_FILE).read_text())
        except ValueError as exc:
            raise ModelError(f"{d / CONFIG_FILE}: {exc}") from None
        cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
        for key in ("vae_config", "unet_config"):  # weights come from the file, never a hub
            if isinstance(cfg.get(key), dict):
                cfg[key] = {**cfg[key], "pretrained": None}
        model = OneDCModel(**cfg)
        want = set(model.inference_state_dict())
        try:
            sd = load_file(str(d / MODEL_FILE))
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for damaged files
            raise ModelError(f"cannot read {d / MODEL_FILE}: {exc}") from None
        got = set(sd)
        if got != want:
            raise ModelError(
                f"{d / MODEL_FILE} does not match config {cfg.get('name')}: "
                f"missing {sorted(want - got)[:3]}, unexpected {sorted(got - want)[:3]}"
            )
        model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
        try:
            with safe_open(str(d / PARSING_FILE), "pt") as fh:
                meta = fh.metadata() or {}
            ptensors = load_file(str(d / PARSING_FILE))
            pcfg = ParsingConfig.from_dict(json.loads(meta["parsing_config"]))
        except (KeyError, ValueError, OSError) as exc:
            raise ModelError(f"cannot read {d / PARSING_FILE}: {exc}") from None
        parsing = IntParsing(pcfg, ptensors)
        ref = ModelRef(
            name=str(cfg.get("name", d.name)),
            sha256=sha256_file(d / MODEL_FILE),
            parsing_sha256=parsing_hash(sha256_file(d / PARSING_FILE)),
        )
        check_pinned(d, ref.name, ref.sha256)  # an embedded model's name promises its bytes
        if "fine_decoder" not in kwargs:  # (export passes None: it may be replacing a stale one)
            from onedc_media.model.fine_decoder import load_fine_decoder

            kwargs["fine_decoder"] = load_fine_decoder(d, model, ref.sha256)
        kwargs.setdefault("fine_dir", d)
        return cls(model, parsing, ref, **kwargs)

    @classmethod
    def from_training(cls, model, **kwargs) -> OneDCEngine:
        """An engine over a model being trained (parsing exported on the fly; CPU copy)."""
        import copy

        from safetensors.torch import save

        parsing_tensors = model.parsing.export()
        parsing = IntParsing(model.parsing.config, parsing_tensors)
        float_sd = {k: v.detach().cpu().contiguous() for k, v in model.inference_state_dict().items()}
        ref = ModelRef(
            name=str(model.config.name),
            sha256=hashlib.sha256(save(float_sd)).hexdigest(),
            parsing_sha256=parsing_hash(hashlib.sha256(save(parsing_tensors)).hexdigest()),
        )
        clone = copy.deepcopy(model).float()
        return cls(clone, parsing, ref, **{"device": "cpu", **kwargs})

    def check_model(self, ref: ModelRef | None) -> None:
        """Refuse a stream encoded with other weights, naming what differs."""
        if ref is None:
            raise ModelMismatchError("the stream does not name its model; cannot verify OneDC weights")
        if ref.parsing_sha256 and ref.parsing_sha256 != self.ref.parsing_sha256:
            raise ModelMismatchError(
                f"stream was encoded with parsing model {ref.name} {ref.parsing_sha256[:16]}..., "
                f"this decoder holds {self.ref.name} {self.ref.parsing_sha256[:16]}... "
                "(the entropy-parameter network or coder differs: symbols cannot be decoded)"
            )
        if ref.sha256 != self.ref.sha256:
            raise ModelMismatchError(
                f"stream was encoded with weights {ref.name} sha256 {ref.sha256[:16]}..., "
                f"this decoder holds {self.ref.name} sha256 {self.ref.sha256[:16]}... "
                "(decode --model DIR, or ONEDC_MEDIA_MODEL_PATH, with a folder holding those "
                "weights; the model card lists earlier versions)"
            )

    @property
    def num_rates(self) -> int:
        return self.parsing.num_rates

    @property
    def default_quality(self) -> int:
        """The rate point (1-based) used when none is asked for.

        The model says which (``default: true`` on one of its ``rate_points``): an index means
        different things in different ladders, so a fixed number would not fit every model.
        Models that do not say get the middle of their ladder.
        """
        points = list(self.model.config.rate_points or [])
        marked = [i for i, r in enumerate(points) if isinstance(r, dict) and r.get("default")]
        return marked[0] + 1 if marked else (self.num_rates + 1) // 2

    # -- encode --------------------------------------------------------------------
    def _to_tensor(self, images: Sequence[np.ndarray]) -> Tensor:
        x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1)
        return x

    @torch.no_grad()
    def analyse(self, images: Sequence[np.ndarray]) -> list[EncodedLatents]:
        """Float analysis, batched over pictures of equal size."""
        images = check_frames(images)
        out: list[EncodedLatents | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape[:2], []).append(i)
        for (h, w), idxs in groups.items():
            x = self._to_tensor([images[i] for i in idxs])
            from onedc_media.model.onedc import pad_to_multiple

            x = pad_to_multiple(x).to(self.device, self.dtype)
            y, z_idx = self._analyse_tiled(x)
            for j, i in enumerate(idxs):
                out[i] = EncodedLatents(y[j].float().cpu(), z_idx[j].cpu(), w, h)
        return out  # type: ignore[return-value]

    def _analyse_tiled(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m = self.model
        H, W = x.shape[-2:]
        if H <= self.tile and W <= self.tile:
            _, y, z_idx, _ = m.analyse(x)
            return y, z_idx
        # Overlapping tiles, each keeping the y cells of its interior (_interior_tiles). z is
        # computed from the stitched y (the hyper-encoder is cheap at 1/16).
        y = None
        for tile, dst, src in _interior_tiles(H, W, self.tile, 16):
            latent = m.vae.encode(x[tile])
            yt, sem_t = m.analysis(latent, m.patch_embed(x[tile]))
            if y is None:
                y = x.new_zeros(x.shape[0], yt.shape[1], H // 16, W // 16)
                sem = x.new_zeros(x.shape[0], sem_t.shape[1], H // 16, W // 16)
            y[dst] = yt[src]
            sem[dst] = sem_t[src]
        z_idx, _ = m.fsq(m.hyper_encoder(y, sem))
        return y, z_idx

    def entropy_encode(self, enc: EncodedLatents, q: int, *, reconstruct: bool = False
                       ) -> bytes | tuple[bytes, DecodedLatents]:
        """Integer parsing + rANS for one picture (CPU, exact).

        With ``reconstruct=True`` also return what a decoder will entropy-decode (the
        encoder computes it anyway), so callers can synthesise without decoding.
        """
        if not 0 <= q < self.num_rates:
            raise ValueError(f"rate point {q} out of range 0..{self.num_rates - 1}")
        P = self.parsing
        frac = P.config.act_frac
        z_int = self.z_int(enc.z_idx)
        _, Hy, Wy = enc.y.shape
        stages, y_ug = P.quantize(P.hyper_features(z_int), enc.y.to(torch.float64) * self.gain(q), q)
        nb = band_count(Hy, self.band_rows)
        chunks = [pack_tokens(enc.z_idx.numpy(), self.levels)]
        for st in stages:
            sym_i = st.sym.to(torch.int64).numpy()
            idx = st.index.numpy()
            rows = (st.pos // Wy).numpy()
            for b in range(nb):
                sel = (rows >= b * self.band_rows) & (rows < (b + 1) * self.band_rows)
                chunks.append(self.coder.encode(sym_i[:, sel], idx[:, sel]))
        header = PictureHeader(q=q, width=enc.width, height=enc.height, band_rows=self.band_rows)
        payload = pack_picture(header, chunks)
        if not reconstruct:
            return payload
        y_hat = (y_ug / 2**frac).float()
        return payload, DecodedLatents(y_hat, z_int[0], q, enc.width, enc.height)

    def z_int(self, z_idx: Tensor) -> Tensor:
        """FSQ indices [Cz, h, w] -> symmetric integers [1, Cz, h, w] (int64)."""
        return (2 * z_idx.to(torch.int64) - self._z_offset)[None]

    def gain(self, q: int) -> Tensor:
        """Rate point *q*'s per-channel gain [M, 1, 1] (float64, exact): ``y_g = y * gain``."""
        P = self.parsing
        return (P.gain[q].to(torch.float64) / 2**P.config.gain_frac).view(-1, 1, 1)

    def compress(self, images: Sequence[np.ndarray], q: int, *, refine: RefineConfig | None = None,
                 residual: ResidualConfig | None = None,
                 progress: Callable[[int], None] | None = None) -> list[bytes]:
        """Pictures -> packets at rate point *q* (0-based).

        ``refine`` optimises each picture's latents against the decoder before coding
        (:mod:`~onedc_media.model.refine`: slower, better at about the same bits; the
        packets decode as any others). ``residual`` adds the latent residual layer
        (:mod:`~onedc_media.model.residual`: more bits, more quality above the rate point).
        ``progress(done)`` is called after each gradient step of either, with the steps
        done so far, counted across *images* (:meth:`encode_steps` gives each picture's share).
        """
        images = check_frames(images)
        encs = self.analyse(images)
        done, out = 0, []
        for im, e in zip(images, encs):
            step = None if progress is None else (lambda n, base=done: progress(base + n))
            out.append(self.encode_picture(im, e, q, refine=refine, residual=residual, progress=step))
            done += self.encode_steps(e.height, e.width, refine, residual)
        return out

    def encode_picture(self, image: np.ndarray, enc: EncodedLatents, q: int, *,
                       refine: RefineConfig | None = None, residual: ResidualConfig | None = None,
                       progress: Callable[[int], None] | None = None) -> bytes:
        """One picture's packet from its analysed latents *enc* (what :meth:`compress` does
        per picture; benchmarks that reuse one analysis or refinement call it directly)."""
        n_refine = 0
        if refine is not None and refine.steps:
            from onedc_media.model.refine import refine_latents, refine_steps

            enc = refine_latents(self, image, enc, q, refine, progress)
            n_refine = refine_steps(enc.height, enc.width, refine)
        if residual is None:
            return self.entropy_encode(enc, q)
        from onedc_media.model.onedc import pad_to_multiple
        from onedc_media.model.residual import fit_residual, pack_residual, residual_steps

        payload, decoded = self.entropy_encode(enc, q, reconstruct=True)
        with torch.no_grad():
            base = self.base_latent(decoded)
        x = pad_to_multiple(self._to_tensor([image])).to(self.device, self.dtype)
        start = None
        if residual.start == "clean":
            with torch.no_grad():
                start = self._clean_latent(x)
        best = None
        done = n_refine
        for fine in self._residual_decoders(residual):
            vae = (fine.vae if fine is not None else self.model.vae).requires_grad_(False)
            later = None if progress is None else (lambda n, base_n=done: progress(base_n + n))
            sym = fit_residual(vae.decode, x, base, enc.height, enc.width, residual, later, start=start)
            done += residual_steps(enc.height, enc.width, residual)
            body = pack_residual(sym, residual.step_code, self.coder, self.parsing.freqs.numpy())
            cost = None
            if best is not None or fine is not None and residual.decoder == "best":
                bits = 8 * (len(body) + (0 if fine is None else FINE_ID_BYTES))  # the id is paid for too
                with torch.no_grad():
                    cost = self._layer_cost(vae, x, base, sym, bits, enc, residual)
            if best is None or cost < best[0]:
                best = (cost, body, fine)
        _, body, fine = best
        return add_residual(payload, body, num_rates=self.num_rates, fine_id=None if fine is None else fine.id)

    def _residual_decoders(self, residual: ResidualConfig) -> list[FineDecoder | None]:
        """The decoders a residual layer is fitted through (``None``: the model's own)."""
        if self.fine_decoder is None or residual.decoder == "model":
            return [None]
        return [self.fine_decoder] if residual.decoder == "fine" else [self.fine_decoder, None]

    def _layer_cost(self, vae, x: Tensor, base: Tensor, sym: Tensor, bits: int, enc: EncodedLatents,
                    residual: ResidualConfig) -> float:
        """What the fit minimises, measured on what a decoder will draw: ``4 * MSE + L1``
        on the picture's pixels (in [-1, 1]) + ``lmbda`` x the layer's *bits* per pixel."""
        from onedc_media.model.residual import STEP_DENOMINATOR

        step = residual.step_code / STEP_DENOMINATOR
        e = sym.clamp(-self.coder.support, self.coder.support).to(base.device, base.dtype)[None]
        x_hat = self._vae_tiled(base + step * e, None, vae.decode)
        d = (x_hat.float().clamp(-1, 1) - x.float())[..., : enc.height, : enc.width]
        return float(4 * d.square().mean() + d.abs().mean()) + residual.lmbda * bits / (enc.height * enc.width)

    def encode_steps(self, height: int, width: int, refine: RefineConfig | None = None,
                     residual: ResidualConfig | None = None) -> int:
        """Gradient steps :meth:`compress` takes on one *height* x *width* picture (what a
        progress bar counts to): refinement's, then each residual fit's."""
        fits = 0 if residual is None else len(self._residual_decoders(residual))
        return encode_steps(height, width, refine, residual, fits=fits)

    def _clean_latent(self, x: Tensor) -> Tensor:
        """The VAE encoder's latent of padded pixels *x* [1, 3, H, W], in tiles that keep
        their interiors for large pictures (the encoder sees 128 px of context past each)."""
        enc = self.model.vae.encode
        H, W = x.shape[-2:]
        if H <= self.tile and W <= self.tile:
            return enc(x)
        out = None
        for tile, dst, src in _interior_tiles(H, W, self.tile, 8):
            t = enc(x[tile])
            if out is None:
                out = t.new_zeros(x.shape[0], t.shape[1], H // 8, W // 8)
            out[dst] = t[src]
        return out

    def base_latent(self, item: DecodedLatents) -> Tensor:
        """The latent a decoder computes for *item* before any residual layer, [1, C, H/8, W/8]."""
        y = item.y_hat[None].to(self.device, self.dtype)
        z = item.z_int[None].to(self.device, self.dtype)
        return self._latent_tiled(y, z)

    # -- decode --------------------------------------------------------------------
    def entropy_decode(self, payload: bytes, *, keep_symbols: bool = False) -> DecodedLatents:
        """CRC checks, integer parsing and rANS for one picture (CPU, exact)."""
        P = self.parsing
        frac = P.config.act_frac
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise BitstreamError(f"expected bytes, got {type(payload).__name__}")
        payload = bytes(payload)
        if len(payload) < 22:
            raise BitstreamError(f"OneDC packet too short ({len(payload)} bytes)")
        # The header gives the size; the z chunk length follows from it.
        prelim, _ = unpack_picture(payload, num_rates=P.num_rates)
        zh, zw = prelim.z_size
        header, chunks = unpack_picture(
            payload, num_rates=P.num_rates,
            z_chunk_bytes=(zh * zw * bits_per_token(self.levels) + 7) // 8,
        )
        z_idx = torch.from_numpy(unpack_tokens(chunks[0], self.levels, zh, zw))
        z_int = self.z_int(z_idx)
        h = P.hyper_features(z_int)
        M = P.config.y_channels
        Hy, Wy = header.y_size
        y_ug = torch.zeros(1, M, Hy * Wy, dtype=torch.float64)
        nb = band_count(Hy, header.band_rows)
        symbols: list[np.ndarray] = []
        ci = 1
        for k in range(4):
            pos = stage_positions(k, Hy, Wy)
            mu_g, index, inv_gain = P.stage_params(k, h, y_ug.view(1, M, Hy, Wy), header.q)
            idx = index[0].numpy()
            sym = np.empty((M, pos.numel()), dtype=np.int64)
            rows = (pos // Wy).numpy()
            for b in range(nb):
                sel = (rows >= b * header.band_rows) & (rows < (b + 1) * header.band_rows)
                dec = self.coder.decode(chunks[ci], idx[:, sel])
                sym[:, sel] = dec.reshape(M, -1)
                if keep_symbols:
                    symbols.append(dec)
                ci += 1
            y_hat_g = torch.from_numpy(sym).to(torch.float64) * 2**frac + mu_g[0]
            y_ug[0][:, pos] = P.ungain(y_hat_g, inv_gain[0])
        y_hat = (y_ug.view(M, Hy, Wy) / 2**frac).float()
        residual = fine_id = None
        if header.residual:
            from onedc_media.model.residual import unpack_residual

            body = chunks[ci]
            if header.fine_decoder:
                if len(body) < FINE_ID_BYTES:
                    raise BitstreamError(f"residual chunk too short ({len(body)} bytes)")
                fine_id, body = body[:FINE_ID_BYTES], body[FINE_ID_BYTES:]
                self.fine_decoder_for(fine_id)  # refuse now what cannot be drawn
            residual = unpack_residual(body, self.coder, self.model.config.latent_channels, 2 * Hy, 2 * Wy)
        return DecodedLatents(y_hat, z_int[0], header.q, header.width, header.height,
                              symbols if keep_symbols else None, residual, fine_id)

    def fine_decoder_for(self, fine_id: bytes) -> FineDecoder:
        """The fine decoder a picture names: the model's current one, or an earlier one
        kept in its folder (loaded once, onto this engine's device). ``ModelMismatchError``
        when the model has no such fine decoder."""
        fine = self.fine_decoder
        if fine is not None and fine.id == fine_id:
            return fine
        with self._fine_lock:
            found = self._earlier_fine.get(fine_id)
            if found is None and self.fine_dir is not None:
                from onedc_media.model.fine_decoder import find_fine_decoder_file, load_fine_decoder

                path = find_fine_decoder_file(self.fine_dir, fine_id)
                if path is not None:
                    found = load_fine_decoder(self.fine_dir, self.model, self.ref.sha256, path)
                if found is not None:
                    torch.nn.Module.to(found.vae, self.device, self.dtype)
                    self._earlier_fine[fine_id] = found
        if found is None:
            holds = "has none" if fine is None else f"holds {fine.id.hex()}..."
            raise ModelMismatchError(
                f"the picture is drawn by fine decoder {fine_id.hex()}..., this decoder's model "
                f"({self.ref.name}) {holds} (decode --model DIR with a model folder holding the "
                "right one; the model card lists earlier versions)")
        return found

    @torch.no_grad()
    def synthesize(self, items: Sequence[DecodedLatents], *, batch_size: int = 8,
                   vae_batch_size: int | None = None) -> list[np.ndarray]:
        """Float synthesis, batched over pictures of equal size; ``vae_batch_size``
        splits each batch for the VAE decoder (see :meth:`OneDCModel.synthesize`)."""
        out: list[np.ndarray | None] = [None] * len(items)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault(it.shape_key, []).append(i)
        for idxs in groups.values():
            for s in range(0, len(idxs), batch_size):
                part = idxs[s : s + batch_size]
                y = torch.stack([items[i].y_hat for i in part]).to(self.device, self.dtype)
                z = torch.stack([items[i].z_int for i in part]).to(self.device, self.dtype)
                if items[part[0]].residual is None:
                    x = self._synthesize_tiled(y, z, vae_batch_size)
                else:
                    x = self.draw_layered(y, z, [items[i] for i in part], vae_batch_size)
                x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                for j, i in enumerate(part):
                    it = items[i]
                    out[i] = np.ascontiguousarray(x[j, : it.height, : it.width])
        return out  # type: ignore[return-value]

    def _synthesize_tiled(self, y: Tensor, z: Tensor, vae_batch: int | None = None) -> Tensor:
        m = self.model
        # replacements of model.synthesize (CUDA graphs, torch.compile) take (y, z) only
        synth = m.synthesize if vae_batch is None else partial(m.synthesize, vae_batch=vae_batch)
        Hy, Wy = y.shape[-2:]
        ty = self.tile // 16
        if Hy <= ty and Wy <= ty:
            return synth(y, z)
        # 8 y cells = 128 px of overlap, blended linearly
        return _blend_tiles(Hy, Wy, ty, 8, 4, 16, lambda r0, r1, c0, c1: synth(
            y[..., r0:r1, c0:c1], z[..., r0 // 4 : -(-r1 // 4), c0 // 4 : -(-c1 // 4)]).float())

    def _latent_tiled(self, y: Tensor, z: Tensor) -> Tensor:
        """The U-Net's latents [B, C, 2Hy, 2Wy], in tiles blended in the latent for large
        pictures (the residual layer corrects one latent, so it must be one, not a pixel
        blend of several)."""
        m = self.model
        Hy, Wy = y.shape[-2:]
        ty = self.tile // 16
        if Hy <= ty and Wy <= ty:
            return m.synthesize_latent(y, z)[0]
        # 8 y cells = 16 latent samples of overlap, blended linearly
        return _blend_tiles(Hy, Wy, ty, 8, 4, 2, lambda r0, r1, c0, c1: m.synthesize_latent(
            y[..., r0:r1, c0:c1], z[..., r0 // 4 : -(-r1 // 4), c0 // 4 : -(-c1 // 4)])[0].float()
        ).to(y.dtype)  # blended in float32, like the pixels

    def draw_layered(self, y: Tensor, z: Tensor, items: Sequence[DecodedLatents],
                     vae_batch: int | None = None) -> Tensor:
        """Pixels [B, 3, H, W] in [-1, 1] of a batch of pictures with the residual layer
        (one :attr:`DecodedLatents.shape_key`): the U-Net's latent plus the layer, drawn by
        the decoder the pictures name."""
        r = torch.stack([it.residual for it in items]).to(y.device, y.dtype)
        vae = self.model.vae
        if items[0].fine_id is not None:
            vae = self.fine_decoder_for(items[0].fine_id).vae
        return self._vae_tiled(self._latent_tiled(y, z) + r, vae_batch, vae.decode)

    def _vae_tiled(self, latent: Tensor, vae_batch: int | None = None,
                   dec: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """VAE-decode latents [B, C, h, w] (with *dec*, the model's VAE decoder by default),
        in tiles blended in pixels for large pictures."""
        dec = dec or self.model.vae.decode
        h, w = latent.shape[-2:]
        t = self.tile // 8

        def batched(lat: Tensor) -> Tensor:
            n = lat.shape[0]
            step = n if vae_batch is None else max(1, int(vae_batch))
            return torch.cat([dec(lat[i : i + step]) for i in range(0, n, step)])

        if h <= t and w <= t:
            return batched(latent)
        # 16 latent samples = 128 px of overlap, blended linearly
        return _blend_tiles(h, w, t, 16, 8, 8, lambda r0, r1, c0, c1: batched(latent[..., r0:r1, c0:c1]).float())

    def decompress(self, payloads: Sequence[bytes]) -> list[np.ndarray]:
        return self.synthesize([self.entropy_decode(p) for p in payloads])

    # -- evaluation (training validation) -----------------------------------------
    def evaluate(self, images: Sequence[np.ndarray], qualities: Iterable[int]) -> dict[str, float]:
        """Real-bits RD points: bpp from payload bytes, PSNR and MS-SSIM per rate point."""
        from onedc_media.evaluate.metrics import psnr_batch
        from onedc_media.train.losses import ms_ssim_per_sample

        res: dict[str, float] = {}
        enc = self.analyse(images)
        for q in qualities:
            payloads = [self.entropy_encode(e, q) for e in enc]
            recs = self.decompress(payloads)
            bpp = sum(len(p) * 8 for p in payloads) / sum(im.shape[0] * im.shape[1] for im in images)
            a = torch.stack([torch.from_numpy(r).permute(2, 0, 1).float() / 255 for r in recs])
            b = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in images])
            res[f"q{q + 1}_bpp"] = bpp
            res[f"q{q + 1}_psnr"] = float(psnr_batch(a, b).mean())
            res[f"q{q + 1}_msssim"] = float(ms_ssim_per_sample(a, b).mean())
        return res


def encode_steps(height: int, width: int, refine: RefineConfig | None = None,
                 residual: ResidualConfig | None = None, *, fits: int = 1) -> int:
    """Gradient steps of refinement and *fits* residual fits on one *height* x *width*
    picture (:meth:`OneDCEngine.encode_steps` knows how many fits its decoders take)."""
    n = 0
    if refine is not None and refine.steps:
        from onedc_media.model.refine import refine_steps

        n += refine_steps(height, width, refine)
    if residual is not None:
        from onedc_media.model.residual import residual_steps

        n += fits * residual_steps(height, width, residual)
    return n


def _interior_tiles(height: int, width: int, tile: int, scale: int):
    """Tiles of a *height* x *width* picture (pixels), each keeping its interior (128 px of
    context cut from every inner edge; 96 for the smallest tiles, 256 px, whose interiors
    would otherwise be empty) for an output at 1/*scale*: yields ``(tile, dst, src)``
    index tuples, ``x[tile]`` in pixels, ``out[dst] = part[src]``."""
    ov = min(128, (tile - 64) // 2)
    every = (Ellipsis,)
    for r0, r1 in tile_spans(height, tile, 2 * ov, 64):
        for c0, c1 in tile_spans(width, tile, 2 * ov, 64):
            kr0 = 0 if r0 == 0 else ov // scale
            kc0 = 0 if c0 == 0 else ov // scale
            kr1 = (r1 - r0) // scale if r1 == height else (r1 - r0 - ov) // scale
            kc1 = (c1 - c0) // scale if c1 == width else (c1 - c0 - ov) // scale
            yield (every + (slice(r0, r1), slice(c0, c1)),
                   every + (slice(r0 // scale + kr0, r0 // scale + kr1), slice(c0 // scale + kc0, c0 // scale + kc1)),
                   every + (slice(kr0, kr1), slice(kc0, kc1)))


def _blend_tiles(rows: int, cols: int, tile: int, overlap: int, align: int, scale: int,
                 piece: Callable[[int, int, int, int], Tensor]) -> Tensor:
    """Cover a *rows* x *cols* grid with tiles (:func:`tile_spans`); ``piece(r0, r1, c0, c1)``
    computes one tile's output, *scale* times the grid's resolution; overlaps are blended
    with linear ramps."""
    out = weight = None
    for r0, r1 in tile_spans(rows, tile, overlap, align):
        for c0, c1 in tile_spans(cols, tile, overlap, align):
            part = piece(r0, r1, c0, c1)
            if out is None:
                out = part.new_zeros(part.shape[0], part.shape[1], rows * scale, cols * scale)
                weight = part.new_zeros(1, 1, rows * scale, cols * scale)
            wr = _ramp((r1 - r0) * scale, overlap * scale, r0 > 0, r1 < rows, part.device)
            wc = _ramp((c1 - c0) * scale, overlap * scale, c0 > 0, c1 < cols, part.device)
            w = (wr[:, None] * wc[None, :])[None, None].to(part.dtype)
            out[..., r0 * scale : r1 * scale, c0 * scale : c1 * scale] += part * w
            weight[..., r0 * scale : r1 * scale, c0 * scale : c1 * scale] += w
    return out / weight.clamp_min(1e-6)


def _ramp(n: int, ov: int, start: bool, end: bool, device: torch.device) -> Tensor:
    w = torch.ones(n, device=device)
    ramp = (torch.arange(ov, device=device, dtype=torch.float32) + 0.5) / ov
    if start:
        w[:ov] = torch.minimum(w[:ov], ramp)
    if end:
        w[-ov:] = torch.minimum(w[-ov:], ramp.flip(0))
    return w

