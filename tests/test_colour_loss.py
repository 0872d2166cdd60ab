"""The block-colour training term: it sees shifted colours, not lost texture."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from onedc_media.train.losses import block_colour, distortion  # noqa: E402


def test_block_colour_sees_a_shift_and_ignores_blur() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) - 0.5  # room for the shift below the clamp
    assert torch.equal(block_colour(x, x), torch.zeros(2))
    # a box blur inside each 16x16 block keeps every block's mean: no colour error
    blurred = torch.nn.functional.avg_pool2d(x, 16).repeat_interleave(16, -1).repeat_interleave(16, -2)
    assert block_colour(blurred, x).max() < 1e-6
    shifted = x.clone()
    shifted[0, 0, :16, :16] += 0.4  # one block of the first picture turns redder
    err = block_colour(shifted, x)
    assert err[1] == 0 and err[0] == pytest.approx(0.4 / 2 / (3 * 16), rel=1e-4)


def test_distortion_adds_the_colour_term_only_when_weighted() -> None:
    x = torch.zeros(1, 3, 32, 32)
    x_hat = x + 0.2
    plain, parts = distortion(x_hat, x, l1=1.0)
    assert "colour" not in parts
    both, parts = distortion(x_hat, x, l1=1.0, colour=2.0)
    assert float(parts["colour"]) == pytest.approx(0.1, abs=1e-6)
    assert float(both - plain) == pytest.approx(0.2, abs=1e-6)
