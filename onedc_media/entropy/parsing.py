"""The parsing model: everything that decides a symbol or a probability table.

Data flow (``q`` is the rate point)::

    z_int (FSQ integers, 1/64) -> hyper (int convs, pixel-shuffle x4) -> h (1/16)
    for stage k in 0..3 (a 2x2 quad of positions per stage, decoded in parallel):
        ctx_k = context_k(y_hat so far, un-gained)      (k > 0; masked 5x5 int conv)
        mu, log_scale = params_k(h, ctx_k)               (int 1x1 convs)
        mu_g = mu * gain[q];  log_scale_g = log_scale + log_gain[q]
        table = searchsorted(thresholds, log_scale_g)    (integer comparison)
        y_hat_g = symbol + mu_g;  y_hat = y_hat_g / gain[q]   (fixed point)

Two twins implement it: :class:`ParsingNet` (float, quantisation-aware, trainable) and
:class:`IntParsing` (exported integers, CPU, bit-exact; the only one used to code).
Rate points are per-channel gains on ``y`` ("gain units", Cui et al. 2021), so one
model serves every quality and the rate point is a single integer in the packet.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from onedc_media.entropy.fixedpoint import IntConv2d, QConv2d, floor_ste, round_ste
from onedc_media.entropy.tables import ScaleTableSpec, build_tables
from onedc_media.errors import ModelError

__all__ = ["ParsingConfig", "ParsingNet", "IntParsing", "StageSymbols", "STAGE_OFFSETS", "stage_positions"]

#: (row, col) offset inside each 2x2 quad decoded at stage k.
STAGE_OFFSETS: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (0, 1), (1, 0))


@dataclass(frozen=True)
class ParsingConfig:
    z_levels: tuple[int, ...] = (4,) * 7
    y_channels: int = 96
    hyper_channels: int = 96
    hyper_out_channels: int = 128
    context_channels: int = 96
    param_channels: int = 192
    num_rates: int = 6
    act_frac: int = 8
    weight_bits: int = 8
    act_bits: int = 20
    gain_frac: int = 12
    table: ScaleTableSpec = field(default_factory=ScaleTableSpec)

    @classmethod
    def from_dict(cls, d: dict) -> ParsingConfig:
        d = dict(d)
        d["z_levels"] = tuple(d.get("z_levels", (4,) * 7))
        d["table"] = ScaleTableSpec(**d.get("table", {}))
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["z_levels"] = list(self.z_levels)
        return d


def stage_mask(k: int, h: int, w: int, device: torch.device | None = None) -> Tensor:
    r, c = STAGE_OFFSETS[k]
    m = torch.zeros(h, w, device=device)
    m[r::2, c::2] = 1
    return m


def stage_positions(k: int, h: int, w: int) -> Tensor:
    """Flat indices (raster order) of the positions decoded at stage *k*."""
    r, c = STAGE_OFFSETS[k]
    rows = torch.arange(r, h, 2)
    cols = torch.arange(c, w, 2)
    return (rows.view(-1, 1) * w + cols.view(1, -1)).reshape(-1)


class _Seq(nn.Module):
    """QConv2d layers, optionally followed by pixel-shuffle (x2) after given layers."""

    def __init__(self, layers: list[QConv2d], shuffle_after: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.shuffle_after = shuffle_after

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.shuffle_after:
                x = F.pixel_shuffle(x, 2)
        return x


class ParsingNet(nn.Module):
    """Float twin of the parsing model, trained with fake quantisation."""

    def __init__(self, config: ParsingConfig) -> None:
        super().__init__()
        self.config = cfg = config
        Fr, wb, ab = cfg.act_frac, cfg.weight_bits, cfg.act_bits
        cz, ch, he = len(cfg.z_levels), cfg.hyper_channels, cfg.hyper_out_channels
        M, cc, pc = cfg.y_channels, cfg.context_channels, cfg.param_channels

        def q(i: int, o: int, k: int, in_frac: int = Fr, relu: bool = True) -> QConv2d:
            return QConv2d(i, o, k, in_frac=in_frac, out_frac=Fr, weight_bits=wb, act_bits=ab, relu=relu)

        self.hyper = _Seq(
            [q(cz, ch, 3, in_frac=0), q(ch, 4 * ch, 3), q(ch, 4 * ch, 3), q(ch, he, 3)],
            shuffle_after=(1, 2),
        )
        self.context = nn.ModuleList([q(M, cc, 5) for _ in range(3)])
        self.params = nn.ModuleList(
            [
                _Seq([q(he + (cc if k else 0), pc, 1), q(pc, pc, 1), q(pc, 2 * M, 1, relu=False)])
                for k in range(4)
            ]
        )
        lo, hi = 0.0, float(np.log(16.0))
        init = torch.linspace(lo, hi, cfg.num_rates).view(-1, 1).repeat(1, M)
        self.log_gain = nn.Parameter(init)

    @torch.no_grad()
    def shift_gain_ladder(self, shift: int) -> None:
        """Move the rate ladder *shift* points down: new rate points below q1, the top ones dropped.

        The new low rows continue each channel's log-gain step between q1 and q2 (the ladder is
        close to geometric), so the extended model starts from sensible rates instead of from
        the untrained linspace; the kept rows move up unchanged. Used when a model's config
        lists a lower ladder than the checkpoint it starts from.
        """
        Q = self.log_gain.shape[0]
        if not 0 <= shift < Q:
            raise ValueError(f"gain shift must be in 0..{Q - 1}, got {shift}")
        if shift == 0:
            return
        lg = self.log_gain.data
        step = lg[1] - lg[0]
        if (step <= 0).any():
            raise ValueError("the gains do not rise from q1 to q2 in every channel: nothing to extrapolate")
        low = [lg[0] - k * step for k in range(shift, 0, -1)]
        if float(low[0].min()) < -self.config.gain_frac * math.log(2):  # exported gain would round to 0
            raise ValueError(f"moving the ladder {shift} points down takes a gain below 2**-{self.config.gain_frac}")
        self.log_gain.data = torch.stack(low + list(lg[: Q - shift]))

    # -- fixed-point helpers shared by training and export --------------------------
    def _gains(self, q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Fake-quantised (gain, log_gain, inverse gain) rows for rate points *q* [B]."""
        cfg = self.config
        lg = self.log_gain[q]  # [B, M]
        gs = 2.0**cfg.gain_frac
        g = round_ste(torch.exp(lg) * gs) / gs
        ig = round_ste(torch.exp(-lg) * gs) / gs
        lgq = round_ste(lg * 2.0**cfg.act_frac) / 2.0**cfg.act_frac
        return g[..., None, None], lgq[..., None, None], ig[..., None, None]

    def forward(self, z_int: Tensor, y_g: Tensor, q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Simulate coding: returns ``(y_hat, mu_g, log_scale_g)``.

        :param z_int: FSQ symmetric integers [B, Cz, h, w] (float, straight-through).
        :param y_g: gained latent ``y * gain[q]`` [B, M, 4h, 4w].
        :param q: rate point index per sample [B] (long).
        ``y_hat`` is the un-gained reconstruction fed to synthesis (straight-through);
        ``mu_g`` / ``log_scale_g`` parameterise the Gaussian of ``y_g``.
        """
        Fr = 2.0**self.config.act_frac
        h = self.hyper(z_int)
        B, M, H, W = y_g.shape
        if h.shape[-2:] != (H, W):
            raise ValueError(f"hyper features {tuple(h.shape[-2:])} do not match y {(H, W)}")
        g, lg, ig = self._gains(q)
        y_hat = torch.zeros_like(y_g)
        mu_full = torch.zeros_like(y_g)
        ls_full = torch.zeros_like(y_g)
        for k in range(4):
            feats = h if k == 0 else torch.cat([h, self.context[k - 1](y_hat)], dim=1)
            mu, ls = self.params[k](feats).chunk(2, dim=1)
            mu_g = floor_ste(mu * g * Fr) / Fr
            ls_g = ls + lg
            mask = stage_mask(k, H, W, y_g.device)
            y_hat_g = round_ste(y_g - mu_g) + mu_g
            y_ug = floor_ste(y_hat_g * ig * Fr) / Fr
            y_hat = y_hat + y_ug * mask
            mu_full = mu_full + mu_g * mask
            ls_full = ls_full + ls_g * mask
        return y_hat, mu_full, ls_full

    def export(self) -> dict[str, Tensor]:
        """Integer tensors of :class:`IntParsing` (tables, gains and layers)."""
        cfg = self.config
        out: dict[str, Tensor] = {}
        for i, layer in enumerate(self.hyper.layers):
            out.update(layer.export().state(f"hyper.{i}"))
        for k, layer in enumerate(self.context):
            out.update(layer.export().state(f"context.{k + 1}"))
        for k, seq in enumerate(self.params):
            for i, layer in enumerate(seq.layers):
                out.update(layer.export().state(f"params.{k}.{i}"))
        lg = self.log_gain.detach().to(torch.float64)
        gs = 2.0**cfg.gain_frac

        def rnd(x: Tensor) -> Tensor:
            return (torch.sign(x) * torch.floor(torch.abs(x) + 0.5)).to(torch.int64)

        out["gain"] = rnd(torch.exp(lg) * gs).to(torch.int32)
        out["inv_gain"] = rnd(torch.exp(-lg) * gs).to(torch.int32)
        out["log_gain"] = rnd(lg * 2.0**cfg.act_frac).to(torch.int32)
        thresholds, freqs = build_tables(cfg.table)
        out["thresholds"] = torch.from_numpy(thresholds)
        out["freqs"] = torch.from_numpy(freqs).to(torch.int32)
        return out


@dataclass(frozen=True)
class StageSymbols:
    """What one stage of :meth:`IntParsing.quantize` decided (integers held in float64)."""

    pos: Tensor  #: flat positions of the stage [n] (raster order of :func:`stage_positions`)
    sym: Tensor  #: symbols [M, n], clamped to the table support
    mu_g: Tensor  #: gained means [M, n], fixed point with ``act_frac`` fractional bits
    index: Tensor  #: probability-table index [M, n] (int64)


class IntParsing:
    """The exported integer parsing model (CPU, exact). See the module docstring."""

    def __init__(self, config: ParsingConfig, tensors: dict[str, Tensor]) -> None:
        self.config = cfg = config
        t = {k: v.cpu() for k, v in tensors.items()}
        self.hyper = [IntConv2d.from_state(t, f"hyper.{i}") for i in range(4)]
        self.context = {k: IntConv2d.from_state(t, f"context.{k}") for k in (1, 2, 3)}
        self.params = [[IntConv2d.from_state(t, f"params.{k}.{i}") for i in range(3)] for k in range(4)]
        try:
            self.gain = t["gain"].to(torch.int64)
            self.inv_gain = t["inv_gain"].to(torch.int64)
            self.log_gain = t["log_gain"].to(torch.int64)
            self.thresholds = t["thresholds"].to(torch.int64)
            self.freqs = t["freqs"].to(torch.int64)
        except KeyError as exc:
            raise ModelError(f"parsing weights lack {exc}") from None
        M, Q = cfg.y_channels, cfg.num_rates
        if self.gain.shape != (Q, M) or self.inv_gain.shape != (Q, M) or self.log_gain.shape != (Q, M):
            raise ModelError("parsing weights: gain tables do not match the config")
        if self.thresholds.shape != (cfg.table.levels - 1,):
            raise ModelError("parsing weights: thresholds do not match the config")
        if self.freqs.shape != (cfg.table.levels, 2 * cfg.table.support + 1):
            raise ModelError("parsing weights: probability tables do not match the config")
        if self.params[0][-1].weight.shape[0] != 2 * M:
            raise ModelError("parsing weights: parameter net does not output 2 * y_channels")
        if self.gain.min() < 1 or self.inv_gain.min() < 1:
            raise ModelError("parsing weights: gains must be positive")
        f64 = torch.float64
        self._gain = self.gain.to(f64).view(Q, 1, M, 1)
        self._inv_gain = self.inv_gain.to(f64).view(Q, 1, M, 1)
        self._log_gain = self.log_gain.to(f64).view(Q, 1, M, 1)
        self._gain_scale = 2.0 ** -cfg.gain_frac
        self._thresholds = self.thresholds.to(f64)

    @property
    def num_rates(self) -> int:
        return self.config.num_rates

    def hyper_features(self, z_int: Tensor) -> Tensor:
        """[B, Cz, h, w] FSQ integers -> float64 integers [B, He, 4h, 4w]."""
        x = z_int.to(torch.float64)
        for i, layer in enumerate(self.hyper):
            x = layer(x)
            if i in (1, 2):
                x = F.pixel_shuffle(x, 2)
        return x

    def stage_params(self, k: int, h: Tensor, y_ug: Tensor, q: int) -> tuple[Tensor, Tensor, Tensor]:
        """Gained mean, table index and inverse gain at the positions of stage *k*.

        All values are integers held in float64 (see :mod:`.fixedpoint`).

        :param h: hyper features [B, He, H, W].
        :param y_ug: un-gained reconstruction so far [B, M, H, W] (zeros elsewhere).
        :returns: ``mu_g`` [B, M, n], ``index`` int64 [B, M, n], inverse gain [1, M, 1];
            ``n`` positions in the raster order of :func:`stage_positions`.
        """
        B, He, H, W = h.shape
        r, c = STAGE_OFFSETS[k]
        hcols = h[:, :, r::2, c::2].reshape(B, He, -1)
        feats = hcols if k == 0 else torch.cat([hcols, self.context[k](y_ug, (r, c))], dim=1)
        x = feats.unsqueeze(-1)  # [B, C, n, 1]: 1x1 convs over the gathered positions
        for layer in self.params[k]:
            x = layer(x)
        x = x.squeeze(-1)
        M = self.config.y_channels
        mu, ls = x[:, :M], x[:, M:]
        mu_g = torch.floor(mu * self._gain[q] * self._gain_scale)
        ls_g = ls + self._log_gain[q]
        index = torch.searchsorted(self._thresholds, ls_g.contiguous(), right=True)
        return mu_g, index, self._inv_gain[q]

    def ungain(self, y_hat_g: Tensor, inv_gain: Tensor) -> Tensor:
        return torch.floor(y_hat_g * inv_gain * self._gain_scale)

    def quantize(self, h: Tensor, y_g: Tensor, q: int) -> tuple[list[StageSymbols], Tensor]:
        """Decide the symbols of one picture's gained ``y_g`` [M, H, W] stage by stage.

        The one rule an encoder follows (the entropy coder codes ``sym`` with table
        ``index``; encoder-side refinement reads the means and tables it implies), so the
        two cannot drift apart. Returns the stages and the un-gained reconstruction a
        decoder will hold, fixed point [M, H, W].

        :param h: hyper features [1, He, H, W] (:meth:`hyper_features`).
        """
        frac, support = self.config.act_frac, self.config.table.support
        M, H, W = y_g.shape
        yg = y_g.to(torch.float64).reshape(M, H * W)
        y_ug = torch.zeros(1, M, H * W, dtype=torch.float64)
        stages = []
        for k in range(4):
            pos = stage_positions(k, H, W)
            mu_g, index, inv_gain = self.stage_params(k, h, y_ug.view(1, M, H, W), q)
            sym = torch.floor(yg[:, pos] - mu_g[0] / 2**frac + 0.5).clamp_(-support, support)
            y_ug[0][:, pos] = self.ungain(sym * 2**frac + mu_g[0], inv_gain[0])
            stages.append(StageSymbols(pos, sym, mu_g[0], index[0]))
        return stages, y_ug.view(M, H, W)

    def describe(self) -> str:
        return json.dumps(self.config.to_dict(), sort_keys=True)
