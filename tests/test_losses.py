"""Every loss term against values worked out by hand from Webster & Lee's equations.

Block ``B[i, j]`` of a decoder weight maps input group ``i`` (encoder i's pathway into the layer)
to output group ``j`` (paper Eqs. 11 and 14; the authors' decoder is made of ConvTranspose1d
layers, whose weight is stored ``(in, out, k)``, and their loss takes rows along that first axis).
Our decoder is made of Conv1d layers, stored ``(out, in, k)``: the same logical weights in either
storage must give the same loss. The numbers in the comments are the hand calculation; nothing
here is computed by the code under test.
"""

import math

import pytest
import torch
from torch import nn

from resp_sep.losses import (
    LossWeights,
    block_factors,
    encoding_l2,
    sparse_mixing_loss,
    total_loss,
    zero_reconstruction_loss,
)
from resp_sep.model import MultiEncoderAE


def _layer(storage: str, n_in: int, n_out: int, k: int, entries: dict) -> nn.Module:
    """A layer whose *logical* weight W[in, out, tap] is zero except ``entries``."""
    if storage == "conv":
        layer = nn.Conv1d(n_in, n_out, k, bias=False)  # weight[out, in, tap]
    else:
        layer = nn.ConvTranspose1d(n_in, n_out, k, bias=False)  # weight[in, out, tap]
    with torch.no_grad():
        layer.weight.zero_()
        for (i, o, t), v in entries.items():
            if storage == "conv":
                layer.weight[o, i, t] = v
            else:
                layer.weight[i, o, t] = v
    return layer


# N = 3 groups; 6 input channels (2 per group), 3 output channels (1 per group), 2 taps:
# every block holds 2 x 1 x 2 = 4 weights.
ENTRIES = {
    (2, 0, 0): 4.0,     # in ch 2 (group 1) -> out ch 0 (group 0): B[1, 0], mean |B| = 4 / 4 = 1
    (0, 2, 0): -2.0,    # in ch 0 (group 0) -> out ch 2 (group 2), both taps:
    (0, 2, 1): -2.0,    #   B[0, 2], mean |B| = 4 / 4 = 1
    (5, 1, 1): 8.0,     # in ch 5 (group 2) -> out ch 1 (group 1): B[2, 1], mean |B| = 8 / 4 = 2
    (3, 1, 0): 100.0,   # in ch 3 (group 1) -> out ch 1 (group 1): diagonal, free
}


@pytest.mark.parametrize("storage", ["conv", "transposed"])
def test_position_mixing_hand_value(storage):
    """Eq. 14: per input group r, mean |w| over the strip right of the diagonal plus over the strip
    left of it. r = 0: right strip {B01, B02} -> (0 + 4) / 8 = 0.5; r = 1: left {B10} -> 4 / 4 = 1,
    right {B12} -> 0; r = 2: left {B20, B21} -> (0 + 8) / 8 = 1. Total 2.5 (the transposed
    weighting, rows = output groups, gives 0.5 + 2 + 0.5 = 3.0)."""
    layer = _layer(storage, 6, 3, 2, ENTRIES)
    assert sparse_mixing_loss([layer], 3, "position").item() == pytest.approx(2.5)


@pytest.mark.parametrize("storage", ["conv", "transposed"])
def test_uniform_mixing_hand_value(storage):
    """Eq. 11: every off-diagonal block adds its mean |w|: 1 + 1 + 2 = 4."""
    layer = _layer(storage, 6, 3, 2, ENTRIES)
    assert sparse_mixing_loss([layer], 3, "uniform").item() == pytest.approx(4.0)


@pytest.mark.parametrize("storage", ["conv", "transposed"])
def test_position_weighting_is_by_input_group(storage):
    """The issue-17 example, N = 8, one channel per group: a weight of 1 from input group 1 to
    output group 0 sits alone in the left strip of row 1 (weight 1); from input group 0 to output
    group 1 it is one of the 7 blocks of row 0's right strip (weight 1/7)."""
    one_to_zero = _layer(storage, 8, 8, 1, {(1, 0, 0): 1.0})
    zero_to_one = _layer(storage, 8, 8, 1, {(0, 1, 0): 1.0})
    assert sparse_mixing_loss([one_to_zero], 8, "position").item() == pytest.approx(1.0)
    assert sparse_mixing_loss([zero_to_one], 8, "position").item() == pytest.approx(1 / 7)
    # uniform scaling does not care about position
    assert sparse_mixing_loss([one_to_zero], 8, "uniform").item() == pytest.approx(1.0)
    assert sparse_mixing_loss([zero_to_one], 8, "uniform").item() == pytest.approx(1.0)


def test_block_factors_n4():
    """Position factors for N = 4, rows = input groups: row 0 right strip of 3 -> 1/3 each; row 1
    left of 1 -> 1, right of 2 -> 1/2; row 2 left of 2 -> 1/2, right of 1 -> 1; row 3 left of 3 -> 1/3."""
    third, half = 1 / 3, 1 / 2
    expect = torch.tensor([[0, third, third, third],
                           [1, 0, half, half],
                           [half, half, 0, 1],
                           [third, third, third, 0]])
    assert torch.allclose(block_factors(4, "position"), expect)
    assert torch.equal(block_factors(4, "uniform"), 1 - torch.eye(4))


