"""The bit-exact entropy layer: fixed-point convs, FSQ bits, tables, rANS, bitstream."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from onedc_media.entropy.coder import TableCoder
from onedc_media.entropy.fixedpoint import IntConv2d, QConv2d
from onedc_media.entropy.fsq import FSQ, bits_per_token, pack_tokens, unpack_tokens
from onedc_media.entropy.parsing import IntParsing, ParsingConfig, ParsingNet, stage_positions
from onedc_media.entropy.tables import ScaleTableSpec, build_tables
from onedc_media.errors import (
    BitstreamError,
    ChecksumError,
    LimitExceededError,
    ModelError,
    OdcFormatError,
    TruncatedError,
)
from onedc_media.model.bitstream import PictureHeader, pack_picture, unpack_picture


def _int64_reference_conv(layer: IntConv2d, x: torch.Tensor) -> torch.Tensor:
    """The same layer in pure int64 arithmetic (slow, obviously exact)."""
    k = layer.kernel_size
    cols = F.unfold(x.double(), k, padding=k // 2).to(torch.int64)
    acc = torch.einsum("ok,bkn->bon", layer.weight.reshape(layer.weight.shape[0], -1), cols)
    acc = acc + layer.bias.view(1, -1, 1)
    sh = layer.shift.view(1, -1, 1)
    out = torch.where(sh >= 0, torch.div(acc, 2 ** sh.clamp(min=0), rounding_mode="floor"),
                      acc * 2 ** (-sh).clamp(min=0))
    if layer.relu:
        out = out.clamp(min=0)
    lim = 2 ** (layer.act_bits - 1) - 1
    return out.clamp(-lim, lim).view(x.shape[0], -1, x.shape[2], x.shape[3])


@pytest.mark.parametrize("k,relu", [(1, True), (3, True), (5, False)])
def test_int_conv_is_exact_and_matches_fake_quant(k, relu):
    torch.manual_seed(k)
    q = QConv2d(16, 24, k, in_frac=8, out_frac=8, relu=relu)
    x_int = torch.randint(-(2**12), 2**12, (2, 16, 9, 7), dtype=torch.int64)
    layer = q.export()
    got = layer(x_int.double())
    assert torch.equal(got.long(), _int64_reference_conv(layer, x_int))
    # The float (training) twin agrees up to float32 rounding of the sums.
    fq = q(x_int.float() / 256) * 256
    assert (fq - got.float()).abs().max() <= 1.0
    # A quad-context stage grid gives the same values as the full map.
    for r, c in ((0, 0), (1, 1), (0, 1), (1, 0)):
        sub = got[:, :, r::2, c::2].reshape(2, 24, -1)
        assert torch.equal(layer(x_int.double(), (r, c)), sub)


def test_int_conv_bounds_are_checked():
    layer = IntConv2d(weight=torch.full((1, 4096, 5, 5), 2**20), bias=torch.zeros(1, dtype=torch.int64),
                      shift=torch.zeros(1, dtype=torch.int64), relu=False, act_bits=20, in_bits=20)
    with pytest.raises(ModelError):
        layer.check_bounds()


def test_fsq_tokens_round_trip():
    levels = (4,) * 7
    assert bits_per_token(levels) == 14
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 4, (7, 3, 5))
    data = pack_tokens(idx, levels)
    assert len(data) == (15 * 14 + 7) // 8
    assert np.array_equal(unpack_tokens(data, levels, 3, 5), idx)
    with pytest.raises(BitstreamError):
        unpack_tokens(data[:-1], levels, 3, 5)
    odd = (5, 3, 7)  # mixed radix, not a power of two
    idx = np.stack([rng.integers(0, lv, (2, 2)) for lv in odd])
    assert np.array_equal(unpack_tokens(pack_tokens(idx, odd), odd, 2, 2), idx)


def test_fsq_quantiser_levels_and_gradient():
    fsq = FSQ((4, 4))
    z = torch.linspace(-5, 5, 50).view(1, 2, 5, 5).requires_grad_()
    idx, z_int = fsq(z)
    assert set(idx.unique().tolist()) <= {0, 1, 2, 3}
    assert torch.equal(z_int.detach().long(), fsq.indices_to_int(idx))
    z_int.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_tables_are_normalised_and_monotonic():
    spec = ScaleTableSpec()
    thresholds, freqs = build_tables(spec)
    assert np.all(np.diff(thresholds) > 0)
    assert np.all(freqs >= 1) and np.all(freqs.sum(1) == 1 << spec.precision)
    # Wider scales spread mass away from zero.
    assert freqs[0, spec.support] > freqs[-1, spec.support]


def test_coder_round_trip_and_rate():
    spec = ScaleTableSpec()
    _, freqs = build_tables(spec)
    coder = TableCoder(freqs)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, spec.levels, 20000)
    sym = np.clip(np.round(rng.normal(0, spec.scales()[idx])), -spec.support, spec.support).astype(np.int64)
    data = coder.encode(sym, idx)
    assert np.array_equal(coder.decode(data, idx), sym)
    ideal = -np.log2(freqs[idx, sym + spec.support] / 2**spec.precision).sum() / 8
    assert len(data) <= ideal * 1.01 + 8
    with pytest.raises(BitstreamError):
        coder.decode(b"", idx)
    with pytest.raises(BitstreamError):
        coder.decode(data[:-4], idx)
    with pytest.raises(BitstreamError):
        coder.decode(data[:-1], idx)


def _small_parsing(seed: int = 0) -> tuple[ParsingNet, IntParsing]:
    torch.manual_seed(seed)
    cfg = ParsingConfig(y_channels=8, hyper_channels=8, hyper_out_channels=8, context_channels=8,
                        param_channels=16, num_rates=3)
    net = ParsingNet(cfg)
    return net, IntParsing(cfg, net.export())


def test_parsing_batch_invariance_and_stage_partition():
    _, P = _small_parsing()
    z = torch.randint(-1, 2, (4, 7, 2, 3)) * 2 + 1
    h4 = P.hyper_features(z)
    for b in range(4):
        assert torch.equal(P.hyper_features(z[b : b + 1])[0], h4[b])
    H, W = h4.shape[-2:]
    allpos = torch.cat([stage_positions(k, H, W) for k in range(4)])
    assert torch.equal(allpos.sort().values, torch.arange(H * W))
    y = torch.randint(-500, 500, (4, 8, H, W)).double()
    for k in range(4):
        mu4, idx4, _ = P.stage_params(k, h4, y, 1)
        mu1, idx1, _ = P.stage_params(k, h4[2:3], y[2:3], 1)
        assert torch.equal(mu4[2], mu1[0]) and torch.equal(idx4[2], idx1[0])


def test_parsing_training_twin_tracks_integer_twin():
    net, P = _small_parsing(3)
    z = (torch.randint(0, 4, (1, 7, 2, 2)) * 2 - 3).float()
    hf = net.hyper(z) * 256
    hi = P.hyper_features(z.long())
    assert (hf - hi.float()).abs().max() <= 2.0


def test_picture_header_checks():
    hdr = PictureHeader(q=1, width=100, height=70, band_rows=32)
    chunks = [b"z" * 11] + [b"abcd"] * 4
    data = pack_picture(hdr, chunks)
    got, body = unpack_picture(data, num_rates=3, z_chunk_bytes=11)
    assert got == hdr and body == chunks
    with pytest.raises(BitstreamError):
        unpack_picture(data, num_rates=1)  # rate point out of range
    with pytest.raises(TruncatedError):
        unpack_picture(data[:-1], num_rates=3)
    with pytest.raises(BitstreamError):
        unpack_picture(data + b"x", num_rates=3)
    bad = bytearray(data)
    bad[-2] ^= 0x10
    with pytest.raises(ChecksumError):
        unpack_picture(bytes(bad), num_rates=3)
    huge = bytearray(data)
    huge[8:12] = (70000).to_bytes(4, "little")
    with pytest.raises(LimitExceededError):
        unpack_picture(bytes(huge), num_rates=3)
    for cut in range(0, len(data), 3):
        with pytest.raises(OdcFormatError):
            unpack_picture(data[:cut], num_rates=3)