def test_mixing_sums_over_layers_with_depth_weighting():
    a = _layer("conv", 6, 3, 2, ENTRIES)  # position 2.5, uniform 4 (above)
    c = _layer("transposed", 6, 3, 2, {(2, 0, 0): 4.0})  # B[1, 0] alone: position 1, uniform 1
    assert sparse_mixing_loss([a, c], 3, "position").item() == pytest.approx(2.5 + 1.0)
    assert sparse_mixing_loss([a, c], 3, "uniform").item() == pytest.approx(4.0 + 1.0)
    # 1/k^2 depth weighting: the second layer counts 1/4
    assert sparse_mixing_loss([a, c], 3, "position", depth="inv_sq").item() == pytest.approx(2.5 + 1.0 / 4)


def test_encoding_l2_hand_value():
    """Eq. 9: (1/N) sum_n mean(z_n^2). N = 2, encoder 0 all 1, encoder 1 all 3 -> (1 + 9) / 2 = 5."""
    z = torch.cat([torch.full((2, 3, 4), 1.0), torch.full((2, 3, 4), 3.0)], dim=1)
    assert encoding_l2(z, 2).item() == pytest.approx(5.0)
    # N = 4: encoders of 1, 2, 0, 0 -> (1 + 4) / 4 = 1.25
    z = torch.cat([torch.full((1, 2, 5), v) for v in (1.0, 2.0, 0.0, 0.0)], dim=1)
    assert encoding_l2(z, 4).item() == pytest.approx(1.25)


# ------------------------------------------------- a tiny model whose every term is known by hand

TINY = {"n_encoders": 2, "channels": [4, 4], "hidden": 4, "kernel_size": 3}


def _hand_set_model():
    """Tiny model (N = 2) with weights chosen so that every loss term has a closed form.

    * encodings: the encoders' last 1x1 conv has zero weights and biases (1, 1 | 2, 0), so z is
      constant: encoder 0 channels (1, 1), encoder 1 channels (2, 0) after the ReLU;
    * decoder: every conv weight and bias zero, so each layer outputs 0 and each GroupNorm its bias
      beta; the last GroupNorm's beta is (2, 0, 0, 0) and the output layer's weight (0.5, 0, 0, 0)
      (weight norm: g = 0.5, v = e_0), bias -1: logits = 0.5 * 2 - 1 = 0 everywhere, for any input;
    * mixing weights only in the last conv (its input is the previous GroupNorm's beta = 0, so they
      do not change the output): logical W[in 0 -> out 2, tap 0] = 3 (B[0, 1]) and W[in 3 -> out 1,
      taps 0..2] = -1 (B[1, 0]); blocks are 2 x 2 x 3 = 12 weights.
    """
    torch.manual_seed(0)
    m = MultiEncoderAE(**TINY)
    with torch.no_grad():
        last_enc = m.encoder[-2]
        assert isinstance(last_enc, nn.Conv1d) and last_enc.kernel_size == (1,)
        last_enc.weight.zero_()
        last_enc.bias.copy_(torch.tensor([1.0, 1.0, 2.0, 0.0]))
        for conv in [m.dec_in, *m.dec_convs]:
            conv.weight.zero_()
            conv.bias.zero_()
        for gn in [m.dec_in_norm, *m.dec_norms]:
            gn.weight.fill_(1.0)
            gn.bias.zero_()
        m.dec_norms[-1].bias.copy_(torch.tensor([2.0, 0.0, 0.0, 0.0]))
        par = m.dec_out.parametrizations.weight
        par.original0.fill_(0.5)
        par.original1.zero_()
        par.original1[0, 0, 0] = 1.0
        m.dec_out.bias.fill_(-1.0)
        w = m.dec_convs[-1].weight  # Conv1d: (out, in, k)
        w[2, 0, 0] = 3.0
        w[1, 3, :] = -1.0
    return m


def test_tiny_decoder_every_term_by_hand():
    m = _hand_set_model()
    assert m.config.dec_in_channels == 4 and m.config.dec_channels == [4, 4]
    x = torch.rand(3, 1, 16)
    # reconstruction: logits 0 -> BCE = log 2 whatever the target
    # mixing, uniform (Eq. 11): |B01| mean 3 / 12 = 0.25, |B10| mean 3 / 12 = 0.25 -> 0.5
    # mixing, position (Eq. 14), N = 2: every strip is one block -> also 0.5
    # zero reconstruction: all-zero encodings also give logits 0 -> log 2
    # encodings (Eq. 9): encoder 0 mean z^2 = 1, encoder 1 (4 + 0) / 2 = 2 -> (1 + 2) / 2 = 1.5
    w = LossWeights(mix=0.1, zero=0.2, z=0.3, mix_scaling="position")
    loss, parts = total_loss(m, x, w)
    ln2 = math.log(2.0)
    assert parts["recon"] == pytest.approx(ln2, rel=1e-6)
    assert parts["mix"] == pytest.approx(0.5, rel=1e-6)
    assert parts["zero"] == pytest.approx(ln2, rel=1e-6)
    assert parts["z"] == pytest.approx(1.5, rel=1e-6)
    assert loss.item() == pytest.approx(ln2 + 0.1 * 0.5 + 0.2 * ln2 + 0.3 * 1.5, rel=1e-6)
    _, parts_u = total_loss(m, x, LossWeights(mix=0.1, zero=0.2, z=0.3, mix_scaling="uniform"))
    assert parts_u["mix"] == pytest.approx(0.5, rel=1e-6)


def test_zero_reconstruction_hand_value():
    """BCE(D(0), 0) = softplus(logit): move the output bias to 1 -> logits 1 -> log(1 + e)."""
    m = _hand_set_model()
    with torch.no_grad():
        m.dec_out.bias.fill_(0.0)
    assert zero_reconstruction_loss(m, time_steps=4).item() == pytest.approx(math.log1p(math.e), rel=1e-6)
